r"""Sliding-window index maps (im2col / col2im) shared by convolution and pooling.

Convolution (:mod:`portnet.conv`) and pooling (:mod:`portnet.pooling`) work on
channels-first images, written against the Array API only.

The standard has no ``as_strided``, no scatter and no guaranteed in-place update,
so every sliding-window operation here is a **gather** (``take``) through index
arrays computed once on the host with NumPy, followed by matrix products,
reshapes and reductions:

- *im2col* (forward): ``cols = take(x_flat, fwd, axis=1)``; padding is one extra
  constant column appended to ``x_flat`` (zeros, or :math:`-\infty` for max
  pooling) that padded window positions index.
- *col2im* (backward) is a scatter-add, which the standard lacks. It is done as
  the gather of the *adjoint* map instead: an input pixel :math:`h` receives from
  kernel offset :math:`k` exactly one window :math:`l = (h + p - k)/s` (when that
  is an integer in range), so :math:`dx_h = \sum_k dcols_{l(h,k),k}` is a second
  ``take`` (missing entries index an appended zero column) and a sum over the
  :math:`K_h K_w` offsets. This costs one gather of :math:`K_h K_w` entries per
  input value and no more FLOPs than the forward gather; it was measured faster
  on NumPy than summing shifted zero-padded slices (one concat per offset) and
  far cheaper in memory than a matrix product with a dense 0/1 matrix
  (:math:`L K_h K_w \times HW` per channel). When windows do not overlap (pooling
  with stride = kernel) the adjoint is a permutation and the sum disappears.

Index arrays depend only on the per-sample input shape and the layer's geometry,
so each layer caches them per ``(namespace, device, shape)``: built and moved to
the device once, never per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import device as device_of

from .errors import ConfigError


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(int(v) != v for v in pair):
        raise ConfigError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def window_sources(
    h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[np.ndarray, int, int]:
    """Host index map of sliding windows: ``src[l, k]`` is the flat input position
    (``row * w + col``) seen by output position ``l`` at kernel offset ``k``, or -1
    where the window covers padding. Returns ``(src, out_h, out_w)``."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    out_h, out_w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ConfigError(f"a {kh}x{kw} window with padding {padding} does not fit a {h}x{w} input")
    rows = np.arange(out_h)[:, None, None, None] * sh + np.arange(kh)[None, None, :, None] - ph
    cols = np.arange(out_w)[None, :, None, None] * sw + np.arange(kw)[None, None, None, :] - pw
    rows, cols = np.broadcast_arrays(rows, cols)
    valid = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    src = np.where(valid, rows * w + cols, -1).reshape(out_h * out_w, kh * kw)
    return src, out_h, out_w


def window_adjoint(src: np.ndarray, n_inputs: int) -> np.ndarray:
    """The inverse map: ``adj[i, k]`` is the output position ``l`` with
    ``src[l, k] == i``, or -1. Unique because a pixel sits at offset ``k`` of at
    most one window (``l`` is fixed by ``(i + p - k) / s``)."""
    adj = np.full((n_inputs, src.shape[1]), -1, dtype=np.int64)
    ls, ks = np.nonzero(src >= 0)
    adj[src[ls, ks], ks] = ls
    return adj


class _IndexCache:
    """Device copies of host index arrays, keyed by namespace, device and shape."""

    def __init__(self) -> None:
        self._cache: dict[tuple, dict[str, Any]] = {}

    def get(self, xp, x, key: tuple, build) -> dict[str, Any]:
        device = device_of(x)
        full_key = (xp.__name__, str(device), key)
        entry = self._cache.get(full_key)
        if entry is None:
            host = build()
            # Every host array here is an index array: int64 on every backend.
            entry = {
                name: xp.asarray(v, dtype=xp.int64, device=device)
                if isinstance(v, np.ndarray)
                else v
                for name, v in host.items()
            }
            # Under a tracing compiler (jax.jit) the arrays made here are the trace's
            # values, which must not outlive it: those are rebuilt for each trace.
            if not any("Tracer" in type(v).__name__ for v in entry.values()):
                self._cache[full_key] = entry
        return entry


def _append_column(xp, x2d, value: float):
    """``x2d`` with one constant column appended: the target of padded window entries."""
    fill = xp.full((x2d.shape[0], 1), value, dtype=x2d.dtype, device=device_of(x2d))
    return xp.concat([x2d, fill], axis=1)


def _adjoint_index(adj: np.ndarray, offset_of, sentinel: int, outer: int) -> dict[str, Any]:
    """Gather index for col2im over ``outer`` leading groups (channels for Conv2D).

    ``offset_of(l, c, k)`` gives the flat position of window entry ``(l, c, k)`` in
    the gradient being folded back. Returns ``{"index", "n_sum", "padded"}`` where
    ``n_sum`` is the number of offsets to add (1 when windows do not overlap).
    """
    n_in, kk = adj.shape
    counts = np.count_nonzero(adj >= 0, axis=1)
    c = np.arange(outer)[None, :, None]
    if counts.max(initial=0) <= 1:
        # Non-overlapping windows: each input takes at most one entry, no sum needed.
        k = np.argmax(adj >= 0, axis=1)
        l = adj[np.arange(n_in), k]
        idx = np.where(l >= 0, offset_of(l[None, None, :], c, k[None, None, :]), sentinel)
        return {"index": idx.reshape(-1), "n_sum": 1, "padded": bool((counts == 0).any())}
    l = adj.T[:, None, :]  # (kk, 1, n_in)
    k = np.arange(kk)[:, None, None]
    idx = np.where(l >= 0, offset_of(l, c, k), sentinel)  # (kk, outer, n_in)
    return {"index": idx.reshape(-1), "n_sum": kk, "padded": bool((adj < 0).any())}
