"""Counters that predict GPU speed on a machine without a GPU.

A small MLP on a GPU is bound by kernel launches and host synchronisations, not
by FLOPs. So the benchmark counts, per portnet implementation, the host
transfers of one epoch (``portnet.count_transfers``) and the array operations of
one training step. Operations are counted at PyTorch's dispatcher (every aten op
a tensor program runs, including autograd's backward ops), on portnet's torch
backend and on native PyTorch, so both are counted by the same ruler.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np

import portnet as pn

from .implementations import BenchData, Implementation, TorchNative, build_portnet_model
from .workloads import CNNWorkload, Workload

# Dispatcher entries that launch no kernel: profiler markers around optimizer.step.
_BOOKKEEPING = ("_record_function_enter", "_record_function_exit")


@dataclasses.dataclass
class OpCount:
    """Aten operations seen during one training step.

    Attributes
    ----------
    total : int
        Every dispatched op, views included.
    kernels : int
        Ops that compute or allocate (a GPU kernel launch each): ``total`` minus
        views and profiler markers.
    syncs : int
        Host reads of device values (``_local_scalar_dense``, ``item``), each a GPU sync.
    scalar_uploads : int
        Python scalars turned into device tensors (``lift_fresh``, e.g. array-api-compat
        wrapping the ``0.0`` of ``maximum(x, 0.0)`` with ``torch.asarray``). On CUDA each
        is a host-to-device copy from pageable memory, which PyTorch makes blocking; on
        the CPU it is only an allocation. ``portnet.count_transfers`` does not see them.
    ops : dict
        Op name (overload included when not ``default``) to count, most frequent first.
    metric_ops : int
        How many of ``total`` come from the accuracy count (``portnet.train.count_correct``
        or its native torch equivalent), not from training itself.
    counted_on : str
        Which backend and optimizer path ran the counted step.
    """

    total: int
    kernels: int
    syncs: int
    scalar_uploads: int
    ops: dict[str, int]
    metric_ops: int = 0
    counted_on: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _op_counter_class():
    # Imported lazily: the module must load (and portnet-numpy run) without torch.
    from torch.utils._python_dispatch import TorchDispatchMode

    class DispatchCounter(TorchDispatchMode):
        """Counts each aten op that passes through the dispatcher while active."""

        def __init__(self):
            super().__init__()
            self.counts: Counter[str] = Counter()
            self.views = 0
            self.bookkeeping = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.__name__.removesuffix(".default")
            self.counts[name] += 1
            if func.is_view:
                self.views += 1
            elif name.startswith(_BOOKKEEPING):
                self.bookkeeping += 1
            return func(*args, **(kwargs or {}))

    return DispatchCounter


def _summarise(counter, counted_on: str, metric_ops: int = 0) -> OpCount:
    total = sum(counter.counts.values())
    syncs = sum(c for name, c in counter.counts.items() if name.startswith("_local_scalar_dense"))
    return OpCount(
        total=total,
        kernels=total - counter.views - counter.bookkeeping,
        syncs=syncs,
        scalar_uploads=counter.counts.get("lift_fresh", 0),
        ops=dict(counter.counts.most_common()),
        metric_ops=metric_ops,
        counted_on=counted_on,
    )


def _first_batch(data: BenchData, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    m = min(batch_size, data.n)
    return data.X[:m], data.y[:m]


def count_portnet_step(
    workload: Workload | CNNWorkload,
    batch_size: int,
    data: BenchData,
    seed: int,
    inplace: bool = True,
) -> OpCount:
    """Aten ops of one ``Trainer.step`` on portnet's torch-cpu backend.

    Parameters
    ----------
    workload, batch_size, data, seed
        As for the timed implementations; the step runs on the first batch.
    inplace : bool
        The optimizer path: ``True`` is what NumPy, CuPy and torch run, ``False``
        the portable path array-api-strict runs.

    Returns
    -------
    OpCount
        The step as ``Trainer.run_epoch`` calls it: forward, loss, accuracy count,
        backprop and update (the batch gather and loss accumulation of ``run_epoch``
        are outside the step and not counted).
    """
    from portnet.train import count_correct

    backend = pn.get_backend("torch", "cpu")
    model = build_portnet_model(workload, backend, seed, inplace=inplace)
    trainer, xp = model.trainer, backend.xp
    xb_host, yb_host = _first_batch(data, batch_size)
    xb, yb = backend.asarray(xb_host, "float32"), backend.asarray(yb_host, "int64")
    ctx = pn.Context(
        xp=xp, training=True, random=pn.RandomStream(backend, seed), need_input_grad=False
    )
    # The Model's optimizer state knows the frozen entries (BatchNorm running statistics).
    params, state = model.params, model.optimizer_state
    lr = model.optimizer.lr_at(0)
    # One step first, so lazily created state (none today) is not counted as per-step work.
    params, state, *_ = trainer.step(params, state, xb, yb, lr, ctx)
    counter = _op_counter_class()()
    with counter:
        trainer.step(params, state, xb, yb, lr, ctx)
    outputs, _ = trainer.network.forward(params, xb, ctx)
    metric = _op_counter_class()()
    with metric:
        count_correct(xp, trainer.loss, outputs, yb)
    path = "in-place" if inplace else "portable (rebinding)"
    return _summarise(
        counter,
        f"portnet torch-cpu backend, {path} optimizer path",
        metric_ops=sum(metric.counts.values()),
    )


def count_torch_step(
    workload: Workload | CNNWorkload, batch_size: int, data: BenchData, seed: int
) -> OpCount:
    """Aten ops of native PyTorch's step: forward, loss, zero_grad, backward, optimizer.step.

    ``metric_ops`` reports separately what the accuracy count the benchmark's torch
    loop also does (``argmax``, ``eq``, ``sum``) would add, for a like-for-like
    comparison with portnet's step, which includes it.
    """
    import torch

    impl = TorchNative(workload, batch_size, data, seed)
    xb_host, yb_host = _first_batch(data, batch_size)
    xb, yb = torch.from_numpy(xb_host), torch.from_numpy(yb_host)
    # The first step creates the momentum buffers; count a steady-state step.
    impl.train_step(xb, yb)
    counter = _op_counter_class()()
    with counter:
        out, _ = impl.train_step(xb, yb)
    metric = _op_counter_class()()
    with metric, torch.no_grad():
        (out.argmax(dim=1) == yb).sum()
    return _summarise(
        counter,
        "native torch (nn.Sequential, optim.SGD momentum, zero_grad set_to_none)",
        metric_ops=sum(metric.counts.values()),
    )


def transfers_of_epoch(impl: Implementation) -> dict[str, int]:
    """Run one epoch of ``impl`` under ``portnet.count_transfers`` and return the counts.

    Counts everything the timed epoch does: the permutation upload, the batches and
    the end-of-epoch read of the loss sums.
    """
    with pn.count_transfers() as count:
        impl.run_epoch()
    return {"to_device": count.to_device, "to_host": count.to_host, "total": count.total}
