"""The emulated ``cupy.ndarray``: a NumPy array plus a device id, and the counting call path.

Every operation on an emulated array (methods, operators, indexing, and the module
functions built by :mod:`portnet.testing.emulated_cupy`) runs through
:func:`_call`: it checks that the array arguments live on the current device, runs
NumPy on the host arrays behind them, wraps the result back onto the current device
and counts one kernel (or a view). The host exits that would be hidden syncs on a
GPU (``bool()``, ``float()``, ``.item()``, boolean-mask indexing ...) raise
:class:`~portnet.testing.HostSyncError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .emulated_device import Device, _active, _host_read, _sync

_SCALARS = (bool, int, float, complex, np.generic)


def _host(value: Any, *, upload_ok: bool = False) -> Any:
    """The NumPy array behind an emulated array (checked to be on the current device)."""
    if isinstance(value, ndarray):
        if value._dev != _active().current:
            raise ValueError(
                f"The device where the array resides ({value._dev}) is different from the "
                f"current device ({_active().current}). Peer access is unavailable between "
                "these devices. (Enter the array's device: `with cupy.cuda.Device(i):`.)"
            )
        return value._a
    if isinstance(value, np.ndarray) and not upload_ok:
        raise TypeError(
            "Unsupported type <class 'numpy.ndarray'>: a host array in a CuPy operation "
            "(move it to the device once with backend.asarray)"
        )
    if isinstance(value, list | tuple):
        return type(value)(_host(v, upload_ok=upload_ok) for v in value)
    return value


def _device_inputs(args: Any) -> list[np.ndarray]:
    """The NumPy arrays behind every emulated array in ``args`` (nested lists, dicts)."""
    found: list[np.ndarray] = []

    def visit(value: Any) -> None:
        if isinstance(value, ndarray):
            found.append(value._a)
        elif isinstance(value, list | tuple):
            for v in value:
                visit(v)
        elif isinstance(value, dict):
            for v in value.values():
                visit(v)

    visit(args)
    return found


def _wrap(value: Any) -> Any:
    """Emulated arrays, on the current device, for every NumPy array or scalar in ``value``."""
    if isinstance(value, np.ndarray):
        return ndarray(value, _active().current)
    if isinstance(value, np.generic):
        # CuPy reductions return 0-d device arrays, never host scalars.
        return ndarray(np.asarray(value), _active().current)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # named tuples (EighResult)
        return type(value)(*(_wrap(v) for v in value))
    if isinstance(value, tuple | list):
        return type(value)(_wrap(v) for v in value)
    return value


def _holds_array(value: Any) -> bool:
    if isinstance(value, np.ndarray | np.generic):
        return True
    if isinstance(value, tuple | list):
        return any(_holds_array(v) for v in value)
    return False


def _record(name: str, result: Any, inputs: list[np.ndarray], wrote: bool) -> None:
    """Count one operation: a view when its result shares memory with an input."""
    state = _active()
    if state.broken is not None:
        raise state.broken
    if not wrote and not _holds_array(result):
        return
    is_view = (
        not wrote
        and isinstance(result, np.ndarray)
        and any(np.may_share_memory(result, a) for a in inputs)
    )
    (state.counts.views if is_view else state.counts.kernels)[name] += 1


def _call(name: str, fn: Any, args: tuple, kwargs: dict) -> Any:
    """Run a NumPy function on the host arrays behind ``args``; wrap and count its result."""
    out = kwargs.get("out")
    inputs = _device_inputs((args, kwargs))
    result = fn(*_host(args), **{k: _host(v) for k, v in kwargs.items()})
    _record(name, result, inputs, wrote=out is not None)
    if out is not None:
        return out
    return _wrap(result)


def _check_index(key: Any, array: ndarray) -> Any:
    """Host form of an index, refusing boolean masks (a sync on CuPy)."""
    parts = key if isinstance(key, tuple) else (key,)
    for part in parts:
        if isinstance(part, ndarray | np.ndarray) and part.dtype == np.bool_:
            raise _sync("indexing with a boolean mask", array)
        if isinstance(part, np.ndarray):
            _active().counts.uploads += 1  # a host index array is copied to the device
    return _host(key, upload_ok=True)


class ndarray:  # noqa: N801 - the name CuPy gives its array type
    """An emulated CuPy array: a NumPy array plus the id of the device it lives on."""

    __slots__ = ("_a", "_dev")
    # NumPy defers to this class: `np.float32(2) * x` calls x.__rmul__, not a NumPy ufunc.
    __array_ufunc__ = None
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, host: np.ndarray, device_id: int) -> None:
        self._a = host
        self._dev = device_id

    # -- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)

    @property
    def device(self) -> Device:
        return Device(self._dev)

    @property
    def T(self) -> ndarray:  # noqa: N802
        return self.transpose()

    @property
    def mT(self) -> ndarray:  # noqa: N802
        return _call("swapaxes", np.swapaxes, (self, -1, -2), {})

    def __len__(self) -> int:
        return len(self._a)

    def __repr__(self) -> str:
        # Real CuPy prints values (a sync); the emulation shows no values.
        return f"emulated cupy.ndarray(shape={self.shape}, dtype={self.dtype}, device={self._dev})"

    __str__ = __repr__

    # -- the host exits: explicit ones work and are counted, implicit ones are syncs
    def get(self, stream: Any = None, out: Any = None) -> np.ndarray:
        """Explicit copy to the host (counted as a download)."""
        _active().counts.downloads += 1
        return self._a.copy()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
            "construct a NumPy array explicitly."
        )

    def __bool__(self) -> bool:
        _host_read("bool()", self)
        return bool(self._a)

    def __float__(self) -> float:
        _host_read("float()", self)
        return float(self._a)

    def __int__(self) -> int:
        _host_read("int()", self)
        return int(self._a)

    def __index__(self) -> int:
        _host_read("use as a Python integer", self)
        return self._a.__index__()

    def __complex__(self) -> complex:
        _host_read("complex()", self)
        return complex(self._a)

    def item(self, *args: Any) -> Any:
        _host_read(".item()", self)
        return self._a.item(*args)

    def tolist(self) -> Any:
        _host_read(".tolist()", self)
        return self._a.tolist()

    def nonzero(self) -> Any:
        raise _sync(".nonzero() (the output size depends on the data)", self)

    # -- indexing
    def __getitem__(self, key: Any) -> ndarray:
        host_key = _check_index(key, self)
        return _call("getitem", lambda a: a[host_key], (self,), {})

    def __setitem__(self, key: Any, value: Any) -> None:
        host_key = _check_index(key, self)
        if isinstance(value, np.ndarray):
            _active().counts.uploads += 1
        host_value = _host(value, upload_ok=True)
        target = _host(self)
        target[host_key] = host_value
        _record("setitem", None, [], wrote=True)

    def __iter__(self) -> Iterator[ndarray]:
        for i in range(len(self)):
            yield self[i]

    # -- methods, run through the same counting path as the module functions
    def astype(self, dtype: Any, copy: bool = True, **kwargs: Any) -> ndarray:
        if not copy and np.dtype(dtype) == self.dtype:
            return self
        return _call("astype", lambda a: a.astype(dtype, copy=True, **kwargs), (self,), {})

    def copy(self, order: str = "C") -> ndarray:
        return _call("copy", lambda a: a.copy(order=order), (self,), {})

    def reshape(self, *shape: Any, **kwargs: Any) -> ndarray:
        return _call("reshape", lambda a: a.reshape(*shape, **kwargs), (self,), {})

    def transpose(self, *axes: Any) -> ndarray:
        return _call("transpose", lambda a: a.transpose(*axes), (self,), {})

    def fill(self, value: Any) -> None:
        _host(self).fill(value)
        _record("fill", None, [], wrote=True)

    def __getattr__(self, name: str) -> Any:
        if name in _ARRAY_METHODS:
            method = getattr(np.ndarray, name)
            return lambda *args, **kwargs: _call(name, method, (self, *args), kwargs)
        raise AttributeError(f"the emulated cupy.ndarray has no attribute {name!r}")


_ARRAY_METHODS = frozenset(
    "sum mean max min argmax argmin any all prod var std cumsum clip ravel flatten squeeze "
    "swapaxes take dot repeat conj round view".split()
)


def _operand(value: Any) -> Any:
    """The host form of an operator's other operand, or NotImplemented for foreign types."""
    if isinstance(value, ndarray | np.ndarray) or isinstance(value, _SCALARS):
        return _host(value)
    return NotImplemented


