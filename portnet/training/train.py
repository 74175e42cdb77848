"""The epoch loop behind :meth:`portnet.Model.fit`: a loop over :meth:`Trainer.train_epoch`.

It adds what a user expects around the functional core (:mod:`portnet.training.core`):
validation, early stopping with the best weights restored, a stop on a
non-finite loss, callbacks, and a kill-safe checkpoint after every epoch.

Per epoch the host makes exactly two transfers: the shuffled index permutation
goes to the device, and the epoch's summed losses and correct counts come back as
one stacked array. The divergence check reads those sums, so it costs nothing.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Sequence

import numpy as np

from ..errors import DivergenceWarning
from ..io.checkpoint import FitProgress, save_checkpoint
from ..io.model_file import remove_stale_temporaries
from .budget import inference_batch_size
from .callbacks import HISTORY_KEYS, Callback, History
from .core import TrainState, copy_tree

__all__ = ["fit_loop"]


def fit_loop(
    model,
    X,
    y,
    *,
    epochs: int,
    batch_size: int,
    validation,
    patience: int | None,
    restore_best: bool = True,
    callbacks: Sequence[Callback],
    shuffle: bool,
    checkpoint: str | os.PathLike | None = None,
    progress: FitProgress | None = None,
    compile: bool = False,
    sample_weight=None,
) -> History:
    """Run the epochs of :meth:`Model.fit` on data already validated and on the device.

    ``model`` is used through its public attributes only: ``backend``,
    ``trainer``, ``state`` (read and replaced) and ``stop_training``. With
    ``progress`` (from a checkpoint) the call continues where that one stopped.
    ``sample_weight`` is the training samples' weights on the device, or ``None``.
    """
    if checkpoint is not None:
        remove_stale_temporaries(checkpoint)  # left by a run killed mid-write
    train_epoch, evaluate_sums = _epoch_functions(model, compile)
    if validation is not None:  # within the model's memory budget, like evaluate()
        eval_batch = inference_batch_size(model, validation[0].shape[1:])
    if progress is None:
        progress = FitProgress(epochs=epochs, start_epoch=model.state.epoch)
    if progress.best_params is None:
        progress.best_params = copy_tree(model.state.params)
    history = progress.history
    monitor = "val_loss" if validation is not None else "train_loss"
    on_batch_end = _batch_hook(callbacks, model)
    model.stop_training = False
    for cb in callbacks:
        cb.on_train_begin(model)
    state: TrainState = model.state
    restored = False
    for epoch in range(progress.epochs_done, progress.epochs):
        start = time.perf_counter()
        lr = model.trainer.optimizer.lr_at(state.epoch)
        for cb in callbacks:
            cb.on_epoch_begin(model, epoch)
        state, loss_sum, correct_sum = train_epoch(
            state,
            X,
            y,
            batch_size=batch_size,
            backend=model.backend,
            shuffle=shuffle,
            on_batch_end=on_batch_end,
            sample_weight=sample_weight,
        )
        sums = [loss_sum, correct_sum]
        if validation is not None:
            sums += list(evaluate_sums(state.params, *validation, batch_size=eval_batch))
        logs = _epoch_logs(model.backend, sums, X.shape[0], validation, lr, start)
        for key in HISTORY_KEYS:
            history.history[key].append(float(logs[key]))
        if not (math.isfinite(logs["train_loss"]) and math.isfinite(logs[monitor])):
            _warn_divergence(logs, epoch, progress)
            history.stop_reason, restored = "non_finite_loss", True
            break
        _track_best(progress, logs[monitor], epoch, state)
        model.state = state  # callbacks see this epoch's weights
        if checkpoint is not None:
            save_checkpoint(model, checkpoint, progress)
        for cb in callbacks:
            cb.on_epoch_end(model, epoch, logs)
        stop = _stop_reason(model, progress, patience)
        if stop is not None:
            history.stop_reason, restored = stop, stop == "early_stopping" and restore_best
            break
    return _finish(model, state, progress, restored, callbacks)


def _epoch_functions(model, compile: bool):
    """``(train_epoch, evaluate_sums)``: the trainer's, or the jitted step's with ``compile``;
    ``evaluate_sums`` is the :meth:`~Trainer.epoch_validator`'s."""
    trainer = model.trainer
    validator = trainer.epoch_validator()
    if not compile:
        return trainer.train_epoch, validator.evaluate_sums
    from .compiled import check_compilable, compiled_step, train_epoch_compiled

    check_compilable(model.backend)
    compiled = compiled_step(trainer, model.backend, model.state.opt_state)
    validation = compiled_step(validator, model.backend, model.state.opt_state)

    def train_epoch(state, X, y, **kwargs):
        return train_epoch_compiled(trainer, compiled, state, X, y, **kwargs)

    return train_epoch, validation.evaluate_sums


def _epoch_logs(backend, sums, n: int, validation, lr: float, start: float) -> dict[str, float]:
    """The epoch's means from its device sums, read in the epoch's one device->host transfer."""
    values = backend.to_numpy(backend.xp.stack(sums)).astype(np.float64)
    logs = {
        "train_loss": values[0] / n,
        "train_accuracy": values[1] / n,
        "lr": lr,
        "val_loss": math.nan,
        "val_accuracy": math.nan,
        "seconds": time.perf_counter() - start,
    }
    if validation is not None:
        n_val = validation[0].shape[0]
        logs["val_loss"], logs["val_accuracy"] = values[2] / n_val, values[3] / n_val
    return logs


def _warn_divergence(logs: dict[str, float], epoch: int, progress: FitProgress) -> None:
    warnings.warn(
        f"the loss became {logs['train_loss']} at epoch {epoch + 1}: training "
        f"diverged (learning rate {logs['lr']:g} too high?). Stopped; keeping the weights of "
        f"epoch {progress.best_epoch} (the best seen; 0 means the initial weights).",
        DivergenceWarning,
        stacklevel=5,  # the user's call of Model.fit
    )


def _track_best(progress: FitProgress, value: float, epoch: int, state: TrainState) -> None:
    """Early stopping's bookkeeping: the best epoch, its weights, the epochs since."""
    if value < progress.best_value:
        progress.best_value, progress.best_epoch = value, epoch + 1
        progress.bad_epochs = 0
        progress.best_params = copy_tree(state.params)
    else:
        progress.bad_epochs += 1


def _stop_reason(model, progress: FitProgress, patience: int | None) -> str | None:
    if patience is not None and progress.bad_epochs >= patience:
        return "early_stopping"
    if model.stop_training:
        return "callback"
    return None


def _finish(model, state: TrainState, progress: FitProgress, restored: bool, callbacks) -> History:
    """Store the final (or restored best) state and close the callbacks."""
    history = progress.history
    history.best_epoch = progress.best_epoch
    if restored:
        # A copy, so further training cannot mutate the snapshot in place.
        state = state.replace(params=copy_tree(progress.best_params))
        history.restored_best = True
    model.state = state
    for cb in callbacks:
        cb.on_train_end(model, history)
    return history


def _batch_hook(callbacks: Sequence[Callback], model):
    """``on_batch_end`` for the core, or ``None`` when no callback would notice."""
    hooked = [cb for cb in callbacks if type(cb).on_batch_end is not Callback.on_batch_end]
    if not hooked:
        return None

    def on_batch_end(batch: int, n_batches: int) -> None:
        for cb in hooked:
            cb.on_batch_end(model, batch, n_batches)

    return on_batch_end
