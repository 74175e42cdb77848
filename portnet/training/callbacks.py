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
    """One line per epoch; in a terminal, also a tqdm progress bar during the epoch.

    ``Model.fit(verbose=1)`` adds one. Where the output is not a terminal (a log
    file, CI, a pipe) there is no bar, only the plain lines, so logs stay readable.

    Parameters
    ----------
    epochs : int
        The epoch count shown as ``epoch k/epochs``.
    stream : file, optional
        Where to write (default ``sys.stdout``).
    bar : bool, optional
        Force the bar on or off; by default, on when ``stream`` is a terminal.
    mininterval : float
        Seconds between redraws of the bar (tqdm's ``mininterval``).
    """

    def __init__(self, epochs: int, stream=None, bar: bool | None = None, mininterval: float = 0.1):
        self.epochs, self.stream, self.mininterval = epochs, stream or sys.stdout, mininterval
        self.bar = _isatty(self.stream) if bar is None else bar
        self._tqdm = None

    def on_epoch_begin(self, model, epoch):
        self._close_bar()

    def on_batch_end(self, model, batch, n_batches):
        if not self.bar:
            return
        if self._tqdm is None:
            from tqdm import tqdm

            self._tqdm = tqdm(
                total=n_batches,
                file=self.stream,
                leave=False,
                unit="batch",
                dynamic_ncols=True,
                mininterval=self.mininterval,
            )
        self._tqdm.update(batch + 1 - self._tqdm.n)

    def on_epoch_end(self, model, epoch, logs):
        self._close_bar()
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

    def on_train_end(self, model, history):
        self._close_bar()

    def _close_bar(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()  # leave=False: the bar's line is cleared for the epoch line
            self._tqdm = None


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False
