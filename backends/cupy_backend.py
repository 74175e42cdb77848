"""CuPy on an NVIDIA GPU, through array-api-compat's CuPy namespace.

An array of another GPU library given to :meth:`CupyBackend.asarray` (a torch
tensor or a JAX array on the GPU) is copied, not aliased: CuPy would otherwise wrap
its memory through ``__cuda_array_interface__``, so portnet's in-place updates
would change the caller's tensor behind its library's back. The copy is counted in
:func:`portnet.count_transfers` (``between_libraries``); ``zero_copy=True`` asks
for the alias instead.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from typing import Any

import numpy as np

from ..errors import BackendError
from ._base import Backend, _record

_INSTALL_HINT = (
    'Install CuPy for your CUDA version with `pip install "portnet[cuda12]"` or '
    '`pip install "portnet[cuda13]"` (check the CUDA version with `nvidia-smi`), '
    "or choose another backend with --backend numpy / PORTNET_BACKEND=numpy."
)


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self, cupy, device_id: int) -> None:
        import array_api_compat.cupy as xp

        self.cupy = cupy
        self.xp = xp
        self.device = cupy.cuda.Device(device_id)

    @property
    def device_name(self):
        return f"cuda:{self.device.id}"

    def _from_host(self, array, dtype):
        with self.device:
            return self.cupy.asarray(array, dtype=dtype)

    def asarray(self, array: Any, dtype: Any = None, *, zero_copy: bool = False) -> Any:
        """Put ``array`` on this GPU; another GPU library's array is copied.

        Parameters
        ----------
        array : array_like
            NumPy array, Python scalar or sequence (uploaded, counted as
            ``to_device``), a CuPy array, or another library's GPU array (anything
            with ``__cuda_array_interface__``, such as a torch CUDA tensor or a JAX
            GPU array): copied device to device and counted as ``between_libraries``.
        dtype : str or dtype, optional
            Target dtype; by default the input's.
        zero_copy : bool
            For another library's GPU array only: wrap its memory instead of
            copying it. The result then shares memory with ``array``: an in-place
            update through either changes both, and nothing is counted.
        """
        if not _is_foreign_gpu_array(array, self.cupy):
            return super().asarray(array, dtype)
        dtype = self.dtype(dtype) if dtype is not None else None
        with self.device:
            if zero_copy:
                return self.cupy.asarray(array, dtype=dtype)
            _record("between_libraries")
            return self.cupy.array(array, dtype=dtype, copy=True)

    def _to_host(self, array):
        return self.cupy.asnumpy(array)

    def generator(self, seed):
        with self.device:
            return self.cupy.random.default_rng(seed)

    def uniform(self, generator, shape, dtype):
        with self.device:
            return generator.random(shape, dtype=dtype)

    def synchronize(self):
        self.device.synchronize()

    def device_scope(self):
        return self.cupy.cuda.Device(self.device.id)


def _is_foreign_gpu_array(array: Any, cupy: Any) -> bool:
    """Whether ``array`` is another library's GPU array that CuPy would alias."""
    # A CPU torch tensor or JAX array raises AttributeError here, so hasattr is False.
    return not isinstance(array, cupy.ndarray) and hasattr(array, "__cuda_array_interface__")


def _parse_device(device: str | None) -> int:
    if device in (None, "", "cuda", "gpu"):
        return 0
    text = str(device)
    if text.startswith("cuda:"):
        text = text[5:]
    try:
        return int(text)
    except ValueError:
        raise BackendError(
            f"The cupy backend takes devices like cuda:0 or 0; got {device!r}."
        ) from None


@functools.cache
def cupy_distributions() -> tuple[str, ...]:
    """Names of the installed CuPy wheels (``cupy-cuda12x``, ``cupy-cuda13x``, ``cupy`` ...)."""
    names = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name == "cupy" or name.startswith(("cupy-cuda", "cupy-rocm")):
            names.add(name)
    return tuple(sorted(names))


def _import_cupy():
    import cupy

    return cupy


def _import() -> Any:
    """Import CuPy, telling "not installed" from "installed but broken"."""
    wheels = cupy_distributions()
    if len(wheels) > 1:
        raise BackendError(
            f"Several CuPy wheels are installed together ({', '.join(wheels)}); they "
            "overwrite each other's files, so CuPy is broken. Remove them all with "
            f"`pip uninstall -y {' '.join(wheels)}`, then install the one for your CUDA "
            'version: `pip install "portnet[cuda12]"` or `pip install "portnet[cuda13]"`.'
        )
    try:
        return _import_cupy()
    except ImportError as exc:
        if not wheels and importlib.util.find_spec("cupy") is None:
            raise BackendError(
                f"The cupy backend needs CuPy, which is not installed. {_INSTALL_HINT}"
            ) from None
        error = exc
    except Exception as exc:  # a broken CUDA install raises more than ImportError
        error = exc
    installed = wheels[0] if wheels else "CuPy"
    raise BackendError(
        f"{installed} is installed but failed to import ({type(error).__name__}: {error}). "
        "Reinstall it for your CUDA version (see `nvidia-smi`), or choose another backend "
        f"with --backend numpy. {_INSTALL_HINT}"
    ) from None


# (CuPy module, device id) pairs whose smoke test passed in this process: it compiles
# kernels, so once is enough.
_working_devices: set[tuple[int, int]] = set()


def _smoke_test(cupy, device_id: int) -> None:
    """Run an element-wise kernel and a matrix product on the device, and check them.

    CuPy loads NVRTC (which compiles its element-wise kernels) and cuBLAS only when
    first used, so a missing CUDA library would otherwise show up mid-training as
    a raw traceback.
    """
    try:
        with cupy.cuda.Device(device_id):
            a = cupy.arange(16, dtype=cupy.float32).reshape(4, 4)
            product = cupy.asnumpy(a @ (a * 0.5 + 1.0))
    except Exception as exc:
        raise BackendError(
            f"CuPy sees cuda:{device_id} but cannot run work on it ({type(exc).__name__}: "
            f"{exc}). Usually a CUDA library that CuPy loads at run time (NVRTC, cuBLAS) is "
            'missing: install CuPy with them, `pip install "portnet[cuda12]"` (or cuda13; '
            "both pull cupy-cuda1Nx[ctk]), or install the CUDA Toolkit that matches "
            "`nvidia-smi`. Or choose another backend with --backend numpy."
        ) from None
    host = np.arange(16, dtype=np.float32).reshape(4, 4)
    if not np.allclose(product, host @ (host * 0.5 + 1.0)):
        raise BackendError(
            f"CuPy on cuda:{device_id} computed a wrong 4x4 matrix product: the CUDA "
            "install is broken. Reinstall CuPy and the NVIDIA driver, or use --backend numpy."
        )


def load(device: str | None) -> CupyBackend:
    device_id = _parse_device(device)
    cupy = _import()
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError when no driver is present
        raise BackendError(
            f"CuPy is installed but finds no usable CUDA GPU ({exc}). Check that an NVIDIA "
            "driver is loaded (`nvidia-smi`) and that CuPy matches its CUDA version, or "
            "choose another backend with --backend numpy."
        ) from None
    if device_id >= n_devices:
        raise BackendError(
            f"cuda:{device_id} asked for, but CuPy sees {n_devices} GPU(s); use cuda:0 to "
            f"cuda:{n_devices - 1}."
        )
    if (id(cupy), device_id) not in _working_devices:
        _smoke_test(cupy, device_id)
        _working_devices.add((id(cupy), device_id))
    return CupyBackend(cupy, device_id)
