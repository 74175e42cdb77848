"""The functional training core: a training state and pure steps over it.

:class:`TrainState` is everything that changes while training: the parameters,
the optimizer's state, the number of epochs done and the seed that, with that
number, fixes the next epoch's shuffling and dropout. :class:`Trainer` holds what
does not change (network, loss, optimizer, regularizers) and maps states to
states::

    state = trainer.init_state(params, seed=0)
    state, (loss, correct) = trainer.train_step(state, xb, yb, ctx=ctx)
    state, loss_sum, correct_sum = trainer.train_epoch(state, X, y, batch_size=128,
                                                        backend=backend)

:class:`portnet.Model` is a façade over one state; :func:`portnet.training.train.fit_loop`
is a loop over :meth:`Trainer.train_epoch`. :func:`run_batches` is the one
minibatch loop: eager epochs, the compiled path and ``lr_find`` pass it their step.
Nothing here reads the host: per epoch the host makes exactly two transfers (the
shuffled index permutation goes to the device, and the caller reads the epoch's
stacked sums once), so on a GPU the step never waits for the host.

On NumPy, CuPy and torch the step updates parameters and optimizer buffers in
place (see :class:`~portnet.backends.ops.Ops`): the state passed in is *donated*, as with
``jax.jit(..., donate_argnums=...)``, and must not be used again. Elsewhere the
step is pure and the state passed in is left as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._array import Tree, tree_map, xp_of
from ..backends.ops import ops_for
from ..layers.base import Context, Layer, RandomStream
from .losses import Loss
from .optim import Optimizer
from .regularizers import Regularizer
from .rows import HostRows
from .shards import ShardPlan, plan_for


@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything training changes, as one immutable record.

    Attributes
    ----------
    params : list of dict
        The trainable network's parameters (one dict per layer), with
        non-trainable state such as batch-norm running statistics.
    opt_state : dict
        The optimizer's state: step count ``"t"`` and per-parameter ``"slots"``.
    epoch : int
        Epochs completed; the schedule's rate for the next epoch is ``lr_at(epoch)``.
    seed : int
        With ``epoch``, fixes the next epoch's shuffling and dropout
        (:func:`epoch_seeds`), so an epoch run again from a saved state draws
        the same batches and masks.
    """

    params: Tree
    opt_state: dict[str, Any]
    epoch: int = 0
    seed: int = 0

    def replace(self, **changes: Any) -> TrainState:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)


def epoch_seeds(seed: int, epoch: int) -> tuple[int, int]:
    """The shuffling seed and the dropout seed of epoch ``epoch`` (from 0) of a run.

    Derived from ``(seed, epoch)`` alone, so resuming at any epoch boundary
    continues with exactly the randomness an uninterrupted run would use.
    """
    shuffle_seed, dropout_seed = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2)
    return int(shuffle_seed), int(dropout_seed)


def epoch_order(state: TrainState, n: int, backend: Any, shuffle: bool = True) -> tuple[Any, int]:
    """The next epoch's sample order on the device (one small upload) and dropout seed."""
    shuffle_seed, dropout_seed = epoch_seeds(state.seed, state.epoch)
    order = np.random.default_rng(shuffle_seed).permutation(n) if shuffle else np.arange(n)
    return backend.asarray(order.astype(np.int64)), dropout_seed


def apply_state_updates(params: Tree, updates: Sequence[dict[str, Any]]) -> Tree:
    """Store the new values of non-trainable state (one dict per layer, most empty)."""
    if not any(updates):
        return params
    return [{**p, **new} if new else p for p, new in zip(params, updates, strict=True)]


def copy_tree(params: Tree) -> Tree:
    """A device-side copy of every parameter (for snapshots; no host transfer)."""
    return tree_map(lambda p: xp_of(p).asarray(p, copy=True), params)


