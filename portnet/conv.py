r"""Convolution and pooling on channels-first images, written against the Array API only.

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

import math
from typing import Any

import numpy as np
from array_api_compat import device as device_of

from .errors import ConfigError
from .layers import Layer


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


class Conv2D(Layer):
    r"""2-D convolution (cross-correlation, as in every deep-learning library) on
    ``N x C x H x W`` inputs.

    .. math::
        y_{n,f,i,j} = b_f + \sum_{c,u,v} W_{f,c,u,v}\,
        x^{\text{pad}}_{n,c,\,s_h i + u,\, s_w j + v}

    with zero padding :math:`p`; the output is
    :math:`\lfloor (H + 2p_h - K_h)/s_h \rfloor + 1` by the same in width.

    Parameters
    ----------
    in_channels, out_channels : int
        :math:`C` and :math:`F`; ``W`` has shape ``(F, C, K_h, K_w)`` (PyTorch's layout).
    kernel_size, stride, padding : int or (int, int)
    bias : bool
    init : {"he", "glorot"}
        He normal :math:`\mathcal N(0, 2/\text{fan}_{in})` or Glorot uniform, with
        :math:`\text{fan}_{in} = C K_h K_w`, :math:`\text{fan}_{out} = F K_h K_w`.

    Notes
    -----
    Forward is im2col plus one matrix product: ``cols`` :math:`(N L, C K_h K_w)`
    times :math:`W^\top`. Backprop with :math:`\delta` reshaped to :math:`(N L, F)`:

    .. math::
        \partial W = \delta^\top \text{cols}, \quad \partial b = \textstyle\sum \delta,
        \quad \partial x = \text{col2im}(\delta W)

    where col2im is the adjoint gather described in the module docstring.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        init: str = "he",
    ):
        if int(in_channels) < 1 or int(out_channels) < 1:
            raise ConfigError(f"channels must be positive, got {in_channels}, {out_channels}")
        if init not in ("he", "glorot"):
            raise ConfigError(f"unknown init {init!r}; choose 'he' or 'glorot'")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ConfigError("kernel_size and stride must be >= 1 and padding >= 0")
        self.bias, self.init_scheme = bool(bias), init
        self._indices = _IndexCache()

    def init(self, rng):
        kh, kw = self.kernel_size
        fan_in, fan_out = self.in_channels * kh * kw, self.out_channels * kh * kw
        shape = (self.out_channels, self.in_channels, kh, kw)
        if self.init_scheme == "he":
            W = rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)
        else:
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-limit, limit, size=shape)
        params = {"W": W}
        if self.bias:
            params["b"] = np.zeros(self.out_channels)
        return params

    @property
    def weight_names(self):
        return ("W",)

    def _build(self, c: int, h: int, w: int) -> dict[str, Any]:
        src, out_h, out_w = window_sources(h, w, self.kernel_size, self.stride, self.padding)
        n_out, kk = src.shape
        hw = h * w
        # Forward gather, ordered (l, c, k) so cols reshape to (N L, C K) rows.
        ch = np.arange(c)[None, :, None]
        fwd = np.where(src[:, None, :] >= 0, ch * hw + src[:, None, :], c * hw)
        # dcols rows get one extra zero column (from a zero row appended to W, see
        # backprop): padded entries index the one of window 0, so the large dcols
        # array never needs a concat.
        row = c * kk + 1
        adj = _adjoint_index(
            window_adjoint(src, hw),
            lambda l, ch_, k: l * row + ch_ * kk + k,
            sentinel=c * kk,
            outer=c,
        )
        return {
            "fwd": fwd.reshape(-1),
            "fwd_padded": bool((src < 0).any()),
            "adj": adj["index"],
            "adj_sum": adj["n_sum"],
            "out_hw": (out_h, out_w),
        }

    def forward(self, params, x, ctx):
        xp = ctx.xp
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ConfigError(
                f"Conv2D expects N x {self.in_channels} x H x W input, got shape {tuple(x.shape)}"
            )
        n, c, h, w = x.shape
        f = self.out_channels
        kk = self.kernel_size[0] * self.kernel_size[1]
        idx = self._indices.get(xp, x, (c, h, w), lambda: self._build(c, h, w))
        out_h, out_w = idx["out_hw"]
        n_pos = out_h * out_w
        x_flat = xp.reshape(x, (n, c * h * w))
        if idx["fwd_padded"]:
            x_flat = _append_column(xp, x_flat, 0.0)
        cols = xp.reshape(xp.take(x_flat, idx["fwd"], axis=1), (n * n_pos, c * kk))
        W = xp.reshape(params["W"], (f, c * kk))
        y = xp.matmul(cols, xp.matrix_transpose(W))  # (N L, F)
        if self.bias:
            y = y + params["b"]
        y = xp.permute_dims(xp.reshape(y, (n, out_h, out_w, f)), (0, 3, 1, 2))
        need_dx = ctx.need_input_grad
        w_shape = tuple(params["W"].shape)

        def backprop(dy):
            d = xp.reshape(xp.permute_dims(dy, (0, 2, 3, 1)), (n * n_pos, f))
            # cols^T d, then transpose the small (C K, F) result: measured 2-3x faster on
            # NumPy/OpenBLAS than d^T cols for these tall-skinny operands.
            dW = xp.matrix_transpose(xp.matmul(xp.matrix_transpose(cols), d))
            grads = {"W": xp.reshape(dW, w_shape)}
            if self.bias:
                grads["b"] = xp.sum(d, axis=0)
            if not need_dx:
                return None, grads
            # d [W | 0]: each window row of dcols ends with a zero, the target of the
            # adjoint's missing entries (an extra 1/(C K) of a small matmul instead of
            # copying all of dcols to append one zero column).
            w_zero = xp.concat([W, xp.zeros((f, 1), dtype=W.dtype, device=device_of(W))], axis=1)
            dcols = xp.reshape(xp.matmul(d, w_zero), (n, n_pos * (c * kk + 1)))
            dx = xp.take(dcols, idx["adj"], axis=1)
            if idx["adj_sum"] > 1:
                dx = xp.sum(xp.reshape(dx, (n, idx["adj_sum"], c * h * w)), axis=1)
            return xp.reshape(dx, (n, c, h, w)), grads

        return y, backprop

    def get_config(self):
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "bias": self.bias,
            "init": self.init_scheme,
        }


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


