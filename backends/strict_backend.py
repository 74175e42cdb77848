"""array-api-strict: the standard's reference implementation, used to prove portability.

Its non-default devices stand in for a GPU on machines without one: ``device1``
and ``device2`` refuse to mix with other devices and to convert to NumPy
implicitly, and ``no_float64`` refuses float64 as MPS and many GPUs do.
"""

from __future__ import annotations

import numpy as np

from ..errors import BackendError
from ._base import Backend

DEVICE_NAMES = ("CPU_DEVICE", "device1", "device2", "no_float64")


class StrictBackend(Backend):
    name = "array_api_strict"
    # The standard promises no in-place mutation, so optimizers take the portable path.

    def __init__(self, xp, device) -> None:
        self.xp = xp
        self.device = device
        self._cpu = xp.Device("CPU_DEVICE")

    @property
    def device_name(self):
        return self.device._device

    def _to_host(self, array):
        return np.asarray(array.to_device(self._cpu))

    def generator(self, seed):
        return np.random.default_rng(seed)

    def uniform(self, generator, shape, dtype):
        # array-api-strict has no random numbers: draw on the host and transfer
        # (a counted host->device copy each call; dropout pays it every step here).
        return self.asarray(generator.random(shape, dtype=np.float32), dtype=dtype)


def _import():
    try:
        import array_api_strict
    except ImportError:
        raise BackendError(
            "The array_api_strict backend needs array-api-strict: `pip install array-api-strict`."
        ) from None
    return array_api_strict


def from_device(device) -> StrictBackend:
    return StrictBackend(_import(), device)


def load(device: str | None) -> StrictBackend:
    xp = _import()
    name = device or "CPU_DEVICE"
    if name.lower() in ("cpu", "cpu_device"):
        name = "CPU_DEVICE"
    if name not in DEVICE_NAMES:
        raise BackendError(
            f"array_api_strict has no device {device!r}; its devices are {', '.join(DEVICE_NAMES)}."
        )
    return StrictBackend(xp, xp.Device(name))
