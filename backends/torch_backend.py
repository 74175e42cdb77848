"""PyTorch tensors on cpu, cuda or mps, through array-api-compat's torch namespace."""

from __future__ import annotations

from ..errors import BackendError
from ._base import Backend


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, torch, device) -> None:
        import array_api_compat.torch as xp

        self.torch = torch
        self.xp = xp
        self.device = device

    def _from_host(self, array, dtype):
        tensor = self.torch.from_numpy(array)
        return tensor.to(device=self.device, dtype=dtype)

    def _to_host(self, array):
        # .numpy() of a CPU tensor shares its memory; copy, as a GPU transfer would.
        return array.detach().to("cpu").numpy().copy()

    def generator(self, seed):
        gen = self.torch.Generator(device=self.device)
        gen.manual_seed(int(seed))
        return gen

    def uniform(self, generator, shape, dtype):
        return self.torch.rand(shape, generator=generator, dtype=dtype, device=self.device)

    def synchronize(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            self.torch.mps.synchronize()


def load(device: str | None) -> TorchBackend:
    try:
        import torch
    except ImportError:
        raise BackendError(
            "The torch backend needs PyTorch, which is not installed. Install it with "
            '`pip install torch` (or `pip install "portnet[torch]"`).'
        ) from None
    try:
        dev = torch.device(device or "cpu")
    except (RuntimeError, TypeError) as exc:
        raise BackendError(
            f"torch does not know the device {device!r} ({exc}); use cpu, cuda, cuda:N or mps."
        ) from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise BackendError(f"portnet supports torch devices cpu, cuda and mps; got {device!r}.")
    if dev.type == "cuda":
        dev = _cuda_device(torch, dev, device)
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise BackendError("Device 'mps' needs Apple silicon with a PyTorch MPS build.")
        dev = torch.device("mps", 0)  # tensors report mps:0; so must the backend
    return TorchBackend(torch, dev)


def _cuda_device(torch, dev, asked):
    """``cuda`` as ``cuda:<current index>``, checked against the GPUs torch sees.

    Tensors always report an index (``cuda:0``); a backend on plain ``cuda`` would
    fail portnet's own check that arrays share the model's device.
    """
    if not torch.cuda.is_available():
        raise BackendError(
            f"Device {asked!r} asked for CUDA, but this PyTorch build sees no CUDA GPU "
            f"(torch {torch.__version__}). Check `nvidia-smi` and install a CUDA build of "
            "PyTorch, or use --device cpu."
        )
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if not 0 <= index < count:
        raise BackendError(
            f"Device {asked!r} asked for, but torch sees {count} CUDA GPU(s): use cuda:0"
            + (f" to cuda:{count - 1}." if count > 1 else ".")
        )
    return torch.device("cuda", index)
