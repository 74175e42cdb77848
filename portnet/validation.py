"""Checks of user data, done once per dataset on the host before any maths runs.

CuPy wraps out-of-range indices silently and NaN propagates without a word, so
both are caught here, with messages that say what is wrong and what to do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError


def check_feature_shape(shape: tuple[int, ...], n_in: int | None, name: str = "X") -> None:
    """Raise :class:`InputError` unless ``shape`` is a non-empty ``(N, n_in)``."""
    shape = tuple(shape)
    if len(shape) != 2:
        hint = " (flatten images first, e.g. X.reshape(len(X), -1))" if len(shape) > 2 else ""
        raise InputError(f"{name} must be 2-D (samples x features), got shape {shape}{hint}.")
    if shape[0] == 0:
        raise InputError(f"{name} is empty (0 samples): there is nothing to train on or evaluate.")
    if n_in is not None and shape[1] != n_in:
        raise InputError(
            f"{name} has {shape[1]} features per sample but the model's first layer expects "
            f"{n_in}: check the data's preprocessing or the model's input width."
        )


def check_features(X_host: np.ndarray, n_in: int | None, name: str = "X") -> None:
    """Raise :class:`InputError` unless ``X_host`` is finite, numeric, non-empty (N, n_in)."""
    check_feature_shape(X_host.shape, n_in, name)
    if X_host.dtype.kind not in "fiub":
        raise InputError(f"{name} must hold numbers, got dtype {X_host.dtype}.")
    if X_host.dtype.kind == "f" and not np.isfinite(X_host).all():
        bad = int(np.size(X_host) - np.count_nonzero(np.isfinite(X_host)))
        raise InputError(
            f"{name} contains {bad} NaN or infinite value(s): clean or impute them before training."
        )


def check_targets(
    y_host: np.ndarray, loss_name: str, n_outputs: int | None, n_samples: int, name: str = "y"
) -> np.ndarray:
    """Validate targets for a loss and return them in the dtype training uses on the host.

    Integer class labels are checked against ``[0, n_outputs)``: CuPy would wrap an
    out-of-range index silently.
    """
    if y_host.shape[0] != n_samples:
        raise InputError(f"{name} has {y_host.shape[0]} entries but X has {n_samples} samples.")
    if y_host.dtype.kind == "f" and not np.isfinite(y_host).all():
        raise InputError(f"{name} contains NaN or infinite values.")
    if loss_name == "softmax_cross_entropy":
        if y_host.ndim == 2:
            if n_outputs is not None and y_host.shape[1] != n_outputs:
                raise InputError(
                    f"{name} is one-hot with {y_host.shape[1]} columns but the model has "
                    f"{n_outputs} outputs."
                )
            return y_host.astype(np.float64)
        if y_host.ndim != 1:
            raise InputError(
                f"{name} must be 1-D class labels or 2-D one-hot rows, got {y_host.shape}."
            )
        if y_host.dtype.kind == "f":
            if not np.array_equal(y_host, np.round(y_host)):
                raise InputError(f"{name} must hold integer class labels, found fractional values.")
        elif y_host.dtype.kind not in "iu":
            raise InputError(f"{name} must hold integer class labels, got dtype {y_host.dtype}.")
        labels = y_host.astype(np.int64)
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or (n_outputs is not None and high >= n_outputs):
            raise InputError(
                f"{name} has labels outside [0, {n_outputs}) (found min {low}, max {high}): the "
                f"model has {n_outputs} outputs, one per class; relabel the data as 0..K-1 or "
                "widen the last layer."
            )
        return labels
    if loss_name == "sigmoid_binary_cross_entropy":
        values = np.unique(y_host)
        if not np.isin(values, (0, 1)).all():
            raise InputError(
                f"{name} must be 0/1 for binary cross-entropy, found values {values[:5].tolist()}."
            )
        return y_host.astype(np.float64).reshape(n_samples, -1)
    return y_host.astype(np.float64)


def as_host(backend, array: Any) -> np.ndarray:
    """The host copy of user data: NumPy data as is, device arrays through ``to_numpy``."""
    if isinstance(array, np.ndarray):
        return array
    if isinstance(array, list | tuple):
        return np.asarray(array)
    try:
        return backend.to_numpy(array)
    except Exception as exc:  # wrong library or device for this backend
        raise InputError(
            f"Could not read data of type {type(array).__name__} on backend {backend}: {exc}. "
            "Pass NumPy arrays, or arrays of the model's backend and device."
        ) from None
