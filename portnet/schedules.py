r"""Learning-rate schedules: callables ``schedule(epoch) -> lr`` (epochs count from 0).

The rate is a Python float chosen once per epoch on the host, so changing it costs
no device synchronisation.
"""

from __future__ import annotations

import math


class Schedule:
    def __call__(self, epoch: int) -> float:
        raise NotImplementedError


class Constant(Schedule):
    def __init__(self, lr: float):
        self.lr = float(lr)

    def __call__(self, epoch):
        return self.lr

    def __repr__(self):
        return f"Constant({self.lr:g})"


class StepDecay(Schedule):
    r"""Step decay (S3's "LR decay").

    :math:`\eta_e = \eta_0 \cdot \text{factor}^{\lfloor e / \text{every} \rfloor}`.
    """

    def __init__(self, lr: float, factor: float = 0.5, every: int = 10):
        if every < 1:
            raise ValueError("StepDecay: every must be >= 1 epoch")
        self.lr, self.factor, self.every = float(lr), float(factor), int(every)

    def __call__(self, epoch):
        return self.lr * self.factor ** (epoch // self.every)

    def __repr__(self):
        return f"StepDecay({self.lr:g}, factor={self.factor:g}, every={self.every})"


class ExponentialDecay(Schedule):
    r""":math:`\eta_e = \eta_0 \gamma^e`."""

    def __init__(self, lr: float, gamma: float = 0.95):
        self.lr, self.gamma = float(lr), float(gamma)

    def __call__(self, epoch):
        return self.lr * self.gamma**epoch

    def __repr__(self):
        return f"ExponentialDecay({self.lr:g}, gamma={self.gamma:g})"


class CosineDecay(Schedule):
    r"""Cosine annealing over ``epochs`` epochs, flat at ``min_lr`` after.

    :math:`\eta_e = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})(1 + \cos(\pi e / E))`.
    """

    def __init__(self, lr: float, epochs: int, min_lr: float = 0.0):
        self.lr, self.epochs, self.min_lr = float(lr), max(int(epochs), 1), float(min_lr)

    def __call__(self, epoch):
        progress = min(epoch, self.epochs) / self.epochs
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))

    def __repr__(self):
        return f"CosineDecay({self.lr:g}, epochs={self.epochs}, min_lr={self.min_lr:g})"


def as_schedule(lr: float | Schedule) -> Schedule:
    return lr if isinstance(lr, Schedule) else Constant(lr)
