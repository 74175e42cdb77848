r"""Learning-rate schedules: callables ``schedule(epoch) -> lr`` (epochs count from 0).

The rate is a Python float chosen once per epoch on the host, so changing it costs
no device synchronisation. Every schedule describes itself with ``get_config()``
and is rebuilt by :func:`schedule_from_spec`, so saved models keep it.
"""

from __future__ import annotations

import math
from typing import Any

from ..config import build, check_number, spec_of


class Schedule:
    """Base class: ``schedule(epoch) -> lr``."""

    def __call__(self, epoch: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _rate(name: str, value: Any) -> float:
    return check_number(name, value, low=0.0)


class Constant(Schedule):
    """The same rate every epoch."""

    def __init__(self, lr: float):
        self.lr = _rate("learning rate", lr)

    def __call__(self, epoch):
        return self.lr

    def get_config(self):
        return {"lr": self.lr}


class StepDecay(Schedule):
    r"""Step decay (S3's "LR decay").

    :math:`\eta_e = \eta_0 \cdot \text{factor}^{\lfloor e / \text{every} \rfloor}`.
    """

    def __init__(self, lr: float, factor: float = 0.5, every: int = 10):
        self.lr = _rate("learning rate", lr)
        self.factor = check_number("StepDecay factor", factor, low=0.0, low_open=True)
        self.every = check_number("StepDecay every", every, low=1, integer=True)

    def __call__(self, epoch):
        return self.lr * self.factor ** (epoch // self.every)

    def get_config(self):
        return {"lr": self.lr, "factor": self.factor, "every": self.every}


class ExponentialDecay(Schedule):
    r""":math:`\eta_e = \eta_0 \gamma^e`."""

    def __init__(self, lr: float, gamma: float = 0.95):
        self.lr = _rate("learning rate", lr)
        self.gamma = check_number("ExponentialDecay gamma", gamma, low=0.0, low_open=True)

    def __call__(self, epoch):
        return self.lr * self.gamma**epoch

    def get_config(self):
        return {"lr": self.lr, "gamma": self.gamma}


class CosineDecay(Schedule):
    r"""Cosine annealing over ``epochs`` epochs, flat at ``min_lr`` after.

    :math:`\eta_e = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})(1 + \cos(\pi e / E))`.
    """

    def __init__(self, lr: float, epochs: int, min_lr: float = 0.0):
        self.lr = _rate("learning rate", lr)
        self.epochs = check_number("CosineDecay epochs", epochs, low=1, integer=True)
        self.min_lr = _rate("CosineDecay min_lr", min_lr)

    def __call__(self, epoch):
        progress = min(epoch, self.epochs) / self.epochs
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))

    def get_config(self):
        return {"lr": self.lr, "epochs": self.epochs, "min_lr": self.min_lr}


SCHEDULES = {cls.__name__: cls for cls in (Constant, StepDecay, ExponentialDecay, CosineDecay)}


def as_schedule(lr: float | Schedule) -> Schedule:
    """A schedule as is; a number as a :class:`Constant` rate."""
    return lr if isinstance(lr, Schedule) else Constant(lr)


def schedule_from_spec(spec: dict[str, Any] | float) -> Schedule:
    """Rebuild a schedule from :func:`~portnet.config.spec_of` output (or a plain rate)."""
    if isinstance(spec, dict):
        return build(spec, SCHEDULES, "schedule")
    return Constant(spec)


__all__ = [*SCHEDULES, "Schedule", "as_schedule", "schedule_from_spec", "spec_of"]
