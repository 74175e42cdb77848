r"""Losses: each returns a 0-d loss array and its gradient with respect to the model output.

Softmax + cross-entropy and sigmoid + binary cross-entropy take *logits* and use
the fused, numerically stable forms, whose gradients are simply
:math:`(p - t)/N`. Losses stay 0-d device arrays: reading them on the host is the
training loop's job, once per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import array_api_compat
import numpy as np

from .._array import xp_of
from ..backends.ops import ops_for
from ..config import build, check_number
from ..errors import ConfigError, InputError
from ..layers.activations import log_softmax, softmax, stable_sigmoid


def one_hot(xp, labels, n_classes: int, dtype):
    """One-hot rows for integer ``labels`` (on the labels' device), as ``dtype``."""
    # array_api_compat.device, not labels.device: traced JAX arrays have no .device.
    classes = xp.arange(n_classes, dtype=labels.dtype, device=array_api_compat.device(labels))
    return xp.astype(xp.expand_dims(labels, axis=-1) == classes, dtype)


class Loss:
    r"""Base class: a loss and everything that depends on its task.

    ``loss(outputs, targets, grad_scale=1.0, sample_weight=None) -> (value, d_outputs)``,
    where ``d_outputs`` is the gradient of the mean loss times ``grad_scale``: the
    training loop passes the learning rate there for optimizers that take pre-scaled
    gradients, which the loss folds into its own :math:`1/N` at no extra cost.
    A subclass writes its maths once, per sample (:meth:`per_sample`); the mean,
    plain or weighted, is taken here. With sample weights :math:`w_n` the loss is
    :math:`\sum_n w_n \ell_n / \sum_n w_n`, so a weight of 2 counts a sample twice
    in its batch, exactly as if it were duplicated there.

    The loss also owns its task, so that no other module switches on its type:
    which last layer it fuses (:attr:`output_activation`), how targets are checked
    (:meth:`check_host_targets`, :meth:`check_device_targets`), how outputs become
    probabilities (:meth:`probabilities`) and predictions (:meth:`predict`), and how
    correct predictions are counted (:meth:`count_correct`).
    """

    name = ""
    #: Activation layer (class name) fused into the loss; a model ending in it trains on logits.
    output_activation: str | None = None
    #: Whether test-time views (flips, shifts) can average predictions
    #: (:meth:`average_outputs`).
    supports_test_time_views = True

    def __call__(
        self, outputs: Any, targets: Any, grad_scale: Any = 1.0, sample_weight: Any = None
    ) -> tuple[Any, Any]:
        """The batch's mean loss (0-d) and its gradient times ``grad_scale``.

        ``sample_weight``, optional, holds one non-negative weight per sample, ``(N,)``.
        """
        xp = xp_of(outputs)
        losses, d_losses = self.per_sample(xp, outputs, targets)
        if sample_weight is None:
            n = outputs.shape[0]
            return xp.sum(losses) / n, d_losses * (grad_scale / n)
        total = xp.sum(sample_weight)
        column = xp.reshape(sample_weight, (-1,) + (1,) * (outputs.ndim - 1))
        return xp.sum(sample_weight * losses) / total, d_losses * (column * (grad_scale / total))

    def per_sample(self, xp: Any, outputs: Any, targets: Any) -> tuple[Any, Any]:
        """Each sample's loss ``(N,)`` and its gradient with respect to ``outputs``."""
        raise NotImplementedError

    def class_labels(self, xp: Any, targets: Any) -> tuple[Any, int | None]:
        """Integer class labels ``(N,)`` of device targets, and the number of classes
        (``None``: one per model output).

        Used for class weights; a loss without classes raises :class:`InputError`.
        """
        raise InputError(
            f"class weights need a classification loss (softmax or binary cross-entropy); "
            f"this model's loss is {self.name or type(self).__name__}. Use sample_weight."
        )

    def fuses(self, layer: Any) -> bool:
        """Whether ``layer`` (a model's last layer) is this loss's fused output activation."""
        return self.output_activation is not None and type(layer).__name__ == self.output_activation

    def check_host_targets(
        self, y: np.ndarray, n_outputs: int | None, n_samples: int, name: str = "y"
    ) -> np.ndarray:
        """Validate host targets and return them as training uses them (float64 here).

        Raises :class:`~portnet.errors.InputError` for a wrong length or NaN.
        """
        _check_length_and_finite(y, n_samples, name)
        return y.astype(np.float64)

    def check_device_targets(
        self, xp: Any, y: Any, n_outputs: int | None, n_samples: int, name: str, to_host: Any
    ) -> Any | None:
        """Validate targets already on the device with a small read, or return ``None``
        to ask for the host check. ``to_host`` copies a (small) array to NumPy."""
        return None

    def probabilities(self, xp: Any, outputs: Any) -> Any:
        """What ``predict_proba`` returns for these outputs (by default the outputs)."""
        return outputs

    def predict(self, xp: Any, outputs: Any) -> Any:
        """Predictions from outputs: raw outputs unless the task has classes."""
        return outputs

    def average_outputs(self, xp: Any, views: Sequence[Any]) -> Any:
        """Outputs whose predictions are the mean of several views' predictions (the
        test-time views: each image, its flip, its shifted copies): here the mean of
        the outputs themselves. Meaningful only where :attr:`supports_test_time_views`
        is true."""
        return _sum(views) * (1.0 / len(views))

    def count_correct(self, xp: Any, outputs: Any, targets: Any) -> Any:
        """Correct predictions in a batch, as a 0-d device array (NaN: no accuracy)."""
        # Regression has no accuracy: report NaN rather than a made-up number.
        return ops_for(xp).scalar_like(float("nan"), outputs)

    def get_config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SoftmaxCrossEntropy(Loss):
    r"""Mean cross-entropy of softmax probabilities.

    .. math:: L = -\frac1N \sum_n \sum_k t_{nk} \log \mathrm{softmax}(z_n)_k,
              \qquad \frac{\partial L}{\partial z} = \frac{\mathrm{softmax}(z) - t}{N}

    ``targets`` are integer labels of shape ``(N,)`` or one-hot / probability rows
    of shape ``(N, K)``. The log-sum-exp is shifted by the row maximum, so logits
    of :math:`\pm 10^4` give finite values.

    Parameters
    ----------
    label_smoothing : float
        :math:`\varepsilon` in [0, 1): train towards :math:`(1 - \varepsilon) t +
        \varepsilon / K` instead of the targets :math:`t` (Szegedy et al., 2016), so
        the network stops pushing its logits apart once a class is clearly ahead.
        The reported loss is the smoothed one; accuracy counts the true labels.
    """

    name = "softmax_cross_entropy"
    output_activation = "Softmax"

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = check_number(
            "label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True
        )

    def per_sample(self, xp, logits, targets):
        if targets.ndim == 1:
            targets = one_hot(xp, targets, logits.shape[-1], logits.dtype)
        if self.label_smoothing:
            eps = self.label_smoothing
            targets = targets * (1.0 - eps) + eps / logits.shape[-1]
        shifted = logits - xp.max(logits, axis=-1, keepdims=True)
        exp_shifted = xp.exp(shifted)  # computed once, for the loss and the gradient
        norm = xp.sum(exp_shifted, axis=-1, keepdims=True)
        # -sum t * log softmax = sum t * (log norm - shifted)
        losses = xp.sum(targets * (xp.log(norm) - shifted), axis=-1)
        return losses, exp_shifted / norm - targets

    def class_labels(self, xp, targets):
        labels = xp.argmax(targets, axis=-1) if targets.ndim == 2 else targets
        return xp.astype(labels, xp.int64), None

    def get_config(self):
        return {"label_smoothing": self.label_smoothing} if self.label_smoothing else {}

    def __repr__(self) -> str:
        if not self.label_smoothing:
            return super().__repr__()
        return f"{type(self).__name__}(label_smoothing={self.label_smoothing:g})"

    def check_host_targets(self, y, n_outputs, n_samples, name="y"):
        """Integer labels in ``[0, n_outputs)`` (as int64), or one-hot rows (as float64)."""
        _check_length_and_finite(y, n_samples, name)
        if y.ndim == 2:
            if n_outputs is not None and y.shape[1] != n_outputs:
                raise InputError(
                    f"{name} is one-hot with {y.shape[1]} columns but the model has "
                    f"{n_outputs} outputs."
                )
            return y.astype(np.float64)
        if y.ndim != 1:
            raise InputError(f"{name} must be 1-D class labels or 2-D one-hot rows, got {y.shape}.")
        if y.dtype.kind == "f":
            if not np.array_equal(y, np.round(y)):
                raise InputError(f"{name} must hold integer class labels, found fractional values.")
        elif y.dtype.kind not in "iu":
            raise InputError(f"{name} must hold integer class labels, got dtype {y.dtype}.")
        labels = y.astype(np.int64)
        _check_label_range(int(labels.min()), int(labels.max()), n_outputs, name)
        return labels

    def check_device_targets(self, xp, y, n_outputs, n_samples, name, to_host):
        """Labels already on the device: only their range is read (two numbers)."""
        if y.ndim != 1:
            return None
        if y.shape[0] != n_samples:
            raise InputError(f"{name} has {y.shape[0]} entries but X has {n_samples} samples.")
        low, high = to_host(xp.stack([xp.min(y), xp.max(y)]))
        if low != round(low) or high != round(high):
            return None  # fractional: let the host check say so
        _check_label_range(int(low), int(high), n_outputs, name)
        return xp.astype(y, xp.int64)

    def probabilities(self, xp, outputs):
        return softmax(xp, outputs)

    def average_outputs(self, xp, views):
        r"""Logits whose softmax is the mean of the views' softmax probabilities:
        :math:`\log\frac1V\sum_v \mathrm{softmax}(a_v)`, from the log-probabilities
        (:func:`_log_mean_exp`, no overflow). The loss of these logits is the
        cross-entropy of the averaged probabilities."""
        return _log_mean_exp(xp, [log_softmax(xp, view) for view in views])

    def predict(self, xp, outputs):
        """The class with the largest logit (int64)."""
        return xp.argmax(outputs, axis=-1)

    def count_correct(self, xp, outputs, targets):
        predicted = xp.argmax(outputs, axis=-1)
        labels = xp.argmax(targets, axis=-1) if targets.ndim == 2 else targets
        labels = xp.astype(labels, predicted.dtype, copy=False)
        return xp.sum(xp.astype(predicted == labels, outputs.dtype))


class SigmoidBinaryCrossEntropy(Loss):
    r"""Mean binary cross-entropy of sigmoid probabilities.

    .. math:: L = \frac1N \sum_n \max(z_n, 0) - z_n t_n + \log(1 + e^{-|z_n|}),
              \qquad \frac{\partial L}{\partial z} = \frac{\sigma(z) - t}{N}

    ``outputs`` and ``targets`` (0/1) have the same shape, ``(N,)`` or ``(N, 1)``.
    """

    name = "sigmoid_binary_cross_entropy"
    output_activation = "Sigmoid"
    supports_test_time_views = False  # the mean of two logits is not that of two probabilities

    def per_sample(self, xp, logits, targets):
        targets = xp.reshape(xp.astype(targets, logits.dtype), logits.shape)
        positive = ops_for(xp).relu(logits)
        elementwise = positive - logits * targets + xp.log1p(xp.exp(-xp.abs(logits)))
        losses = xp.reshape(elementwise, (logits.shape[0], -1))
        return xp.sum(losses, axis=1), stable_sigmoid(xp, logits) - targets

    def class_labels(self, xp, targets):
        return xp.astype(xp.reshape(targets, (-1,)) > 0.5, xp.int64), 2

    def check_host_targets(self, y, n_outputs, n_samples, name="y"):
        """0/1 targets, as float64 columns."""
        _check_length_and_finite(y, n_samples, name)
        values = np.unique(y)
        if not np.isin(values, (0, 1)).all():
            raise InputError(
                f"{name} must be 0/1 for binary cross-entropy, found values {values[:5].tolist()}."
            )
        return y.astype(np.float64).reshape(n_samples, -1)

    def probabilities(self, xp, outputs):
        return stable_sigmoid(xp, outputs)

    def predict(self, xp, outputs):
        """1 where the logit is positive (probability above 0.5), else 0 (int64)."""
        return xp.astype(xp.reshape(outputs > 0, (-1,)), xp.int64)

    def count_correct(self, xp, outputs, targets):
        predicted = xp.reshape(outputs > 0, (-1,))
        truth = xp.reshape(targets, (-1,)) > 0.5
        return xp.sum(xp.astype(predicted == truth, outputs.dtype))


class MeanSquaredError(Loss):
    r"""Mean over all elements of :math:`(y - t)^2`; gradient :math:`2(y - t)/\mathrm{size}`.

    Per sample, the mean over its :math:`D` output elements, so that the mean over
    samples is the mean over all elements.
    """

    name = "mse"

    def per_sample(self, xp, outputs, targets):
        targets = xp.reshape(xp.astype(targets, outputs.dtype), outputs.shape)
        diff = outputs - targets
        per_row = 1
        for dim in outputs.shape[1:]:
            per_row *= dim
        squares = xp.reshape(diff * diff, (outputs.shape[0], -1))
        return xp.sum(squares, axis=1) / per_row, diff * (2.0 / per_row)


class HalfSquaredError(Loss):
    r"""Half the squared error, summed over a sample's outputs.

    .. math:: \ell_n = \tfrac12 \sum_k (y_{nk} - t_{nk})^2,
              \qquad \frac{\partial \ell_n}{\partial y_n} = y_n - t_n

    The loss scikit-learn's ``MLPRegressor`` trains with (``loss="squared_error"``);
    with one output it is half the mean squared error.
    """

    name = "half_squared_error"

    def per_sample(self, xp, outputs, targets):
        targets = xp.reshape(xp.astype(targets, outputs.dtype), outputs.shape)
        diff = outputs - targets
        squares = xp.reshape(diff * diff, (outputs.shape[0], -1))
        return 0.5 * xp.sum(squares, axis=1), diff


class HalfPoissonDeviance(Loss):
    r"""Half the Poisson deviance, with a log link: the outputs are :math:`z = \log\mu`.

    .. math:: \ell_n = \sum_k e^{z_{nk}} - t_{nk} z_{nk} + t_{nk} \log t_{nk} - t_{nk},
              \qquad \frac{\partial \ell_n}{\partial z_n} = e^{z_n} - t_n

    with :math:`0 \log 0 = 0`. Targets are counts or rates, :math:`t \ge 0`; the
    predictions are the means :math:`\mu = e^z`. scikit-learn's
    ``MLPRegressor(loss="poisson")`` trains with it; its minimum, 0, is reached at
    :math:`\mu = t`.
    """

    name = "poisson"

    def per_sample(self, xp, outputs, targets):
        targets = xp.reshape(xp.astype(targets, outputs.dtype), outputs.shape)
        mean = xp.exp(outputs)
        positive = targets > 0
        t_log_t = xp.where(positive, targets * xp.log(xp.where(positive, targets, 1.0)), 0.0)
        elementwise = mean - targets * outputs + t_log_t - targets
        losses = xp.reshape(elementwise, (outputs.shape[0], -1))
        return xp.sum(losses, axis=1), mean - targets

    def check_host_targets(self, y, n_outputs, n_samples, name="y"):
        """Non-negative targets, as float64."""
        _check_length_and_finite(y, n_samples, name)
        if y.size and y.min() < 0:
            raise InputError(
                f"{name} has negative values (min {y.min():g}), but the Poisson loss models "
                "counts or rates, which are >= 0: use the squared error for such targets."
            )
        return y.astype(np.float64)

    def probabilities(self, xp, outputs):
        """The predicted means :math:`e^z`."""
        return xp.exp(outputs)

    def predict(self, xp, outputs):
        """The predicted means :math:`e^z`."""
        return xp.exp(outputs)

    def average_outputs(self, xp, views):
        """Outputs whose predicted means are the mean of the views' means."""
        return _log_mean_exp(xp, views)


def _sum(arrays: Sequence[Any]) -> Any:
    """The element-wise sum of arrays, first to last."""
    total = arrays[0]
    for array in arrays[1:]:
        total = total + array
    return total


def _log_mean_exp(xp: Any, logs: Sequence[Any]) -> Any:
    r""":math:`\log\frac1V\sum_v e^{l_v}`, the exponents shifted by their element-wise
    maximum so that none overflows."""
    top = logs[0]
    for log in logs[1:]:
        top = xp.maximum(top, log)
    return top + xp.log(_sum([xp.exp(log - top) for log in logs]) * (1.0 / len(logs)))


def _check_length_and_finite(y: np.ndarray, n_samples: int, name: str) -> None:
    if y.shape[0] != n_samples:
        raise InputError(f"{name} has {y.shape[0]} entries but X has {n_samples} samples.")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise InputError(f"{name} contains NaN or infinite values.")


def _check_label_range(low: int, high: int, n_outputs: int | None, name: str) -> None:
    # CuPy would wrap an out-of-range label silently: catch it before any maths.
    if low < 0 or (n_outputs is not None and high >= n_outputs):
        raise InputError(
            f"{name} has labels outside [0, {n_outputs}) (found min {low}, max {high}): the "
            f"model has {n_outputs} outputs, one per class; relabel the data as 0..K-1 or "
            "widen the last layer."
        )


LOSSES = {
    "softmax_cross_entropy": SoftmaxCrossEntropy,
    "cross_entropy": SoftmaxCrossEntropy,
    "sigmoid_binary_cross_entropy": SigmoidBinaryCrossEntropy,
    "binary_cross_entropy": SigmoidBinaryCrossEntropy,
    "bce": SigmoidBinaryCrossEntropy,
    "mse": MeanSquaredError,
    "half_squared_error": HalfSquaredError,
    "poisson": HalfPoissonDeviance,
}


def get_loss(name: str | Loss) -> Loss:
    """Return a loss object from its name, or the object itself."""
    if isinstance(name, Loss):
        return name
    cls = LOSSES.get(name.lower()) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(f"unknown loss {name!r}; choose one of {', '.join(sorted(LOSSES))}")
    return cls()


def loss_from_spec(spec: dict[str, Any] | str) -> Loss:
    """Rebuild a loss from ``{"class": ..., "config": ...}`` or a loss name."""
    if isinstance(spec, str):
        return get_loss(spec)
    classes = {cls.__name__: cls for cls in LOSSES.values()}
    return build(spec, classes, "loss")
