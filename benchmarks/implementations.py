"""The implementations the epoch-time benchmark runs, all behind one small interface.

Each one is built for a (workload, batch size) on the same pre-loaded host arrays
and the same initial weights, then asked to train one epoch at a time. Setup
(moving data to a device, allocating buffers) happens in the constructor and is
never timed; :meth:`Implementation.run_epoch` is the timed work and ends with a
host read of the epoch's loss, as ``Model.fit`` does.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import portnet as pn
from portnet.errors import BackendError

from .workloads import CNNWorkload, Workload

LR = 0.01
MOMENTUM = 0.9


@dataclasses.dataclass
class BenchData:
    """Training data on the host: ``X`` float32 ``(N, 784)`` in [0, 1], ``y`` int64 ``(N,)``."""

    X: np.ndarray
    y: np.ndarray
    n_classes: int = 10

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


class Implementation:
    """One way of training a workload; subclasses fill in the constructor and ``run_epoch``.

    Attributes
    ----------
    name : str
        Name in the results (``portnet-numpy``, ``torch`` ...).
    note : str
        Anything a reader of the results must know about this implementation.
    backend : portnet Backend or None
        Set for portnet implementations: they report host transfers and op counts.
    """

    name = ""
    note = ""
    backend = None
    #: "cpu" or "cuda": which device the implementation trains on. Ratios to torch
    #: are taken against the torch run on the same kind of device.
    device_kind = "cpu"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this implementation cannot run on this machine, or ``None`` if it can."""
        return None

    @classmethod
    def unsupported_reason(cls, workload: Workload | CNNWorkload) -> str | None:
        """Why this implementation cannot train ``workload`` at all, or ``None`` if it can."""
        return None

    def run_epoch(self) -> float:
        """Train one epoch and return its mean training loss, read on the host."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (called before every clock read)."""


class DenseOnlyImplementation(Implementation):
    """An implementation that trains multilayer perceptrons only; it skips the ``cnn`` workload."""

    #: Why a network with convolutions is skipped, shown in the results.
    dense_only_reason = ""

    @classmethod
    def unsupported_reason(cls, workload):
        return cls.dense_only_reason if workload.kind != "mlp" else None


# -- portnet -----------------------------------------------------------------------


class PortnetImplementation(Implementation):
    """portnet's Trainer on one backend, driven as ``fit_loop`` drives it, minus the bookkeeping.

    Per epoch: the core's ``Trainer.train_epoch`` on device data (its host
    permutation is the one upload) and one read of the stacked loss and
    correct-count sums (the second transfer).
    """

    backend_name = ""
    device: str | None = None

    @classmethod
    def load_backend(cls):
        return pn.get_backend(cls.backend_name, cls.device)

    @classmethod
    def unavailable_reason(cls):
        try:
            cls.load_backend()
        except BackendError as exc:
            return str(exc)
        return None

    def __init__(self, workload: Workload, batch_size: int, data: BenchData, seed: int):
        self.backend = self.load_backend()
        self.model = build_portnet_model(workload, self.backend, seed)
        self.trainer = self.model.trainer
        self.xp = self.backend.xp
        self.batch_size = batch_size
        self.n = data.n
        # Data goes to the device once, outside the timed epochs (fit does the same).
        self.X = self.backend.asarray(data.X, "float32")
        self.y = self.backend.asarray(data.y, "int64")
        # The Model's own training state: its optimizer state knows which entries are
        # frozen (BatchNorm's running statistics) and which take weight decay.
        self.state = self.model.state

    def run_epoch(self):
        with self.backend.device_scope():  # as Model.fit does (CuPy's current device)
            self.state, loss_sum, correct_sum = self.trainer.train_epoch(
                self.state, self.X, self.y, batch_size=self.batch_size, backend=self.backend
            )
            values = self.backend.to_numpy(self.xp.stack([loss_sum, correct_sum]))
        return float(values[0]) / self.n

    def synchronize(self):
        self.backend.synchronize()


def build_portnet_model(
    workload: Workload | CNNWorkload, backend, seed: int, inplace: bool | None = None
):
    """The workload as a float32 :class:`portnet.Model` with SGD + momentum 0.9, lr 0.01.

    ``inplace`` forces the optimizer's in-place or portable path (by default the
    backend decides), which lets the op counter measure the portable path on torch.
    """
    optimizer = pn.Momentum(LR, gamma=MOMENTUM, inplace=inplace)
    model = pn.Model(
        workload.portnet_layers(), optimizer=optimizer, backend=backend, dtype="float32", seed=seed
    )
    # Set explicitly, so every implementation provably starts from the same weights.
    model.set_weights(workload.initial_params(seed))
    return model


