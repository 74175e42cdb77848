"""The epoch loop behind :meth:`portnet.Model.fit`: a loop over :meth:`Trainer.train_epoch`.

It adds what a user expects around the functional core (:mod:`portnet.core`):
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

from .budget import inference_batch_size
from .callbacks import HISTORY_KEYS, Callback, History, ProgressLogger
from .checkpoint import FitProgress, save_checkpoint
from .core import Trainer, TrainState, copy_tree
from .errors import DivergenceWarning
from .io import remove_stale_temporaries

__all__ = ["Callback", "FitProgress", "History", "ProgressLogger", "Trainer", "fit_loop"]


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
    weights=None,
) -> History:
    """Run the epochs of :meth:`Model.fit` on data already validated and on the device.

    ``model`` is used through its public attributes only: ``backend``,
    ``trainer``, ``state`` (read and replaced) and ``stop_training``. With
    ``progress`` (from a checkpoint) the call continues where that one stopped.
    ``weights`` are the training samples' weights on the device (or ``None``).
    """
    backend, trainer = model.backend, model.trainer
    xp = backend.xp
    if checkpoint is not None:
        remove_stale_temporaries(checkpoint)  # left by a run killed mid-write
    n = X.shape[0]
    state: TrainState = model.state
    train_epoch, evaluate_sums = trainer.train_epoch, trainer.evaluate_sums
    if compile:
        from .compiled import check_compilable, compiled_step, train_epoch_compiled

        check_compilable(backend)
        compiled = compiled_step(trainer, backend, state.opt_state)

        def train_epoch(state, X, y, **kwargs):
            return train_epoch_compiled(trainer, compiled, state, X, y, **kwargs)

        evaluate_sums = compiled.evaluate_sums

    if validation is not None:  # within the model's memory budget, like evaluate()
        eval_batch = inference_batch_size(model, validation[0].shape[1:])
    if progress is None:
        progress = FitProgress(epochs=epochs, start_epoch=state.epoch)
    if progress.best_params is None:
        progress.best_params = copy_tree(state.params)
    history = progress.history
    monitor = "val_loss" if validation is not None else "train_loss"
    model.stop_training = False
    for cb in callbacks:
        cb.on_train_begin(model)
    restored = False
    for epoch in range(progress.epochs_done, progress.epochs):
        start = time.perf_counter()
        lr = trainer.optimizer.lr_at(state.epoch)
        for cb in callbacks:
            cb.on_epoch_begin(model, epoch)
        state, loss_sum, correct_sum = train_epoch(
            state,
            X,
            y,
            batch_size=batch_size,
            backend=backend,
            shuffle=shuffle,
            on_batch_end=_batch_hook(callbacks, model),
            weights=weights,
        )
        sums = [loss_sum, correct_sum]
        if validation is not None:
            sums += list(evaluate_sums(state.params, *validation, batch_size=eval_batch))
        # The one device->host read of the epoch.
        values = backend.to_numpy(xp.stack(sums)).astype(np.float64)
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
        for key in HISTORY_KEYS:
            history.history[key].append(float(logs[key]))
        if not (math.isfinite(logs["train_loss"]) and math.isfinite(logs[monitor])):
            history.stop_reason = "non_finite_loss"
            warnings.warn(
                f"the loss became {logs['train_loss']} at epoch {epoch + 1}: training "
                f"diverged (learning rate {lr:g} too high?). Stopped; keeping the weights of "
                f"epoch {progress.best_epoch} (the best seen; 0 means the initial weights).",
                DivergenceWarning,
                stacklevel=3,
            )
            restored = True
            break
        if logs[monitor] < progress.best_value:
            progress.best_value, progress.best_epoch = logs[monitor], epoch + 1
            progress.bad_epochs = 0
            progress.best_params = copy_tree(state.params)
        else:
            progress.bad_epochs += 1
        model.state = state  # callbacks see this epoch's weights
        if checkpoint is not None:
            save_checkpoint(model, checkpoint, progress)
        for cb in callbacks:
            cb.on_epoch_end(model, epoch, logs)
        if patience is not None and progress.bad_epochs >= patience:
            history.stop_reason = "early_stopping"
            restored = restore_best
            break
        if model.stop_training:
            history.stop_reason = "callback"
            break
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