def _binary(ufunc: np.ufunc, reflected: bool = False):
    def method(self: ndarray, other: Any) -> Any:
        host_other = _operand(other)
        if host_other is NotImplemented:
            return NotImplemented
        pair = (other, self) if reflected else (self, other)
        return _call(ufunc.__name__, ufunc, pair, {})

    return method


def _inplace(ufunc: np.ufunc):
    def method(self: ndarray, other: Any) -> Any:
        if _operand(other) is NotImplemented:
            return NotImplemented
        return _call(ufunc.__name__, ufunc, (self, other), {"out": self})

    return method


def _unary(ufunc: np.ufunc):
    return lambda self: _call(ufunc.__name__, ufunc, (self,), {})


for _name, _ufunc in {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "truediv": np.true_divide,
    "floordiv": np.floor_divide,
    "mod": np.remainder,
    "pow": np.power,
    "matmul": np.matmul,
    "and": np.bitwise_and,
    "or": np.bitwise_or,
    "xor": np.bitwise_xor,
    "lshift": np.left_shift,
    "rshift": np.right_shift,
}.items():
    setattr(ndarray, f"__{_name}__", _binary(_ufunc))
    setattr(ndarray, f"__r{_name}__", _binary(_ufunc, reflected=True))
    setattr(ndarray, f"__i{_name}__", _inplace(_ufunc))
for _name, _ufunc in {
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "eq": np.equal,
    "ne": np.not_equal,
}.items():
    setattr(ndarray, f"__{_name}__", _binary(_ufunc))
for _name, _ufunc in {
    "neg": np.negative,
    "pos": np.positive,
    "abs": np.absolute,
    "invert": np.invert,
}.items():
    setattr(ndarray, f"__{_name}__", _unary(_ufunc))
