r"""Element-wise activation layers (no parameters).

Each backprop multiplies the incoming gradient by the local derivative, written
with ``where`` rather than boolean-mask assignment so that it stays one fused
array expression on every backend.
"""

from __future__ import annotations

from .layers import Layer


def stable_sigmoid(xp, z):
    r""":math:`\sigma(z) = 1/(1+e^{-z})` without overflow: uses :math:`e^{-|z|}` on both sides."""
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class Identity(Layer):
    """:math:`y = x`."""

    def forward(self, params, x, ctx):
        return x, lambda dy: (dy, {})


class ReLU(Layer):
    r""":math:`y = \max(x, 0)`; :math:`\partial x = \delta \cdot [x > 0]`."""

    def forward(self, params, x, ctx):
        xp = ctx.xp
        y = xp.maximum(x, 0.0)

        def backprop(dy):
            return xp.where(y > 0, dy, 0.0), {}

        return y, backprop


class LeakyReLU(Layer):
    r""":math:`y = x` for :math:`x > 0`, else :math:`\alpha x`."""

    def __init__(self, alpha: float = 0.01):
        self.alpha = float(alpha)

    def forward(self, params, x, ctx):
        xp = ctx.xp
        positive = x > 0
        y = xp.where(positive, x, self.alpha * x)

        def backprop(dy):
            return xp.where(positive, dy, self.alpha * dy), {}

        return y, backprop

    def get_config(self):
        return {"alpha": self.alpha}


class Sigmoid(Layer):
    r""":math:`y = \sigma(x)`; :math:`\partial x = \delta\, y (1 - y)`."""

    def forward(self, params, x, ctx):
        y = stable_sigmoid(ctx.xp, x)
        return y, lambda dy: (dy * (y * (1.0 - y)), {})


class Tanh(Layer):
    r""":math:`y = \tanh x`; :math:`\partial x = \delta (1 - y^2)`."""

    def forward(self, params, x, ctx):
        y = ctx.xp.tanh(x)
        return y, lambda dy: (dy * (1.0 - y * y), {})


class Softmax(Layer):
    r"""Row-wise :math:`y_k = e^{x_k} / \sum_j e^{x_j}` (shifted by the row maximum).

    Backprop: :math:`\partial x = y \odot (\delta - \sum_k \delta_k y_k)`. As the last
    layer of a model trained with softmax cross-entropy, the model fuses the two
    and never runs this backprop.
    """

    def forward(self, params, x, ctx):
        y = softmax(ctx.xp, x)

        def backprop(dy):
            xp = ctx.xp
            return y * (dy - xp.sum(dy * y, axis=-1, keepdims=True)), {}

        return y, backprop


def softmax(xp, z):
    """Numerically stable softmax along the last axis."""
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    e = xp.exp(shifted)
    return e / xp.sum(e, axis=-1, keepdims=True)


ACTIVATIONS = {
    "identity": Identity,
    "linear": Identity,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "softmax": Softmax,
}


def get_activation(name: str) -> Layer:
    """Return a new activation layer by name (``"relu"``, ``"tanh"`` ...)."""
    try:
        return ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(sorted(ACTIVATIONS))}"
        ) from None
