r"""Winograd's minimal filtering F(2x2, 3x3) for 3x3 stride-1 convolutions (Lavin & Gray, 2016).

A 2x2 output tile of a 3x3 cross-correlation over a 4x4 input tile :math:`d`:

.. math::
    Y = A^\top \left[ (G g G^\top) \odot (B^\top d B) \right] A

with the fixed transforms

.. math::
    B^\top = \begin{pmatrix} 1 & 0 & -1 & 0 \\ 0 & 1 & 1 & 0 \\
                             0 & -1 & 1 & 0 \\ 0 & 1 & 0 & -1 \end{pmatrix}, \quad
    G = \begin{pmatrix} 1 & 0 & 0 \\ \tfrac12 & \tfrac12 & \tfrac12 \\
                        \tfrac12 & -\tfrac12 & \tfrac12 \\ 0 & 0 & 1 \end{pmatrix}, \quad
    A^\top = \begin{pmatrix} 1 & 1 & 1 & 0 \\ 0 & 1 & -1 & -1 \end{pmatrix}.

Summed over input channels, each of the 16 positions :math:`\xi` of the transformed
tile is one matrix product :math:`M_\xi = V_\xi U_\xi`, with :math:`V_\xi` the
``(tiles, C)`` transformed input and :math:`U_\xi` the ``(C, F)`` transformed filter:
16 multiplications per 2x2 outputs and channel pair where im2col needs 36, so the
matrix products do 2.25x fewer flops.

Every transform is linear, so it is one matrix product with a Kronecker product:
``vec`` of :math:`B^\top d B` is :math:`(B^\top \otimes B^\top)\,\text{vec}\, d`. The
input tiles are the 16 shifted slices (stride 2) of the padded channels-last input,
stacked on a leading axis, so one ``(16, 16)`` product transforms all of them.
Backprop applies the transposes: :math:`\partial M = (A \otimes A)\,\partial Y`,
:math:`\partial U_\xi = V_\xi^\top \partial M_\xi`,
:math:`\partial V_\xi = \partial M_\xi U_\xi^\top`, then
:math:`\partial g = (G \otimes G)^\top \partial U` and
:math:`\partial d = (B \otimes B)\,\partial V`, folded back (col2im, tiles overlap by
two pixels).

The transform matrices are built on the arrays' device from ``eye`` rows, so a step
uploads nothing. Outputs of odd height or width are computed on one more row or
column of zero padding and cropped.
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import device as device_of

from .windows import fold_slices, pad_nhwc, window_slices

TILE, OUT, TAPS = 4, 2, 3  # input tile, output tile and filter sizes of F(2x2, 3x3)


def _kron(xp: Any, a: Any, b: Any) -> Any:
    """The Kronecker product of two matrices (the standard has no ``kron``)."""
    (p, q), (r, s) = a.shape, b.shape
    return xp.reshape(a[:, None, :, None] * b[None, :, None, :], (p * r, q * s))


def transforms(xp: Any, dtype: Any, device: Any) -> dict[str, Any]:
    """``B^T (x) B^T`` (16, 16), ``G (x) G`` (16, 9) and ``A^T (x) A^T`` (4, 16) on ``device``."""
    e4 = xp.eye(TILE, dtype=dtype, device=device)
    e3 = xp.eye(TAPS, dtype=dtype, device=device)
    d0, d1, d2, d3 = (e4[k, :] for k in range(TILE))
    g0, g1, g2 = (e3[k, :] for k in range(TAPS))
    b_t = xp.stack([d0 - d2, d1 + d2, d2 - d1, d1 - d3])
    g = xp.stack([g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2])
    a_t = xp.stack([d0 + d1 + d2, d1 - d2 - d3])
    return {"B": _kron(xp, b_t, b_t), "G": _kron(xp, g, g), "A": _kron(xp, a_t, a_t)}


def conv3x3(xp: Any, xh: Any, weight: Any, padding: tuple[int, int], inplace: bool, need_dx: bool):
    """A 3x3 stride-1 convolution of the channels-last ``xh`` (``N x H x W x C``) with
    ``weight`` (``F x C x 3 x 3``), without bias.

    Returns ``(y, backprop)``: ``y`` is ``N x H_o x W_o x F`` (channels-last) and
    ``backprop(dyh)`` takes the channels-last output gradient and returns
    ``(dxh, dweight)`` (``dxh`` is None unless ``need_dx``).
    """
    _, h, w, c = xh.shape
    f = weight.shape[0]
    (ph, pw) = padding
    out_h, out_w = h + 2 * ph - TAPS + 1, w + 2 * pw - TAPS + 1
    th, tw = math.ceil(out_h / OUT), math.ceil(out_w / OUT)
    # One more zero row / column where the output size is odd: whole tiles only.
    xpad = pad_nhwc(xp, xh, padding, 0.0, inplace, extra=(OUT * th - out_h, OUT * tw - out_w))
    t = transforms(xp, xh.dtype, device_of(xh))
    tiles = xp.stack(window_slices(xpad, (TILE, TILE), (OUT, OUT), (th, tw)), axis=0)
    v = xp.reshape(xp.matmul(t["B"], xp.reshape(tiles, (TILE * TILE, -1))), (TILE * TILE, -1, c))
    g = xp.reshape(xp.permute_dims(weight, (2, 3, 1, 0)), (TAPS * TAPS, c * f))
    u = xp.reshape(xp.matmul(t["G"], g), (TILE * TILE, c, f))
    m = xp.matmul(v, u)  # (16, tiles, F): one product per tile position
    y = xp.reshape(xp.matmul(t["A"], xp.reshape(m, (TILE * TILE, -1))), (OUT, OUT, -1, th, tw, f))
    # (a, b, n, i, j, f) to (n, 2i + a, 2j + b, f): a copy that interleaves the tiles.
    y = xp.reshape(xp.permute_dims(y, (2, 3, 0, 4, 1, 5)), (-1, OUT * th, OUT * tw, f))
    if (OUT * th, OUT * tw) != (out_h, out_w):
        y = y[:, :out_h, :out_w, :]
    padded_hw = (xpad.shape[1], xpad.shape[2])

    def backprop(dyh):
        dy = dyh
        if (OUT * th, OUT * tw) != (out_h, out_w):
            dy = pad_nhwc(xp, dy, (0, 0), 0.0, inplace, extra=(OUT * th - out_h, OUT * tw - out_w))
        dy = xp.permute_dims(xp.reshape(dy, (-1, th, OUT, tw, OUT, f)), (2, 4, 0, 1, 3, 5))
        dy = xp.reshape(dy, (OUT * OUT, -1))  # (4, tiles F), tile position first
        dm = xp.reshape(xp.matmul(xp.matrix_transpose(t["A"]), dy), (TILE * TILE, -1, f))
        du = xp.reshape(xp.matmul(xp.matrix_transpose(v), dm), (TILE * TILE, c * f))
        dg = xp.reshape(xp.matmul(xp.matrix_transpose(t["G"]), du), (TAPS, TAPS, c, f))
        dweight = xp.permute_dims(dg, (3, 2, 0, 1))
        if not need_dx:
            return None, dweight
        dv = xp.reshape(xp.matmul(dm, xp.matrix_transpose(u)), (TILE * TILE, -1))
        dtiles = xp.matmul(xp.matrix_transpose(t["B"]), dv)
        dtiles = xp.reshape(dtiles, (TILE * TILE, -1, th, tw, c))
        pieces = (dtiles[k, ...] for k in range(TILE * TILE))
        dxpad = fold_slices(xp, pieces, (TILE, TILE), (OUT, OUT), padded_hw, inplace)
        return dxpad[:, ph : ph + h, pw : pw + w, :], dweight

    return y, backprop
