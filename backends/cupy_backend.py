"""CuPy on an NVIDIA GPU, through array-api-compat's CuPy namespace."""

from __future__ import annotations

from portnet.errors import BackendError

from ._base import Backend

_INSTALL_HINT = (
    'Install CuPy for your CUDA version with `pip install "portnet[cuda12]"` or '
    '`pip install "portnet[cuda13]"` (check the CUDA version with `nvidia-smi`), '
    "or choose another backend with --backend numpy / PORTNET_BACKEND=numpy."
)


class CupyBackend(Backend):
    name = "cupy"
    inplace = True

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


def load(device: str | None) -> CupyBackend:
    device_id = _parse_device(device)
    try:
        import cupy
    except ImportError:
        raise BackendError(
            f"The cupy backend needs CuPy, which is not installed. {_INSTALL_HINT}"
        ) from None
    except Exception as exc:  # a broken CUDA install raises more than ImportError
        raise BackendError(
            f"CuPy is installed but failed to import ({exc}). {_INSTALL_HINT}"
        ) from None
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
    return CupyBackend(cupy, device_id)
