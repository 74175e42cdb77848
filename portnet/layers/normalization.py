r"""Batch normalization for ``N x F`` features and ``N x C x H x W`` images."""

from __future__ import annotations

import numpy as np
from array_api_compat import device as device_of

from ..errors import ConfigError
from .base import Layer, ShapeMismatch


class BatchNorm(Layer):
    r"""Batch normalization (Ioffe & Szegedy, 2015) over the batch (and spatial) axes.

    For each feature / channel :math:`c`, over the :math:`m` values of the batch
    (:math:`m = N` for ``N x F`` input, :math:`m = NHW` for ``N x C x H x W``):

    .. math::
        \mu = \frac1m \sum x, \quad \sigma^2 = \frac1m \sum (x - \mu)^2, \quad
        \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \quad
        y = \gamma \hat x + \beta

    In training mode the batch statistics are used and the running statistics move
    towards them (PyTorch's convention, unbiased variance in the running estimate):

    .. math::
        \mu_{run} \leftarrow (1 - \alpha)\mu_{run} + \alpha\mu, \quad
        \sigma^2_{run} \leftarrow (1 - \alpha)\sigma^2_{run} + \alpha\tfrac{m}{m-1}\sigma^2

    In inference mode :math:`\mu_{run}, \sigma^2_{run}` replace the batch statistics.

    Parameters
    ----------
    n_features : int
        :math:`F` or :math:`C`.
    momentum : float
        :math:`\alpha`, the weight of the new batch in the running statistics.
    eps : float
        :math:`\epsilon`.

    Notes
    -----
    Trainable: ``gamma`` (init 1) and ``beta`` (init 0). ``weight_names`` is empty:
    L1/L2 penalties pull weights towards 0, which for ``gamma`` would shrink every
    normalized activation instead of simplifying the model, so (as commonly done)
    neither is regularized. ``running_mean`` / ``running_var`` are ``state_names``:
    the optimizer leaves them alone, :meth:`forward_with_state` returns their new
    values in training mode and the training step stores them after the optimizer
    step; they are saved and loaded like weights.

    Backprop in training mode, with :math:`s = (\sigma^2+\epsilon)^{-1/2}`,
    :math:`a = \gamma s` and :math:`x_c = x - \mu`:

    .. math::
        \partial\beta = \sum \delta, \quad
        \partial\gamma = \sum \delta\hat x = s \sum \delta x_c, \quad
        \partial x = a\,\delta - x_c\, \frac{a\, s\, \partial\gamma}{m}
                     - \frac{a\, \partial\beta}{m}

    and in inference mode :math:`\partial x = a_{run}\,\delta` (the statistics are
    constants). Only per-channel vectors are formed besides the activation-sized
    passes: forward 4 (:math:`x_c`, :math:`x_c^2`, :math:`a x_c`, :math:`+\beta`) and
    backprop 5, plus 3 reading sums; on torch the products with a sum are fused
    (:meth:`~portnet.backends.ops.Ops.multiply_add`), forward 3 and backprop 3.

    Images are handled as an ``(N, H W C)`` matrix: a free view of the channels-last
    memory that :class:`~portnet.layers.conv.Conv2D` produces (see :mod:`portnet.layers.windows`),
    a copy otherwise. Its per-channel sums are one matrix-vector product with a row
    of ones (measured ~8x faster on NumPy/OpenBLAS than ``sum`` over the batch
    axes), and per-channel factors are tiled along the row.
    """

    def __init__(self, n_features: int, momentum: float = 0.1, eps: float = 1e-5):
        if int(n_features) < 1:
            raise ConfigError(f"n_features must be positive, got {n_features}")
        if not 0.0 <= float(momentum) <= 1.0:
            raise ConfigError(f"momentum must be in [0, 1], got {momentum}")
        if float(eps) <= 0.0:
            raise ConfigError(f"eps must be positive, got {eps}")
        self.n_features, self.momentum, self.eps = int(n_features), float(momentum), float(eps)

    def init(self, rng):
        f = self.n_features
        return {
            "gamma": np.ones(f),
            "beta": np.zeros(f),
            "running_mean": np.zeros(f),
            "running_var": np.ones(f),
        }

    @property
    def state_names(self):
        return ("running_mean", "running_var")

    def output_shape(self, in_shape):
        f = self.n_features
        if len(in_shape) not in (1, 3) or in_shape[0] != f:
            raise ShapeMismatch(f"{f} features ({f} or {f} x H x W per sample)")
        return tuple(in_shape)

    def forward(self, params, x, ctx):
        y, backprop, _ = self.forward_with_state(params, x, ctx)
        return y, backprop

    def forward_with_state(self, params, x, ctx):
        xp = ctx.xp
        # None: a width the ONNX export leaves symbolic (after a Dense layer).
        if x.ndim not in (2, 4) or x.shape[1] not in (None, self.n_features):
            raise ConfigError(
                f"BatchNorm({self.n_features}) expects N x {self.n_features} or "
                f"N x {self.n_features} x H x W input, got shape {tuple(x.shape)}"
            )
        f = self.n_features
        x_shape = tuple(x.shape)
        rows = _as_rows(xp, x)  # (N, P F): P = H W pixels per sample, channels-last
        reps = 1 if x.ndim == 2 else rows.shape[1] // f
        ones = None  # made at the first sum: inference needs none, nor the batch size

        def colsum(a):
            """Per-channel sums: one matrix-vector product, then a sum over P."""
            nonlocal ones
            if ones is None:
                ones = xp.ones((1, a.shape[0]), dtype=a.dtype, device=device_of(a))
            return xp.sum(xp.reshape(xp.matmul(ones, a), (reps, f)), axis=0)

        def tile(v):
            """A per-channel vector repeated along a row (P F entries), so element-wise
            passes run over long rows rather than F-long inner loops (~2x on NumPy)."""
            return v if reps == 1 else xp.reshape(xp.broadcast_to(v, (reps, f)), (reps * f,))

        ops = ctx.ops
        gamma = params["gamma"]
        new_state = {}
        if ctx.training:
            # Over the whole batch, also when this pass runs one shard of it.
            m = ctx.batch_rows(rows.shape[0]) * reps
            (mean,) = ctx.batch_sum(colsum(rows))
            mean = mean * (1.0 / m)
            centered = rows - tile(mean)
            # Two passes (mean, then centred squares): exact where E[x^2] - mean^2
            # would cancel in float32.
            (var,) = ctx.batch_sum(colsum(centered * centered))
            var = var * (1.0 / m)
            a, unbiased = self.momentum, m / max(m - 1, 1)
            new_state = {
                "running_mean": (1.0 - a) * params["running_mean"] + a * mean,
                "running_var": (1.0 - a) * params["running_var"] + (a * unbiased) * var,
            }
            inv_std = 1.0 / xp.sqrt(var + self.eps)
            scale = gamma * inv_std
            y = ops.multiply_add(centered, tile(scale), tile(params["beta"]))
        else:
            inv_std = 1.0 / xp.sqrt(params["running_var"] + self.eps)
            scale = gamma * inv_std
            # Statistics are constants: y = x a + (beta - mean a), two passes.
            shift = params["beta"] - params["running_mean"] * scale
            y = ops.multiply_add(rows, tile(scale), tile(shift))
        training = ctx.training

        def backprop(dy):
            d = _as_rows(xp, dy)
            dbeta = colsum(d)
            grads = {"beta": dbeta}
            if not training:
                x_hat_sum = colsum(d * (rows - tile(params["running_mean"])))
                grads["gamma"] = x_hat_sum * inv_std
                return _from_rows(xp, d * tile(scale), x_shape), grads
            grads["gamma"] = colsum(d * centered) * inv_std
            # dx takes the whole batch's sums; the gradients returned are this pass's
            # (a sharded step adds the shards').
            dbeta, dgamma = ctx.batch_sum(dbeta, grads["gamma"])
            # x_c (-k) - a dbeta / m + a d, with k = a s dgamma / m: two fused products
            # (one pass each on torch), the signs folded into the per-channel factors.
            dx = ops.multiply_add(
                centered,
                tile(scale * inv_std * dgamma * (-1.0 / m)),
                tile(scale * dbeta * (-1.0 / m)),
            )
            dx = ops.add_product(dx, d, tile(scale))
            return _from_rows(xp, dx, x_shape), grads

        return _from_rows(xp, y, x_shape), backprop, new_state

    def get_config(self):
        return {"n_features": self.n_features, "momentum": self.momentum, "eps": self.eps}


def _as_rows(xp, x):
    """``N x F`` as is; ``N x C x H x W`` as the ``(N, H W C)`` matrix of its
    channels-last view (free when the memory is channels-last)."""
    if x.ndim == 2:
        return x
    _, c, h, w = x.shape  # -1 below: the batch size may be unknown (None, ONNX export)
    return xp.reshape(xp.permute_dims(x, (0, 2, 3, 1)), (-1, h * w * c))


def _from_rows(xp, rows, shape):
    """The inverse of :func:`_as_rows`: a channels-last view with ``shape``."""
    if len(shape) == 2:
        return rows
    _, c, h, w = shape
    return xp.permute_dims(xp.reshape(rows, (-1, h, w, c)), (0, 3, 1, 2))
