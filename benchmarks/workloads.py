"""The networks every implementation trains, and the one set of initial weights they share."""

from __future__ import annotations

import dataclasses

import numpy as np

import portnet as pn


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
        layers = self.portnet_layers()
        host = pn.Sequential(layers).init(np.random.default_rng(seed))
        return [(p["W"], p["b"]) for p in host if "W" in p]

    def matmul_flops_per_sample(self) -> int:
        """Multiply-adds x 2 of the step's matrix products for one sample.

        Forward and dW for every layer, dX for all but the first: the floor that
        ``gemm-only`` measures.
        """
        per_layer = [a * b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True)]
        return 2 * (2 * sum(per_layer) + sum(per_layer[1:]))


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("mlp-s3", (784, 500, 324, 10), "relu", "he"),
        Workload("softmax", (784, 10), "relu", "glorot"),
        Workload("mlp-s1", (784, 128, 10), "tanh", "glorot"),
    )
}
