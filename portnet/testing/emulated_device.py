"""The emulated GPU behind :mod:`portnet.testing.emulated_cupy`: devices, state and counts.

The active emulation's state (how many devices, the current-device stack, the
:class:`Counts` of kernels, views, uploads and downloads, and an optional error
that every operation raises), the :class:`HostSyncError` a hidden
device-to-host sync raises, and the stand-in for ``cupy.cuda.Device``.
:class:`HostSyncError` and :class:`Counts` are also importable from
:mod:`portnet.testing.emulated_cupy` and :mod:`portnet.testing`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any


class HostSyncError(AssertionError):
    """A hidden device-to-host synchronisation: on a GPU the host would wait here."""


class CUDARuntimeError(RuntimeError):
    """Stand-in for ``cupy.cuda.runtime.CUDARuntimeError``."""


@dataclasses.dataclass
class Counts:
    """What the emulated device did since the counts were last reset.

    Attributes
    ----------
    kernels : Counter
        Operations that compute or allocate (one kernel launch each on a GPU), by name.
    views : Counter
        Operations that return a view of an input (no kernel), by name.
    uploads : int
        Host-to-device copies: ``asarray`` of host data or of a Python scalar.
    downloads : int
        Explicit device-to-host copies: ``cupy.asnumpy`` and ``ndarray.get``.
    syncs : int
        Hidden syncs let through inside :meth:`EmulatedCupy.allow_syncs` (``bool()``,
        ``float()`` ... of an array); outside it they raise.
    """

    kernels: Counter = dataclasses.field(default_factory=Counter)
    views: Counter = dataclasses.field(default_factory=Counter)
    uploads: int = 0
    downloads: int = 0
    syncs: int = 0

    @property
    def n_kernels(self) -> int:
        return sum(self.kernels.values())


class _State:
    """The active emulation: devices, the current-device stack and the counts."""

    def __init__(self, n_devices: int, broken: BaseException | None) -> None:
        self.n_devices = n_devices
        self.stack = [0]
        self.counts = Counts()
        self.broken = broken
        self.syncs_allowed = False

    @property
    def current(self) -> int:
        return self.stack[-1]


_state: _State | None = None


def _active() -> _State:
    if _state is None:
        raise RuntimeError("the emulated cupy is used outside `with emulated_cupy():`")
    return _state


def _sync(what: str, array: Any = None) -> HostSyncError:
    where = f" of a CuPy array {tuple(array.shape)} {array.dtype}" if array is not None else ""
    return HostSyncError(
        f"hidden device-to-host sync: {what}{where}. On a GPU the host would wait here for "
        "all queued work. Keep the value on the device, or read it once per epoch through "
        "Backend.to_numpy."
    )


def _host_read(what: str, array: Any) -> None:
    """A hidden sync: counted where allowed (:meth:`EmulatedCupy.allow_syncs`), else raised."""
    state = _active()
    if not state.syncs_allowed:
        raise _sync(what, array)
    state.counts.syncs += 1


class Device:
    """Stand-in for ``cupy.cuda.Device``: an id, and a context that makes it current."""

    def __init__(self, device: Any = None) -> None:
        state = _active()
        if device is None:
            device_id = state.current
        elif isinstance(device, Device):
            device_id = device.id
        else:
            device_id = int(device)
        if not 0 <= device_id < state.n_devices:
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
        self.id = device_id

    def __enter__(self) -> Device:
        _active().stack.append(self.id)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        _active().stack.pop()

    def use(self) -> None:
        _active().stack[-1] = self.id

    def synchronize(self) -> None:
        """Nothing is queued on the host: returns at once."""

    @property
    def compute_capability(self) -> str:
        return "90"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("emulated-cuda", self.id))

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"
