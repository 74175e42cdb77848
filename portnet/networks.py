"""Ready-made layer lists: :func:`mlp` builds a multilayer perceptron from its widths."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .errors import ConfigError
from .layers.activations import get_activation
from .layers.augment import RandomFlip
from .layers.base import Dense, Dropout, Layer
from .layers.conv import Flatten, Reshape
from .layers.normalization import BatchNorm


def mlp(
    sizes: Sequence[int],
    activation: str = "relu",
    output: str | None = None,
    init: str | None = None,
    dropout: float = 0.0,
    batch_norm: bool = False,
    flip: Sequence[int] | None = None,
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
    batch_norm : bool
        Put a :class:`~portnet.BatchNorm` between each hidden ``Dense`` and its
        activation; that ``Dense`` then has no bias, which the normalization would
        subtract again.
    flip : sequence of int, optional
        The image shape of an input row, e.g. ``(1, 28, 28)``: mirror each training
        image left-right with probability 1/2 (``Reshape`` to that shape,
        :class:`~portnet.RandomFlip`, ``Flatten``). Inference sees the rows unchanged.

    Examples
    --------
    >>> layers = mlp([784, 1024, 512, 10], dropout=0.3, batch_norm=True, flip=(1, 28, 28))
    """
    if len(sizes) < 2:
        raise ConfigError("mlp needs at least input and output sizes")
    init = init or ("he" if "relu" in activation else "glorot")
    layers: list[Layer] = []
    if flip is not None:
        if math.prod(flip) != sizes[0]:
            raise ConfigError(
                f"flip's image shape {tuple(flip)} holds {math.prod(flip)} values but the "
                f"input rows have {sizes[0]}; give the shape of one input image"
            )
        layers += [Reshape(tuple(flip)), RandomFlip(), Flatten()]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        layers.append(Dense(n_in, n_out, init=init, bias=last or not batch_norm))
        if not last:
            if batch_norm:
                layers.append(BatchNorm(n_out))
            layers.append(get_activation(activation))
            if dropout:
                layers.append(Dropout(dropout))
    if output:
        layers.append(get_activation(output))
    return layers
