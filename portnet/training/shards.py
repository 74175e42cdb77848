"""Data-parallel training steps on a multi-core CPU: a batch's row shards in threads.

NumPy runs each element-wise pass on one core; only its BLAS uses more. A CNN's step
is mostly such passes (BatchNorm, pooling, the column stacks and folds), so on two
cores the second one idled for most of it. Here each shard of the batch (contiguous
rows) runs forward, loss and backprop in its own thread, which NumPy lets run in
parallel (its loops and BLAS calls release the GIL), and the shards' gradients are
added. The BLAS is held to one thread meanwhile, so that its workers, which spin
after each call, do not compete with the shards for the cores.

Measured on 2 cores (NumPy, OpenBLAS Haswell kernels), forward, loss and backprop
of one batch: the cnn workload 108 -> 71 ms at batch 128 and 455 -> 304 ms at 512;
an MLP (784-500-324-10), whose step is its matrix products, 3.6 -> 4.2 ms. So only
networks with a convolution are sharded, and only on NumPy (torch and CuPy run
their element-wise kernels on every core already).

A sharded step is the whole batch's maths; only the order of float sums differs:

* BatchNorm's statistics are the whole batch's: it adds the shards' partial sums
  through :meth:`~portnet.layers.base.Context.batch_sum` (a barrier here);
* random draws are the whole batch's: the first shard to ask draws for every row
  from the epoch's stream, and each shard takes its own rows, so dropout, flips and
  shifts, and the stream's next draws, are those of an unsharded step;
* the loss and its gradient are means over the whole batch.

Inference (evaluation, prediction) is row-wise, so its row shards just run side by
side (:meth:`ShardPlan.map_rows`).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from array_api_compat import array_namespace

from ..errors import ConfigError

#: Fewest rows per shard. Not tuned: a shard's Python work, done under the GIL, takes as
#: long whatever the shard's size, so it would weigh more in smaller shards.
MIN_SHARD_ROWS = 32


class ShardGroup:
    """The shards of one step: a barrier at which they add per-feature sums."""

    def __init__(self, n_shards: int, total_rows: int) -> None:
        self.total_rows = total_rows
        self._barrier = threading.Barrier(n_shards)
        self._slots: list[tuple[Any, ...] | None] = [None] * n_shards

    def all_sum(self, index: int, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """The sum over the shards of each of ``values`` (shard ``index``'s), once every
        shard has given its own. Every shard adds in shard order: the same bits."""
        self._slots[index] = values
        self._barrier.wait()
        totals = tuple(
            functools.reduce(operator.add, column) for column in zip(*self._slots, strict=True)
        )
        self._barrier.wait()  # no shard refills its slot before all have read
        return totals

    def abort(self) -> None:
        """Release the other shards from the barrier (one shard failed)."""
        self._barrier.abort()


@dataclasses.dataclass(frozen=True)
class BatchShard:
    """What a layer sees of a sharded batch (:attr:`~portnet.layers.base.Context.shard`)."""

    group: ShardGroup
    index: int

    @property
    def total_rows(self) -> int:
        return self.group.total_rows

    def all_sum(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        return self.group.all_sum(self.index, values)


class SharedDraws:
    """The epoch's random stream, drawn for the whole batch and shared by its shards."""

    def __init__(self, stream: Any, bounds: list[tuple[int, int]]) -> None:
        self.stream, self.bounds = stream, bounds
        self.total_rows = bounds[-1][1]
        self._draws: list[Any] = []
        self._lock = threading.Lock()

    def draw(self, k: int, shape: tuple[int, ...], dtype: Any) -> Any:
        """The step's ``k``-th draw (made by the first shard that asks for it)."""
        with self._lock:
            if k == len(self._draws):
                self._draws.append(self.stream.uniform((self.total_rows, *shape[1:]), dtype))
            return self._draws[k]

    def for_shard(self, index: int) -> _ShardStream:
        return _ShardStream(self, index)


class _ShardStream:
    """A :class:`~portnet.layers.base.RandomStream` for one shard: its rows of each draw."""

    def __init__(self, shared: SharedDraws, index: int) -> None:
        self.shared, self.index, self.calls = shared, index, 0

    def uniform(self, shape: tuple[int, ...], dtype: Any) -> Any:
        start, stop = self.shared.bounds[self.index]
        if not shape or shape[0] != stop - start:
            raise ConfigError(
                f"a sharded training step can only draw one row of random numbers per "
                f"sample, but a layer asked for shape {shape} in a shard of {stop - start} "
                "rows; train with portnet.limit_threads(1) to turn sharding off"
            )
        self.calls += 1
        return self.shared.draw(self.calls - 1, shape, dtype)[start:stop, ...]


class ShardPlan:
    """How many shards a training epoch's batches are split into, and the threads that
    run them; :func:`plan_for` decides whether an epoch is sharded at all."""

    def __init__(self, n_shards: int) -> None:
        self.n_shards = n_shards

    def count(self, rows: int) -> int:
        """Shards for a batch of ``rows`` (a small last batch gets fewer, maybe one)."""
        return max(1, min(self.n_shards, rows // MIN_SHARD_ROWS))

    @contextmanager
    def blas_pinned(self) -> Iterator[None]:
        """The BLAS on one thread (each shard's calls run on its own core)."""
        limiter = _controller().limit(limits=1, user_api="blas")
        try:
            yield
        finally:
            limiter.restore_original_limits()

    def map_rows(self, fn: Any, x: Any) -> Any:
        """``fn(x)`` for a row-wise ``fn`` (inference), on :meth:`count` row shards of
        ``x`` in parallel, with the BLAS on one thread; the outputs concatenated."""
        n = x.shape[0]
        k = self.count(n)
        if k == 1:
            return fn(x)
        rows = [x[a:b, ...] for a, b in _bounds(n, k)]
        with self.blas_pinned():
            futures = _submit(self.n_shards, [(fn, shard) for shard in rows[1:]])
            results = [_outcome(fn, rows[0])] + [_outcome(future.result) for future in futures]
        _first_failure(results)
        return array_namespace(results[0]).concat(results, axis=0)

    def loss_and_grads(
        self, trainer: Any, params: Any, xb: Any, yb: Any, ctx: Any, grad_scale: Any
    ) -> tuple[Any, Any, list[dict[str, Any]], list[dict[str, Any]]]:
        """The batch's mean loss, correct count, gradients and state updates, as
        :meth:`~portnet.training.core.Trainer.loss_and_grads` computes them without
        penalties, from :meth:`count` shards run in parallel."""
        n = xb.shape[0]
        k = self.count(n)
        bounds = _bounds(n, k)
        group = ShardGroup(k, n)
        shared = None if ctx.random is None else SharedDraws(ctx.random, bounds)

        def run(i: int) -> tuple[Any, Any, Any, Any]:
            start, stop = bounds[i]
            shard_ctx = dataclasses.replace(
                ctx,
                random=None if shared is None else shared.for_shard(i),
                shard=BatchShard(group, i),
            )
            share = (stop - start) / n
            try:
                loss, correct, grads, updates = trainer.forward_backward(
                    params, xb[start:stop, ...], yb[start:stop, ...], shard_ctx, grad_scale * share
                )
            except BaseException:
                group.abort()
                raise
            return loss * share, correct, grads, updates

        futures = _submit(self.n_shards, [(run, i) for i in range(1, k)])
        results = [_outcome(run, 0)] + [_outcome(future.result) for future in futures]
        _first_failure(results)
        ops = ctx.ops
        loss, correct, grads, updates = results[0]
        for shard_loss, shard_correct, shard_grads, _ in results[1:]:
            loss, correct = loss + shard_loss, correct + shard_correct
            for total, part in zip(grads, shard_grads, strict=True):
                for key in total:
                    total[key] = ops.add(total[key], part[key])
        return loss, correct, grads, updates  # updates: every shard's are the same


def _bounds(n: int, k: int) -> list[tuple[int, int]]:
    """``k`` contiguous row ranges of ``n`` rows, as even as can be."""
    return [(i * n // k, (i + 1) * n // k) for i in range(k)]


def _first_failure(results: list[Any]) -> None:
    """Raise the shards' failure, not the broken barrier it left the others."""
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        broken = threading.BrokenBarrierError
        raise next((f for f in failures if not isinstance(f, broken)), failures[0])


def _outcome(call: Any, *args: Any) -> Any:
    """``call(*args)``, or the exception it raised (every shard is waited for)."""
    try:
        return call(*args)
    except BaseException as exc:  # noqa: BLE001 - the caller raises it
        return exc


def plan_for(trainer: Any, ops: Any, sample_weight: Any = None) -> ShardPlan | None:
    """The shard plan of an epoch, or ``None`` to train each batch whole.

    Sharded: NumPy, a network with a :class:`~portnet.layers.conv.Conv2D`, no sample
    weights, and a BLAS allowed two threads or more (``portnet.limit_threads(1)`` or
    ``--threads 1`` turns it off); as many shards as BLAS threads and usable cores.
    """
    from ..layers.conv import Conv2D

    if not ops.single_core_passes or sample_weight is not None:
        return None
    if not any(isinstance(layer, Conv2D) for layer in trainer.layers):
        return None
    blas = [info["num_threads"] for info in _controller().select(user_api="blas").info()]
    n = min([_usable_cores(), *blas]) if blas else 1
    return ShardPlan(n) if n >= 2 else None


def _usable_cores() -> int:
    """Cores this process may run on (all of the machine's where the OS cannot say)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@functools.cache
def _controller() -> Any:
    """threadpoolctl's view of the loaded thread pools (made once: it scans the process)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


_SUBMITTING = threading.Lock()


def _submit(n_shards: int, calls: list[tuple[Any, Any]]) -> list[Any]:
    """Queue one step's shards 1 and on, together: steps trained in several threads
    at once then never hold the pool's threads with parts of different steps, each
    waiting at its barrier for a part queued behind the other's."""
    pool = _pool(n_shards)
    with _SUBMITTING:
        return [pool.submit(fn, arg) for fn, arg in calls]


@functools.cache
def _pool(n_shards: int) -> ThreadPoolExecutor:
    """The threads that run shards 1 and on (shard 0 runs in the caller's thread)."""
    return ThreadPoolExecutor(max_workers=n_shards - 1, thread_name_prefix="portnet-shard")