class Flatten(Layer):
    r"""``N x d_1 x ... x d_k`` to ``N x (d_1 \cdots d_k)`` (row-major, as PyTorch); backprop
    reshapes :math:`\delta` back."""

    def forward(self, params, x, ctx):
        xp = ctx.xp
        shape = tuple(x.shape)
        y = xp.reshape(x, (shape[0], math.prod(shape[1:])))
        return y, lambda dy: (xp.reshape(dy, shape), {})


class Reshape(Layer):
    """Reshape each sample: ``N x n_in`` rows to ``N x shape`` (e.g. 784 -> 1 x 28 x 28).

    As a network's first layer it lets image models take the same flat 2-D data as
    an MLP, so data validation, batching, saving and loading stay unchanged.

    Parameters
    ----------
    shape : tuple of int
        The per-sample target shape; :attr:`n_in` is its product.
    """

    def __init__(self, shape: tuple[int, ...] | list[int]):
        shape = tuple(int(s) for s in shape)
        if not shape or min(shape) < 1:
            raise ConfigError(f"Reshape needs a non-empty shape of positive sizes, got {shape}")
        self.shape = shape

    @property
    def n_in(self) -> int:
        """Features per sample expected by this layer (the product of ``shape``)."""
        return math.prod(self.shape)

    def forward(self, params, x, ctx):
        xp = ctx.xp
        in_shape = tuple(x.shape)
        if math.prod(in_shape[1:]) != self.n_in:
            raise ConfigError(f"Reshape to {self.shape} got samples of shape {in_shape[1:]}")
        y = xp.reshape(x, (in_shape[0], *self.shape))
        return y, lambda dy: (xp.reshape(dy, in_shape), {})

    def get_config(self):
        return {"shape": list(self.shape)}
