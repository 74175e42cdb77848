"""NumPy on the CPU, through array-api-compat's NumPy namespace."""

from __future__ import annotations

import numpy as np

from ..errors import BackendError
from ._base import Backend


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self) -> None:
        import array_api_compat.numpy as xp

        self.xp = xp
        self.device = "cpu"

    def _from_host(self, array, dtype):
        # np.asarray without a copy when dtype already matches: the data is on the host.
        return np.asarray(array, dtype=dtype)

    def _to_host(self, array):
        # A copy, as from a GPU: the caller may keep it while in-place updates go on.
        return np.array(array, copy=True)

    def generator(self, seed):
        return np.random.default_rng(seed)

    def uniform(self, generator, shape, dtype):
        # Generator.random draws float32 natively, avoiding a float64 temporary.
        return generator.random(shape, dtype=np.dtype(dtype))


_INSTANCE: NumpyBackend | None = None


def load(device: str | None) -> NumpyBackend:
    if device not in (None, "cpu"):
        raise BackendError(f"The numpy backend runs on the CPU only; got device {device!r}.")
    global _INSTANCE
    if _INSTANCE is None:
        _INSTANCE = NumpyBackend()
    return _INSTANCE
