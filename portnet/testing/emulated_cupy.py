"""An emulated CuPy on the host: array-api-compat's real CuPy wrappers over NumPy.

array-api-compat builds ``array_api_compat.cupy`` from ``import cupy`` plus generic
wrappers (``clip``, ``sign``, ``asarray`` ...). :func:`emulated_cupy` puts a stand-in
``cupy`` module into ``sys.modules`` for the duration of a ``with`` block, imports
those exact wrappers on top of it, and so lets portnet's real ``cupy`` backend
adapter run on a machine without a GPU. What a GPU would punish becomes an error
here:

* **hidden device-to-host syncs** raise :class:`HostSyncError`: ``bool()``,
  ``float()``, ``int()``, ``.item()``, ``.tolist()`` of an array, indexing with a
  boolean mask (CuPy must count the mask's ``True`` entries on the host before it
  can allocate the result), and the functions whose output size depends on the
  data (``nonzero``, ``unique`` ...);
* **implicit conversion to NumPy** (``np.asarray(x)``) raises ``TypeError``, as
  real CuPy does; the explicit exits ``cupy.asnumpy`` and ``ndarray.get`` work and
  are counted as downloads;
* **host-to-device copies** (``asarray`` of host data, including a Python scalar)
  are counted as uploads, so a test can check that none happens per step;
* **arrays on two devices**: every operation checks that its array arguments live
  on the current device (``with cupy.cuda.Device(i)``), as CuPy does without peer
  access, and new arrays land on the current device. ``n_devices=2`` lets a test
  use ``cuda:1``.

The arrays are not a NumPy subclass on purpose: array-api-compat checks for NumPy
arrays before CuPy ones, so a subclass would be served the NumPy namespace and
would silently convert with ``np.asarray``.

Every call that computes counts as one kernel in :attr:`EmulatedCupy.counts`
(views, which launch nothing on a GPU, are counted apart), which gives a kernel
count per training step on CuPy's own path.

Examples
--------
>>> import portnet as pn
>>> from portnet.testing import emulated_cupy
>>> with emulated_cupy() as cupy:
...     model = pn.Model(pn.mlp([4, 8, 3]), backend="cupy")
...     model.fit(X, y, epochs=1, verbose=0)       # raises HostSyncError on a hidden sync
...     cupy.counts.uploads
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import sys
import types
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np


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
    """

    kernels: Counter = dataclasses.field(default_factory=Counter)
    views: Counter = dataclasses.field(default_factory=Counter)
    uploads: int = 0
    downloads: int = 0

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


# -- devices ------------------------------------------------------------------------


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


# -- arrays --------------------------------------------------------------------------

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
        raise _sync("bool()", self)

    def __float__(self) -> float:
        raise _sync("float()", self)

    def __int__(self) -> int:
        raise _sync("int()", self)

    def __index__(self) -> int:
        raise _sync("use as a Python integer", self)

    def __complex__(self) -> complex:
        raise _sync("complex()", self)

    def item(self, *args: Any) -> Any:
        raise _sync(".item()", self)

    def tolist(self) -> Any:
        raise _sync(".tolist()", self)

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


# -- the module ----------------------------------------------------------------------

# Functions whose output size depends on the data: CuPy reads a count on the host.
_SYNCING = frozenset(
    "nonzero argwhere flatnonzero unique unique_all unique_counts unique_inverse "
    "unique_values extract compress".split()
)
# Functions that accept host data: each call with host data is an upload.
_UPLOADING = frozenset("asarray array asanyarray ascontiguousarray asfortranarray".split())


def _function(name: str, fn: Any) -> Any:
    if name in _SYNCING:

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise _sync(f"cupy.{name} (the output size depends on the data)")

        return refuse
    if name in _UPLOADING:

        def upload(obj: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(obj, ndarray):
                dtype = kwargs.get("dtype", args[0] if args else None)
                if (dtype is None or np.dtype(dtype) == obj.dtype) and not kwargs.get("copy"):
                    return obj
                return _call(name, fn, (obj, *args), kwargs)
            _active().counts.uploads += 1
            return _wrap(fn(_host(obj, upload_ok=True), *args, **kwargs))

        return upload
    if name == "where":

        def where(condition: Any, *args: Any) -> Any:
            if not args:
                raise _sync("cupy.where(condition) (the nonzero form)")
            return _call(name, fn, (condition, *args), {})

        return where

    def function(*args: Any, **kwargs: Any) -> Any:
        return _call(name, fn, args, kwargs)

    function.__name__ = name
    return function


def _module_from(name: str, source: types.ModuleType, names: list[str]) -> types.ModuleType:
    """A module ``name`` with every callable of ``source`` wrapped, other names kept."""
    module = types.ModuleType(name)
    exported = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in names:
            if key.startswith("_") or not hasattr(source, key):
                continue
            value = getattr(source, key)
            if isinstance(value, types.ModuleType):
                continue
            if callable(value) and not isinstance(value, type):
                value = _function(key, value)
            setattr(module, key, value)
            exported.append(key)
    module.__all__ = exported
    return module


class _Generator:
    """Stand-in for ``cupy.random.Generator``: NumPy's generator, results on the device."""

    def __init__(self, seed: Any) -> None:
        self._rng = np.random.default_rng(seed)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._rng, name)
        return lambda *args, **kwargs: _call(f"random.{name}", method, args, kwargs)


