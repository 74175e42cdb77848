r"""Convolution and shape layers on channels-first images, written against the Array API only.

:class:`Conv2D` is im2col plus one matrix product; its backward pass folds window
gradients back with the adjoint gather (col2im). Both gathers use the host index
maps of :mod:`portnet.windows`, whose docstring explains the method (the standard
has no ``as_strided`` and no scatter). :class:`Flatten` and :class:`Reshape`
connect image layers to dense ones.

The pooling layers live in :mod:`portnet.pooling`; :class:`MaxPool2D` and
:class:`AvgPool2D` are re-exported here, so ``from portnet.conv import Conv2D,
MaxPool2D, AvgPool2D, Flatten, Reshape`` keeps working, as do
:func:`window_sources` and :func:`window_adjoint`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import device as device_of

from .errors import ConfigError
from .layers import Layer
from .pooling import AvgPool2D, MaxPool2D
from .windows import (
    _adjoint_index,
    _append_column,
    _IndexCache,
    _pair,
    window_adjoint,
    window_sources,
)

__all__ = [
    "AvgPool2D",
    "Conv2D",
    "Flatten",
    "MaxPool2D",
    "Reshape",
    "window_adjoint",
    "window_sources",
]


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

    where col2im is the adjoint gather described in :mod:`portnet.windows`.
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
