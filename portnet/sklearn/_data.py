"""Training data of an MLP estimator, validated once and placed on the device once."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..training.rows import HostRows


@dataclasses.dataclass
class TrainingData:
    """Features, targets and sample weights where training runs.

    Attributes
    ----------
    X : array or HostRows
        Device features, or sparse host rows that go to the device batch by batch.
    y : array
        Device targets as the loss takes them, ``(n, n_outputs)``: one-hot rows
        (softmax), 0/1 columns (logistic) or values (regression).
    sample_weight : array or None
        Device sample weights ``(n,)``.
    stratify : numpy.ndarray or None
        Host labels an early-stopping split keeps the proportions of.
    """

    X: Any
    y: Any
    sample_weight: Any = None
    stratify: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    def rows(self, index: np.ndarray, backend: Any) -> TrainingData:
        """The samples ``index`` (host integers), gathered on the device (one upload)."""
        take = backend.xp.take
        on_device = backend.asarray(np.asarray(index, dtype=np.int64))
        if isinstance(self.X, HostRows):
            X = HostRows(self.X.matrix[index], backend, self.X.dtype)
        else:
            X = take(self.X, on_device, axis=0)
        w = self.sample_weight
        w = None if w is None else take(w, on_device, axis=0)
        stratify = None if self.stratify is None else self.stratify[index]
        return TrainingData(X, take(self.y, on_device, axis=0), w, stratify)

    def chunks(self, size: int) -> Iterator[tuple[Any, Any, Any]]:
        """``(X, y, sample_weight)`` for consecutive runs of ``size`` samples (the last shorter)."""
        for start in range(0, self.n, size):
            stop = min(start + size, self.n)
            X = row_slice(self.X, start, stop)
            w = None if self.sample_weight is None else self.sample_weight[start:stop]
            yield X, self.y[start:stop, ...], w


def row_slice(X: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of device features or host rows, on the device."""
    return X.take(slice(start, stop)) if isinstance(X, HostRows) else X[start:stop, ...]


def features_on_device(X: Any, backend: Any, dtype: Any) -> Any:
    """Validated features where training runs: sparse ones stay on the host as
    :class:`~portnet.training.rows.HostRows`, the rest move (or are cast) once."""
    if hasattr(X, "tocsr"):
        return HostRows(X, backend, dtype)
    return backend.asarray(X, dtype)
