"""Counters that predict GPU speed on a machine without a GPU.

A small MLP on a GPU is bound by kernel launches and host synchronisations, not
by FLOPs. So the benchmark counts, per implementation, the host transfers of one
epoch (``portnet.count_transfers``) and the operations of one training step, each
on the implementation's own path:

* torch-based implementations (portnet on torch tensors, native PyTorch) at
  PyTorch's dispatcher, on their own device (CPU, or CUDA where present);
* ``portnet-cupy`` on the emulated CuPy (``portnet.testing.emulated_cupy``):
  array-api-compat's real CuPy wrappers over NumPy, one kernel per operation that
  computes; it needs no GPU, so the count is there even where the timing is not;
* ``portnet-array_api_strict``, which has no dispatcher of its own: its portable
  (rebinding) optimizer path counted at torch-cpu's dispatcher.

NumPy has no dispatcher to count at; ``portnet-numpy`` runs the same layer code
as ``portnet-cupy``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

import portnet as pn
from portnet.testing import count_torch_ops, emulated_cupy

from .implementations import BenchData, Implementation, TorchNative, build_portnet_model
from .workloads import CNNWorkload, Workload


@dataclasses.dataclass
class OpCount:
    """Operations seen during one training step.

    Attributes
    ----------
    total : int
        Every operation, views included.
    kernels : int
        Operations that compute or allocate (a GPU kernel launch each): ``total``
        minus views and profiler markers.
    syncs : int
        Host reads of device values (``_local_scalar_dense``, ``nonzero``), each a GPU
        sync. On the emulated CuPy a sync raises, so a count there is always 0.
    scalar_uploads : int
        Host data copied to the device inside the step (``lift_fresh`` at torch's
        dispatcher, ``asarray`` of host data on the emulated CuPy). On CUDA each is a
        blocking host-to-device copy that ``portnet.count_transfers`` does not see.
    ops : dict
        Op name (overload included when not ``default``) to count, most frequent first.
    metric_ops : int
        How many of ``total`` come from the accuracy count (``Loss.count_correct``
        or its native torch equivalent), not from training itself.
    counted_on : str
        Which instrument, backend and optimizer path ran the counted step.
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


