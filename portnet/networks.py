"""Ready-made layer lists: :func:`mlp` builds a multilayer perceptron from its widths."""

from __future__ import annotations

from collections.abc import Sequence

from .activations import get_activation
from .errors import ConfigError
from .layers import Dense, Dropout, Layer


def mlp(
    sizes: Sequence[int],
    activation: str = "relu",
    output: str | None = None,
    init: str | None = None,
    dropout: float = 0.0,
) -> list[Layer]:
    """Layers of a multilayer perceptron, e.g. ``mlp([784, 500, 324, 10], "relu")``.

    Parameters
    ----------
    sizes : list of int
        Input width, hidden widths, output width.
    activation : str
        Hidden activation (``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"leaky_relu"``).
    output : str, optional
        Output activation layer (``"softmax"``, ``"sigmoid"``); by default none (logits).
    init : str, optional
        Weight init; by default He for ReLU-like and Glorot otherwise.
    dropout : float
        Dropout rate after each hidden activation (0 for none).
    """
    if len(sizes) < 2:
        raise ConfigError("mlp needs at least input and output sizes")
    init = init or ("he" if "relu" in activation else "glorot")
    layers: list[Layer] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        layers.append(Dense(n_in, n_out, init=init))
        if not last:
            layers.append(get_activation(activation))
            if dropout:
                layers.append(Dropout(dropout))
    if output:
        layers.append(get_activation(output))
    return layers
