"""The solvers of the MLP estimators, on portnet's training core.

``sgd`` and ``adam`` run scikit-learn's epoch loop around
:meth:`portnet.Trainer.run_epoch`: its shuffling (the same draws from the same
``random_state``), its batches, its learning-rate schedules and its stopping
rules on the training loss or the validation score. Per epoch the host makes two
transfers: the shuffled order goes to the device, and the epoch's loss (with the
validation sums) comes back. ``lbfgs`` hands the full-batch loss and gradient to
:func:`portnet.training.lbfgs.minimize_lbfgs`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import shuffle

from .._array import tree_map
from ..errors import ConfigError, InputError
from ..layers.base import Dropout, RandomStream
from ..training.budget import training_batch_size
from ..training.core import copy_tree
from ..training.lbfgs import minimize_lbfgs
from ..training.rows import HostRows
from ._data import TrainingData
from ._network import solver_optimizer
from ._scoring import ValidationScore

#: scikit-learn's adaptive schedule stops once the rate is this small.
MIN_ADAPTIVE_RATE = 1e-6


def fit_stochastic(est: Any, data: TrainingData, incremental: bool, rng: Any) -> None:
    """Train ``est.model_`` with ``sgd`` or ``adam`` for up to ``max_iter`` epochs."""
    model = est.model_
    backend, trainer = model.backend, model.trainer
    if not incremental or getattr(est, "_learning_rate", None) is None:
        est._learning_rate = float(est.learning_rate_init)  # a fresh optimizer
        trainer.optimizer = solver_optimizer(est)
        state = model.state
        model.state = trainer.init_state(state.params, seed=state.seed, epoch=state.epoch)
    if est.early_stopping and incremental:
        raise ConfigError("partial_fit does not support early_stopping=True")
    train, scorer = data, None
    if est.early_stopping:
        train, held_out = hold_out(est, data, rng, backend)
        scorer = ValidationScore(model, held_out, est.out_activation_)
    n = train.n
    batch_size = _batch_size(est.batch_size, n)
    random = None
    if any(isinstance(layer, Dropout) for layer in trainer.layers):
        random = RandomStream(backend, int(rng.randint(np.iinfo(np.int32).max)))
    order = np.arange(n)
    est.n_iter_ = 0
    try:
        for _ in range(est.max_iter):
            if est.shuffle:
                order = shuffle(order, random_state=rng)
            X = train.X.in_order(order) if isinstance(train.X, HostRows) else train.X
            model.state, loss_sum, _ = trainer.run_epoch(
                model.state,
                X,
                train.y,
                batch_size=batch_size,
                order=backend.asarray(order.astype(np.int64)),
                random=random,
                lr=est._learning_rate,
                sample_weight=train.sample_weight,
            )
            sums = [loss_sum] + ([] if scorer is None else scorer.sums(model.state.params))
            values = backend.to_numpy(backend.xp.stack(sums)).astype(np.float64)  # one read
            if _end_of_epoch(est, values, scorer, n, incremental):
                break
    except KeyboardInterrupt:
        warnings.warn("Training interrupted by user.", stacklevel=4)
    if est.early_stopping:
        model.state = model.state.replace(params=copy_tree(est._best_params))


def _end_of_epoch(est: Any, values: np.ndarray, scorer: Any, n: int, incremental: bool) -> bool:
    """scikit-learn's bookkeeping after an epoch; ``True`` when training stops."""
    est.n_iter_ += 1
    est.loss_ = float(values[0]) / n
    est.t_ += n
    est.loss_curve_.append(est.loss_)
    if est.verbose:
        print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
    _count_stalled_epochs(est, None if scorer is None else scorer.score(values[1:]))
    if est.solver == "sgd" and est.learning_rate == "invscaling":
        est._learning_rate = est.learning_rate_init / (est.t_ + 1) ** est.power_t
    if est._stalled_epochs > est.n_iter_no_change:
        watched = "Validation score" if scorer is not None else "Training loss"
        message = (
            f"{watched} did not improve more than tol={est.tol:f} for "
            f"{est.n_iter_no_change} consecutive epochs."
        )
        adaptive = est.solver == "sgd" and est.learning_rate == "adaptive"
        if not adaptive or est._learning_rate <= MIN_ADAPTIVE_RATE:
            if est.verbose:
                print(message + (" Learning rate too small." if adaptive else "") + " Stopping.")
            return True
        est._learning_rate /= 5.0
        est._stalled_epochs = 0
        if est.verbose:
            print(f"{message} Setting learning rate to {est._learning_rate:f}")
    if incremental:
        return True
    if est.n_iter_ == est.max_iter:
        warnings.warn(
            f"Stochastic Optimizer: Maximum iterations ({est.max_iter}) reached and the "
            "optimization hasn't converged yet.",
            ConvergenceWarning,
            stacklevel=5,  # the user's fit or partial_fit call
        )
    return False