def _first_batch(data: BenchData, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    m = min(batch_size, data.n)
    return data.X[:m], data.y[:m]


def _portnet_step(
    workload: Workload | CNNWorkload,
    batch_size: int,
    data: BenchData,
    seed: int,
    backend: Any,
    inplace: bool | None,
) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """``(step, metric)``: one ``Trainer.train_step`` as ``run_epoch`` calls it (after one
    untimed step, so lazily built state is not counted) and the accuracy count alone."""
    model = build_portnet_model(workload, backend, seed, inplace=inplace)
    trainer, xp = model.trainer, backend.xp
    xb_host, yb_host = _first_batch(data, batch_size)
    with backend.device_scope():
        xb, yb = backend.asarray(xb_host, "float32"), backend.asarray(yb_host, "int64")
        ctx = trainer.training_context(xp, pn.RandomStream(backend, seed))
        # The Model's state: its optimizer state knows the frozen entries (BatchNorm).
        state, _ = trainer.train_step(model.state, xb, yb, ctx=ctx)
        outputs, _ = trainer.network.forward(state.params, xb, ctx)

    def step() -> Any:
        with backend.device_scope():
            return trainer.train_step(state, xb, yb, ctx=ctx)

    def metric() -> Any:
        with backend.device_scope():
            return trainer.loss.count_correct(xp, outputs, yb)

    return step, metric


def _torch_count(run: Callable[[], Any], metric: Callable[[], Any], counted_on: str) -> OpCount:
    with count_torch_ops() as count:
        run()
    with count_torch_ops() as metric_count:
        metric()
    return OpCount(
        total=count.total,
        kernels=count.kernels,
        syncs=count.syncs,
        scalar_uploads=count.scalar_uploads,
        ops=dict(count.ops.most_common()),
        metric_ops=metric_count.total,
        counted_on=counted_on,
    )


def count_portnet_torch(
    workload, batch_size: int, data: BenchData, seed: int, device: str = "cpu", inplace=True
) -> OpCount:
    """Aten ops of one ``Trainer.train_step`` on portnet's torch backend on ``device``.

    ``inplace=False`` counts the portable (rebinding) path that array-api-strict runs.
    """
    backend = pn.get_backend("torch", device)
    step, metric = _portnet_step(workload, batch_size, data, seed, backend, inplace)
    path = "in-place" if inplace else "portable (rebinding)"
    return _torch_count(step, metric, f"torch dispatcher, portnet torch-{device}, {path} path")


def count_portnet_emulated_cupy(workload, batch_size: int, data: BenchData, seed: int) -> OpCount:
    """Kernels of one ``Trainer.train_step`` on portnet's cupy backend over the emulated CuPy."""
    with emulated_cupy() as cupy:
        step, metric = _portnet_step(workload, batch_size, data, seed, pn.get_backend("cupy"), None)
        cupy.reset_counts()
        step()
        counts = cupy.reset_counts()
        metric()
        metric_counts = cupy.reset_counts()
    ops = Counter(counts.kernels) + Counter(counts.views)
    return OpCount(
        total=sum(ops.values()),
        kernels=counts.n_kernels,
        syncs=0,  # a sync raises HostSyncError on the emulated CuPy
        scalar_uploads=counts.uploads,
        ops=dict(ops.most_common()),
        metric_ops=metric_counts.n_kernels + sum(metric_counts.views.values()),
        counted_on="emulated CuPy (array-api-compat's CuPy wrappers over NumPy), in-place path",
    )


def count_torch_native(
    workload, batch_size: int, data: BenchData, seed: int, device: str = "cpu"
) -> OpCount:
    """Aten ops of native PyTorch's step: forward, loss, zero_grad, backward, optimizer.step.

    ``metric_ops`` reports separately what the accuracy count the benchmark's torch
    loop also does (``argmax``, ``eq``, ``sum``) would add, for a like-for-like
    comparison with portnet's step, which includes it.
    """
    import torch

    impl = TorchNative(workload, batch_size, data, seed, device=device)
    xb_host, yb_host = _first_batch(data, batch_size)
    xb, yb = torch.from_numpy(xb_host).to(impl.device), torch.from_numpy(yb_host).to(impl.device)
    # The first step creates the momentum buffers; count a steady-state step.
    out, _ = impl.train_step(xb, yb)

    def metric():
        with torch.no_grad():
            return (out.argmax(dim=1) == yb).sum()

    return _torch_count(
        lambda: impl.train_step(xb, yb),
        metric,
        f"torch dispatcher, native torch on {device} (nn.Sequential, optim.SGD momentum, "
        "zero_grad set_to_none)",
    )


# Implementation name -> how its step is counted (workload, batch size, data, seed).
COUNTERS: dict[str, Callable[..., OpCount]] = {
    "portnet-torch": count_portnet_torch,
    "portnet-torch-cuda": lambda *a: count_portnet_torch(*a, device="cuda"),
    "portnet-array_api_strict": lambda *a: count_portnet_torch(*a, inplace=False),
    "portnet-cupy": count_portnet_emulated_cupy,
    "torch": count_torch_native,
    "torch-cuda": lambda *a: count_torch_native(*a, device="cuda"),
}


def counter_unavailable(name: str) -> str | None:
    """Why the step of implementation ``name`` cannot be counted here (None if it can)."""
    if name not in COUNTERS:
        return "no operation counter for this implementation"
    if name == "portnet-cupy":
        return None  # the emulated CuPy needs neither a GPU nor PyTorch
    try:
        import torch
    except ImportError:
        return "PyTorch is needed to count at its dispatcher"
    if name.endswith("cuda") and not torch.cuda.is_available():
        return "no CUDA GPU visible to PyTorch"
    return None


def transfers_of_epoch(impl: Implementation) -> dict[str, int]:
    """Run one epoch of ``impl`` under ``portnet.count_transfers`` and return the counts.

    Counts everything the timed epoch does: the permutation upload, the batches and
    the end-of-epoch read of the loss sums.
    """
    with pn.count_transfers() as count:
        impl.run_epoch()
    return {"to_device": count.to_device, "to_host": count.to_host, "total": count.total}
