"""Pictures of a dense network's weights (study S3's section 4), from host NumPy arrays.

First-layer filters as 28x28 tiles, the principal components of those filters,
the last layer's weights and the linear end-to-end map ``W1 W2 ... Wn``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from portnet.io.plots import pyplot, save_figure


def tile_shape(n: int) -> tuple[int, int]:
    """The most square ``(rows, cols)`` with ``rows * cols == n`` (324 -> 18x18, 32 -> 4x8)."""
    rows = int(math.isqrt(n))
    while n % rows:
        rows -= 1
    return rows, n // rows


def mosaic(tiles: np.ndarray, columns: int, pad: int = 1) -> np.ndarray:
    """Arrange ``(n, h, w)`` tiles into one image, each tile scaled to [0, 1] on its own.

    Per-tile scaling shows each filter's pattern; a shared scale would let the few
    largest filters wash out the rest. Padding cells are NaN (drawn as background).
    """
    n, h, w = tiles.shape
    rows = -(-n // columns)
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad), np.nan)
    low = tiles.reshape(n, -1).min(axis=1)[:, None, None]
    high = tiles.reshape(n, -1).max(axis=1)[:, None, None]
    scaled = (tiles - low) / np.where(high > low, high - low, 1.0)
    for i in range(n):
        r, c = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        out[top : top + h, left : left + w] = scaled[i]
    return out


def plot_first_layer(W1: np.ndarray, path: str | Path, side: int = 28) -> Path:
    """Every first-layer filter (column of ``W1``, shape ``(side*side, H1)``) as one tile."""
    plt = pyplot()
    n = W1.shape[1]
    columns = max(1, min(25, math.ceil(math.sqrt(n * 1.25))))
    image = mosaic(W1.T.reshape(n, side, side), columns)
    fig, ax = plt.subplots(
        figsize=(min(16, 0.55 * columns + 1), min(14, 0.55 * -(-n // columns) + 1))
    )
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="white")
    ax.imshow(image, cmap=cmap, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(
        f"All {n} first-layer filters W1[:, j] as {side}x{side} images\n"
        "(each tile scaled to its own range: red = positive, blue = negative weight)"
    )
    return save_figure(fig, path)


def principal_filters(W1: np.ndarray, k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """The top-``k`` principal components of the first-layer filters and their variance ratios.

    The filters (columns of ``W1``) are the samples. Computed with NumPy's SVD on
    the host: a figure needs no device and ``W1`` is small (784 x 500).
    """
    filters = W1.T.astype(np.float64)
    centred = filters - filters.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(k, vt.shape[0])
    ratio = s**2 / np.sum(s**2)
    return vt[:k], ratio[:k]


def plot_principal_filters(W1: np.ndarray, path: str | Path, k: int = 20, side: int = 28) -> Path:
    """The ``k`` principal components of the first-layer filters as ``side x side`` images."""
    plt = pyplot()
    components, ratio = principal_filters(W1, k)
    k = len(components)
    columns = min(5, k)
    rows = -(-k // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i, (ax, comp) in enumerate(zip(axes.flat, components, strict=False)):
        limit = np.abs(comp).max() or 1.0
        ax.imshow(comp.reshape(side, side), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"PC {i + 1}: {ratio[i]:.1%}", fontsize=9)
    fig.suptitle(
        f"Top {k} principal components of the {W1.shape[1]} first-layer filters\n"
        f"(share of the filters' variance; together {ratio.sum():.1%})"
    )
    return save_figure(fig, path)


def _class_tiles(
    matrix: np.ndarray, class_names: Sequence[str], path, title: str, cmap: str = "RdBu_r"
) -> Path:
    """One tile per class from the columns of ``matrix`` (``(h*w, K)``), symmetric colour scale."""
    plt = pyplot()
    rows_px, cols_px = tile_shape(matrix.shape[0])
    k = matrix.shape[1]
    columns = 5 if k > 5 else k
    rows = -(-k // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for j, ax in enumerate(axes.flat[:k]):
        column = matrix[:, j]
        limit = np.abs(column).max() or 1.0
        ax.imshow(column.reshape(rows_px, cols_px), cmap=cmap, vmin=-limit, vmax=limit)
        ax.set_title(class_names[j], fontsize=10)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_last_layer(W_last: np.ndarray, class_names: Sequence[str], path) -> Path:
    """The last layer's weights, one ``tile_shape(H)`` picture per class (18x18 for H=324)."""
    r, c = tile_shape(W_last.shape[0])
    return _class_tiles(
        W_last,
        class_names,
        path,
        f"Last-layer weights W3: the {W_last.shape[0]} inputs of each class as {r}x{c}\n"
        "(red = positive, blue = negative weight)",
    )


def plot_combined(weights: Sequence[np.ndarray], class_names: Sequence[str], path) -> Path:
    """The linear map ``W1 W2 ... Wn`` (no ReLUs, no biases), one image per class."""
    combined = weights[0].astype(np.float64)
    for W in weights[1:]:
        combined = combined @ W
    return _class_tiles(
        combined,
        class_names,
        path,
        "Combined transformation W = W1·W2·W3 (no ReLU, no bias): one 28x28 template per class\n"
        "(red pixels raise the class score, blue pixels lower it)",
    )
