"""What every epoch-time implementation shares: the data, the interface, the optimizer settings.

Every implementation trains with SGD + momentum ``MOMENTUM`` at learning rate ``LR``
on one :class:`BenchData`, behind :class:`Implementation`'s ``run_epoch`` /
``synchronize``. The implementations themselves live in :mod:`benchmarks.impl_portnet`,
:mod:`benchmarks.impl_torch` and :mod:`benchmarks.impl_baselines`; the registry is in
:mod:`benchmarks.implementations`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .workloads import CNNWorkload, Workload

LR = 0.01
MOMENTUM = 0.9


@dataclasses.dataclass
class BenchData:
    """Training data on the host: ``X`` float32 ``(N, 784)`` in [0, 1], ``y`` int64 ``(N,)``."""

    X: np.ndarray
    y: np.ndarray
    n_classes: int = 10

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


class Implementation:
    """One way of training a workload; subclasses fill in the constructor and ``run_epoch``.

    Attributes
    ----------
    name : str
        Name in the results (``portnet-numpy``, ``torch`` ...).
    note : str
        Anything a reader of the results must know about this implementation.
    backend : portnet Backend or None
        Set for portnet implementations: they report host transfers and op counts.
    """

    name = ""
    note = ""
    backend = None
    #: "cpu" or "cuda": which device the implementation trains on. Ratios to torch
    #: are taken against the torch run on the same kind of device.
    device_kind = "cpu"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this implementation cannot run on this machine, or ``None`` if it can."""
        return None

    @classmethod
    def unsupported_reason(cls, workload: Workload | CNNWorkload) -> str | None:
        """Why this implementation cannot train ``workload`` at all, or ``None`` if it can."""
        return None

    def run_epoch(self) -> float:
        """Train one epoch and return its mean training loss, read on the host."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (called before every clock read)."""


class DenseOnlyImplementation(Implementation):
    """An implementation that trains multilayer perceptrons only; it skips the ``cnn`` workload."""

    #: Why a network with convolutions is skipped, shown in the results.
    dense_only_reason = ""

    @classmethod
    def unsupported_reason(cls, workload):
        return cls.dense_only_reason if workload.kind != "mlp" else None
