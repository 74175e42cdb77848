"""Helpers shared by the S0, S1 and S2 reproductions: data, one training run, tables, figures."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import portnet as pn
from portnet.data.prepare import PreparedData, prepare_data
from portnet.io import plots


def load_images(ctx, normalize: str, val_fraction: float | None = None) -> PreparedData:
    """The study's dataset through :func:`portnet.data.prepare.prepare_data`.

    Optionally cut to ``train_size`` / ``test_size`` images (stratified), then split
    (``val_fraction``, stratified) and normalised; the config's seed seeds both.
    """
    config = ctx.config
    data = prepare_data(
        config["dataset"],
        data_dir=config.get("data_dir"),
        normalize=normalize,
        train_size=config.get("train_size") or None,
        test_size=config.get("test_size") or None,
        val_fraction=val_fraction,
        seed=config["seed"],
    )
    n_train = len(data.y) + (0 if data.y_val is None else len(data.y_val))
    ctx.log(
        f"{data.dataset.name} from {data.source}: {n_train} training and "
        f"{len(data.y_test)} test images"
    )
    return data


@dataclasses.dataclass
class RunResult:
    """One trained network: its curves and its final train / validation / test metrics."""

    name: str
    history: Any
    train: dict[str, float]
    val: dict[str, float]
    test: dict[str, float]
    seconds: float
    model: Any = None

    @property
    def epochs(self) -> int:
        return self.history.epochs_run

    def describe(self) -> str:
        stop = self.history.stop_reason.replace("_", " ")
        return f"{self.epochs} epochs ({stop}, best epoch {self.history.best_epoch})"


def train_and_evaluate(
    ctx,
    name: str,
    layers: list,
    optimizer,
    data: tuple,
    *,
    epochs: int,
    batch_size: int,
    patience: int | None,
    l1: float = 0.0,
    l2: float = 0.0,
    seed: int = 0,
    monitor: str = "val_loss",
) -> RunResult:
    """Fit one model on ``(X_tr, y_tr, X_val, y_val, X_te, y_te)`` and evaluate all three splits.

    Train and validation metrics are re-evaluated on the final (with early stopping:
    restored best) weights, as the papers' tables report the chosen model.
    ``monitor`` is what early stopping watches: ``"val_loss"`` (portnet's own early
    stopping) or ``"val_accuracy"`` (stop after ``patience`` epochs without a higher
    validation accuracy and restore the best epoch's weights).
    """
    X_tr, y_tr, X_val, y_val, X_te, y_te = data
    start = time.perf_counter()
    model = pn.Model(layers, optimizer=optimizer, l1=l1, l2=l2, backend=ctx.backend, seed=seed)
    if monitor not in ("val_loss", "val_accuracy"):
        raise pn.ConfigError(f"monitor must be 'val_loss' or 'val_accuracy', got {monitor!r}")
    by_accuracy = monitor == "val_accuracy" and patience is not None
    history = model.fit(
        X_tr,
        y_tr,
        epochs=epochs,
        batch_size=batch_size,
        validation_data=(X_val, y_val),
        patience=None if by_accuracy else patience,
        callbacks=[_BestValAccuracy(patience)] if by_accuracy else (),
        verbose=0,
        seed=seed + 1,
        compile=ctx.compile,
    )
    result = RunResult(
        name,
        history,
        model.evaluate(X_tr, y_tr),
        model.evaluate(X_val, y_val),
        model.evaluate(X_te, y_te),
        time.perf_counter() - start,
        model,
    )
    record(ctx, "curves.json", name, {**history.to_dict(), "test": result.test})
    ctx.log(
        f"{name}: test accuracy {100 * result.test['accuracy']:.2f} % after "
        f"{result.describe()}, {result.seconds:.1f} s"
    )
    return result


class _BestValAccuracy(pn.Callback):
    """Early stopping on validation accuracy: stop after ``patience`` epochs without a
    higher one and restore the weights of the best epoch."""

    def __init__(self, patience: int):
        self.patience = int(patience)
        self.best, self.best_epoch, self.bad, self.weights = -1.0, 0, 0, None

    def on_epoch_end(self, model, epoch, logs):
        if logs["val_accuracy"] > self.best:
            self.best, self.best_epoch, self.bad = logs["val_accuracy"], epoch + 1, 0
            self.weights = model.get_weights()
        else:
            self.bad += 1
            if self.bad >= self.patience:
                model.stop_training = True

    def on_train_end(self, model, history):
        if history.stop_reason == "callback":
            history.stop_reason = "early_stopping"
        if self.weights is not None:
            model.set_weights(self.weights)
            history.best_epoch, history.restored_best = self.best_epoch, True


def record(ctx, filename: str, key: str, value: Any) -> None:
    """Add ``key: value`` to a JSON file in the output folder (curves, gradient checks),
    so tests and readers get the numbers behind every figure and table."""
    import json

    from experiments.common import write_json

    path = ctx.out / filename
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = value
    write_json(path, data)


def plot_run(ctx, result: RunResult, filename: str, title: str) -> None:
    """Loss and accuracy curves of one run (train vs validation), if plots are on."""
    if ctx.plots:
        plots.plot_curves(
            result.history.history,
            ctx.out / filename,
            title=f"{title} — test accuracy {100 * result.test['accuracy']:.2f} %",
            best_epoch=result.history.best_epoch if result.history.restored_best else None,
        )


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """A small Markdown table (with an optional ``###`` title)."""
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "---|" * len(headers))
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n\n"


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def pct(value: float | None) -> float | None:
    """A fraction as a percentage (None stays None)."""
    return None if value is None else 100.0 * value