class Batch:
    """Minibatch ``number`` of an epoch: rows ``order[start:stop]`` of its data.

    :attr:`idx` is the rows' index on the device; :meth:`arrays` gathers them
    (a jitted step that gathers inside its program reads only :attr:`idx`).
    """

    __slots__ = ("number", "start", "stop", "idx", "_data")

    def __init__(self, number: int, start: int, stop: int, idx: Any, data: tuple) -> None:
        self.number, self.start, self.stop, self.idx, self._data = number, start, stop, idx, data

    @property
    def size(self) -> int:
        return self.stop - self.start

    def arrays(self) -> tuple[Any, Any, Any]:
        """``(xb, yb, sample_weight)`` on the device; the weights ``None`` without any."""
        X, y, sample_weight = self._data
        xp = xp_of(y)  # not X's: X may be HostRows
        if isinstance(X, HostRows):  # made dense and uploaded here, in X's own order
            xb = X.batch(self.start, self.stop)
        else:
            xb = xp.take(X, self.idx, axis=0)
        wb = None if sample_weight is None else xp.take(sample_weight, self.idx, axis=0)
        return xb, xp.take(y, self.idx, axis=0), wb


def run_batches(
    step: Callable[[Batch], tuple[Any, Any]],
    X: Any,
    y: Any,
    order: Any,
    batch_size: int,
    *,
    sample_weight: Any = None,
    on_batch_end: Callable[[int, int], None] | None = None,
) -> tuple[Any, Any]:
    """The minibatch loop: ``step(batch) -> (loss, correct)`` over ``order`` in batches.

    Eager training, the compiled path and :func:`~portnet.training.lr_range.lr_find` each
    supply their own step. Returns the summed (loss x batch size) and correct
    count as 0-d device arrays: nothing is read on the host.
    """
    xp = xp_of(y)
    loss_sum = xp.zeros((), dtype=X.dtype, device=X.device)
    correct_sum = xp.zeros((), dtype=X.dtype, device=X.device)
    n = order.shape[0]
    n_batches = -(-n // batch_size)
    data = (X, y, sample_weight)
    for b in range(n_batches):
        # Slice stops are clamped: the standard leaves out-of-bounds stops unspecified.
        start, stop = b * batch_size, min((b + 1) * batch_size, n)
        loss, correct = step(Batch(b, start, stop, order[start:stop], data))
        loss_sum = loss_sum + loss * float(stop - start)
        correct_sum = correct_sum + correct
        if on_batch_end is not None:
            on_batch_end(b, n_batches)
    return loss_sum, correct_sum


@dataclasses.dataclass
class Trainer:
    """What a training step needs besides the state and the batch.

    Parameters
    ----------
    network : Layer
        The trained network, one layer per layer of the model's: an output
        activation the loss fuses is an :class:`~portnet.Identity` here (the loss
        applies it).
    loss : Loss
    optimizer : Optimizer
    regularizers : sequence of Regularizer
        Penalties on the layers' ``weight_names``.
    test_time_flip : bool
        Inference averages the predictions for each input and for its flipped image
        (the network's RandomFlip layers flip every image in a second pass).
    test_time_shift : int
        With ``s > 0``, inference also averages over each image moved by ``s`` pixels
        up, down, left and right (the network's RandomShift layers move them): five
        positions, each flipped too with :attr:`test_time_flip`.
    loss_includes_penalty : bool
        Report each step's loss with the penalties added, as scikit-learn's ``loss_``
        does; by default the reported loss is the data's alone.
    """

    network: Layer
    loss: Loss
    optimizer: Optimizer
    regularizers: Sequence[Regularizer] = ()
    test_time_flip: bool = False
    test_time_shift: int = 0
    loss_includes_penalty: bool = False

    def __post_init__(self) -> None:
        self.layers = list(getattr(self.network, "layers", [self.network]))

    # -- state ------------------------------------------------------------------
    def init_state(self, params: Tree, seed: int = 0, epoch: int = 0) -> TrainState:
        """A fresh state for ``params``: zeroed optimizer buffers, ``epoch`` epochs done."""
        opt_state = self.optimizer.init(
            params,
            [layer.weight_names for layer in self.layers],
            [layer.state_names for layer in self.layers],
        )
        return TrainState(params=list(params), opt_state=opt_state, epoch=epoch, seed=seed)

    def training_context(self, xp: Any, random: RandomStream | None) -> Context:
        """The context every training step runs in."""
        # The data were validated and placed once by fit: no per-step device check.
        # Layers may update their fresh arrays in place where the optimizer does.
        return Context(
            xp=xp,
            training=True,
            random=random,
            need_input_grad=False,
            check_inputs=False,
            ops=self.optimizer.ops_for(xp),
        )

    # -- one step ---------------------------------------------------------------
    def loss_and_grads(
        self,
        params: Tree,
        xb: Any,
        yb: Any,
        ctx: Context,
        grad_scale: Any = 1.0,
        sample_weight: Any = None,
        *,
        regularize: bool = True,
        weight_sum: Any = None,
        shards: ShardPlan | None = None,
    ) -> tuple[Any, Any, Tree, list[dict[str, Any]]]:
        """Forward, loss, backprop and penalty gradients for one batch.

        ``sample_weight``, optional, weighs the batch's samples (see
        :class:`~portnet.training.losses.Loss`). ``regularize=False`` leaves the penalties out;
        per-sample penalties are divided by ``weight_sum`` (by default the batch's
        total sample weight: its size without ``sample_weight``). A full-batch objective summed over
        chunks regularizes once, with the whole data set's weight. ``shards`` (from
        :func:`~portnet.training.shards.plan_for`) runs the batch's row shards in
        parallel threads, without sample weights.

        Returns
        -------
        loss, correct : 0-d device arrays
            The batch's mean loss (plus penalties with :attr:`loss_includes_penalty`)
            and correct-prediction count.
        grads : list of dict
            Gradients of the mean loss plus penalties, times ``grad_scale``.
        state_updates : list of dict
            New values of non-trainable state, per layer (see
            :meth:`~portnet.Layer.forward_with_state`).
        """
        xp = ctx.xp
        if shards is not None and sample_weight is None and shards.count(xb.shape[0]) > 1:
            loss, correct, grads, state_updates = shards.loss_and_grads(
                self, params, xb, yb, ctx, grad_scale
            )
        else:
            loss, correct, grads, state_updates = self.forward_backward(
                params, xb, yb, ctx, grad_scale, sample_weight
            )
        if regularize and self.regularizers:
            if weight_sum is None:
                weight_sum = xb.shape[0] if sample_weight is None else xp.sum(sample_weight)
            if self.loss_includes_penalty:  # before the update: the weights this loss saw
                loss = loss + self.penalty(xp, params, weight_sum)
            grads = self.add_penalty_grads(
                xp, params, grads, grad_scale, weight_sum, inplace=ctx.ops.inplace and ctx.training
            )
        return loss, correct, grads, state_updates

    def forward_backward(
        self,
        params: Tree,
        xb: Any,
        yb: Any,
        ctx: Context,
        grad_scale: Any = 1.0,
        sample_weight: Any = None,
    ) -> tuple[Any, Any, Tree, list[dict[str, Any]]]:
        """Forward, loss and backprop of ``xb``, without penalties: the mean loss and
        correct count (0-d), gradients times ``grad_scale`` and state updates (a sharded
        step runs it on each shard)."""
        outputs, backprop, state_updates = self.network.forward_with_state(params, xb, ctx)
        loss, d_outputs = self.loss(outputs, yb, grad_scale=grad_scale, sample_weight=sample_weight)
        correct = self.loss.count_correct(ctx.xp, outputs, yb)
        _, grads = backprop(d_outputs)
        return loss, correct, grads, state_updates

    def train_step(
        self,
        state: TrainState,
        xb: Any,
        yb: Any,
        *,
        ctx: Context,
        lr: Any = None,
        sample_weight: Any = None,
        shards: ShardPlan | None = None,
    ) -> tuple[TrainState, tuple[Any, Any]]:
        """One minibatch step: ``(state, (loss, correct))``; no host synchronisation.

        ``lr`` defaults to the schedule's rate for ``state.epoch``; ``sample_weight``
        weighs the batch's samples (none by default). The loss returned is the weighted
        mean when they are given. ``shards``: see :meth:`loss_and_grads`.
        """
        lr = self.optimizer.lr_at(state.epoch) if lr is None else lr
        # Backprop is linear in d_outputs: scaling the small (batch x classes) output
        # gradient by lr scales every parameter gradient, which saves SGD and classic
        # momentum one pass over each parameter array. The loss folds the factor into
        # its own 1/N, so the scaling costs no extra kernel either.
        scale = self.optimizer.gradient_scale(lr)
        loss, correct, grads, updates = self.loss_and_grads(
            state.params, xb, yb, ctx, 1.0 if scale is None else scale, sample_weight, shards=shards
        )
        params, opt_state = self.optimizer.update(
            state.params, grads, state.opt_state, lr, prescaled=scale is not None
        )
        params = apply_state_updates(params, updates)
        return state.replace(params=params, opt_state=opt_state), (loss, correct)

    def add_penalty_grads(
        self,
        xp: Any,
        params: Tree,
        grads: Tree,
        scale: Any = 1.0,
        weight_sum: Any = 1,
        inplace: bool = False,
    ) -> Tree:
        """``grads`` plus ``scale`` times the regularizers' gradients, on the weights;
        per-sample regularizers' divided by ``weight_sum`` first. ``inplace``: add
        into the gradient arrays, which the caller owns (a step's fresh gradients)."""
        ops = ops_for(xp).with_inplace(inplace)
        for layer, p, g in zip(self.layers, params, grads, strict=True):
            for key in layer.weight_names:
                for reg in self.regularizers:
                    factor = scale / weight_sum if reg.per_sample else scale
                    blocks = ops.blocks(p[key], g[key])
                    if blocks is None:
                        g[key] = ops.add(g[key], reg.gradient(xp, p[key], factor))
                        continue
                    flat_p, flat_g = xp.reshape(p[key], (-1,)), xp.reshape(g[key], (-1,))
                    for part in blocks:  # in place, block by block (Ops.blocks)
                        ops.add(flat_g[part], reg.gradient(xp, flat_p[part], factor))
        return grads

    def penalty(self, xp: Any, params: Tree, weight_sum: Any = 1) -> Any:
        """Total regularization penalty (0-d) of the weights, per-sample regularizers'
        divided by ``weight_sum``; ``None`` without regularizers."""
        total = None
        for layer, p in zip(self.layers, params, strict=True):
            for key in layer.weight_names:
                for reg in self.regularizers:
                    value = reg.value(xp, p[key])
                    if reg.per_sample:
                        value = value / weight_sum
                    total = value if total is None else total + value
        return total

    # -- one epoch --------------------------------------------------------------
    def run_epoch(
        self,
        state: TrainState,
        X: Any,
        y: Any,
        *,
        batch_size: int,
        order: Any,
        random: RandomStream | None,
        lr: float | None = None,
        on_batch_end: Callable[[int, int], None] | None = None,
        sample_weight: Any = None,
    ) -> tuple[TrainState, Any, Any]:
        """Train one epoch over ``X[order]`` in minibatches (:func:`run_batches`).

        ``X`` may be :class:`~portnet.training.rows.HostRows` bound to the same order (host
        rows uploaded batch by batch). ``sample_weight``, optional, is ``(N,)`` on
        the device. Returns the state (``epoch`` advanced by one), the summed
        (loss x batch size) and the summed correct count, as 0-d device arrays.
        """
        lr = self.optimizer.lr_at(state.epoch) if lr is None else lr
        ctx = self.training_context(xp_of(y), random)  # not X's: X may be HostRows
        shards = plan_for(self, ctx.ops, sample_weight)

        def step(batch: Batch) -> tuple[Any, Any]:
            nonlocal state
            xb, yb, wb = batch.arrays()
            state, out = self.train_step(
                state, xb, yb, ctx=ctx, lr=lr, sample_weight=wb, shards=shards
            )
            return out

        with contextlib.nullcontext() if shards is None else shards.blas_pinned():
            loss_sum, correct_sum = run_batches(
                step,
                X,
                y,
                order,
                batch_size,
                sample_weight=sample_weight,
                on_batch_end=on_batch_end,
            )
        return state.replace(epoch=state.epoch + 1), loss_sum, correct_sum

    def train_epoch(
        self,
        state: TrainState,
        X: Any,
        y: Any,
        *,
        batch_size: int,
        backend: Any,
        shuffle: bool = True,
        on_batch_end: Callable[[int, int], None] | None = None,
        sample_weight: Any = None,
    ) -> tuple[TrainState, Any, Any]:
        """:meth:`run_epoch` with the epoch's own shuffling and dropout (:func:`epoch_seeds`).

        The permutation is drawn on the host and sent to the device in one small
        transfer; batches are gathered on the device.
        """
        order, dropout_seed = epoch_order(state, X.shape[0], backend, shuffle)
        return self.run_epoch(
            state,
            X,
            y,
            batch_size=batch_size,
            order=order,
            random=RandomStream(backend, dropout_seed),
            on_batch_end=on_batch_end,
            sample_weight=sample_weight,
        )

    def inference_outputs(self, params: Tree, xb: Any, xp: Any = None) -> Any:
        """The network's outputs for one batch in inference mode (logits, before a fused
        activation). With :attr:`test_time_flip` or :attr:`test_time_shift`, outputs
        whose predictions average those of the :meth:`test_time_views`
        (:meth:`Loss.average_outputs`).

        ``xp`` defaults to the batch's namespace (the ONNX export passes ndonnx).
        """
        xp = xp_of(xb) if xp is None else xp
        shards = plan_for(self, ops_for(xp))
        if shards is not None:  # rows in parallel where a training step would be sharded
            return shards.map_rows(lambda rows: self._inference_outputs(params, rows, xp), xb)
        return self._inference_outputs(params, xb, xp)

    def test_time_views(self) -> list[tuple[bool, tuple[int, int]]]:
        """The inference passes whose predictions are averaged, as ``(flip, (rows,
        columns))``: the images as they are first, then their shifts, then the same
        flipped (:attr:`test_time_flip`, :attr:`test_time_shift`)."""
        s = self.test_time_shift
        shifts = [(0, 0)] + ([(s, 0), (-s, 0), (0, s), (0, -s)] if s else [])
        flips = (False, True) if self.test_time_flip else (False,)
        return [(flip, shift) for flip in flips for shift in shifts]

    def epoch_validator(self) -> Trainer:
        """The trainer that scores each epoch's validation in ``fit``: this one, or,
        with :attr:`test_time_shift`, this one without the shifts. Five times the
        inference passes would add about a third to a small CNN's epoch, for a score
        that only tracks progress; predict and evaluate use them. Made once, so that a
        compiled evaluation of it is reused."""
        if not self.test_time_shift:
            return self
        if getattr(self, "_epoch_validator", None) is None:
            self._epoch_validator = dataclasses.replace(self, test_time_shift=0)
        return self._epoch_validator

    def _inference_outputs(self, params: Tree, xb: Any, xp: Any) -> Any:
        ctx = Context(xp=xp, training=False, need_input_grad=False)
        views = []
        for flip, shift in self.test_time_views():
            view_ctx = dataclasses.replace(ctx, test_time_flip=flip, test_time_shift=shift)
            # [0]: the backprop closure, which holds every layer's input, is dropped at
            # once, so the next pass does not run beside this one's activations.
            views.append(self.network.forward(params, xb, view_ctx)[0])
        return views[0] if len(views) == 1 else self.loss.average_outputs(xp, views)

    def evaluate_batch(self, params: Tree, xb: Any, yb: Any) -> tuple[Any, Any]:
        """One batch in inference mode: its summed loss and correct count (0-d arrays)."""
        xp = xp_of(xb)
        outputs = self.inference_outputs(params, xb, xp)
        loss, _ = self.loss(outputs, yb)
        return loss * float(xb.shape[0]), self.loss.count_correct(xp, outputs, yb)

    def evaluate_sums(
        self,
        params: Tree,
        X: Any,
        y: Any,
        batch_size: int = 2048,
        evaluate_batch: Callable[[Tree, Any, Any], tuple[Any, Any]] | None = None,
    ) -> tuple[Any, Any]:
        """Summed loss and correct count over a dataset, as 0-d device arrays.

        ``evaluate_batch`` replaces :meth:`evaluate_batch` (the compiled path
        passes its jitted version).
        """
        evaluate_batch = self.evaluate_batch if evaluate_batch is None else evaluate_batch
        xp = xp_of(X)
        loss_sum = xp.zeros((), dtype=X.dtype, device=X.device)
        correct_sum = xp.zeros((), dtype=X.dtype, device=X.device)
        n = X.shape[0]
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            loss, correct = evaluate_batch(params, X[start:stop, ...], y[start:stop, ...])
            loss_sum = loss_sum + loss
            correct_sum = correct_sum + correct
        return loss_sum, correct_sum

    def outputs(self, params: Tree, X: Any, batch_size: int = 4096) -> Any:
        """Network outputs (logits, before a fused activation), in inference mode."""
        xp = xp_of(X)
        n = X.shape[0]
        chunks = [
            self.inference_outputs(params, X[i : min(i + batch_size, n), ...], xp)
            for i in range(0, n, batch_size)
        ]
        return chunks[0] if len(chunks) == 1 else xp.concat(chunks, axis=0)
