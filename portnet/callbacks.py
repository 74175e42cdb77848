"""What :meth:`portnet.Model.fit` reports: the per-epoch :class:`History` and callbacks."""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any

HISTORY_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "seconds")


@dataclasses.dataclass
class History:
    """Per-epoch record of a :meth:`Model.fit` run.

    Attributes
    ----------
    history : dict of lists
        ``train_loss``, ``val_loss``, ``train_accuracy``, ``val_accuracy``, ``lr``
        and ``seconds``, one entry per epoch (NaN where there is no validation data).
    best_epoch : int
        Epoch (from 1) whose weights the model holds at the end when the best
        weights were restored, else the epoch with the best monitored value.
    stop_reason : str
        ``"completed"``, ``"early_stopping"``, ``"non_finite_loss"`` or ``"callback"``.
    """

    history: dict[str, list[float]] = dataclasses.field(
        default_factory=lambda: {key: [] for key in HISTORY_KEYS}
    )
    best_epoch: int = 0
    stop_reason: str = "completed"
    restored_best: bool = False

    @property
    def epochs_run(self) -> int:
        return len(self.history["train_loss"])

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.history,
            "best_epoch": self.best_epoch,
            "stop_reason": self.stop_reason,
            "epochs_run": self.epochs_run,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """The inverse of :meth:`to_dict` (as checkpoints store it)."""
        return cls(
            history={key: [float(v) for v in data.get(key, [])] for key in HISTORY_KEYS},
            best_epoch=int(data.get("best_epoch", 0)),
            stop_reason=str(data.get("stop_reason", "completed")),
        )


class Callback:
    """Hooks called by :meth:`Model.fit`. Set ``model.stop_training = True`` to stop.

    Batch hooks receive no device values, so they cost no synchronisation.
    """

    def on_train_begin(self, model) -> None: ...
    def on_epoch_begin(self, model, epoch: int) -> None: ...
    def on_batch_end(self, model, batch: int, n_batches: int) -> None: ...
    def on_epoch_end(self, model, epoch: int, logs: dict[str, float]) -> None: ...
    def on_train_end(self, model, history: History) -> None: ...


class ProgressLogger(Callback):
    """Prints one line per epoch; in a terminal, also a progress bar during the epoch."""

    def __init__(self, epochs: int, stream=None, bar: bool | None = None, width: int = 30):
        self.epochs, self.stream, self.width = epochs, stream or sys.stdout, width
        self.bar = self.stream.isatty() if bar is None else bar
        self._last_drawn = -1

    def on_epoch_begin(self, model, epoch):
        self._last_drawn = -1

    def on_batch_end(self, model, batch, n_batches):
        if not self.bar:
            return
        filled = (batch + 1) * self.width // n_batches
        if filled != self._last_drawn:
            self._last_drawn = filled
            self.stream.write(
                f"\r  [{'#' * filled}{'.' * (self.width - filled)}] {batch + 1}/{n_batches}"
            )
            self.stream.flush()

    def on_epoch_end(self, model, epoch, logs):
        if self.bar:
            self.stream.write("\r" + " " * (self.width + 30) + "\r")
        parts = [
            f"epoch {epoch + 1:>3}/{self.epochs}",
            f"loss {logs['train_loss']:.4f}",
            f"acc {logs['train_accuracy']:.4f}",
        ]
        if not math.isnan(logs["val_loss"]):
            parts += [f"val_loss {logs['val_loss']:.4f}", f"val_acc {logs['val_accuracy']:.4f}"]
        parts += [f"lr {logs['lr']:.3g}", f"{logs['seconds']:.2f}s"]
        self.stream.write("  ".join(parts) + "\n")
        self.stream.flush()
