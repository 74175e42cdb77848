r"""Max and average pooling on channels-first images, written against the Array API only.

Like :class:`~portnet.layers.conv.Conv2D`, pooling works on a channels-last view
(:mod:`portnet.layers.windows`): the forward pass reduces the :math:`K_h K_w` shifted
slices of the padded input with element-wise ``maximum`` / ``+``. When the windows
tile the input (stride equal to kernel, no padding: the usual 2x2 case) the input,
cropped to whole windows, is the ``(N, H_o, K_h, W_o, K_w, C)`` **reshape** of the
``N x H x W x C`` view, and backprop works in that layout: per-offset gradients are
placed (stacked back, or assigned to strided slices), never added; max pooling's
mask is one broadcast comparison there where arrays are mutable. Other geometries
fold gradients back slice by slice (col2im).
:class:`MaxPool2D` and :class:`AvgPool2D` are also importable from :mod:`portnet`.
"""

from __future__ import annotations

import math

from array_api_compat import device as device_of

from ..errors import ConfigError
from .base import Layer
from .windows import (
    _pair,
    fold_slices,
    output_size,
    pad_nhwc,
    to_nchw,
    to_nhwc,
    window_slices,
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

    @property
    def _tiles(self) -> bool:
        """Whether windows tile the input: stride equal to kernel, no padding."""
        return self.stride == self.kernel_size and self.padding == (0, 0)

    def _windows(self, xp, x, inplace):
        """The ``K_h K_w`` window views ``(N, H_o, W_o, C)`` of a 4-D input, in row-major
        offset order, and a function folding per-offset gradients back to ``dx``."""
        if x.ndim != 4:
            raise ConfigError(f"{type(self).__name__} expects N x C x H x W, got {tuple(x.shape)}")
        n, c, h, w = x.shape
        ph, pw = self.padding
        out_h, out_w = output_size(h, w, self.kernel_size, self.stride, self.padding)
        # Reducing over K strided views with element-wise maximum / add was measured
        # ~2x faster on NumPy than a max over the two window axes of the reshaped
        # (N, H_o, K_h, W_o, K_w, C) view; both are the same values.
        xpad = pad_nhwc(xp, to_nhwc(xp, x), self.padding, self._pad_value, inplace)
        pieces = window_slices(xpad, self.kernel_size, self.stride, (out_h, out_w))
        padded_hw = (xpad.shape[1], xpad.shape[2])

        def fold(dpieces):
            if self._tiles:
                return to_nchw(xp, _fold_tiles(xp, dpieces, self.kernel_size, (h, w), inplace))
            dxpad = fold_slices(xp, dpieces, self.kernel_size, self.stride, padded_hw, inplace)
            return to_nchw(xp, dxpad[:, ph : ph + h, pw : pw + w, :] if ph or pw else dxpad)

        return pieces, fold

    def get_config(self):
        return {
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
        }


def _fold_tiles(xp, dpieces, kernel, hw, inplace):
    """col2im of windows that tile the input (stride = kernel, no padding): every input
    pixel gets at most one piece entry, so the pieces are placed, never added.

    In place, each piece is assigned to its strided slice of a zero buffer. Otherwise
    the pieces stack to the window layout ``(N, H_o, K_h, W_o, K_w, C)``, which
    reshapes to ``(N, H_o K_h, W_o K_w, C)``, and zeros are appended for the rows and
    columns past the last whole window (floor mode never reads them)."""
    (kh, kw), (h, w) = kernel, hw
    n, oh, ow, c = dpieces[0].shape
    dev = device_of(dpieces[0])
    if inplace:
        # Every entry is assigned when the windows cover the input: no zero fill then
        # (and `full` rather than `zeros`, as in windows.fold_slices).
        shape = (n, h, w, c)
        covered = oh * kh == h and ow * kw == w
        if covered:
            dx = xp.empty(shape, dtype=dpieces[0].dtype, device=dev)
        else:
            dx = xp.full(shape, 0.0, dtype=dpieces[0].dtype, device=dev)
        for k, piece in enumerate(dpieces):
            u, v = divmod(k, kw)
            dx[:, u : u + kh * (oh - 1) + 1 : kh, v : v + kw * (ow - 1) + 1 : kw, :] = piece
        return dx
    rows = [xp.stack(dpieces[u * kw : (u + 1) * kw], axis=3) for u in range(kh)]
    dx = xp.reshape(xp.stack(rows, axis=2), (n, oh * kh, ow * kw, c))
    if oh * kh < h:
        pad = xp.zeros((n, h - oh * kh, ow * kw, c), dtype=dx.dtype, device=dev)
        dx = xp.concat([dx, pad], axis=1)
    if ow * kw < w:
        dx = xp.concat([dx, xp.zeros((n, h, w - ow * kw, c), dtype=dx.dtype, device=dev)], axis=2)
    return dx


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
        pieces, fold = self._windows(xp, x, ctx.ops.inplace)
        y = pieces[0]
        for piece in pieces[1:]:
            y = xp.maximum(y, piece)  # K - 1 element-wise passes over output-sized arrays

        ops = ctx.ops
        inplace = ops.inplace
        if inplace and self._tiles:
            return to_nchw(xp, y), self._tiled_backprop(xp, x, y)

        def backprop(dy):
            # First-occurrence routing without argmax (slow over a non-last axis) and
            # without mask assignment: walk the offsets in row-major order; each takes
            # the gradient still unclaimed where it equals the window max, and the rest
            # keeps what is left, so a tie goes to the first maximal element, as in
            # PyTorch. A product with the mask, not `where`: ~10x faster on NumPy, and
            # the same values for a finite gradient (a non-finite one, whose loss is
            # already NaN, may spread NaN within its window).
            rest = to_nhwc(xp, dy)
            dpieces = []
            for k, piece in enumerate(pieces):
                hit = piece == y
                # NumPy, CuPy and torch multiply by a bool array directly; the
                # standard defines no float-bool promotion.
                g = rest * (hit if inplace else xp.astype(hit, rest.dtype))
                dpieces.append(g)
                if k + 1 < len(pieces):
                    rest = rest - g if k == 0 else ops.sub(rest, g)  # rest is ours after k = 0
            return fold(dpieces), {}

        return to_nchw(xp, y), backprop

    def _tiled_backprop(self, xp, x, y):
        """Backprop for tiling windows on libraries with in-place updates: the same
        first-occurrence rule, computed in the window layout.

        One comparison of the ``(N, H_o, K_h, W_o, K_w, C)`` window view with the
        broadcast maximum gives every hit; walking the offsets, in-place ``&=`` on
        one-byte mask slices clears the hits that an earlier offset already took;
        one product with the broadcast gradient then writes ``dx`` straight in
        channels-last order. ~1.5x faster on NumPy than the float walk of the general
        path, which also needs an assignment per offset."""
        (kh, kw), (n, oh, ow, c) = self.kernel_size, tuple(y.shape)
        h, w = x.shape[2], x.shape[3]

        def backprop(dy):
            xh = to_nhwc(xp, x)[:, : oh * kh, : ow * kw, :]  # floor mode: whole windows
            hit = xp.reshape(xh, (n, oh, kh, ow, kw, c)) == xp.reshape(y, (n, oh, 1, ow, 1, c))
            taken = None
            for k in range(kh * kw):
                u, v = divmod(k, kw)
                hit_k = hit[:, :, u, :, v, :]  # a view: updated in place below
                if taken is not None:
                    hit_k &= xp.logical_not(taken)
                if k + 1 < kh * kw:  # hit_0 is never updated, so it may serve as taken
                    taken = hit_k if taken is None else xp.logical_or(taken, hit_k)
            d = xp.reshape(to_nhwc(xp, dy), (n, oh, 1, ow, 1, c))
            dx = xp.reshape(hit * d, (n, oh * kh, ow * kw, c))
            if oh * kh < h or ow * kw < w:
                # Rows and columns past the last whole window get no gradient.
                full = xp.full((n, h, w, c), 0.0, dtype=dx.dtype, device=device_of(dx))
                full[:, : oh * kh, : ow * kw, :] = dx
                dx = full
            return to_nchw(xp, dx), {}

        return backprop


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
        pieces, fold = self._windows(xp, x, ctx.ops.inplace)
        scale = 1.0 / len(pieces)
        ops = ctx.ops
        y = pieces[0] + pieces[1] if len(pieces) > 1 else pieces[0] + 0.0  # a fresh array,
        for piece in pieces[2:]:  # so the sum accumulates in place where allowed
            y = ops.add(y, piece)
        y = ops.mul(y, scale)

        def backprop(dy):
            d = to_nhwc(xp, dy) * scale
            return fold([d] * len(pieces)), {}  # the same piece for every offset

        return to_nchw(xp, y), backprop
