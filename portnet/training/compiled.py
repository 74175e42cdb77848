"""Compiled training on JAX: :meth:`Trainer.train_step` under ``jax.jit``.

``Model.fit(..., compile=True)`` runs each full batch through one jitted step, and
the validation set through one jitted evaluation step. Under ``jax.jit`` a step is
traced once into a program, so portnet's maths must be pure and sync-free: a hidden
host read (``float()``, ``bool()``, an ``if`` on a device value) is a tracing error,
which :class:`CompileError` reports with the layer that made it. Parameters and
optimizer buffers are donated to the training step, so memory is not doubled.

Randomness stays pure: the ``jax.random`` key is part of the state the compiled
step carries. It starts each epoch from the epoch's dropout seed
(:func:`portnet.training.core.epoch_seeds`, so resuming at an epoch boundary is exact), and
each step splits it: one half is the next step's key, the other feeds dropout and
RandomFlip inside the program. The masks are therefore not the eager run's (which
draws from a host-side key stream), but both are fixed by the seed.

Shapes stay static. The last, smaller training batch of an epoch runs eagerly, so
the training program compiles once. Evaluation runs full batches and, once per
fit, the smaller last batch through the same jitted function: JAX compiles each of
the two shapes once and reuses them every epoch.

Only the ``jax`` backend compiles; ``compile=True`` elsewhere is a
:class:`~portnet.errors.ConfigError`, not a silent no-op.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from typing import Any

from ..errors import ConfigError, PortnetError
from ..layers.base import RandomStream
from .core import Batch, Trainer, TrainState, epoch_order, run_batches


class CompileError(PortnetError, RuntimeError):
    """A layer, loss or optimizer cannot be traced by ``jax.jit`` (a host read inside)."""


def check_compilable(backend: Any) -> None:
    """Raise :class:`ConfigError` unless ``backend`` can compile the training step."""
    if not backend.ops.can_compile:
        raise ConfigError(
            f"compile=True compiles the training step with jax.jit, so it needs the jax "
            f"backend; this model is on {backend.name}. Use --backend jax, or drop --compile."
        )


class CompiledStep:
    """The jitted training and evaluation steps of one trainer on the jax backend.

    Call it as the training step: ``(params, slots, t, key, X, y, w, idx, lr)`` to
    ``(params, slots, t, key, loss, correct)``, where ``idx`` picks the batch from
    ``X``, ``y`` and the sample weights ``w`` (or ``None``) on the device, and
    ``key`` is the carried ``jax.random`` key.
    :meth:`evaluate_sums` is :meth:`Trainer.evaluate_sums` through the jitted
    evaluation step.
    """

    def __init__(self, trainer: Trainer, backend: Any, opt_state: dict[str, Any]):
        self.trainer, self.backend = trainer, backend
        jax = backend.jax
        self.jax = jax
        decay_mask, frozen = opt_state["decay_mask"], opt_state["frozen"]

        def step(params, slots, t, key, X, y, w, idx, lr):
            xp = backend.xp
            xb, yb = xp.take(X, idx, axis=0), xp.take(y, idx, axis=0)
            wb = None if w is None else xp.take(w, idx, axis=0)  # the batch's sample weights
            key, step_key = jax.random.split(key)
            random = RandomStream(backend, 0, generator=backend.key_stream(step_key))
            ctx = trainer.training_context(xp, random)
            opt = {"t": t, "slots": slots, "decay_mask": decay_mask, "frozen": frozen}
            state, (loss, correct) = trainer.train_step(
                TrainState(params, opt), xb, yb, ctx=ctx, lr=lr, sample_weight=wb
            )
            opt = state.opt_state
            return state.params, opt["slots"], opt["t"], key, loss, correct

        def evaluate_batch(params, xb, yb):
            return trainer.evaluate_batch(params, xb, yb)

        self.step = jax.jit(step, donate_argnums=(0, 1))
        self.evaluate_batch = jax.jit(evaluate_batch)
        #: Wall seconds of the first training call: tracing and compiling (plus one step).
        self.compile_seconds: float | None = None
        #: The same for the evaluation step, summed over the batch shapes it compiled.
        self.evaluate_compile_seconds = 0.0
        self._evaluated_shapes: set[tuple[int, ...]] = set()

    def __call__(self, params, slots, t, key, X, y, w, idx, lr):
        with self._naming_the_layer():
            if self.compile_seconds is not None:
                return self.step(params, slots, t, key, X, y, w, idx, lr)
            start = time.perf_counter()
            out = self.jax.block_until_ready(self.step(params, slots, t, key, X, y, w, idx, lr))
            self.compile_seconds = time.perf_counter() - start
            return out

    def evaluate_sums(self, params, X, y, batch_size: int = 2048):
        """Summed loss and correct count over a dataset, as 0-d device arrays."""
        with self._naming_the_layer("evaluation step"):
            return self.trainer.evaluate_sums(
                params, X, y, batch_size=batch_size, evaluate_batch=self._evaluate_batch
            )

    def _evaluate_batch(self, params, xb, yb):
        if xb.shape in self._evaluated_shapes:
            return self.evaluate_batch(params, xb, yb)
        start = time.perf_counter()
        out = self.jax.block_until_ready(self.evaluate_batch(params, xb, yb))
        self.evaluate_compile_seconds += time.perf_counter() - start
        self._evaluated_shapes.add(xb.shape)
        return out

    @contextlib.contextmanager
    def _naming_the_layer(self, step: str = "training step"):
        """Turn JAX's tracing errors into a :class:`CompileError` naming the layer."""
        errors = self.jax.errors
        tracing_errors = (
            errors.ConcretizationTypeError,
            errors.TracerBoolConversionError,
            errors.TracerIntegerConversionError,
            errors.TracerArrayConversionError,
        )
        try:
            yield
        except tracing_errors as exc:
            ours = [n for n in getattr(exc, "__notes__", []) if n.startswith("layer ")]
            where = "; ".join(ours) or "the loss, a regularizer or the optimizer"
            raise CompileError(
                f"the {step} cannot be compiled with jax.jit ({where}): "
                f"{_first_line(exc)}. "
                "It reads a device value on the host (float(), bool(), int(), .item(), an "
                "if on an array): compute with array operations instead, or train without "
                "compile=True."
            ) from None


