r"""Convolution and shape layers on channels-first images, written against the Array API only.

:class:`Conv2D` is im2col plus one matrix product, and its backward pass folds
window gradients back (col2im); both are made of shifted basic slices of a
channels-last view, as :mod:`portnet.layers.windows` explains (the standard has no
``as_strided`` and no scatter). 3x3 stride-1 layers with many input channels use
Winograd's F(2x2, 3x3) instead (:mod:`portnet.layers.winograd`). :class:`Flatten`
and :class:`Reshape` connect image layers to dense ones.

The pooling layers are in :mod:`portnet.layers.pooling`.
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import device as device_of

from ..errors import ConfigError
from . import winograd
from .base import Layer, ShapeMismatch
from .windows import (
    _pair,
    fold_slices,
    output_size,
    pad_nhwc,
    to_nchw,
    to_nhwc,
    window_slices,
)

__all__ = ["Conv2D", "Flatten", "Reshape"]

ALGORITHMS = ("auto", "im2col", "winograd")
# "auto" runs Winograd's F(2x2, 3x3) on 3x3 stride-1 layers with at least this many
# input channels. Its transformed tiles and products are 4x the size of the input and
# output, so on a CPU it only wins where the saved flops outweigh that traffic: on
# NumPy/OpenBLAS (one thread, Haswell kernels, batch 128) forward and backprop of 32 to
# 64 channels at 14x14 took 50 ms against 56 with im2col, 64 to 64 channels 89 against
# 130; 16 to 32 channels at 28x28 105 against 112 (within the noise), 8 to 32 channels
# 80 against 47.
WINOGRAD_MIN_CHANNELS = 32


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
    algorithm : {"auto", "im2col", "winograd"}
        How the products are formed: im2col (below), or Winograd's F(2x2, 3x3)
        (:mod:`portnet.layers.winograd`, 3x3 stride-1 layers only; 2.25x fewer
        multiplications, the same values up to rounding). ``"auto"`` picks Winograd
        for 3x3 stride-1 layers with at least ``WINOGRAD_MIN_CHANNELS`` input channels.

    Notes
    -----
    Forward is im2col plus one matrix product, channels-last inside: the
    :math:`K = K_h K_w` shifted slices of the padded ``N x H x W x C`` view stack to
    columns ``(N, H_o, W_o, K, C)``, read as ``cols`` :math:`(N L, K C)` and multiplied
    by :math:`W` arranged as :math:`(K C, F)`; the product is the output's
    ``N x H_o x W_o x F`` memory, returned as an ``N x F x H_o x W_o`` view.
    Backprop with :math:`\delta` read as :math:`(N L, F)`:

    .. math::
        \partial W = \text{cols}^\top \delta, \quad \partial b = \textstyle\sum \delta,
        \quad \partial x = \text{col2im}(\delta W^\top)

    where col2im adds each offset's slice of :math:`\delta W^\top` back
    (:func:`portnet.layers.windows.fold_slices`). With ``ctx.ops.inplace`` the padding and the
    col2im sums are written into buffers the layer allocates; otherwise they are
    built with ``concat``.
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
        algorithm: str = "auto",
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
        if algorithm not in ALGORITHMS:
            raise ConfigError(f"unknown algorithm {algorithm!r}; choose one of {ALGORITHMS}")
        self.bias, self.init_scheme, self.algorithm = bool(bias), init, algorithm
        if algorithm == "winograd" and not self._winograd_fits:
            raise ConfigError(
                "algorithm 'winograd' computes 3x3 stride-1 convolutions only, got kernel_size "
                f"{self.kernel_size} and stride {self.stride}: use 'im2col' or 'auto'"
            )

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

    @property
    def uses_winograd(self) -> bool:
        """Whether :meth:`forward` runs Winograd's F(2x2, 3x3) rather than im2col."""
        if self.algorithm == "auto":
            return self._winograd_fits and self.in_channels >= WINOGRAD_MIN_CHANNELS
        return self.algorithm == "winograd"

    @property
    def _winograd_fits(self) -> bool:
        return self.kernel_size == (3, 3) and self.stride == (1, 1)

    def forward(self, params, x, ctx):
        xp = ctx.xp
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ConfigError(
                f"Conv2D expects N x {self.in_channels} x H x W input, got shape {tuple(x.shape)}"
            )
        xh = to_nhwc(xp, x)
        if self.uses_winograd:
            y, core_backprop = winograd.conv3x3(
                xp, xh, params["W"], self.padding, ctx.ops.inplace, ctx.need_input_grad
            )
        else:
            y, core_backprop = self._im2col(xp, xh, params["W"], ctx)
        f = self.out_channels
        out_h, out_w = y.shape[1], y.shape[2]
        if self.bias:
            # Over (N, L F) rows with b tiled along them: long inner loops (see
            # BatchNorm); y is fresh, so this is in place where allowed.
            y = xp.reshape(y, (-1, out_h * out_w * f))
            y = ctx.ops.add(y, xp.reshape(xp.broadcast_to(params["b"], (out_h * out_w, f)), (-1,)))
            y = xp.reshape(y, (-1, out_h, out_w, f))

        def backprop(dy):
            dyh = to_nhwc(xp, dy)
            dxh, dW = core_backprop(dyh)
            grads = {"W": dW}
            if self.bias:
                # A view when dy is channels-last in memory (what this stack produces).
                d = xp.reshape(dyh, (-1, f))
                # A matrix-vector product with ones: ~8x faster than sum(axis=0) on NumPy.
                ones = xp.ones((1, d.shape[0]), dtype=d.dtype, device=device_of(d))
                grads["b"] = xp.reshape(xp.matmul(ones, d), (f,))
            return (None if dxh is None else to_nchw(xp, dxh)), grads

        return to_nchw(xp, y), backprop

    def _im2col(self, xp, xh, weight, ctx):
        """im2col forward of the channels-last ``xh`` without bias: ``(y, backprop)``
        as :func:`portnet.layers.winograd.conv3x3` returns them."""
        _, h, w, c = xh.shape  # the batch size may be unknown (None)
        f = self.out_channels
        kh, kw = self.kernel_size
        out_h, out_w = output_size(h, w, self.kernel_size, self.stride, self.padding)
        inplace = ctx.ops.inplace
        xpad = pad_nhwc(xp, xh, self.padding, 0.0, inplace)
        pieces = window_slices(xpad, self.kernel_size, self.stride, (out_h, out_w))
        # -1, not N: the batch size may be unknown (None) when a graph is recorded (ONNX).
        if c == 1:
            # One channel: stacking the slices on a new first axis copies whole image
            # rows, ~6x faster on NumPy than interleaving single values on the last
            # axis; the product reads the (K, N L) stack transposed, without a copy.
            cols = xp.matrix_transpose(xp.reshape(xp.stack(pieces, axis=0), (kh * kw, -1)))
        else:
            cols = xp.reshape(xp.stack(pieces, axis=3), (-1, kh * kw * c))
        # W (F, C, Kh, Kw) as (Kh Kw C, F), matching the (k, c) order of a column row.
        W = xp.reshape(xp.permute_dims(weight, (2, 3, 1, 0)), (kh * kw * c, f))
        y = xp.reshape(xp.matmul(cols, W), (-1, out_h, out_w, f))  # channels-last
        need_dx = ctx.need_input_grad
        padded_hw = (xpad.shape[1], xpad.shape[2])
        (ph, pw) = self.padding

        def backprop(dyh):
            d = xp.reshape(dyh, (-1, f))  # a view when dy is channels-last in memory
            # cols^T d is (Kh Kw C, F), W's layout here; measured faster on OpenBLAS
            # than d^T cols for these tall-skinny operands.
            dW = xp.reshape(xp.matmul(xp.matrix_transpose(cols), d), (kh, kw, c, f))
            dW = xp.permute_dims(dW, (3, 2, 0, 1))
            if not need_dx:
                return None, dW
            # One (N L, C) product per kernel offset, each folded back as it is made:
            # contiguous pieces add ~3x faster on NumPy than the strided slices of one
            # (N L, K C) product, and only one piece is alive at a time.
            dpieces = (
                xp.reshape(
                    xp.matmul(d, xp.matrix_transpose(W[k * c : (k + 1) * c, :])),
                    (-1, out_h, out_w, c),
                )
                for k in range(kh * kw)
            )
            dxpad = fold_slices(xp, dpieces, self.kernel_size, self.stride, padded_hw, inplace)
            return (dxpad[:, ph : ph + h, pw : pw + w, :] if ph or pw else dxpad), dW

        return y, backprop

    def output_shape(self, in_shape):
        c = self.in_channels
        if len(in_shape) != 3 or in_shape[0] != c:
            raise ShapeMismatch(f"images of {c} channel{'s' * (c > 1)} ({c} x H x W)")
        h, w = in_shape[1:]
        try:
            out_hw = output_size(h, w, self.kernel_size, self.stride, self.padding)
            return (self.out_channels, *out_hw)
        except ConfigError:
            kh, kw = self.kernel_size
            takes = f"images of at least {kh} x {kw} pixels (padding included)"
            raise ShapeMismatch(takes) from None

    def inference_workspace(self, in_shape):
        _, h, w = in_shape
        (ph, pw), (kh, kw) = self.padding, self.kernel_size
        out_h, out_w = output_size(h, w, self.kernel_size, self.stride, self.padding)
        if self.uses_winograd:
            # The padded input on whole tiles, the stacked and the transformed tiles
            # (16 C each), the 16 F products and the 4 F inverse transforms per tile.
            th, tw = math.ceil(out_h / 2), math.ceil(out_w / 2)
            padded = self.in_channels * (2 * th + 2) * (2 * tw + 2)
            return padded + th * tw * (32 * self.in_channels + 20 * self.out_channels)
        # The padded channels-last copy of the input and the (L, K C) columns.
        padded = self.in_channels * (h + 2 * ph) * (w + 2 * pw)
        return padded + self.in_channels * kh * kw * out_h * out_w

    def get_config(self):
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "bias": self.bias,
            "init": self.init_scheme,
            **({} if self.algorithm == "auto" else {"algorithm": self.algorithm}),
        }


