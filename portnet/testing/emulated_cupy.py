"""An emulated CuPy on the host: array-api-compat's real CuPy wrappers over NumPy.

array-api-compat builds ``array_api_compat.cupy`` from ``import cupy`` plus generic
wrappers (``clip``, ``sign``, ``asarray`` ...). :func:`emulated_cupy` puts a stand-in
``cupy`` module into ``sys.modules`` for the duration of a ``with`` block, imports
those exact wrappers on top of it, and so lets portnet's real ``cupy`` backend
adapter run on a machine without a GPU. What a GPU would punish becomes an error
here:

* **hidden device-to-host syncs** raise :class:`HostSyncError` (or, inside
  :meth:`EmulatedCupy.allow_syncs`, are counted): ``bool()``,
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

The emulated GPU (devices, counts, :class:`HostSyncError`) is in
:mod:`portnet.testing.emulated_device` and the emulated array type in
:mod:`portnet.testing.emulated_array`; this module builds the stand-in ``cupy``
modules over them and installs them. :class:`HostSyncError` and :class:`Counts`
are re-exported here.

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
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import emulated_device as _device
from .emulated_array import _call, _host, _wrap, ndarray
from .emulated_device import (
    Counts,
    CUDARuntimeError,
    Device,
    HostSyncError,
    _active,
    _State,
    _sync,
)

__all__ = [
    "CUDARuntimeError",
    "Counts",
    "Device",
    "EmulatedCupy",
    "HostSyncError",
    "emulated_cupy",
    "ndarray",
]


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

    @contextlib.contextmanager
    def allow_syncs(self) -> Iterator[Counts]:
        """Let hidden scalar reads (``bool()``, ``float()``, ``.item()`` ...) through in a
        block, counted in ``counts.syncs``: for code that reads the device on purpose, a
        few times per call (scikit-learn's input validation), where a test then checks
        that the count does not grow with the epochs."""
        saved, self._state.syncs_allowed = self._state.syncs_allowed, True
        try:
            yield self._state.counts
        finally:
            self._state.syncs_allowed = saved


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
    if _device._state is not None:
        raise RuntimeError("emulated_cupy() is already active; emulations do not nest")
    import array_api_compat

    saved = {key: module for key, module in sys.modules.items() if _is_cupy_module(key)}
    saved_attr = array_api_compat.__dict__.get("cupy")
    state = _State(n_devices, broken=None)
    _device._state = state
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
        _device._state = None
        for key in [key for key in sys.modules if _is_cupy_module(key)]:
            del sys.modules[key]
        sys.modules.update(saved)
        if saved_attr is None:
            array_api_compat.__dict__.pop("cupy", None)
        else:
            array_api_compat.cupy = saved_attr