_STEPS: dict[int, tuple[weakref.ref, CompiledStep]] = {}


def compiled_step(trainer: Trainer, backend: Any, opt_state: dict[str, Any]) -> CompiledStep:
    """The trainer's jitted step, made once: later ``fit`` calls reuse its compilation."""
    entry = _STEPS.get(id(trainer))
    if entry is None or entry[0]() is not trainer or entry[1].backend is not backend:
        for key in [k for k, (ref, _) in _STEPS.items() if ref() is None]:
            del _STEPS[key]  # trainers that are gone
        entry = (weakref.ref(trainer), CompiledStep(trainer, backend, opt_state))
        _STEPS[id(trainer)] = entry
    return entry[1]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def train_epoch_compiled(
    trainer: Trainer,
    compiled: CompiledStep,
    state: TrainState,
    X: Any,
    y: Any,
    *,
    batch_size: int,
    backend: Any,
    shuffle: bool = True,
    on_batch_end=None,
    sample_weight: Any = None,
) -> tuple[TrainState, Any, Any]:
    """:meth:`Trainer.train_epoch` with full batches through the jitted step.

    The last, smaller batch runs eagerly, so the program keeps its shapes.
    """
    jax, xp = backend.jax, backend.xp
    order, dropout_seed = epoch_order(state, X.shape[0], backend, shuffle)
    lr = trainer.optimizer.lr_at(state.epoch)
    lr_device = xp.asarray(lr, dtype=X.dtype)
    t0 = int(state.opt_state["t"])
    # What the jitted step carries from batch to batch; the key is split at every step.
    params, slots = state.params, state.opt_state["slots"]
    t, key = xp.asarray(t0, dtype=xp.int64), jax.random.key(dropout_seed)
    n_full = 0

    def carried() -> TrainState:
        opt_state = {**state.opt_state, "slots": slots, "t": t0 + n_full}
        return state.replace(params=params, opt_state=opt_state)

    def step(batch: Batch) -> tuple[Any, Any]:
        nonlocal params, slots, t, key, n_full, state
        if batch.size == batch_size:
            params, slots, t, key, loss, correct = compiled(
                params, slots, t, key, X, y, sample_weight, batch.idx, lr_device
            )
            n_full += 1
            return loss, correct
        state = carried()
        _, step_key = jax.random.split(key)
        random = RandomStream(backend, 0, generator=backend.key_stream(step_key))
        ctx = trainer.training_context(xp, random)
        xb, yb, wb = batch.arrays()
        state, out = trainer.train_step(state, xb, yb, ctx=ctx, lr=lr, sample_weight=wb)
        params, slots = state.params, state.opt_state["slots"]
        return out

    loss_sum, correct_sum = run_batches(
        step, X, y, order, batch_size, sample_weight=sample_weight, on_batch_end=on_batch_end
    )
    if X.shape[0] % batch_size == 0:  # no eager batch: the state is what the program carried
        state = carried()
    return state.replace(epoch=state.epoch + 1), loss_sum, correct_sum
