"""Native PyTorch, the baseline portnet's ratios divide by: eager ``nn.Sequential`` with
``torch.optim.SGD``, on the CPU and on CUDA, started from portnet's initial weights
(:func:`build_torch_network`)."""

from __future__ import annotations

import numpy as np

import portnet as pn

from .impl_base import LR, MOMENTUM, Implementation
from .workloads import CNNWorkload, Workload


def _torch_unavailable(device: str = "cpu") -> str | None:
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed (pip install torch)"
    if device == "cuda" and not torch.cuda.is_available():
        return f"this PyTorch build ({torch.__version__}) sees no CUDA GPU"
    return None


def build_torch_network(workload: Workload | CNNWorkload, seed: int):
    """``nn.Sequential`` of the workload with portnet's initial weights copied in."""
    import torch
    from torch import nn

    if workload.kind == "cnn":
        return _torch_layer_list(workload, seed)
    weights = workload.initial_weights(seed)
    modules: list[nn.Module] = []
    for i, (W, b) in enumerate(weights):
        linear = nn.Linear(W.shape[0], W.shape[1])
        with torch.no_grad():
            # nn.Linear stores (out, in); portnet's W is (in, out).
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T, dtype=np.float32)))
            linear.bias.copy_(torch.from_numpy(b.astype(np.float32)))
        modules.append(linear)
        if i < len(weights) - 1:
            modules.append(nn.ReLU() if workload.activation == "relu" else nn.Tanh())
    return nn.Sequential(*modules)


def _torch_random_flip(probability: float):
    """Native torch twin of :class:`portnet.RandomFlip`: in training, mirror each
    sample left-right with the given probability (torch has no per-sample flip module
    without torchvision, whose flip decides once per batch)."""
    import torch
    from torch import nn

    class RandomFlip(nn.Module):
        def forward(self, x):
            if not self.training:
                return x
            flip = torch.rand(x.shape[0], device=x.device) < probability
            return torch.where(flip.view(-1, *([1] * (x.ndim - 1))), x.flip(-1), x)

    return RandomFlip()


def _torch_random_shift(max_shift: int):
    """Native torch twin of :class:`portnet.RandomShift`: in training, move each sample
    by up to ``max_shift`` pixels along each axis, zeros filling in, by one gather from
    the zero-padded batch (torch has no per-sample shift module without torchvision)."""
    import torch
    from torch import nn
    from torch.nn import functional

    class RandomShift(nn.Module):
        def forward(self, x):
            if not self.training or max_shift == 0:
                return x
            n, c, h, w = x.shape
            s = max_shift
            padded = functional.pad(x, (s, s, s, s))
            # Window origins in the padded image: 0..2s, one pair per sample.
            top = torch.randint(0, 2 * s + 1, (n, 1), device=x.device)
            left = torch.randint(0, 2 * s + 1, (n, 1), device=x.device)
            rows = (top + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (left + torch.arange(w, device=x.device))[:, None, None, :]
            batch = torch.arange(n, device=x.device)[:, None, None, None]
            channels = torch.arange(c, device=x.device)[None, :, None, None]
            return padded[batch, channels, rows, cols]

    return RandomShift()


def _torch_layer_list(workload: CNNWorkload, seed: int):
    """The layer list as native modules (nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.Linear ...).

    Every parameter and running statistic is copied from portnet's initial values;
    layouts agree except Dense, whose ``W`` is transposed for ``nn.Linear``.
    """
    import torch
    from torch import nn

    def f32(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    modules: list[nn.Module] = []
    layers, params = workload.portnet_layers(), workload.initial_params(seed)
    for layer, p, shape in zip(layers, params, workload.input_shapes(), strict=True):
        name = type(layer).__name__
        if isinstance(layer, pn.Reshape):
            module = nn.Unflatten(1, tuple(layer.shape))
        elif isinstance(layer, pn.Conv2D):
            module = nn.Conv2d(
                layer.in_channels,
                layer.out_channels,
                layer.kernel_size,
                stride=layer.stride,
                padding=layer.padding,
                bias=layer.bias,
            )
        elif isinstance(layer, pn.MaxPool2D):
            module = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, pn.AvgPool2D):
            # portnet counts the zero padding in the mean, as count_include_pad=True.
            module = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, pn.BatchNorm):
            cls = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            module = cls(layer.n_features, eps=layer.eps, momentum=layer.momentum)
        elif isinstance(layer, pn.Flatten):
            module = nn.Flatten()
        elif isinstance(layer, pn.Dense):
            module = nn.Linear(layer.n_in, layer.n_out, bias="b" in p)
        elif isinstance(layer, pn.ReLU):
            module = nn.ReLU()
        elif isinstance(layer, pn.Tanh):
            module = nn.Tanh()
        elif isinstance(layer, pn.Dropout):
            module = nn.Dropout(layer.rate)
        elif isinstance(layer, pn.RandomFlip):
            module = _torch_random_flip(layer.probability)
        elif isinstance(layer, pn.RandomShift):
            module = _torch_random_shift(layer.max_shift)
        else:
            raise ValueError(f"no native torch module for portnet layer {name}")
        with torch.no_grad():
            if isinstance(layer, pn.Dense):
                module.weight.copy_(f32(p["W"].T))  # nn.Linear stores (out, in)
            elif "W" in p:
                module.weight.copy_(f32(p["W"]))  # Conv2D: (F, C, K_h, K_w) in both
            if "b" in p:
                module.bias.copy_(f32(p["b"]))
            if isinstance(layer, pn.BatchNorm):
                module.weight.copy_(f32(p["gamma"]))
                module.bias.copy_(f32(p["beta"]))
                module.running_mean.copy_(f32(p["running_mean"]))
                module.running_var.copy_(f32(p["running_var"]))
        modules.append(module)
    return nn.Sequential(*modules)