class PortnetNumpy(PortnetImplementation):
    name, backend_name = "portnet-numpy", "numpy"


class PortnetTorch(PortnetImplementation):
    name, backend_name, device = "portnet-torch", "torch", "cpu"


class PortnetStrict(PortnetImplementation):
    name, backend_name, device = "portnet-array_api_strict", "array_api_strict", "CPU_DEVICE"
    note = "portable (rebinding) optimizer path: array-api-strict promises no in-place updates"


class PortnetCupy(PortnetImplementation):
    name, backend_name, device = "portnet-cupy", "cupy", "cuda:0"
    device_kind = "cuda"


class PortnetTorchCuda(PortnetImplementation):
    name, backend_name, device = "portnet-torch-cuda", "torch", "cuda"
    device_kind = "cuda"


# -- native PyTorch ------------------------------------------------------------------


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


# -- scikit-learn --------------------------------------------------------------------


class SklearnMLP(DenseOnlyImplementation):
    """``MLPClassifier(solver="sgd")`` with ``partial_fit`` once per epoch on float32 data."""

    name = "sklearn"
    note = (
        "MLPClassifier.partial_fit, one call per epoch; sklearn shuffles internally (its own "
        "RNG, per-batch fancy indexing), validates X on every call and uses its own "
        "Glorot-uniform init (it cannot be given initial weights)"
    )
    dense_only_reason = "MLPClassifier trains dense networks only: scikit-learn has no convolutions"

    @classmethod
    def unavailable_reason(cls):
        try:
            import sklearn  # noqa: F401
        except ImportError:
            return "scikit-learn is not installed (pip install scikit-learn)"
        return None

    def __init__(self, workload, batch_size, data, seed):
        from sklearn.neural_network import MLPClassifier

        activation = workload.activation if workload.hidden else "identity"
        self.clf = MLPClassifier(
            hidden_layer_sizes=workload.hidden,
            activation=activation,
            solver="sgd",
            momentum=MOMENTUM,
            nesterovs_momentum=False,
            learning_rate="constant",
            learning_rate_init=LR,
            alpha=0.0,
            batch_size=batch_size,
            shuffle=True,
            random_state=seed,
        )
        self.X, self.y = data.X, data.y
        self.classes = np.arange(data.n_classes)

    def run_epoch(self):
        self.clf.partial_fit(self.X, self.y, classes=self.classes)
        return float(self.clf.loss_)


# -- course-style NumPy ----------------------------------------------------------------


class NumpyNaive(DenseOnlyImplementation):
    """The reference studies' style (see :mod:`benchmarks.naive_numpy`), float64."""

    name = "numpy-naive-f64"
    note = "float64, class per layer, one-hot labels, allocating updates, dX of the first layer"

    dense_only_reason = (
        "the course-style baseline is a dense MLP; the reference studies wrote no CNN"
    )

    def __init__(self, workload, batch_size, data, seed):
        from .naive_numpy import NaiveMLP

        np.random.seed(seed)  # noqa: NPY002 - the global RNG, as course code uses it
        self.net = NaiveMLP(workload.initial_weights(seed), workload.activation)
        # The course code loads float64 data and one-hot labels once, before training.
        self.X = data.X.astype(np.float64)
        self.Y = np.eye(data.n_classes)[data.y]
        self.batch_size = batch_size

    def run_epoch(self):
        return float(self.net.train_epoch(self.X, self.Y, self.batch_size, LR, MOMENTUM))


class NumpyCareful(DenseOnlyImplementation):
    """Hand-tuned float32 NumPy (see :mod:`benchmarks.careful_numpy`): NumPy's best case.

    It shares NumPy's limit with ``portnet-numpy`` (elementwise work on one core),
    so it tells how far portnet is from hand-written code, and how far NumPy itself
    is from the floor on this machine.
    """

    name = "numpy-careful"
    note = "hand-written float32 NumPy: in-place updates and activations, no dX of the first layer"

    dense_only_reason = "the hand-tuned NumPy reference is a dense MLP: it has no convolutions"

    def __init__(self, workload, batch_size, data, seed):
        from .careful_numpy import CarefulMLP

        self.net = CarefulMLP(workload.initial_weights(seed), workload.activation)
        self.X, self.y = data.X, data.y
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def run_epoch(self):
        order = self.rng.permutation(self.X.shape[0])
        return self.net.train_epoch(self.X, self.y, order, self.batch_size, LR, MOMENTUM)


# -- the floor ---------------------------------------------------------------------------


