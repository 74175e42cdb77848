"""Per-step counts of kernels, host syncs and uploads for every training option.

An option trains for two epochs of three steps each, with validation, then is
evaluated and predicts. A callback snapshots the instrument's counters at the
end of every batch; the difference between two consecutive snapshots of one
epoch is exactly one training step (the batch gather, forward, loss, backprop,
update and the loss bookkeeping of the loop). What happens once per epoch or per
``fit`` (moving data, the epoch's one read of its sums, validation, prediction)
falls outside those intervals and is reported as the whole run's total.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..training.train import Callback
from .options import TrainingOption

N_SAMPLES = 48  # 36 for training after the validation split
EPOCHS = 2
BATCH_SIZE = 12  # 3 steps per epoch: 2 step intervals inside each epoch


@dataclasses.dataclass
class StepAudit:
    """Counts of one option on one instrument.

    Attributes
    ----------
    option : str
    instrument : str
        ``"emulated-cupy"``, ``"torch-cpu"``, ``"torch-cuda"`` ...
    per_step : dict
        Count name to its value in one training step.
    worst_step : dict
        Count name to its largest value over every measured step (equal to
        ``per_step`` when all steps cost the same, as they should).
    per_run : dict
        Count name to its total over the whole run (per-fit and per-epoch work included).
    ops : dict
        Op name to its count in one step: the op list.
    """

    option: str
    instrument: str
    per_step: dict[str, int]
    worst_step: dict[str, int]
    per_run: dict[str, int]
    ops: dict[str, int] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _BatchEndSnapshots(Callback):
    """Snapshots of a counter at the end of every batch, grouped by epoch."""

    def __init__(self, snapshot: Callable[[], Counter]) -> None:
        self.snapshot = snapshot
        self.epochs: list[list[Counter]] = []

    def on_epoch_begin(self, model, epoch):
        self.epochs.append([])

    def on_batch_end(self, model, batch, n_batches):
        self.epochs[-1].append(self.snapshot())


def run_option(
    option: TrainingOption, backend: Any, snapshot: Callable[[], Counter]
) -> tuple[list[Counter], Counter]:
    """Train, evaluate and predict ``option`` on device data; return the per-step
    counter differences and the whole run's counts (from ``snapshot()``)."""
    X, y = option.data(N_SAMPLES)
    model = option.build(backend)
    X_dev, y_dev = backend.asarray(X), backend.asarray(y)
    snapshots = _BatchEndSnapshots(snapshot)
    start = snapshot()
    model.fit(
        X_dev,
        y_dev,
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        validation_split=0.25,
        verbose=0,
        callbacks=[snapshots],
        **option.fit_kwargs,
    )
    model.evaluate(X_dev, y_dev)
    backend.to_numpy(model.predict(X_dev))
    if option.classifies:
        backend.to_numpy(model.predict_proba(X_dev))
    steps = [b - a for epoch in snapshots.epochs for a, b in zip(epoch, epoch[1:], strict=False)]
    return steps, snapshot() - start


# Snapshot entries that are totals, not op names.
_TOTALS = ("ops", "kernels", "uploads", "downloads")


def _audit(option: TrainingOption, instrument: str, steps: list[Counter], run: Counter,
           keys: tuple[str, ...]) -> StepAudit:  # fmt: skip
    if not steps:
        raise RuntimeError(f"{option.name}: no step was measured")
    first = steps[0]
    return StepAudit(
        option=option.name,
        instrument=instrument,
        per_step={key: first[key] for key in keys},
        worst_step={key: max(step[key] for step in steps) for key in keys},
        per_run={key: run[key] for key in keys},
        ops={name: c for name, c in first.most_common() if name not in _TOTALS},
    )


def audit_emulated_cupy(option: TrainingOption) -> StepAudit:
    """Kernels, uploads and downloads per step on the emulated CuPy.

    A hidden sync anywhere in ``fit``, ``evaluate`` or ``predict`` raises
    :class:`~portnet.testing.HostSyncError` instead.
    """
    from ..backends import get_backend
    from .emulated_cupy import emulated_cupy

    with emulated_cupy() as cupy:

        def snapshot() -> Counter:
            counts = cupy.counts
            return Counter(
                counts.kernels,
                kernels=counts.n_kernels,
                uploads=counts.uploads,
                downloads=counts.downloads,
            )

        steps, run = run_option(option, get_backend("cupy"), snapshot)
    return _audit(option, "emulated-cupy", steps, run, ("kernels", "uploads", "downloads"))


#: What the torch audit reports: totals, then the ops a CUDA run would wait for.
TORCH_KEYS = ("ops", "kernels", "_local_scalar_dense", "nonzero", "lift_fresh", "lift_fresh_copy")


def audit_torch(option: TrainingOption, device: str = "cpu") -> StepAudit:
    """Aten ops, kernels, syncs and scalar uploads per step at PyTorch's dispatcher."""
    from ..backends import get_backend
    from .torch_ops import count_torch_ops

    backend = get_backend("torch", device)
    with count_torch_ops() as count:

        def snapshot() -> Counter:
            return Counter(count.ops, ops=count.total, kernels=count.kernels)

        steps, run = run_option(option, backend, snapshot)
    return _audit(option, f"torch-{device}", steps, run, TORCH_KEYS)
