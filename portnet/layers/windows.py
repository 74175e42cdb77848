r"""Sliding windows by shifted basic slices (im2col / col2im), shared by convolution and pooling.

Convolution (:mod:`portnet.layers.conv`) and pooling (:mod:`portnet.layers.pooling`) take and
return channels-first ``N x C x H x W`` arrays, but work **channels-last** inside:
:func:`to_nhwc` is a ``permute_dims``, a free view on NumPy, CuPy and torch, and
each layer hands its ``N x H x W x C`` result back through :func:`to_nchw`, again a
view. Element-wise layers in between (BatchNorm, ReLU) keep their input's memory
layout, so on those libraries a whole conv stack runs channels-last without one
transpose of an activation, and the matrix products read their operands as they lie.

The standard has no ``as_strided`` and no scatter, but it has basic slicing with
steps, and slices are views on every backend:

- *im2col*: the window entry at kernel offset :math:`(u, v)` of every output
  position is the slice ``xpad[:, u : u + s_h (H_o - 1) + 1 : s_h, v : ... : s_w, :]``
  of the padded input, of shape ``(N, H_o, W_o, C)`` (:func:`window_slices`). A
  convolution stacks its :math:`K_h K_w` slices on axis 3: ``(N, H_o, W_o, K, C)``
  columns reshape for free to ``(N L, K C)`` rows for one matrix product; pooling
  reduces over them.
- *col2im* (the adjoint) adds each offset's ``(N, H_o, W_o, C)`` piece back into the
  same slice of a zero array (:func:`fold_slices`). Where the library may update
  arrays in place (``ctx.ops.inplace``) that is ``buf[slice] += piece`` on a buffer the
  layer allocated itself. Elsewhere (JAX, array-api-strict) each piece is dilated by
  the stride (stacked with zeros, reshaped) and zero-padded into place with
  ``concat``, and the placed pieces are summed: more memory traffic, same result,
  and what a compiler such as XLA fuses.

Padding is a ``concat`` of constant borders, or a copy into a filled buffer in place.
No index array exists any more; :func:`window_sources` and :func:`window_adjoint`,
the host index maps of the earlier gather-based layers, remain as an independent
reference that the tests check the slices against.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from array_api_compat import device as device_of

from ..errors import ConfigError


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(int(v) != v for v in pair):
        raise ConfigError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def output_size(
    h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[int, int]:
    """``(H_o, W_o)`` of sliding ``kernel`` windows over an ``h x w`` input (floor mode)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    out_h, out_w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if out_h < 1 or out_w < 1 or h + 2 * ph < kh or w + 2 * pw < kw:
        raise ConfigError(f"a {kh}x{kw} window with padding {padding} does not fit a {h}x{w} input")
    return out_h, out_w


def to_nhwc(xp: Any, x: Any) -> Any:
    """``N x C x H x W`` to ``N x H x W x C`` (a view where the library has views)."""
    return xp.permute_dims(x, (0, 2, 3, 1))


def to_nchw(xp: Any, x: Any) -> Any:
    """``N x H x W x C`` to ``N x C x H x W`` (a view where the library has views)."""
    return xp.permute_dims(x, (0, 3, 1, 2))


def pad_nhwc(
    xp: Any,
    x: Any,
    padding: tuple[int, int],
    value: float,
    inplace: bool,
    extra: tuple[int, int] = (0, 0),
) -> Any:
    """``x`` (``N x H x W x C``) with ``padding`` rows and columns of ``value`` on each
    side, and ``extra`` more after the last row and column."""
    (ph, pw), (eh, ew) = padding, extra
    if ph == pw == eh == ew == 0:
        return x
    if inplace:
        n, h, w, c = x.shape
        dev = device_of(x)
        # One filled buffer and one copy: NumPy's concat along inner axes of a 4-D
        # array moves many small blocks and was measured ~10x slower.
        shape = (n, h + 2 * ph + eh, w + 2 * pw + ew, c)
        out = xp.full(shape, value, dtype=x.dtype, device=dev)
        out[:, ph : ph + h, pw : pw + w, :] = x
        return out
    if ph or eh:
        before = [_border(xp, x, 1, ph, value)] if ph else []
        x = xp.concat(before + [x, _border(xp, x, 1, ph + eh, value)], axis=1)
    if pw or ew:
        before = [_border(xp, x, 2, pw, value)] if pw else []
        x = xp.concat(before + [x, _border(xp, x, 2, pw + ew, value)], axis=2)
    return x


