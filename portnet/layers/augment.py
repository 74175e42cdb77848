"""Data augmentation as layers: random in training, the identity in inference.

An augmentation layer sits in the network like :class:`portnet.Dropout`, so it runs
on the device, per minibatch, from the backend's native generator, and a saved model
keeps it (inactive) in its layer list. Put it right after the layer that makes
images of the flat rows (:class:`portnet.Reshape`).
"""

from __future__ import annotations

from array_api_compat import device as device_of

from ..errors import ConfigError
from .base import Layer


class RandomFlip(Layer):
    r"""Mirror each image left-right with probability ``probability``, in training only.

    For an ``N x ... x W`` batch, sample :math:`n` becomes
    :math:`y_{n,\dots,j} = x_{n,\dots,W-1-j}` when its draw :math:`u_n < p`.
    Mirroring is its own inverse and its own adjoint, so backprop mirrors
    :math:`\delta` of the same samples. A mirrored shirt is still a shirt: on
    Fashion-MNIST this adds plausible training images for free (it would not suit
    digits or text).

    Parameters
    ----------
    probability : float
        Chance that a sample is mirrored, in [0, 1]; 0.5 by default.

    Notes
    -----
    Written with ``flip`` and ``where`` from the Array API: no indexing by a
    boolean mask, so it runs unchanged on every backend. In inference
    (``ctx.training`` false) the layer returns its input, or flips every image in
    test-time flipping's flipped pass (``ctx.test_time_flip``, from
    ``Model(test_time_flip=True)``).
    """

    def __init__(self, probability: float = 0.5):
        if not 0.0 <= float(probability) <= 1.0:
            raise ConfigError(f"flip probability must be in [0, 1], got {probability}")
        self.probability = float(probability)

    def forward(self, params, x, ctx):
        if not ctx.training:
            if ctx.test_time_flip:
                xp = ctx.xp
                return xp.flip(x, axis=-1), lambda dy: (xp.flip(dy, axis=-1), {})
            return x, lambda dy: (dy, {})
        if self.probability == 0.0:
            return x, lambda dy: (dy, {})
        _check_training_images("RandomFlip", "mirrors", x, ctx)
        xp = ctx.xp
        n = x.shape[0]
        draws = ctx.random.uniform((n,), x.dtype)
        # One draw per sample, broadcast over its pixels.
        flip = xp.reshape(draws < self.probability, (n,) + (1,) * (x.ndim - 1))

        def mirror(a):
            return xp.where(flip, xp.flip(a, axis=-1), a)

        return mirror(x), lambda dy: (mirror(dy), {})

    def get_config(self):
        return {"probability": self.probability}


class RandomShift(Layer):
    r"""Move each image by up to ``max_shift`` pixels up/down and left/right, in training only.

    Sample :math:`n` draws a shift :math:`(a_n, b_n)`, each uniform on
    :math:`\{-s, \dots, s\}`, and becomes
    :math:`y_{n,\dots,i,j} = x_{n,\dots,i+a_n,j+b_n}`, with zeros where
    :math:`(i + a_n, j + b_n)` falls outside the image (the background of
    Fashion-MNIST is zero after scaling). A garment a pixel or two off centre is the
    same garment, so the network stops relying on exact positions.

    The shift is linear with zero fill, so its adjoint, which backprop applies, is
    the opposite shift with zero fill: :math:`\delta` moves back by
    :math:`(-a_n, -b_n)`.

    Parameters
    ----------
    max_shift : int
        Largest shift in pixels along each axis; 2 by default.

    Notes
    -----
    Portable and static in shape (so it compiles under ``jax.jit``): the input is
    padded once by concatenating zeros, and each axis is shifted by a chain of
    ``where`` over the :math:`2s + 1` candidate slices, one draw per sample. That is
    :math:`2(2s + 1)` passes over the small input image, cheap beside the first
    convolution. In inference the layer returns its input.
    """

    def __init__(self, max_shift: int = 2):
        if int(max_shift) != max_shift or max_shift < 0:
            raise ConfigError(f"max_shift must be a whole number of pixels >= 0, got {max_shift}")
        self.max_shift = int(max_shift)

    def forward(self, params, x, ctx):
        if not ctx.training:
            return _view_shift(ctx.xp, x, *ctx.test_time_shift)
        if self.max_shift == 0:
            return x, lambda dy: (dy, {})
        _check_training_images("RandomShift", "moves", x, ctx)
        xp, s = ctx.xp, self.max_shift
        n = x.shape[0]
        span = 2 * s + 1
        # One uniform draw per sample and axis, cut into 2s + 1 equal bins: shift k - s.
        draws = ctx.random.uniform((n, 2), x.dtype)
        bins = xp.floor(draws * span)
        lead = (n,) + (1,) * (x.ndim - 3)
        rows = xp.reshape(bins[:, 0], lead + (1, 1)) - s
        cols = xp.reshape(bins[:, 1], lead + (1, 1)) - s

        def shift(a, sign):
            a = _shift_axis(xp, a, sign * rows, s, axis=-2)
            return _shift_axis(xp, a, sign * cols, s, axis=-1)

        return shift(x, 1), lambda dy: (shift(dy, -1), {})

    def get_config(self):
        return {"max_shift": self.max_shift}


