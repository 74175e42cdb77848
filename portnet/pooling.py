r"""Max and average pooling on channels-first images, written against the Array API only.

Windows are gathered with the index maps of :mod:`portnet.windows` (im2col), and
gradients folded back with their adjoint gather (col2im); see that module for how
and why. :class:`MaxPool2D` and :class:`AvgPool2D` are also importable from
:mod:`portnet.conv` and from :mod:`portnet`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import device as device_of

from .errors import ConfigError
from .layers import Layer
from .windows import (
    _adjoint_index,
    _append_column,
    _IndexCache,
    _pair,
    window_adjoint,
    window_sources,
)


class _Pool2D(Layer):
    """Shared window bookkeeping of max and average pooling (channels treated alike)."""

    _pad_value = 0.0

    def __init__(
        self,
        kernel_size: int | tuple[int, int] = 2,
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
    ):
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ConfigError("kernel_size and stride must be >= 1 and padding >= 0")
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise ConfigError("padding must be at most half the kernel size (as in PyTorch)")
        self._indices = _IndexCache()

    def _build(self, h: int, w: int) -> dict[str, Any]:
        src, out_h, out_w = window_sources(h, w, self.kernel_size, self.stride, self.padding)
        n_out, kk = src.shape
        # Forward gather ordered (k, l): windows reduce over axis 1 of (B, K, L),
        # which NumPy does as K contiguous vector passes (faster than a last-axis K).
        fwd = np.where(src.T >= 0, src.T, h * w)
        adj = _adjoint_index(
            window_adjoint(src, h * w), lambda l, c, k: k * n_out + l, sentinel=kk * n_out, outer=1
        )
        return {
            "fwd": fwd.reshape(-1),
            "fwd_padded": bool((src < 0).any()),
            "adj": adj["index"],
            "adj_sum": adj["n_sum"],
            "adj_padded": adj["padded"],
            "out_hw": (out_h, out_w),
            "kk": kk,
        }

    def _windows(self, xp, x):
        """``(windows (N C, K, L), indices, shape info)`` of a 4-D input."""
        if x.ndim != 4:
            raise ConfigError(f"{type(self).__name__} expects N x C x H x W, got {tuple(x.shape)}")
        n, c, h, w = x.shape
        idx = self._indices.get(xp, x, (h, w), lambda: self._build(h, w))
        flat = xp.reshape(x, (n * c, h * w))
        if idx["fwd_padded"]:
            flat = _append_column(xp, flat, self._pad_value)
        win = xp.reshape(xp.take(flat, idx["fwd"], axis=1), (n * c, idx["kk"], -1))
        return win, idx

    @staticmethod
    def _fold(xp, dwin, idx, x_shape):
        """col2im for pooling: the adjoint gather of window gradients ``(N C, K, L)``."""
        n, c, h, w = x_shape
        flat = xp.reshape(dwin, (n * c, -1))
        if idx["adj_padded"]:
            flat = _append_column(xp, flat, 0.0)
        dx = xp.take(flat, idx["adj"], axis=1)
        if idx["adj_sum"] > 1:
            dx = xp.sum(xp.reshape(dx, (n * c, idx["adj_sum"], h * w)), axis=1)
        return xp.reshape(dx, x_shape)

    def get_config(self):
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
        }


class MaxPool2D(_Pool2D):
    r"""Max pooling: :math:`y_{n,c,i,j} = \max_{u,v} x^{\text{pad}}_{n,c,s_h i+u,\,s_w j+v}`,
    padding with :math:`-\infty` (as PyTorch).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size`` (non-overlapping windows).
    padding : int or (int, int)

    Notes
    -----
    Backprop routes :math:`\delta` to the arg-max of each window, built without
    boolean-mask assignment from ``window == max`` comparisons. Ties go to the
    *first* maximal element in row-major window order, as in PyTorch (a ReLU
    before the pool makes all-zero windows common, so ties do happen); dividing
    among tied elements would also be a valid subgradient but would not match
    PyTorch.
    """

    _pad_value = -math.inf

    def forward(self, params, x, ctx):
        xp = ctx.xp
        win, idx = self._windows(xp, x)
        n, c = x.shape[0], x.shape[1]
        out_h, out_w = idx["out_hw"]
        y_flat = xp.max(win, axis=1)
        y = xp.reshape(y_flat, (n, c, out_h, out_w))
        x_shape = tuple(x.shape)

        def backprop(dy):
            # First-occurrence one-hot without argmax (slow over a middle axis in NumPy)
            # and without mask assignment: walk the K window offsets, each claiming the
            # gradient where it equals the window max and no earlier offset did. The
            # per-offset pieces are concatenated straight into the (N C, K L) layout
            # the col2im gather reads.
            d = xp.reshape(dy, (n * c, out_h * out_w))
            zero = xp.zeros((), dtype=d.dtype, device=device_of(d))
            pieces, taken = [], None
            for k in range(idx["kk"]):
                hit = win[:, k, :] == y_flat
                if taken is not None:
                    hit = xp.logical_and(hit, xp.logical_not(taken))
                taken = hit if taken is None else xp.logical_or(taken, hit)
                pieces.append(xp.where(hit, d, zero))
            return self._fold(xp, xp.concat(pieces, axis=1), idx, x_shape), {}

        return y, backprop


class AvgPool2D(_Pool2D):
    r"""Average pooling: :math:`y_{n,c,i,j} = \frac{1}{K_h K_w}\sum_{u,v}
    x^{\text{pad}}_{n,c,s_h i+u,\,s_w j+v}` (zero padding counted, PyTorch's default).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)

    Notes
    -----
    Backprop spreads :math:`\delta / (K_h K_w)` over each window (col2im).
    """

    def forward(self, params, x, ctx):
        xp = ctx.xp
        win, idx = self._windows(xp, x)
        n, c = x.shape[0], x.shape[1]
        out_h, out_w = idx["out_hw"]
        scale = 1.0 / idx["kk"]
        y = xp.reshape(xp.sum(win, axis=1) * scale, (n, c, out_h, out_w))
        x_shape = tuple(x.shape)

        def backprop(dy):
            d = xp.reshape(dy * scale, (n * c, 1, out_h * out_w))
            dwin = xp.broadcast_to(d, (n * c, idx["kk"], out_h * out_w))
            return self._fold(xp, dwin, idx, x_shape), {}

        return y, backprop