class Flatten(Layer):
    r"""``N x d_1 x ... x d_k`` to ``N x (d_1 \cdots d_k)`` (row-major, as PyTorch); backprop
    reshapes :math:`\delta` back."""

    def forward(self, params, x, ctx):
        xp = ctx.xp
        shape = tuple(x.shape)
        # -1, not N: the batch size may be unknown (None) when a graph is recorded (ONNX).
        y = xp.reshape(x, (-1, math.prod(shape[1:])))
        return y, lambda dy: (xp.reshape(dy, shape), {})

    def output_shape(self, in_shape):
        return (math.prod(in_shape),)


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

    def output_shape(self, in_shape):
        if math.prod(in_shape) != self.n_in:
            raise ShapeMismatch(f"{self.n_in} values per sample (to make {self.shape})")
        return self.shape

    def forward(self, params, x, ctx):
        xp = ctx.xp
        in_shape = tuple(x.shape)
        if math.prod(in_shape[1:]) != self.n_in:
            raise ConfigError(f"Reshape to {self.shape} got samples of shape {in_shape[1:]}")
        y = xp.reshape(x, (-1, *self.shape))  # -1: the batch size may be unknown (None)
        return y, lambda dy: (xp.reshape(dy, in_shape), {})

    def get_config(self):
        return {"shape": list(self.shape)}
