"""Sample and class weights for :meth:`portnet.Model.fit`, validated like targets.

A weight :math:`w_n \\ge 0` per training sample scales that sample's share of each
batch's loss: the batch loss is :math:`\\sum_n w_n \\ell_n / \\sum_n w_n`
(:class:`portnet.training.losses.Loss`), so a weight of 2 is the same as the sample appearing
twice in its batch. Class weights give every sample of class :math:`k` the weight
:math:`c_k`; with both, a sample's weight is the product, as in scikit-learn.
``class_weight="balanced"`` is :math:`c_k = N / (K \\cdot N_k)`, which gives every
class the same total weight.

The weights are built once per ``fit`` and put on the device next to the targets;
batches gather them with the same indices, so no step reads the host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from .validation import as_host


def prepare_sample_weights(
    backend: Any,
    dtype: Any,
    loss: Any,
    y_dev: Any,
    n_outputs: int | None,
    sample_weight: Any = None,
    class_weight: Mapping[int, float] | str | None = None,
) -> Any:
    """The training samples' weights as a device array ``(N,)``, or ``None`` for none.

    Parameters
    ----------
    backend, dtype
        Where the weights go, and their dtype (the model's).
    loss : Loss
        Says which classes the targets hold (:meth:`~portnet.training.losses.Loss.class_labels`).
    y_dev : device array
        The validated targets, already on the device.
    n_outputs : int or None
        The model's output width (the number of classes of a softmax model).
    sample_weight : array_like, optional
        One finite, non-negative weight per sample, not all zero.
    class_weight : dict or "balanced", optional
        ``{class: weight}`` (classes left out weigh 1), or ``"balanced"``.

    Raises
    ------
    InputError
        For a wrong length or shape, NaN, negative or all-zero weights, an unknown
        class, or class weights on a loss without classes.
    """
    n = int(y_dev.shape[0])
    w = None if sample_weight is None else _check_sample_weight(backend, sample_weight, n)
    if class_weight is not None:
        per_class = _class_weights(backend, loss, y_dev, n_outputs, class_weight)
        w = per_class if w is None else w * per_class
        if not w.sum() > 0:
            raise InputError(
                "sample_weight times class_weight is zero for every sample: nothing to train on."
            )
    return None if w is None else backend.asarray(w, dtype)


def _check_sample_weight(backend: Any, sample_weight: Any, n: int) -> np.ndarray:
    w = np.asarray(as_host(backend, sample_weight))
    if w.ndim != 1 or w.shape[0] != n:
        raise InputError(
            f"sample_weight must hold one weight per sample, shape ({n},); got shape {w.shape}."
        )
    if w.dtype.kind not in "biuf":
        raise InputError(f"sample_weight must be numbers, got dtype {w.dtype}.")
    w = w.astype(np.float64)
    if not np.isfinite(w).all():
        raise InputError("sample_weight contains NaN or infinite values.")
    if (w < 0).any():
        raise InputError(
            f"sample_weight must be non-negative; found {int((w < 0).sum())} negative weight(s)."
        )
    if not w.sum() > 0:
        raise InputError("sample_weight is zero for every sample: nothing to train on.")
    return w


def _class_weights(
    backend: Any, loss: Any, y_dev: Any, n_outputs: int | None, class_weight: Any
) -> np.ndarray:
    """Each sample's class weight, on the host (the labels are read once, per fit)."""
    labels_dev, n_classes = loss.class_labels(backend.xp, y_dev)
    labels = backend.to_numpy(labels_dev).astype(np.int64)
    n_classes = n_outputs if n_classes is None else n_classes
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise InputError(
                "class_weight must be a dict {class: weight} or 'balanced', "
                f"got {class_weight!r}."
            )
        counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
        present = counts > 0
        table = np.ones(n_classes)
        table[present] = labels.shape[0] / (present.sum() * counts[present])
        return table[labels]
    if not isinstance(class_weight, Mapping):
        raise InputError(
            f"class_weight must be a dict {{class: weight}} or 'balanced', "
            f"got {type(class_weight).__name__}."
        )
    table = np.ones(n_classes)
    for key, value in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, int | np.integer):
            raise InputError(f"class_weight keys must be integer classes, got {key!r}.")
        if not 0 <= int(key) < n_classes:
            raise InputError(
                f"class_weight names class {key}, but the model has classes 0..{n_classes - 1}."
            )
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not np.isfinite(number) or number < 0:
            raise InputError(
                f"class_weight[{key}] must be a finite, non-negative number, got {value!r}."
            )
        table[int(key)] = number
    return table[labels]
