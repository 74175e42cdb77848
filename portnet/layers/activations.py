r"""Element-wise activation layers (no parameters).

Each backprop multiplies the incoming gradient by the local derivative. Masks
are cast to the float dtype and multiplied rather than applied with ``where``
or boolean-mask assignment: NumPy's ``where`` is about ten times slower than a
multiply on these shapes, and a multiply is one kernel on every backend.
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import Layer


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
        y = ctx.ops.relu(x)

        def backprop(dy):
            # In training, each backprop hands a fresh gradient to the layer before it,
            # so masking it in place (where allowed) saves an array.
            return ctx.ops.relu_backprop(dy, y), {}

        return y, backprop


class LeakyReLU(Layer):
    r""":math:`y = x` for :math:`x > 0`, else :math:`\alpha x`."""

    def __init__(self, alpha: float = 0.01):
        self.alpha = float(alpha)

    def forward(self, params, x, ctx):
        xp = ctx.xp
        # slope is 1 where x > 0 and alpha elsewhere: one mask, reused by backprop.
        slope = self.alpha + (1.0 - self.alpha) * xp.astype(x > 0, x.dtype)
        y = x * slope

        def backprop(dy):
            return dy * slope, {}

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


def log_softmax(xp, z):
    """``log softmax`` along the last axis, shifted by the row maximum."""
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


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
        raise ConfigError(
            f"unknown activation {name!r}; choose one of {', '.join(sorted(ACTIVATIONS))}"
        ) from None