def _view_shift(xp, x, rows: int, cols: int):
    """A test-time view's shift, the same for every image: ``y[..., i, j] =
    x[..., i + rows, j + cols]`` with zero fill, and its adjoint, the opposite shift."""
    if rows == cols == 0:
        return x, lambda dy: (dy, {})

    def shift(a, sign):
        return _move(xp, _move(xp, a, sign * rows, axis=-2), sign * cols, axis=-1)

    return shift(x, 1), lambda dy: (shift(dy, -1), {})


def _move(xp, a, k: int, axis: int):
    """``out[..., i, ...] = a[..., i + k, ...]`` along ``axis`` (-1 or -2) with zero fill:
    the kept slice and a zero border, concatenated."""
    if k == 0:
        return a

    def part(start, stop):
        return a[..., start:stop] if axis == -1 else a[..., start:stop, :]

    kept, dropped = (part(k, None), part(None, k)) if k > 0 else (part(None, k), part(k, None))
    if None in dropped.shape:
        # A lazy array (ndonnx, for the ONNX export) knows the batch size only when the
        # graph runs; its zeros_like forgets the image's sizes too, which the next
        # convolution needs, so the border is the dropped slice times zero.
        border = dropped * 0.0
    else:
        border = xp.zeros(dropped.shape, dtype=a.dtype, device=device_of(a))
    return xp.concat([kept, border] if k > 0 else [border, kept], axis=axis)


def _shift_axis(xp, a, shifts, s, axis):
    """``out[..., i, ...] = a[..., i + k, ...]`` along ``axis`` with zero fill, where
    ``k`` is the sample's entry of ``shifts`` (whole numbers in [-s, s], as floats)."""
    length = a.shape[axis]
    pad_shape = list(a.shape)
    pad_shape[axis] = s
    zeros = xp.zeros(tuple(pad_shape), dtype=a.dtype, device=device_of(a))
    padded = xp.concat([zeros, a, zeros], axis=axis)

    def window(k):
        # padded index i + s + k holds a[i + k]
        start = s + k
        if axis == -1:
            return padded[..., start : start + length]
        return padded[..., start : start + length, :]

    out = window(0)
    for k in range(-s, s + 1):
        if k != 0:
            out = xp.where(shifts == k, window(k), out)
    return out


def _check_training_images(name: str, verb: str, x, ctx) -> None:
    """An augmentation layer in training needs images (N x ... x H x W) and randomness."""
    if x.ndim < 3:
        raise ConfigError(
            f"{name} {verb} images (N x ... x H x W); got shape {tuple(x.shape)}. "
            "Put it after a Reshape layer that makes images of the flat rows."
        )
    if ctx.random is None:
        raise ConfigError(f"{name} in training mode needs ctx.random (a RandomStream)")
