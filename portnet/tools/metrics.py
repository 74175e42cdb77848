r"""Classification metrics computed on the device.

Every function returns device arrays (0-d for scores); bring them to the host
with ``backend.to_numpy`` or ``float()`` at a log point, not inside a training step.
"""

from __future__ import annotations

from typing import Any

from .._array import namespace_of, on_device_of_inputs
from ..errors import ConfigError


@on_device_of_inputs
def accuracy(y_true: Any, y_pred: Any) -> Any:
    r"""Fraction of equal labels, :math:`\frac1N \sum_n [y_n = \hat y_n]`, as a 0-d float array."""
    xp = namespace_of(y_true, y_pred)
    if y_true.shape[0] == 0:
        raise ConfigError("accuracy of an empty set of labels is undefined")
    return xp.mean(xp.astype(y_true == xp.astype(y_pred, y_true.dtype), xp.float32))


@on_device_of_inputs
def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int) -> Any:
    r"""``C[i, j]`` = number of samples of true class ``i`` predicted as class ``j``.

    Computed as :math:`\mathrm{onehot}(y)^\top \mathrm{onehot}(\hat y)`: one matrix
    product instead of a scatter-add, which the standard lacks. The product is
    done in float32 (exact for counts below :math:`2^{24}`; integer matmul is
    missing on some GPUs) and returned as int64.
    """
    xp = namespace_of(y_true, y_pred)
    classes = xp.arange(n_classes, dtype=y_true.dtype, device=y_true.device)
    t = xp.astype(xp.expand_dims(y_true, axis=1) == classes, xp.float32)
    p = xp.astype(xp.expand_dims(xp.astype(y_pred, y_true.dtype), axis=1) == classes, xp.float32)
    return xp.astype(xp.round(xp.matmul(xp.matrix_transpose(t), p)), xp.int64)


@on_device_of_inputs
def precision_recall_f1(
    cm: Any, average: str | None = "macro", positive: int = 1
) -> dict[str, Any]:
    r"""Precision, recall and F1 from a confusion matrix.

    Parameters
    ----------
    cm : array, shape (K, K)
        Confusion matrix from :func:`confusion_matrix`.
    average : {"macro", "binary", None}
        ``"macro"``: unweighted mean over classes; ``"binary"``: the scores of class
        ``positive`` only; ``None``: one score per class.

    Notes
    -----
    :math:`P_k = C_{kk} / \sum_i C_{ik}`, :math:`R_k = C_{kk} / \sum_j C_{kj}`,
    :math:`F_k = 2 P_k R_k / (P_k + R_k)`; a score with a zero denominator is 0,
    as scikit-learn's ``zero_division=0``.
    """
    xp = namespace_of(cm)
    c = xp.astype(cm, xp.float32)
    eye = xp.astype(xp.eye(c.shape[0], dtype=xp.int32, device=c.device), c.dtype)
    tp = xp.sum(c * eye, axis=1)
    predicted = xp.sum(c, axis=0)
    actual = xp.sum(c, axis=1)
    precision = _safe_divide(xp, tp, predicted)
    recall = _safe_divide(xp, tp, actual)
    f1 = _safe_divide(xp, 2.0 * precision * recall, precision + recall)
    scores = {"precision": precision, "recall": recall, "f1": f1}
    if average is None:
        return scores
    if average == "macro":
        return {k: xp.mean(v) for k, v in scores.items()}
    if average == "binary":
        return {k: v[positive] for k, v in scores.items()}
    raise ConfigError(f"average must be 'macro', 'binary' or None, got {average!r}")


def _safe_divide(xp, num, den):
    ok = den > 0
    return xp.where(ok, num / xp.where(ok, den, 1.0), 0.0)
