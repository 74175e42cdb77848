"""The training loop: minibatches on the device, no host sync inside a step.

Per epoch the host makes exactly two transfers: the shuffled index permutation
goes to the device (one small copy), and the epoch's summed losses and correct
counts come back as one stacked array. Everything in between is queued device
work, so on a GPU the step never waits for the host.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._array import Tree, tree_map
from .layers import Context, Layer, RandomStream
from .losses import Loss, SigmoidBinaryCrossEntropy, SoftmaxCrossEntropy
from .optim import Optimizer
from .regularizers import Regularizer
from .sync_free import scalar_like

HISTORY_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "seconds")


@dataclasses.dataclass
class History:
    """Per-epoch record of a :meth:`Model.fit` run.

    Attributes
    ----------
    history : dict of lists
        ``train_loss``, ``val_loss``, ``train_accuracy``, ``val_accuracy``, ``lr``
        and ``seconds``, one entry per epoch (NaN where there is no validation data).
    best_epoch : int
        Epoch (from 1) whose weights the model holds at the end when the best
        weights were restored, else the epoch with the best monitored value.
    stop_reason : str
        ``"completed"``, ``"early_stopping"``, ``"non_finite_loss"`` or ``"callback"``.
    """

    history: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: {key: [] for key in HISTORY_KEYS}
    )
    best_epoch: int = 0
    stop_reason: str = "completed"
    restored_best: bool = False

    @property
    def epochs_run(self) -> int:
        return len(self.history["train_loss"])

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.history,
            "best_epoch": self.best_epoch,
            "stop_reason": self.stop_reason,
            "epochs_run": self.epochs_run,
        }


class Callback:
    """Hooks called by :meth:`Model.fit`. Set ``model.stop_training = True`` to stop.

    Batch hooks receive no device values, so they cost no synchronisation.
    """

    def on_train_begin(self, model) -> None: ...
    def on_epoch_begin(self, model, epoch: int) -> None: ...
    def on_batch_end(self, model, batch: int, n_batches: int) -> None: ...
    def on_epoch_end(self, model, epoch: int, logs: dict[str, float]) -> None: ...
    def on_train_end(self, model, history: History) -> None: ...


class ProgressLogger(Callback):
    """Prints one line per epoch; in a terminal, also a progress bar during the epoch."""

    def __init__(self, epochs: int, stream=None, bar: bool | None = None, width: int = 30):
        self.epochs, self.stream, self.width = epochs, stream or sys.stdout, width
        self.bar = self.stream.isatty() if bar is None else bar
        self._last_drawn = -1

    def on_epoch_begin(self, model, epoch):
        self._last_drawn = -1

    def on_batch_end(self, model, batch, n_batches):
        if not self.bar:
            return
        filled = (batch + 1) * self.width // n_batches
        if filled != self._last_drawn:
            self._last_drawn = filled
            self.stream.write(
                f"\r  [{'#' * filled}{'.' * (self.width - filled)}] {batch + 1}/{n_batches}"
            )
            self.stream.flush()

    def on_epoch_end(self, model, epoch, logs):
        if self.bar:
            self.stream.write("\r" + " " * (self.width + 30) + "\r")
        parts = [
            f"epoch {epoch + 1:>3}/{self.epochs}",
            f"loss {logs['train_loss']:.4f}",
            f"acc {logs['train_accuracy']:.4f}",
        ]
        if not math.isnan(logs["val_loss"]):
            parts += [f"val_loss {logs['val_loss']:.4f}", f"val_acc {logs['val_accuracy']:.4f}"]
        parts += [f"lr {logs['lr']:.3g}", f"{logs['seconds']:.2f}s"]
        self.stream.write("  ".join(parts) + "\n")
        self.stream.flush()


def count_correct(xp, loss: Loss, outputs, targets):
    """Number of correct predictions in a batch, as a 0-d float array (no host read)."""
    if isinstance(loss, SoftmaxCrossEntropy):
        predicted = xp.argmax(outputs, axis=-1)
        labels = xp.argmax(targets, axis=-1) if targets.ndim == 2 else targets
        labels = xp.astype(labels, predicted.dtype, copy=False)
        return xp.sum(xp.astype(predicted == labels, outputs.dtype))
    if isinstance(loss, SigmoidBinaryCrossEntropy):
        predicted = xp.reshape(outputs > 0, (-1,))
        truth = xp.reshape(targets, (-1,)) > 0.5
        return xp.sum(xp.astype(predicted == truth, outputs.dtype))
    # Regression losses have no accuracy: report NaN rather than a made-up number.
    return scalar_like(xp, float("nan"), outputs)


@dataclasses.dataclass
class Trainer:
    """The functional training core that :class:`portnet.Model` drives.

    It knows the network (without a fused output activation), the loss, the
    regularizers and the optimizer, and runs epochs on device arrays.
    """

    network: Layer
    loss: Loss
    optimizer: Optimizer
    regularizers: Sequence[Regularizer] = ()

    def __post_init__(self) -> None:
        self.layers = list(getattr(self.network, "layers", [self.network]))
        # Whether any layer keeps non-trainable state (e.g. batch-norm statistics).
        self.stateful = any(layer.state_names for layer in self.layers)

    def training_context(self, xp, random) -> Context:
        """The context every training step of :meth:`run_epoch` runs in."""
        # The data were validated and placed once by fit: no per-step device check.
        # In-place layer updates are safe where the optimizer may mutate arrays.
        return Context(
            xp=xp,
            training=True,
            random=random,
            need_input_grad=False,
            check_inputs=False,
            inplace=bool(self.optimizer.inplace),
        )

    def step(self, params: Tree, state, xb, yb, lr: float, ctx: Context):
        """One minibatch step. Returns new params, state, the batch loss and correct count."""
        xp = ctx.xp
        if self.stateful:
            ctx.state_updates = {}
        outputs, backprop = self.network.forward(params, xb, ctx)
        # Backprop is linear in d_outputs: scaling the small (batch x classes) output
        # gradient by lr scales every parameter gradient, which saves SGD and classic
        # momentum one pass over each parameter array. The loss folds the factor into
        # its own 1/N, so the scaling costs no extra kernel either.
        scale = self.optimizer.gradient_scale(lr)
        loss, d_outputs = self.loss(outputs, yb, grad_scale=1.0 if scale is None else scale)
        correct = count_correct(xp, self.loss, outputs, yb)
        _, grads = backprop(d_outputs)
        if self.regularizers:
            grads = self._add_penalty_grads(xp, params, grads, 1.0 if scale is None else scale)
        params, state = self.optimizer.update(params, grads, state, lr, prescaled=scale is not None)
        if self.stateful:
            params = apply_state_updates(params, ctx.state_updates)
        return params, state, loss, correct

    def _add_penalty_grads(self, xp, params, grads, scale: float = 1.0):
        for layer, p, g in zip(self.layers, params, grads, strict=True):
            for key in layer.weight_names:
                for reg in self.regularizers:
                    penalty_grad = reg(xp, p[key])[1]
                    g[key] = g[key] + (penalty_grad if scale == 1.0 else scale * penalty_grad)
        return grads

    def penalty(self, xp, params):
        """Total regularization penalty (0-d) of the current weights."""
        total = None
        for layer, p in zip(self.layers, params, strict=True):
            for key in layer.weight_names:
                for reg in self.regularizers:
                    value = reg(xp, p[key])[0]
                    total = value if total is None else total + value
        return total

    def run_epoch(
        self,
        params,
        state,
        X,
        y,
        *,
        batch_size: int,
        lr: float,
        order,
        random,
        callbacks: Sequence[Callback] = (),
        model=None,
    ):
        """Train one epoch over ``X[order]`` in minibatches; sums stay on the device.

        Returns params, state, summed (loss * batch size) and summed correct count.
        """
        xp = _xp(X)
        n = order.shape[0]
        ctx = self.training_context(xp, random)
        loss_sum = xp.zeros((), dtype=X.dtype, device=X.device)
        correct_sum = xp.zeros((), dtype=X.dtype, device=X.device)
        n_batches = -(-n // batch_size)
        for b in range(n_batches):
            # Slice stops are clamped: the standard leaves out-of-bounds stops unspecified.
            idx = order[b * batch_size : min((b + 1) * batch_size, n)]
            xb = xp.take(X, idx, axis=0)
            yb = xp.take(y, idx, axis=0)
            params, state, loss, correct = self.step(params, state, xb, yb, lr, ctx)
            loss_sum = loss_sum + loss * float(idx.shape[0])
            correct_sum = correct_sum + correct
            for cb in callbacks:
                cb.on_batch_end(model, b, n_batches)
        return params, state, loss_sum, correct_sum

    def evaluate_sums(self, params, X, y, batch_size: int = 2048):
        """Summed loss and correct count over a dataset, as 0-d device arrays."""
        xp = _xp(X)
        ctx = Context(xp=xp, training=False, need_input_grad=False)
        loss_sum = xp.zeros((), dtype=X.dtype, device=X.device)
        correct_sum = xp.zeros((), dtype=X.dtype, device=X.device)
        n = X.shape[0]
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            xb, yb = X[start:stop, ...], y[start:stop, ...]
            outputs, _ = self.network.forward(params, xb, ctx)
            loss, _ = self.loss(outputs, yb)
            loss_sum = loss_sum + loss * float(xb.shape[0])
            correct_sum = correct_sum + count_correct(xp, self.loss, outputs, yb)
        return loss_sum, correct_sum


def apply_state_updates(params: Tree, updates: dict | None) -> Tree:
    """Store new values of non-trainable state, keyed ``(layer_index, name)``."""
    if not updates:
        return params
    params = list(params)
    for (index, name), value in updates.items():
        params[index] = {**params[index], name: value}
    return params


def _xp(array):
    import array_api_compat

    return array_api_compat.array_namespace(array)


def copy_tree(params: Tree) -> Tree:
    """A device-side copy of every parameter (for best-weights snapshots; no host transfer)."""
    return tree_map(lambda p: _xp(p).asarray(p, copy=True), params)


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
    seed: int,
) -> History:
    """Run the epochs for :meth:`Model.fit` on data already validated and on the device."""
    backend, trainer = model.backend, model.trainer
    xp = backend.xp
    n = X.shape[0]
    host_rng = np.random.default_rng(seed)
    random = RandomStream(backend, seed + 1)
    params, state = model._trainable_params(), model._opt_state
    history = History()
    monitor = "val_loss" if validation is not None else "train_loss"
    best_value, best_params, best_epoch, bad_epochs = math.inf, copy_tree(params), 0, 0
    model.stop_training = False
    for cb in callbacks:
        cb.on_train_begin(model)
    for epoch in range(epochs):
        start = time.perf_counter()
        lr = trainer.optimizer.lr_at(model._epochs_done)
        for cb in callbacks:
            cb.on_epoch_begin(model, epoch)
        # Host permutation, one small transfer; batches are gathered on the device.
        order = host_rng.permutation(n) if shuffle else np.arange(n)
        order = backend.asarray(order.astype(np.int64))
        params, state, loss_sum, correct_sum = trainer.run_epoch(
            params,
            state,
            X,
            y,
            batch_size=batch_size,
            lr=lr,
            order=order,
            random=random,
            callbacks=callbacks,
            model=model,
        )
        sums = [loss_sum, correct_sum]
        if validation is not None:
            sums += list(trainer.evaluate_sums(params, *validation))
        # The one device->host read of the epoch.
        values = backend.to_numpy(xp.stack(sums)).astype(np.float64)
        seconds = time.perf_counter() - start
        model._epochs_done += 1
        logs = {
            "train_loss": values[0] / n,
            "train_accuracy": values[1] / n,
            "lr": lr,
            "val_loss": math.nan,
            "val_accuracy": math.nan,
            "seconds": seconds,
        }
        if validation is not None:
            n_val = validation[0].shape[0]
            logs["val_loss"], logs["val_accuracy"] = values[2] / n_val, values[3] / n_val
        for key in HISTORY_KEYS:
            history.history[key].append(float(logs[key]))
        if not (
            math.isfinite(logs["train_loss"])
            and (validation is None or math.isfinite(logs["val_loss"]))
        ):
            history.stop_reason = "non_finite_loss"
            print(
                f"portnet: the loss became {logs['train_loss']} at epoch {epoch + 1}: training "
                f"diverged (learning rate {lr:g} too high?). Stopped; keeping the weights of "
                f"epoch {best_epoch} (the best seen; 0 means the initial weights).",
                file=sys.stderr,
            )
            params = best_params
            history.restored_best = True
            break
        value = logs[monitor]
        if value < best_value:
            best_value, best_epoch, bad_epochs = value, epoch + 1, 0
            best_params = copy_tree(params)
        else:
            bad_epochs += 1
        # Callbacks see this epoch's weights on every backend (in-place ones already do).
        model._set_trainable_params(params)
        model._opt_state = state
        for cb in callbacks:
            cb.on_epoch_end(model, epoch, logs)
        if patience is not None and bad_epochs >= patience:
            history.stop_reason = "early_stopping"
            if restore_best:
                params = best_params
                history.restored_best = True
            break
        if model.stop_training:
            history.stop_reason = "callback"
            break
    history.best_epoch = best_epoch
    if history.restored_best:
        # Copy again so further training cannot mutate the snapshot in place.
        params = copy_tree(params)
    model._set_trainable_params(params)
    model._opt_state = state
    for cb in callbacks:
        cb.on_train_end(model, history)
    return history