class GemmOnly(Implementation):
    """Only the step's matrix products, into preallocated float32 buffers: the floor.

    Forward ``x @ W`` per layer, ``dW = a.T @ d`` per layer and ``dx = d @ W.T`` for
    all but the first layer, on contiguous row slices (no gather, no elementwise
    work, no update). The buffers hold finite random values so no denormals slow
    the products down.

    For the ``cnn`` workload the floor is defined the same way: the products a
    Conv2D step cannot avoid, i.e. the im2col matrix ``cols`` (N L, C K) times W^T
    forward, ``dW = cols^T d`` and ``dcols = d W`` (all but the first layer), then the
    dense layers as above. The im2col gather, col2im, pooling, batch norm and the
    elementwise work are what ``ratio_to_gemm_only`` then measures: how much of a CNN
    epoch is not matrix products. ``cols`` is a preallocated random buffer, not
    gathered from the batch (that gather is exactly what is left out).
    """

    name = "gemm-only"
    note = (
        "matrix products only, preallocated, contiguous batches: a lower bound "
        "(cnn: the im2col products of each Conv2D and the dense products, no gather)"
    )

    def __init__(self, workload, batch_size, data, seed):
        rng = np.random.default_rng(seed)
        self.kind = workload.kind
        if workload.kind == "cnn":
            self._init_products(workload, batch_size, data, seed, rng)
            return
        self.X = data.X
        self.batch_size = batch_size
        self.W = [W.astype(np.float32) for W, _ in workload.initial_weights(seed)]
        self.dW = [np.empty_like(W) for W in self.W]

        def buffer(width):
            return rng.standard_normal((batch_size, width), dtype=np.float32) * 0.01

        # z[l]: output of layer l; d[l]: gradient w.r.t. that output.
        self.z = [buffer(W.shape[1]) for W in self.W]
        self.d = [buffer(W.shape[1]) for W in self.W]

    def _init_products(self, workload, batch_size, data, seed, rng):
        """Buffers for the products of every Conv2D and Dense layer, as (rows, k) @ (k, n)."""
        self.n, self.batch_size = data.n, batch_size
        self.shapes = workload.product_shapes()
        params = [p for p in workload.initial_params(seed) if "W" in p]
        # Conv2D W (F, C, Kh, Kw) -> (C K, F); Dense W is already (n_in, n_out).
        self.W = [
            np.ascontiguousarray(p["W"].reshape(p["W"].shape[0], -1).T, dtype=np.float32)
            if p["W"].ndim == 4
            else p["W"].astype(np.float32)
            for p in params
        ]
        self.dW = [np.empty_like(W) for W in self.W]

        def buffer(rows, width):
            return rng.standard_normal((batch_size * rows, width), dtype=np.float32) * 0.01

        self.a = [buffer(s.rows, s.k) for s in self.shapes]  # layer inputs (cols for Conv2D)
        self.z = [buffer(s.rows, s.n) for s in self.shapes]  # outputs
        self.d = [buffer(s.rows, s.n) for s in self.shapes]  # output gradients
        self.da = [buffer(s.rows, s.k) if i else None for i, s in enumerate(self.shapes)]

    def _run_products(self):
        n, bs, W, dW, shapes = self.n, self.batch_size, self.W, self.dW, self.shapes
        for start in range(0, n, bs):
            m = min(bs, n - start)
            for layer, s in enumerate(shapes):
                r = m * s.rows
                np.matmul(self.a[layer][:r], W[layer], out=self.z[layer][:r])
            for layer in range(len(W) - 1, -1, -1):
                r = m * shapes[layer].rows
                np.matmul(self.a[layer][:r].T, self.d[layer][:r], out=dW[layer])
                if layer:
                    np.matmul(self.d[layer][:r], W[layer].T, out=self.da[layer][:r])
        return float("nan")

    def run_epoch(self):
        if self.kind == "cnn":
            return self._run_products()
        n, bs, W, z, d, dW = self.X.shape[0], self.batch_size, self.W, self.z, self.d, self.dW
        for start in range(0, n, bs):
            x = self.X[start : start + bs]
            m = x.shape[0]
            inputs = [x]
            for layer in range(len(W)):
                np.matmul(inputs[-1], W[layer], out=z[layer][:m])
                inputs.append(z[layer][:m])
            for layer in range(len(W) - 1, -1, -1):
                np.matmul(inputs[layer].T, d[layer][:m], out=dW[layer])
                if layer:
                    np.matmul(d[layer][:m], W[layer].T, out=d[layer - 1][:m])
        return float("nan")


IMPLEMENTATIONS: dict[str, type[Implementation]] = {
    cls.name: cls
    for cls in (
        PortnetNumpy,
        PortnetTorch,
        PortnetStrict,
        PortnetCupy,
        PortnetTorchCuda,
        TorchNative,
        TorchNativeCuda,
        SklearnMLP,
        NumpyNaive,
        NumpyCareful,
        GemmOnly,
    )
}
