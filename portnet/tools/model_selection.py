r"""k-fold cross-validation: a fresh model per fold, per-epoch curves for every fold.

Study S0 trains with 10-fold cross-validation and plots the training and
validation loss per epoch averaged over the folds; :func:`cross_validate` gives
exactly those curves, plus their spread across folds.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._array import to_host
from ..data import kfold_indices
from ..errors import InputError

_CURVES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


@dataclasses.dataclass
class CVResult:
    r"""Per-fold, per-epoch curves of a cross-validation run.

    Attributes
    ----------
    curves : dict of numpy.ndarray
        ``train_loss``, ``val_loss``, ``train_accuracy``, ``val_accuracy``, each of
        shape ``(folds, epochs)``; a fold stopped early is padded with NaN.
    models : list
        The trained model of each fold (``keep_models=True``), else empty.
    histories : list of History
    fold_indices : list of (train_idx, val_idx)
    seconds : float
        Wall time of the whole run.
    """

    curves: dict[str, np.ndarray]
    models: list[Any]
    histories: list[Any]
    fold_indices: list[tuple[np.ndarray, np.ndarray]]
    seconds: float = 0.0

    @property
    def n_folds(self) -> int:
        return self.curves["train_loss"].shape[0]

    def mean(self, key: str) -> np.ndarray:
        r"""Mean over folds per epoch, :math:`\bar c_e = \frac1K \sum_k c_{ke}` (NaN-aware)."""
        return _nan_reduce(np.nanmean, self.curves[key])

    def std(self, key: str) -> np.ndarray:
        """Population standard deviation over folds per epoch (NaN-aware)."""
        return _nan_reduce(np.nanstd, self.curves[key])

    def final(self, key: str) -> np.ndarray:
        """Each fold's last recorded value, shape ``(folds,)``."""
        values = self.curves[key]
        last = np.sum(~np.isnan(values), axis=1) - 1
        return values[np.arange(values.shape[0]), np.maximum(last, 0)]

    def best_fold(self) -> int:
        """The fold whose model ends with the lowest validation loss."""
        return int(np.nanargmin(self.final("val_loss")))


def _nan_reduce(fn, values: np.ndarray) -> np.ndarray:
    out = np.full(values.shape[1], np.nan)
    seen = ~np.all(np.isnan(values), axis=0)
    out[seen] = fn(values[:, seen], axis=0)
    return out


def cross_validate(
    make_model: Callable[[int], Any],
    X: np.ndarray,
    y: np.ndarray,
    *,
    k: int = 10,
    epochs: int = 10,
    batch_size: int = 128,
    seed: int = 0,
    stratify: bool = True,
    fit_kwargs: Mapping[str, Any] | None = None,
    keep_models: bool = True,
    on_fold_end: Callable[[int, Any], None] | None = None,
) -> CVResult:
    r"""Train a fresh model on each of ``k`` folds and record its per-epoch curves.

    Fold :math:`k` trains on all samples outside fold :math:`k` and validates on
    fold :math:`k` (with 60,000 samples and ``k=10``: 54,000 / 6,000 per fold).

    Parameters
    ----------
    make_model : callable
        ``make_model(fold) -> Model``: a new, untrained model (e.g. seeded with the
        fold number). Called once per fold so no weights leak between folds.
    X, y : numpy.ndarray
        Host features ``(N, D)`` and targets ``(N,)`` (class labels or 0/1). Each
        fold's subsets are moved to the model's device once, by ``Model.fit``.
    k : int
        Number of folds, ``2 <= k <= N``.
    epochs, batch_size : int
        Passed to ``Model.fit``.
    seed : int
        Seeds the fold assignment (the models' own seeds come from ``make_model``).
    stratify : bool
        Spread every class evenly over the folds (needs integer ``y``).
    fit_kwargs : mapping, optional
        Extra ``Model.fit`` arguments, e.g. ``{"patience": 5}``.
    keep_models : bool
        Keep each fold's trained model in the result.
    on_fold_end : callable, optional
        ``on_fold_end(fold, history)``, e.g. to log progress.

    Returns
    -------
    CVResult
        Curves of shape ``(k, epochs)`` with :meth:`CVResult.mean` and :meth:`CVResult.std`.
    """
    # Folds index on the host; Model.fit moves each fold's subsets to the device once.
    X, y = to_host(X), to_host(y)
    fit_kwargs = _check_inputs(X, y, fit_kwargs)
    start = time.perf_counter()
    labels = y.astype(np.int64) if stratify else None
    folds = list(kfold_indices(int(X.shape[0]), int(k), seed=seed, y=labels))
    curves = {key: np.full((len(folds), int(epochs)), np.nan) for key in _CURVES}
    models, histories = [], []
    for fold, (train_idx, val_idx) in enumerate(folds):
        model = make_model(fold)
        history = model.fit(
            X[train_idx],
            y[train_idx],
            epochs=int(epochs),
            batch_size=int(batch_size),
            validation_data=(X[val_idx], y[val_idx]),
            **fit_kwargs,
        )
        for key in _CURVES:  # a fold stopped early leaves NaN after its last epoch
            values = history.history[key]
            curves[key][fold, : len(values)] = values
        histories.append(history)
        if keep_models:
            models.append(model)
        if on_fold_end is not None:
            on_fold_end(fold, history)
    return CVResult(curves, models, histories, folds, time.perf_counter() - start)


def _check_inputs(X: np.ndarray, y: np.ndarray, fit_kwargs: Mapping[str, Any] | None) -> dict:
    """Refuse data of the wrong shape and fit arguments that cross_validate sets;
    return the fit arguments, quiet unless ``verbose`` is given."""
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise InputError(f"cross_validate expects X (N, D) and y (N,), got {X.shape} and {y.shape}")
    fit_kwargs = dict(fit_kwargs or {})
    for reserved in ("validation_data", "validation_split", "epochs", "batch_size"):
        if reserved in fit_kwargs:
            raise InputError(f"cross_validate sets {reserved!r} itself; remove it from fit_kwargs")
    fit_kwargs.setdefault("verbose", 0)
    return fit_kwargs
