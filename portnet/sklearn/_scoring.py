"""The validation score of early stopping, summed on the device and read with the loss.

scikit-learn scores the held-out set after every epoch with the estimator's
``score``: the accuracy for a classifier (every label of a row right, for
multilabel data), :math:`R^2` for a regressor, both weighted by the samples'
weights. Here the sums behind them stay on the device, and the training loop
reads them in the same transfer as the epoch's loss; only the last division
happens on the host, with scikit-learn's rules for the corner cases (a non-finite
prediction scores NaN; an output without variance scores 1 if predicted exactly,
else 0).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..training.budget import inference_batch_size
from ._data import TrainingData


class ValidationScore:
    """Accuracy or :math:`R^2` of a model on one held-out set.

    Parameters
    ----------
    model : portnet.Model
        The estimator's network (its loss says the task).
    data : TrainingData
        The held-out samples, on the model's device.
    task : {"softmax", "logistic", "identity", "exp"}
        The output activation: one-hot rows, 0/1 columns, or values to predict.
    """

    def __init__(self, model: Any, data: TrainingData, task: str):
        self.model, self.data, self.task = model, data, task
        xp = model.backend.xp
        self.batch_size = inference_batch_size(model, tuple(data.X.shape[1:]))
        w = data.sample_weight
        self.total_weight = data.n if w is None else float(model.backend.to_numpy(xp.sum(w)))
        self.baseline = None if task in ("softmax", "logistic") else self._variance_sums()

    def _variance_sums(self) -> np.ndarray:
        """Per output, :math:`\\sum_n w_n (t_n - \\bar t)^2`, read once per fit."""
        xp, y, w = self.model.backend.xp, self.data.y, self.data.sample_weight
        column = None if w is None else xp.reshape(w, (-1, 1))
        mean = xp.mean(y, axis=0) if w is None else xp.sum(y * column, axis=0) / xp.sum(column)
        squares = (y - mean) ** 2
        sums = xp.sum(squares if w is None else squares * column, axis=0)
        return self.model.backend.to_numpy(sums).astype(np.float64)

    def sums(self, params: Any) -> list[Any]:
        """The epoch's sums, as 0-d device arrays: the weighted count of right rows,
        or the non-finite predictions and each output's weighted squared error."""
        xp, trainer = self.model.backend.xp, self.model.trainer
        totals = None
        for X, y, w in self.data.chunks(self.batch_size):
            outputs = trainer.inference_outputs(params, X, xp)
            part = self._batch_sums(xp, outputs, y, w)
            totals = part if totals is None else [a + b for a, b in zip(totals, part, strict=True)]
        return totals

    def _batch_sums(self, xp: Any, outputs: Any, y: Any, w: Any) -> list[Any]:
        if self.task == "softmax":
            right = xp.argmax(outputs, axis=1) == xp.argmax(y, axis=1)
        elif self.task == "logistic":
            right = xp.all((outputs > 0) == (y > 0.5), axis=1)
        else:
            predicted = self.model.loss.predict(xp, outputs)
            bad = xp.sum(xp.astype(xp.logical_not(xp.isfinite(predicted)), predicted.dtype))
            squares = (y - predicted) ** 2
            if w is not None:
                squares = squares * xp.reshape(w, (-1, 1))
            errors = xp.sum(squares, axis=0)
            return [bad] + [errors[k] for k in range(errors.shape[0])]
        right = xp.astype(right, outputs.dtype)
        return [xp.sum(right if w is None else right * w)]

    def score(self, values: np.ndarray) -> float:
        """The score from the host copies of :meth:`sums`, as scikit-learn computes it."""
        if self.baseline is None:
            return float(values[0]) / self.total_weight
        if values[0] > 0:
            return math.nan
        scores = []
        for error, variance in zip(values[1:], self.baseline, strict=True):
            if variance != 0:
                scores.append(1.0 - error / variance)
            else:  # scikit-learn's force_finite rule
                scores.append(1.0 if error == 0 else 0.0)
        return float(np.mean(scores))
