"""Figures a person would rather look at than read: curves, confusion matrices, image grids.

Needs matplotlib (``pip install "portnet[plot]"``). Every function writes a PNG
atomically (temporary file, then rename) and returns its path. Inputs are host
NumPy arrays or plain lists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .._array import to_host
from .model_file import atomic_write_bytes


def pyplot():
    """matplotlib.pyplot with the file-only Agg backend, or a clear ImportError."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError('Plots need matplotlib: pip install "portnet[plot]"') from None
    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    path = Path(path)
    atomic_write_bytes(
        path, lambda handle: fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    )
    pyplot().close(fig)
    return path


def plot_curves(
    history: Mapping[str, Sequence[float]],
    path,
    title: str = "Training curves",
    best_epoch: int | None = None,
) -> Path:
    """Loss and accuracy per epoch, train vs validation, side by side."""
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    for ax, key, label in (
        (ax_loss, "loss", "cross-entropy loss"),
        (ax_acc, "accuracy", "accuracy"),
    ):
        ax.plot(epochs, history[f"train_{key}"], label="train", color="tab:blue")
        val = np.asarray(history.get(f"val_{key}", []), dtype=float)
        if val.size and not np.all(np.isnan(val)):
            ax.plot(epochs, val, label="validation", color="tab:orange")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_title("Loss")
    ax_acc.set_title("Accuracy")
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_confusion(
    cm: np.ndarray, class_names: Sequence[str], path, title: str = "Confusion matrix (test set)"
) -> Path:
    """Confusion matrix with counts in each cell, rows = true class, columns = predicted.

    ``cm`` may live on any backend (:func:`portnet.confusion_matrix` returns a device array).
    """
    plt = pyplot()
    cm = to_host(cm)
    k = cm.shape[0]
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * k, 0.6 + 0.55 * k))
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax, label="images")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(int(cm[i, j])),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if cm[i, j] > threshold else "black",
            )
    accuracy = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title}\naccuracy {accuracy:.2%}")
    return save_figure(fig, path)


def plot_image_grid(
    images: np.ndarray, captions: Sequence[str], path, title: str, columns: int = 8
) -> Path:
    """A grid of 2-D images (e.g. 28x28) with a caption under each."""
    plt = pyplot()
    n = len(images)
    rows = max(1, -(-n // columns))
    # Constrained layout keeps the suptitle clear of the captions, even for one row.
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(1.6 * columns, 1.9 * rows + 0.4),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions, strict=False):
        ax.imshow(image, cmap="gray_r")
        ax.set_title(caption, fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_misclassified(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    path,
    n: int = 32,
) -> Path:
    """The first ``n`` misclassified test images, captioned "true -> predicted".

    The arrays may live on any backend (``Model.predict`` returns device arrays).
    """
    y_true, y_pred = to_host(y_true), to_host(y_pred)
    wrong = np.flatnonzero(y_true != y_pred)[:n]
    captions = [f"{class_names[y_true[i]]}\n→ {class_names[y_pred[i]]}" for i in wrong]
    shown = to_host(images)[wrong]
    if shown.ndim == 2:  # flattened square images
        side = int(round(np.sqrt(shown.shape[1])))
        shown = shown.reshape(len(shown), side, side)
    return plot_image_grid(
        shown,
        captions,
        path,
        title=f"Misclassified test images ({len(wrong)} shown; true → predicted)",
    )