def _asnumpy(array: Any, stream: Any = None, **kwargs: Any) -> np.ndarray:
    if isinstance(array, ndarray):
        return array.get()
    return np.asarray(array)


def _build_modules() -> dict[str, types.ModuleType]:
    cupy = _module_from("cupy", np, list(np.__all__))
    cupy.ndarray = ndarray
    cupy.__version__ = "14.0.0+emulated"
    cupy.asnumpy = _asnumpy
    cupy.get_array_module = lambda *arrays: (
        cupy if any(isinstance(a, ndarray) for a in arrays) else np
    )
    cupy.__all__ += ["ndarray", "asnumpy", "get_array_module"]

    linalg = _module_from("cupy.linalg", np.linalg, list(np.linalg.__all__))
    fft = _module_from("cupy.fft", np.fft, list(np.fft.__all__))
    random = types.ModuleType("cupy.random")
    random.default_rng = _Generator
    random.Generator = _Generator

    device = types.ModuleType("cupy.cuda.device")
    device.Device = Device
    runtime = types.ModuleType("cupy.cuda.runtime")
    runtime.CUDARuntimeError = CUDARuntimeError
    runtime.getDeviceCount = lambda: _active().n_devices
    runtime.getDevice = lambda: _active().current
    runtime.runtimeGetVersion = lambda: 12080
    runtime.driverGetVersion = lambda: 12080
    runtime.getDeviceProperties = lambda i: {"name": b"emulated GPU (NumPy on the host)"}
    cuda = types.ModuleType("cupy.cuda")
    cuda.Device = Device
    cuda.device = device
    cuda.runtime = runtime
    cuda.get_device_id = lambda: _active().current

    cupy.linalg, cupy.fft, cupy.random, cupy.cuda = linalg, fft, random, cuda
    return {
        "cupy": cupy,
        "cupy.linalg": linalg,
        "cupy.fft": fft,
        "cupy.random": random,
        "cupy.cuda": cuda,
        "cupy.cuda.device": device,
        "cupy.cuda.runtime": runtime,
    }


@dataclasses.dataclass
class EmulatedCupy:
    """Handle of an active emulation (what :func:`emulated_cupy` yields).

    Attributes
    ----------
    module : module
        The stand-in ``cupy`` module.
    xp : module
        ``array_api_compat.cupy`` imported over it: the namespace portnet uses.
    """

    module: types.ModuleType
    xp: types.ModuleType
    _state: _State

    @property
    def counts(self) -> Counts:
        """What happened since the last :meth:`reset_counts`."""
        return self._state.counts

    def reset_counts(self) -> Counts:
        """Start counting afresh; returns the counts so far."""
        old, self._state.counts = self._state.counts, Counts()
        return old

    def break_kernels(self, error: BaseException | None) -> None:
        """Make every operation raise ``error`` (a missing CUDA library, say); None mends."""
        self._state.broken = error


_COMPAT = "array_api_compat.cupy"
# Built once and reinstalled by every emulation: array-api-compat caches the namespace
# of an array type, so the same emulated type must always meet the same modules.
_built: dict[str, types.ModuleType] = {}


def _is_cupy_module(key: str) -> bool:
    return key == "cupy" or key.startswith(("cupy.", _COMPAT))


@contextlib.contextmanager
def emulated_cupy(n_devices: int = 1) -> Iterator[EmulatedCupy]:
    """Install the emulated ``cupy`` (and array-api-compat's wrappers over it) in a block.

    Parameters
    ----------
    n_devices : int
        How many GPUs ``cupy.cuda.runtime.getDeviceCount()`` reports.

    Yields
    ------
    EmulatedCupy
        Its :attr:`~EmulatedCupy.counts` say how many kernels, uploads and downloads ran.

    Notes
    -----
    Whatever ``cupy`` and ``array_api_compat.cupy`` modules were imported before
    (the real ones, on a GPU machine) are put back on exit. Emulations do not nest.
    """
    global _state
    if _state is not None:
        raise RuntimeError("emulated_cupy() is already active; emulations do not nest")
    import array_api_compat

    saved = {key: module for key, module in sys.modules.items() if _is_cupy_module(key)}
    saved_attr = array_api_compat.__dict__.get("cupy")
    state = _State(n_devices, broken=None)
    _state = state
    try:
        for key in saved:
            del sys.modules[key]
        if not _built:
            _built.update(_build_modules())
            sys.modules.update(_built)
            array_api_compat.__dict__.pop("cupy", None)
            importlib.import_module(_COMPAT)
            _built.update({k: m for k, m in sys.modules.items() if k.startswith(_COMPAT)})
        sys.modules.update(_built)
        array_api_compat.cupy = _built[_COMPAT]
        yield EmulatedCupy(_built["cupy"], _built[_COMPAT], state)
    finally:
        _state = None
        for key in [key for key in sys.modules if _is_cupy_module(key)]:
            del sys.modules[key]
        sys.modules.update(saved)
        if saved_attr is None:
            array_api_compat.__dict__.pop("cupy", None)
        else:
            array_api_compat.cupy = saved_attr
