"""The Backend interface shared by every adapter, and the host-transfer counter."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import ConfigError
from .ops import Ops, ops_for


@dataclasses.dataclass
class TransferCount:
    """How many times data crossed between host and device, or between libraries.

    ``to_host`` counts :meth:`Backend.to_numpy` calls (each one is a device
    synchronisation on a GPU); ``to_device`` counts :meth:`Backend.asarray` calls
    that were given host (NumPy) data; ``between_libraries`` counts arrays of
    another GPU library (a torch or JAX array given to the CuPy backend) copied
    onto the backend's device.
    """

    to_host: int = 0
    to_device: int = 0
    between_libraries: int = 0

    @property
    def total(self) -> int:
        return self.to_host + self.to_device + self.between_libraries


_active_counters: list[TransferCount] = []


@contextlib.contextmanager
def count_transfers() -> Iterator[TransferCount]:
    """Count host<->device transfers made through any backend inside the block.

    Examples
    --------
    >>> with count_transfers() as count:
    ...     model.fit(X, y, epochs=2)
    >>> count.to_host, count.to_device
    """
    counter = TransferCount()
    _active_counters.append(counter)
    try:
        yield counter
    finally:
        _active_counters.remove(counter)


def _record(direction: str) -> None:
    for counter in _active_counters:
        setattr(counter, direction, getattr(counter, direction) + 1)


class Backend:
    """An array library plus one of its devices.

    Subclasses set :attr:`name`, :attr:`xp` (an Array-API namespace) and
    :attr:`device`, and implement the ``_to_host`` / ``_from_host`` /
    ``generator`` / ``uniform`` hooks.
    """

    name: str = ""
    xp: Any = None
    device: Any = None

    @property
    def ops(self) -> Ops:
        """The library's :class:`~portnet.backends.ops.Ops` (cached by :func:`ops_for`)."""
        return ops_for(self.xp)

    @property
    def inplace(self) -> bool:
        """Whether this library's arrays may be updated in place."""
        return self.ops.inplace

    # -- what subclasses provide -------------------------------------------------
    def _from_host(self, array: np.ndarray, dtype: Any) -> Any:
        return self.xp.asarray(array, dtype=dtype, device=self.device)

    def _to_host(self, array: Any) -> np.ndarray:
        raise NotImplementedError

    def generator(self, seed: int) -> Any:
        """Return the library's native random generator, seeded."""
        raise NotImplementedError

    def uniform(self, generator: Any, shape: tuple[int, ...], dtype: Any) -> Any:
        """Uniform samples in [0, 1) on this device, from a native generator.

        The Array API standard has no random numbers, so each adapter uses its
        library's own generator (dropout masks are drawn every step).
        """
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait until queued device work is done (benchmarks call this before reading a clock)."""

    def device_scope(self) -> contextlib.AbstractContextManager:
        """A context in which new arrays and kernels land on this backend's device.

        CuPy creates arrays and launches kernels on its *current* device, whatever
        device an argument names (array-api-compat's CuPy ``zeros(..., device=)``
        ignores it), so a model on ``cuda:1`` must make that device current for all
        of its work. :class:`portnet.Model` enters this scope in every public method;
        enter it yourself when you call layers or losses directly on ``cuda:1``.
        Libraries whose operations follow their inputs' device need nothing here.
        """
        return contextlib.nullcontext()

    # -- shared behaviour ------------------------------------------------------
    @property
    def device_name(self) -> str:
        return str(self.device)

    def dtype(self, name: str | Any) -> Any:
        """Return the namespace's dtype object for ``"float32"``, ``"int64"`` ..."""
        if not isinstance(name, str):
            return name
        try:
            return getattr(self.xp, name)
        except AttributeError:
            raise ConfigError(f"unknown dtype {name!r} for backend {self.name}") from None

    def asarray(self, array: Any, dtype: Any = None) -> Any:
        """Put ``array`` on this backend's device (a counted transfer if it is host data).

        Parameters
        ----------
        array : array_like
            NumPy array, Python scalar or sequence, or an array already on this
            backend.
        dtype : str or dtype, optional
            Target dtype; by default the input's.
        """
        dtype = self.dtype(dtype) if dtype is not None else None
        if isinstance(array, np.ndarray | np.generic | list | tuple | int | float):
            _record("to_device")
            host = np.asarray(array)
            return self._from_host(host, dtype)
        return self.xp.asarray(array, dtype=dtype, device=self.device)

    def to_numpy(self, array: Any) -> np.ndarray:
        """Copy a device array to a NumPy array: the one device-to-host exit."""
        _record("to_host")
        return self._to_host(array)

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, device={self.device_name!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Backend)
            and self.name == other.name
            and self.device_name == other.device_name
        )

    def __hash__(self) -> int:
        return hash((self.name, self.device_name))


def on_backend_device(method: Callable) -> Callable:
    """Run a method of an object with a ``backend`` inside :meth:`Backend.device_scope`.

    CuPy creates arrays on its current device; entering the object's device keeps
    every array of a model on ``cuda:1`` on ``cuda:1``.
    """

    @functools.wraps(method)
    def on_device(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.backend.device_scope():
            return method(self, *args, **kwargs)

    return on_device