def _count_stalled_epochs(est: Any, score: float | None) -> None:
    """Epochs without an improvement of more than ``tol``: in the validation score
    with early stopping (keeping the best weights), else in the training loss."""
    if score is None:
        last = est.loss_curve_[-1]
        est._stalled_epochs = est._stalled_epochs + 1 if last > est.best_loss_ - est.tol else 0
        est.best_loss_ = min(est.best_loss_, last)
        return
    est.validation_scores_.append(score)
    if est.verbose:
        print(f"Validation score: {score:f}")
    stalled = score < est.best_validation_score_ + est.tol
    est._stalled_epochs = est._stalled_epochs + 1 if stalled else 0
    if score > est.best_validation_score_:
        est.best_validation_score_ = score
        est._best_params = copy_tree(est.model_.state.params)


def hold_out(est: Any, data: TrainingData, rng: Any, backend: Any):
    """scikit-learn's early-stopping split: ``validation_fraction`` of the samples at
    random (stratified for single-output classification), the same draws from ``rng``."""
    stratify = data.stratify if data.stratify is not None and est.n_outputs_ == 1 else None
    train, validation = train_test_split(
        np.arange(data.n),
        random_state=rng,
        test_size=est.validation_fraction,
        stratify=stratify,
    )
    if validation.shape[0] < 2:
        raise InputError(
            "The validation set is too small. Increase 'validation_fraction' or the size "
            "of your dataset."
        )
    return data.rows(train, backend), data.rows(validation, backend)


def _batch_size(batch_size: Any, n: int) -> int:
    if batch_size == "auto":
        return min(200, n)
    if batch_size > n:
        warnings.warn(
            "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
            stacklevel=5,
        )
    return int(np.clip(batch_size, 1, n))


def fit_lbfgs(est: Any, data: TrainingData) -> None:
    """Train ``est.model_`` with full-batch L-BFGS for up to ``max_iter`` iterations."""
    model = est.model_
    xp, trainer = model.backend.xp, model.trainer
    keys = [(i, key) for i, layer in enumerate(model.state.params) for key in layer]
    shapes = [tuple(model.state.params[i][key].shape) for i, key in keys]
    sizes = [int(np.prod(shape)) for shape in shapes]
    ends = np.cumsum(sizes).tolist()

    def unflatten(x):
        params = [{} for _ in model.state.params]
        for (i, key), shape, end, size in zip(keys, shapes, ends, sizes, strict=True):
            params[i][key] = xp.reshape(x[end - size : end], shape)
        return params

    def flatten(tree):
        return xp.concat([xp.reshape(tree[i][key], (-1,)) for i, key in keys])

    chunk = training_batch_size(model, tuple(data.X.shape[1:]))
    total = data.n if data.sample_weight is None else xp.sum(data.sample_weight)
    ctx = trainer.training_context(xp, None)

    def fun_and_grad(x):
        params = unflatten(x)
        value, grads = 0.0, None
        for X, y, w in data.chunks(chunk):
            share = X.shape[0] / data.n if w is None else xp.sum(w) / total
            loss, _, g, _ = trainer.loss_and_grads(
                params, X, y, ctx, grad_scale=share, sample_weight=w, regularize=False
            )
            value = value + loss * share
            grads = g if grads is None else tree_map(lambda a, b: a + b, grads, g)
        if trainer.regularizers:
            value = value + trainer.penalty(xp, params, total)
            grads = trainer.add_penalty_grads(xp, params, grads, 1.0, total)
        return value, flatten(grads)

    def report(iteration: int, loss: float) -> None:
        if est.verbose:
            print(f"Iteration {iteration}, loss = {loss:.8f}")

    result = minimize_lbfgs(
        fun_and_grad,
        flatten(model.state.params),
        max_iter=est.max_iter,
        max_fun=est.max_fun,
        gtol=est.tol,
        callback=report,
    )
    model.state = model.state.replace(params=unflatten(result.x))
    est.n_iter_ = min(result.n_iter, est.max_iter)
    est.loss_ = result.fun
    est.loss_curve_ = result.history
    if result.status != 0:
        warnings.warn(
            f"lbfgs failed to converge after {est.n_iter_} iteration(s) (status="
            f"{result.status}): {result.message}. Increase max_iter or max_fun, or scale "
            "the data (e.g. with StandardScaler).",
            ConvergenceWarning,
            stacklevel=4,  # the user's fit call
        )