def _border(xp: Any, x: Any, axis: int, size: int, value: float) -> Any:
    """An array of ``value`` with the sizes of ``x``, except ``size`` along ``axis``."""
    shape = list(x.shape)
    shape[axis] = size
    if None not in shape:
        return xp.full(tuple(shape), value, dtype=x.dtype, device=device_of(x))
    # The standard lets a lazy array leave a size unknown (None): ndonnx, for the ONNX
    # export, records the batch size as a symbol. full_like takes the sizes from x when
    # the graph runs. Only here: NumPy's concat follows full_like's (permuted) memory
    # order, which would change the padded layout the convolution reads.
    edge = xp.full_like(x[(slice(None),) * axis + (slice(0, 1), ...)], value)
    return edge if size == 1 else xp.concat([edge] * size, axis=axis)


def _span(start: int, count: int, step: int) -> slice:
    """The basic slice of ``count`` entries from ``start`` every ``step``."""
    return slice(start, start + step * (count - 1) + 1, step)


def window_slices(
    xpad: Any, kernel: tuple[int, int], stride: tuple[int, int], out_hw: tuple[int, int]
) -> list[Any]:
    """The ``K_h K_w`` views ``(N, H_o, W_o, C)`` of a padded ``N x H x W x C`` input,
    one per kernel offset in row-major order: entry ``(n, i, j, c)`` of view
    ``u K_w + v`` is ``xpad[n, s_h i + u, s_w j + v, c]``."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out_hw
    return [xpad[:, _span(u, oh, sh), _span(v, ow, sw), :] for u in range(kh) for v in range(kw)]


def fold_slices(
    xp: Any,
    pieces: Iterable[Any],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padded_hw: tuple[int, int],
    inplace: bool,
) -> Any:
    """col2im: the sum of the pieces ``(N, H_o, W_o, C)``, one per kernel offset in
    row-major order, each added into the slice of a zero ``(N, H_p, W_p, C)`` array
    that :func:`window_slices` read it from. ``pieces`` may be a generator: each piece
    is used once, in order, so only one need exist at a time."""
    (kh, kw), (sh, sw) = kernel, stride
    hp, wp = padded_hw
    pieces = iter(pieces)
    out = None
    if inplace:
        for k, piece in enumerate(pieces):
            if out is None:
                n, oh, ow, c = piece.shape
                # `full`, not `zeros`: NumPy's zeros is calloc, whose fresh pages fault
                # on first touch (~2 ms per 12 MB measured here); full reuses the heap.
                out = xp.full((n, hp, wp, c), 0.0, dtype=piece.dtype, device=device_of(piece))
            u, v = divmod(k, kw)
            out[:, _span(u, oh, sh), _span(v, ow, sw), :] += piece
        return out
    # Without in-place updates: sum the pieces of each kernel row placed along W, then
    # place each row sum along H (kh + kh kw placements instead of kh kw full-size ones).
    for u in range(kh):
        row = None
        for v in range(kw):
            placed = _place(xp, next(pieces), 2, v, sw, wp)
            row = placed if row is None else row + placed
        placed = _place(xp, row, 1, u, sh, hp)
        out = placed if out is None else out + placed
    return out


def _place(xp: Any, a: Any, axis: int, start: int, step: int, length: int) -> Any:
    """``a`` spread along ``axis`` to ``length`` entries: entry ``i`` moves to
    ``start + step i`` and zeros fill the rest (dilation by ``step``, then padding)."""
    shape = list(a.shape)
    dev = device_of(a)
    if step > 1:
        # Interleave step - 1 zero slabs after each entry: stack on a new axis right
        # after `axis`, then merge the two.
        zero = xp.zeros(tuple(shape), dtype=a.dtype, device=dev)
        a = xp.stack([a] + [zero] * (step - 1), axis=axis + 1)
        shape[axis] *= step
        a = xp.reshape(a, tuple(shape))
        if start + shape[axis] > length:  # the dilation's trailing zeros past the end
            keep = [slice(None)] * len(shape)
            keep[axis] = slice(0, length - start)
            a = a[tuple(keep)]
            shape[axis] = length - start

    def zeros(size):
        return xp.zeros(tuple(shape[:axis] + [size] + shape[axis + 1 :]), dtype=a.dtype, device=dev)

    after = length - start - shape[axis]
    parts = ([zeros(start)] if start else []) + [a] + ([zeros(after)] if after else [])
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=axis)


def window_sources(
    h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[np.ndarray, int, int]:
    """Host index map of sliding windows: ``src[l, k]`` is the flat input position
    (``row * w + col``) seen by output position ``l`` at kernel offset ``k``, or -1
    where the window covers padding. Returns ``(src, out_h, out_w)``.

    The layers no longer use it (they slice); it stays as a reference map."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    out_h, out_w = output_size(h, w, kernel, stride, padding)
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
