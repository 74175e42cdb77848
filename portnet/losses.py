r"""Losses: each returns a 0-d loss array and its gradient with respect to the model output.

Softmax + cross-entropy and sigmoid + binary cross-entropy take *logits* and use
the fused, numerically stable forms, whose gradients are simply
:math:`(p - t)/N`. Losses stay 0-d device arrays: reading them on the host is the
training loop's job, once per epoch.
"""

from __future__ import annotations

from typing import Any

from .activations import stable_sigmoid
from .errors import ConfigError
from .sync_free import relu


def one_hot(xp, labels, n_classes: int, dtype):
    """One-hot rows for integer ``labels`` (on the labels' device), as ``dtype``."""
    classes = xp.arange(n_classes, dtype=labels.dtype, device=labels.device)
    return xp.astype(xp.expand_dims(labels, axis=-1) == classes, dtype)


class Loss:
    """Base class. ``loss(outputs, targets, grad_scale=1.0) -> (value, d_outputs)``.

    ``d_outputs`` is the gradient of the mean loss times ``grad_scale``: the training
    loop passes the learning rate there for optimizers that take pre-scaled
    gradients, which the loss folds into its own :math:`1/N` at no extra cost.
    """

    name = ""
    #: Activation fused into the loss; a model ending in this layer trains on logits.
    output_activation: str | None = None

    def __call__(self, outputs: Any, targets: Any, grad_scale: float = 1.0) -> tuple[Any, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropy(Loss):
    r"""Mean cross-entropy of softmax probabilities.

    .. math:: L = -\frac1N \sum_n \sum_k t_{nk} \log \mathrm{softmax}(z_n)_k,
              \qquad \frac{\partial L}{\partial z} = \frac{\mathrm{softmax}(z) - t}{N}

    ``targets`` are integer labels of shape ``(N,)`` or one-hot / probability rows
    of shape ``(N, K)``. The log-sum-exp is shifted by the row maximum, so logits
    of :math:`\pm 10^4` give finite values.
    """

    name = "softmax_cross_entropy"
    output_activation = "Softmax"

    def __call__(self, logits, targets, grad_scale=1.0):
        xp = _xp(logits)
        n, k = logits.shape[0], logits.shape[-1]
        if targets.ndim == 1:
            targets = one_hot(xp, targets, k, logits.dtype)
        shifted = logits - xp.max(logits, axis=-1, keepdims=True)
        exp_shifted = xp.exp(shifted)  # computed once, for the loss and the gradient
        norm = xp.sum(exp_shifted, axis=-1, keepdims=True)
        # -sum t * log softmax = sum t * (log norm - shifted)
        loss = xp.sum(targets * (xp.log(norm) - shifted)) / n
        grad = (exp_shifted / norm - targets) * (grad_scale / n)
        return loss, grad


class SigmoidBinaryCrossEntropy(Loss):
    r"""Mean binary cross-entropy of sigmoid probabilities.

    .. math:: L = \frac1N \sum_n \max(z_n, 0) - z_n t_n + \log(1 + e^{-|z_n|}),
              \qquad \frac{\partial L}{\partial z} = \frac{\sigma(z) - t}{N}

    ``outputs`` and ``targets`` (0/1) have the same shape, ``(N,)`` or ``(N, 1)``.
    """

    name = "sigmoid_binary_cross_entropy"
    output_activation = "Sigmoid"

    def __call__(self, logits, targets, grad_scale=1.0):
        xp = _xp(logits)
        n = logits.shape[0]
        targets = xp.reshape(xp.astype(targets, logits.dtype), logits.shape)
        loss = xp.sum(relu(xp, logits) - logits * targets + xp.log1p(xp.exp(-xp.abs(logits)))) / n
        grad = (stable_sigmoid(xp, logits) - targets) * (grad_scale / n)
        return loss, grad


class MeanSquaredError(Loss):
    r"""Mean over all elements of :math:`(y - t)^2`; gradient :math:`2(y - t)/\mathrm{size}`."""

    name = "mse"

    def __call__(self, outputs, targets, grad_scale=1.0):
        xp = _xp(outputs)
        targets = xp.reshape(xp.astype(targets, outputs.dtype), outputs.shape)
        diff = outputs - targets
        size = 1
        for dim in outputs.shape:
            size *= dim
        return xp.sum(diff * diff) / size, diff * (2.0 * grad_scale / size)


def _xp(array):
    import array_api_compat

    return array_api_compat.array_namespace(array)


LOSSES = {
    "softmax_cross_entropy": SoftmaxCrossEntropy,
    "cross_entropy": SoftmaxCrossEntropy,
    "sigmoid_binary_cross_entropy": SigmoidBinaryCrossEntropy,
    "binary_cross_entropy": SigmoidBinaryCrossEntropy,
    "bce": SigmoidBinaryCrossEntropy,
    "mse": MeanSquaredError,
}


def get_loss(name: str | Loss) -> Loss:
    """Return a loss object from its name, or the object itself."""
    if isinstance(name, Loss):
        return name
    try:
        return LOSSES[name.lower()]()
    except KeyError:
        raise ConfigError(
            f"unknown loss {name!r}; choose one of {', '.join(sorted(LOSSES))}"
        ) from None
