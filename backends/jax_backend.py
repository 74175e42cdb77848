"""JAX arrays on cpu or a GPU, through ``jax.numpy`` (which implements the Array API).

JAX arrays are immutable, so portnet's in-place path is off here and every update
rebinds (:class:`~portnet.backends.ops.Ops`): a strict check of the portable code. Dropout's
randomness comes from ``jax.random`` keys, split once per draw.

Loading this backend turns on JAX's 64-bit types (``jax_enable_x64``): without it
JAX silently gives float32 where portnet asks for float64.

On a GPU two more of JAX's defaults would make it differ from portnet's other
backends, so loading the backend changes them unless you chose otherwise:

* **matmul precision**: JAX's "DEFAULT" precision computes float32 matrix products
  and convolutions in TensorFloat-32 on a recent NVIDIA GPU (10 mantissa bits);
  BatchNorm's statistics and the convolutions' bias gradients are sums taken by a
  matrix product, so they would drift from NumPy, CuPy and torch far beyond
  float32 rounding. Loading a GPU device sets ``jax_default_matmul_precision`` to
  ``"highest"`` (true float32). To use TF32 on purpose, set it yourself before
  loading (``JAX_DEFAULT_MATMUL_PRECISION=tensorfloat32`` or
  ``jax.config.update``); portnet keeps any value already set, and its GPU tests'
  float32 tolerances then no longer apply.
* **preallocation**: JAX reserves 75 % of a GPU's memory when its GPU client
  starts, beside CuPy's pool and torch's cache in the same process. Importing
  JAX through this backend sets ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` unless the
  variable is already set (it only has an effect before JAX first uses the GPU).
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import BackendError
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


#: The precision portnet asks of JAX's float32 matrix products on a GPU (see above).
GPU_MATMUL_PRECISION = "highest"


def from_device(device) -> JaxBackend:
    """The backend of an existing JAX array's device."""
    jax = _import()
    _set_gpu_precision(jax, device.platform)
    return JaxBackend(jax, device)


def _set_gpu_precision(jax, platform: str) -> None:
    """Full float32 matmuls on a GPU, unless the user chose a precision already."""
    # The CPU computes float32 products in float32 whatever the setting: leave it alone.
    if platform != "cpu" and jax.config.jax_default_matmul_precision is None:
        jax.config.update("jax_default_matmul_precision", GPU_MATMUL_PRECISION)


def _import():
    # Read when JAX creates its GPU client; setting it later changes nothing, so it
    # goes in before the import (a user's own setting wins).
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
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
    _set_gpu_precision(jax, devices[position].platform)
    return JaxBackend(jax, devices[position])
