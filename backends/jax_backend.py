"""JAX arrays on cpu or a GPU, through ``jax.numpy`` (which implements the Array API).

JAX arrays are immutable, so portnet's in-place path is off here and every update
rebinds (:mod:`portnet.inplace`): a strict check of the portable code. Dropout's
randomness comes from ``jax.random`` keys, split once per draw.

Loading this backend turns on JAX's 64-bit types (``jax_enable_x64``): without it
JAX silently gives float32 where portnet asks for float64.
"""

from __future__ import annotations

import numpy as np

from portnet.errors import BackendError

from ._base import Backend


class KeyStream:
    """A ``jax.random`` key that is split at every draw (eager dropout masks)."""

    def __init__(self, jax, seed: int | None = None, key=None) -> None:
        self.jax = jax
        self.key = jax.random.key(int(seed) % 2**63) if key is None else key

    def next(self):
        self.key, sub = self.jax.random.split(self.key)
        return sub


class JaxBackend(Backend):
    name = "jax"

    def __init__(self, jax, device) -> None:
        import jax.numpy as xp

        self.jax = jax
        self.xp = xp
        self.device = device

    @property
    def device_name(self) -> str:
        """``cpu``, or ``cuda:N`` as the other backends name GPUs."""
        platform = self.device.platform
        return "cpu" if platform == "cpu" else f"cuda:{self.device.id}"

    def _from_host(self, array, dtype):
        return self.jax.device_put(np.asarray(array, dtype=dtype), self.device)

    def _to_host(self, array):
        return np.array(self.jax.device_get(array))

    def generator(self, seed):
        return KeyStream(self.jax, seed)

    def key_stream(self, key) -> KeyStream:
        """A stream that starts from a given (possibly traced) ``jax.random`` key."""
        return KeyStream(self.jax, key=key)

    def uniform(self, generator, shape, dtype):
        with self.jax.default_device(self.device):
            return self.jax.random.uniform(generator.next(), shape, dtype=dtype)

    def synchronize(self):
        (self.jax.device_put(0.0, self.device) + 0).block_until_ready()


def from_device(device) -> JaxBackend:
    """The backend of an existing JAX array's device."""
    return JaxBackend(_import(), device)


def _import():
    try:
        import jax
    except ImportError:
        raise BackendError(
            'The jax backend needs JAX, which is not installed: `pip install "portnet[jax]"` '
            "(CPU), or JAX's CUDA wheels for a GPU (`pip install jax[cuda12]`)."
        ) from None
    jax.config.update("jax_enable_x64", True)
    return jax


def load(device: str | None) -> JaxBackend:
    jax = _import()
    kind, _, index = (device or "cpu").partition(":")
    kind = "gpu" if kind == "cuda" else kind
    if kind not in ("cpu", "gpu"):
        raise BackendError(f"portnet supports jax devices cpu and cuda (gpu); got {device!r}.")
    try:
        devices = jax.devices(kind)
    except RuntimeError as exc:
        raise BackendError(
            f"Device {device!r} asked for a JAX {kind} device, but this JAX sees none. Install "
            f"JAX's CUDA wheels on a machine with an NVIDIA GPU, or use --device cpu ({exc})."
        ) from None
    position = int(index) if index.isdigit() else 0
    if position >= len(devices):
        raise BackendError(f"JAX has {len(devices)} {kind} device(s); {device!r} is not one.")
    return JaxBackend(jax, devices[position])
