"""The networks every implementation trains, and the one set of initial weights they share.

Two kinds: :class:`Workload`, a multilayer perceptron given by its widths, and
:class:`CNNWorkload`, a layer list in portnet's saved-model ``{class, config}`` form
(the ``cnn`` workload reads experiments/configs/cnn.yaml, so it always times the
configured CNN). Both give portnet layers and initial parameters drawn once with
portnet's own initialisers; the other implementations copy those numbers.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np

import portnet as pn

CNN_CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "cnn.yaml"


@dataclasses.dataclass(frozen=True)
class Workload:
    """A multilayer perceptron to train on Fashion-MNIST.

    Attributes
    ----------
    name : str
        Command-line name (``mlp-s3`` ...).
    sizes : tuple of int
        Input width, hidden widths, output width.
    activation : str
        Hidden activation (``"relu"`` or ``"tanh"``; ignored without hidden layers).
    init : str
        ``"he"`` or ``"glorot"``, as in :class:`portnet.Dense`.
    """

    name: str
    sizes: tuple[int, ...]
    activation: str
    init: str

    kind = "mlp"

    @property
    def hidden(self) -> tuple[int, ...]:
        return self.sizes[1:-1]

    @property
    def label(self) -> str:
        shape = "-".join(str(s) for s in self.sizes)
        act = f" {self.activation}" if self.hidden else ""
        return f"{self.name} ({shape}{act}, {self.init} init)"

    def portnet_layers(self) -> list[pn.Layer]:
        """The network as portnet layers (logits out; the loss applies the softmax)."""
        return pn.mlp(list(self.sizes), self.activation, init=self.init)

    def initial_weights(self, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(W, b)`` per dense layer, float64 on the host, ``W`` of shape ``(n_in, n_out)``.

        Drawn with portnet's own initialiser so that every implementation, portnet or
        not, starts from the same numbers.
        """
        return [(p["W"], p["b"]) for p in self.initial_params(seed) if "W" in p]

    def initial_params(self, seed: int) -> list[dict[str, np.ndarray]]:
        """One dict of float64 host arrays per portnet layer (``{}`` for activations)."""
        return pn.Sequential(self.portnet_layers()).init(np.random.default_rng(seed))

    def matmul_flops_per_sample(self) -> int:
        """Multiply-adds x 2 of the step's matrix products for one sample.

        Forward and dW for every layer, dX for all but the first: the floor that
        ``gemm-only`` measures.
        """
        per_layer = [a * b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True)]
        return 2 * (2 * sum(per_layer) + sum(per_layer[1:]))


@functools.cache
def _yaml_layers(path: Path) -> tuple[dict[str, Any], ...]:
    import yaml  # a dependency of the experiments; only the cnn workload needs it

    layers = (yaml.safe_load(path.read_text()) or {}).get("layers")
    if not layers:
        raise pn.ConfigError(f"{path} has no 'layers' list")
    return tuple(layers)


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """One parametrised layer as the step's matrix products see it (per sample).

    ``rows`` is the rows one sample contributes (1 for Dense, the output positions
    ``L`` for Conv2D, whose im2col matrix has ``N L`` rows); the forward product is
    ``(rows, k) @ (k, n)``.
    """

    kind: str
    rows: int
    k: int
    n: int


@dataclasses.dataclass(frozen=True)
class CNNWorkload:
    """A network given as a portnet layer list; the first layer takes the flat 784 pixels.

    Attributes
    ----------
    name : str
        Command-line name (``cnn``).
    config_path : Path
        YAML file whose ``layers`` entry is the layer list ({class, config} items).
    """

    name: str
    config_path: Path

    kind = "cnn"

    def layer_specs(self) -> tuple[dict[str, Any], ...]:
        return _yaml_layers(self.config_path)

    @property
    def label(self) -> str:
        try:
            specs = self.layer_specs()
        except (ImportError, OSError, ValueError) as exc:
            return f"{self.name} (layers of {self.config_path.name}: unreadable, {exc})"
        parts = []
        for spec in specs:
            cls, cfg = spec["class"], spec.get("config", {})
            if cls == "Conv2D":
                k = cfg.get("kernel_size", 3)
                parts.append(f"conv{k}x{k}-{cfg['out_channels']}")
            elif cls in ("MaxPool2D", "AvgPool2D"):
                parts.append(f"{cls[:3].lower()}pool{cfg.get('kernel_size', 2)}")
            elif cls == "BatchNorm":
                parts.append("bn")
            elif cls == "Dense":
                parts.append(f"fc{cfg['n_out']}")
            elif cls == "Dropout":
                parts.append(f"drop{cfg.get('rate', 0.5):g}")
            elif cls == "RandomFlip":
                parts.append("flip")
            elif cls == "RandomShift":
                parts.append(f"shift{cfg.get('max_shift', 2)}")
        return f"{self.name} ({'-'.join(parts)}, ReLU; {self.config_path.name})"

    def portnet_layers(self) -> list[pn.Layer]:
        """Fresh portnet layers (logits out; the loss applies the softmax)."""
        return list(pn.Sequential([dict(s) for s in self.layer_specs()]).layers)

    def initial_params(self, seed: int) -> list[dict[str, np.ndarray]]:
        """One dict of float64 host arrays per layer, from portnet's initialisers.

        Conv2D ``W`` is ``(F, C, K_h, K_w)`` (PyTorch's layout), Dense ``W`` is
        ``(n_in, n_out)``; BatchNorm has ``gamma``, ``beta`` and its running statistics.
        """
        return pn.Sequential(self.portnet_layers()).init(np.random.default_rng(seed))

    def input_shapes(self) -> list[tuple[int, ...]]:
        """Each layer's input shape for one sample (batch axis dropped), by running it."""
        backend = pn.get_backend("numpy")
        layers = self.portnet_layers()
        params = pn.Sequential(layers).init(np.random.default_rng(0))
        ctx = pn.Context(xp=backend.xp, training=False, need_input_grad=False)
        x = backend.asarray(np.zeros((2, 784), dtype=np.float32))
        shapes = []
        for layer, p in zip(layers, params, strict=True):
            shapes.append(tuple(x.shape[1:]))
            x, _ = layer.forward({k: backend.asarray(v, "float32") for k, v in p.items()}, x, ctx)
        return shapes

    def product_shapes(self) -> list[LayerShape]:
        """The Conv2D and Dense layers as matrix products, in network order."""
        out = []
        for layer, shape in zip(self.portnet_layers(), self.input_shapes(), strict=True):
            if isinstance(layer, pn.Conv2D):
                c, h, w = shape
                (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
                rows = ((h + 2 * ph - kh) // sh + 1) * ((w + 2 * pw - kw) // sw + 1)
                out.append(LayerShape("conv", rows, c * kh * kw, layer.out_channels))
            elif isinstance(layer, pn.Dense):
                out.append(LayerShape("dense", 1, layer.n_in, layer.n_out))
        return out

    def matmul_flops_per_sample(self) -> int:
        """As :meth:`Workload.matmul_flops_per_sample`: forward, dW, and dX but the first."""
        per_layer = [s.rows * s.k * s.n for s in self.product_shapes()]
        return 2 * (2 * sum(per_layer) + sum(per_layer[1:]))


WORKLOADS: dict[str, Workload | CNNWorkload] = {
    w.name: w
    for w in (
        Workload("mlp-s3", (784, 500, 324, 10), "relu", "he"),
        Workload("softmax", (784, 10), "relu", "glorot"),
        Workload("mlp-s1", (784, 128, 10), "tanh", "glorot"),
        CNNWorkload("cnn", CNN_CONFIG),
    )
}