class TorchNative(Implementation):
    """Idiomatic eager PyTorch: nn.Sequential, torch.optim.SGD(momentum=0.9), index batching.

    The loss sum and correct count are accumulated as tensors and read once per
    epoch, the same bookkeeping portnet's training loop does.
    """

    name = "torch"
    note = (
        "eager nn.Sequential + optim.SGD(momentum=0.9); torch.set_num_threads left at default; "
        "cnn: nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.Linear, nn.Dropout (its own masks)"
    )

    torch_device = "cpu"

    @classmethod
    def unavailable_reason(cls):
        return _torch_unavailable(cls.torch_device)

    def __init__(self, workload, batch_size, data, seed, device: str | None = None):
        import torch

        self.torch = torch
        self.device = torch.device(device or self.torch_device)
        self.net = build_torch_network(workload, seed).to(self.device)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM)
        # Pre-loaded once (from_numpy shares the host arrays on the CPU), not per epoch.
        self.X = torch.from_numpy(data.X).to(self.device)
        self.y = torch.from_numpy(data.y).to(self.device)
        self.batch_size = batch_size
        self.n = data.n
        # The permutation is drawn on the host and moved once per epoch, as portnet does.
        self.generator = torch.Generator().manual_seed(seed)

    def train_step(self, xb, yb):
        """Forward, loss, zero_grad, backward and optimizer step; returns outputs and loss."""
        out = self.net(xb)
        loss = self.torch.nn.functional.cross_entropy(out, yb)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return out, loss

    def run_epoch(self):
        torch = self.torch
        perm = torch.randperm(self.n, generator=self.generator).to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for start in range(0, self.n, self.batch_size):
            idx = perm[start : start + self.batch_size]
            xb, yb = self.X[idx], self.y[idx]
            out, loss = self.train_step(xb, yb)
            with torch.no_grad():
                loss_sum += loss * idx.shape[0]
                correct += (out.argmax(dim=1) == yb).sum()
        return loss_sum.item() / self.n

    def synchronize(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)


class TorchNativeCuda(TorchNative):
    """The same eager PyTorch on a CUDA GPU: the baseline of the GPU implementations."""

    name = "torch-cuda"
    note = "eager nn.Sequential + optim.SGD(momentum=0.9) on cuda; data resident on the GPU"
    torch_device = "cuda"
    device_kind = "cuda"
