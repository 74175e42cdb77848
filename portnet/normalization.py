r"""Batch normalization for ``N x F`` features and ``N x C x H x W`` images."""

from __future__ import annotations

import numpy as np

from .errors import ConfigError
from .inplace import UPDATES
from .layers import Layer


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

    Backprop in training mode, with :math:`g = \gamma\delta` and
    :math:`s = (\sigma^2+\epsilon)^{-1/2}`:

    .. math::
        \partial\gamma = \sum \delta\hat x, \quad \partial\beta = \sum \delta, \quad
        \partial x = \frac{s}{m}\Big(m g - \sum g - \hat x \sum g \hat x\Big)
                    = \gamma s\Big(\delta - \frac{\partial\beta}{m}
                      - \hat x\,\frac{\partial\gamma}{m}\Big)

    and in inference mode :math:`\partial x = s_{run}\, g` (the statistics are constants).
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

    def forward(self, params, x, ctx):
        y, backprop, _ = self.forward_with_state(params, x, ctx)
        return y, backprop

    def forward_with_state(self, params, x, ctx):
        xp = ctx.xp
        if x.ndim not in (2, 4) or x.shape[1] != self.n_features:
            raise ConfigError(
                f"BatchNorm({self.n_features}) expects N x {self.n_features} or "
                f"N x {self.n_features} x H x W input, got shape {tuple(x.shape)}"
            )
        axes = (0,) if x.ndim == 2 else (0, 2, 3)
        # Per-channel vectors broadcast as (1, C) or (1, C, 1, 1).
        bshape = (1, self.n_features) + (1,) * (x.ndim - 2)
        m = x.shape[0] if x.ndim == 2 else x.shape[0] * x.shape[2] * x.shape[3]
        gamma = xp.reshape(params["gamma"], bshape)
        beta = xp.reshape(params["beta"], bshape)
        new_state = {}
        if ctx.training:
            mean = xp.mean(x, axis=axes, keepdims=True)
            centered = x - mean
            var = xp.mean(centered * centered, axis=axes, keepdims=True)
            a, unbiased = self.momentum, m / max(m - 1, 1)
            new_state = {
                "running_mean": (1.0 - a) * params["running_mean"]
                + a * xp.reshape(mean, (self.n_features,)),
                "running_var": (1.0 - a) * params["running_var"]
                + (a * unbiased) * xp.reshape(var, (self.n_features,)),
            }
        else:
            mean = xp.reshape(params["running_mean"], bshape)
            var = xp.reshape(params["running_var"], bshape)
            centered = x - mean
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        # Whole-array passes dominate on large conv activations: update the fresh
        # arrays (centered, y, dx) in place where the backend allows it.
        u = UPDATES[ctx.inplace]
        x_hat = u.mul(centered, inv_std)
        y = u.add(x_hat * gamma, beta)
        training = ctx.training

        def backprop(dy):
            dgamma = xp.sum(dy * x_hat, axis=axes, keepdims=True)
            dbeta = xp.sum(dy, axis=axes, keepdims=True)
            grads = {
                "gamma": xp.reshape(dgamma, (self.n_features,)),
                "beta": xp.reshape(dbeta, (self.n_features,)),
            }
            scale = gamma * inv_std  # per channel
            if not training:
                return dy * scale, grads
            # With g = gamma dy: sum g = gamma dbeta and sum g x_hat = gamma dgamma, so
            # dx = gamma s (dy - dbeta/m - x_hat dgamma/m): with per-channel factors the
            # backprop makes 5 passes over the activations and 2 reductions (was 7 and 4).
            dx = dy - dbeta * (1.0 / m)
            correction = x_hat * (dgamma * (1.0 / m))
            return u.mul(u.sub(dx, correction), scale), grads

        return y, backprop, new_state

    def get_config(self):
        return {"n_features": self.n_features, "momentum": self.momentum, "eps": self.eps}
