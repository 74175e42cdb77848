r"""A learning-rate range test: train briefly while the rate grows, and watch the loss.

:func:`lr_find` takes ``steps`` minibatch steps from a copy of the model's weights,
with a fresh optimizer state, at rates rising exponentially from ``start`` to
``end``:

.. math:: \eta_i = \eta_{\text{start}}\,(\eta_{\text{end}} / \eta_{\text{start}})^{i/(S-1)}

and records each batch's loss. Too small a rate leaves the loss flat, a good one
makes it fall fast, too large a one makes it explode. The losses are smoothed with
an exponential moving average (bias-corrected, as Adam's moments are). The
suggested rate is where the smoothed loss falls fastest per unit of
:math:`\log\eta`, searched between the first tenth of the steps (the average's
warm-up) and the smoothed loss's minimum; that is a rate
still safely below the one where training diverges. The curve is worth a look
(:meth:`LRFinderResult.plot`): the suggestion is a heuristic.

The model itself is left as it was. The steps stay on the device; the losses come
back to the host once, at the end, so the test runs at training speed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..config import check_number
from ..errors import ConfigError
from ..layers.base import RandomStream
from .core import Batch, copy_tree, run_batches


@dataclasses.dataclass(frozen=True)
class LRFinderResult:
    """The rates tried, the batch losses, their smoothed curve and the suggested rate.

    ``lrs``, ``losses`` and ``smoothed`` stop where the smoothed loss exceeded
    ``diverge`` times its minimum (the rest would only draw an explosion).
    ``min_loss_lr`` is the rate at the smoothed loss's minimum: an upper bound,
    beyond which training becomes unstable.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggested_lr: float
    min_loss_lr: float
    stopped_early: bool

    def plot(self, path: str | os.PathLike, title: str | None = None) -> Path:
        """Loss against rate (log scale), the suggestion marked; a PNG written atomically."""
        from ..io.plots import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        ax.plot(self.lrs, self.losses, color="0.75", lw=0.8, label="batch loss")
        ax.plot(self.lrs, self.smoothed, color="C0", lw=1.8, label="smoothed")
        ax.axvline(self.suggested_lr, color="C3", ls="--", lw=1.2)
        ax.axvline(self.min_loss_lr, color="0.4", ls=":", lw=1.0)
        ax.annotate(
            f"suggested {self.suggested_lr:.2g}",
            (self.suggested_lr, float(np.nanmax(self.smoothed))),
            xytext=(6, -4),
            textcoords="offset points",
            color="C3",
            va="top",
        )
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        low, high = float(np.nanmin(self.smoothed)), float(np.nanmax(self.smoothed[:3]))
        ax.set_ylim(low - 0.1 * (high - low + 1e-12), high + 0.5 * (high - low + 1e-12))
        ax.set_title(title or "learning-rate range test")
        ax.legend(loc="lower left")
        ax.grid(True, which="both", alpha=0.3)
        return save_figure(fig, path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lrs": self.lrs.tolist(),
            "losses": [float(v) if math.isfinite(v) else None for v in self.losses],
            "smoothed": [float(v) if math.isfinite(v) else None for v in self.smoothed],
            "suggested_lr": self.suggested_lr,
            "min_loss_lr": self.min_loss_lr,
            "stopped_early": self.stopped_early,
        }


def lr_find(
    model,
    X: Any,
    y: Any,
    *,
    start: float = 1e-6,
    end: float = 1.0,
    steps: int = 100,
    batch_size: int = 128,
    smoothing: float = 0.9,
    diverge: float = 4.0,
    seed: int = 0,
) -> LRFinderResult:
    """Run a learning-rate range test on ``model`` (which is left unchanged).

    Parameters
    ----------
    model : portnet.Model
        Its network, loss, optimizer and regularizers are used; its weights are
        copied, and its optimizer starts from a fresh state.
    X, y : array_like
        Training data, validated as :meth:`~portnet.Model.fit` does. Batches are
        drawn from a shuffled order and wrap around if ``steps`` needs more.
    start, end : float
        The first and last rate, ``0 < start < end``.
    steps : int
        Steps (one batch each), at least 5.
    batch_size : int
    smoothing : float
        Weight of the past in the moving average of the loss, in [0, 1).
    diverge : float
        The curve ends where the smoothed loss exceeds this many times its minimum.
    seed : int
        Seeds the batch order and dropout.

    Returns
    -------
    LRFinderResult
    """
    start = check_number("start", start, low=0, low_open=True)
    end = check_number("end", end, low=0, low_open=True)
    if not start < end:
        raise ConfigError(f"lr_find needs start < end, got start={start:g}, end={end:g}")
    steps = check_number("steps", steps, low=5, integer=True)
    batch_size = check_number("batch_size", batch_size, low=1, integer=True)
    smoothing = check_number("smoothing", smoothing, low=0, high=1, high_open=True)
    diverge = check_number("diverge", diverge, low=1, low_open=True)
    backend, trainer = model.backend, model.trainer
    xp = backend.xp
    X_dev, y_dev = model.prepare_data(X, y)
    n = int(X_dev.shape[0])
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n) for _ in range(-(-steps * batch_size // n))])
    order_dev = backend.asarray(order.astype(np.int64))
    lrs = start * (end / start) ** (np.arange(steps) / (steps - 1))
    state = trainer.init_state(copy_tree(model.state.params), seed=seed)
    ctx = trainer.training_context(xp, RandomStream(backend, seed))
    losses = []

    def step(batch: Batch) -> tuple[Any, Any]:  # batch i at rate lrs[i]; its loss kept
        nonlocal state
        xb, yb, _ = batch.arrays()
        state, (loss, correct) = trainer.train_step(
            state, xb, yb, ctx=ctx, lr=float(lrs[batch.number])
        )
        losses.append(loss)
        return loss, correct

    # The test drives the loss to overflow on purpose: NumPy's warnings about it
    # are expected here, not a sign of trouble.
    with backend.device_scope(), np.errstate(over="ignore", invalid="ignore"):
        run_batches(step, X_dev, y_dev, order_dev[: steps * batch_size], batch_size)
        host = backend.to_numpy(xp.stack(losses)).astype(np.float64)  # the one host read
    return _result(lrs, host, smoothing, diverge)


def _result(lrs: np.ndarray, losses: np.ndarray, smoothing: float, diverge: float):
    """Smooth, cut at divergence, and pick the steepest descent before the minimum."""
    smoothed = np.empty_like(losses)
    average = 0.0
    for i, value in enumerate(losses):
        average = smoothing * average + (1 - smoothing) * value
        smoothed[i] = average / (1 - smoothing ** (i + 1))
    finite = np.isfinite(smoothed)
    cut = len(losses)
    best = np.inf
    for i in range(len(losses)):
        if not finite[i] or smoothed[i] > diverge * best:
            cut = i
            break
        best = min(best, smoothed[i])
    cut = max(cut, 3)
    lrs, losses, smoothed = lrs[:cut], losses[:cut], smoothed[:cut]
    lowest = int(np.nanargmin(smoothed))
    # The first tenth is the moving average's warm-up, noisy: not a candidate.
    skip = max(1, len(lrs) // 10)
    if lowest < skip + 2:
        suggested = float(lrs[lowest])  # the loss never fell: nothing better to offer
    else:
        slopes = np.gradient(smoothed[: lowest + 1], np.log(lrs[: lowest + 1]))
        suggested = float(lrs[skip + int(np.argmin(slopes[skip:]))])
    return LRFinderResult(
        lrs, losses, smoothed, suggested, float(lrs[lowest]), stopped_early=cut < len(finite)
    )
