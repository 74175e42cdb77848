r"""Optimizers: ``init(params) -> state``, ``update(params, grads, state, lr) -> (params, state)``.

Two paths compute the same numbers:

* the **portable** path rebinds (``p = p - lr * g``): the standard does not promise
  in-place mutation (JAX arrays are immutable), and it is what array-api-strict runs;
* the **in-place** path (NumPy, CuPy, torch) updates parameters and buffers with
  ``*=``/``-=`` and reuses the gradient arrays as scratch, so a step allocates no
  parameter-sized temporaries. Gradients passed to ``update`` are consumed.

Tests check that both paths give equal results.
"""

from __future__ import annotations

import math
from typing import Any

from . import sync_free
from ._array import Tree, tree_leaves
from .schedules import Schedule, as_schedule


class Optimizer:
    r"""Base optimizer.

    Parameters
    ----------
    lr : float or Schedule
        Learning rate, or a schedule evaluated once per epoch.
    weight_decay : float
        Decoupled weight decay :math:`w \leftarrow w - \eta \lambda_{wd} w`, applied to
        weights only (see ``decay_mask`` in :meth:`init`).
    clip_norm : float, optional
        Rescale the whole gradient so its global L2 norm is at most this. Done
        branch-free on the device: :math:`g \cdot \min(1, c / (\lVert g\rVert + 10^{-12}))`.
    clip_value : float, optional
        Clip every gradient entry to ``[-clip_value, clip_value]``.
    inplace : bool, optional
        Force the in-place or the portable path; by default the model chooses
        from its backend.
    """

    slot_names: tuple[str, ...] = ()

    def __init__(
        self,
        lr: float | Schedule = 0.01,
        *,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        clip_value: float | None = None,
        inplace: bool | None = None,
    ):
        self.schedule = as_schedule(lr)
        self.weight_decay = float(weight_decay)
        self.clip_norm = clip_norm
        self.clip_value = clip_value
        self.inplace = inplace

    def lr_at(self, epoch: int) -> float:
        """The learning rate for ``epoch`` (a Python float)."""
        return self.schedule(epoch)

    def init(
        self,
        params: Tree,
        decay_mask: list[tuple[str, ...]] | None = None,
        frozen: list[tuple[str, ...]] | None = None,
    ) -> dict[str, Any]:
        """Create the optimizer state: step count and zeroed buffers like ``params``.

        ``decay_mask`` lists, per layer, the parameter names weight decay applies
        to; by default the ones called ``"W"``. ``frozen`` lists, per layer, the
        entries the optimizer must leave alone (non-trainable state such as
        batch-norm running statistics); they need no gradient.
        """
        if decay_mask is None:
            decay_mask = [tuple(k for k in layer if k == "W") for layer in params]
        if frozen is None:
            frozen = [() for _ in params]
        slots = [
            {
                key: {name: _zeros_like(p) for name in self.slot_names}
                for key, p in layer.items()
                if key not in skip
            }
            for layer, skip in zip(params, frozen, strict=True)
        ]
        return {"t": 0, "slots": slots, "decay_mask": decay_mask, "frozen": frozen}

    def gradient_scale(self, lr: float) -> float | None:
        """The factor ``update(..., prescaled=True)`` expects gradients multiplied by.

        ``None`` when this optimizer needs the raw gradients (adaptive methods, or
        clipping, whose thresholds refer to raw gradients).
        """
        return None

    def update(
        self,
        params: Tree,
        grads: Tree,
        state: dict[str, Any],
        lr: float | None = None,
        prescaled: bool = False,
    ) -> tuple[Tree, dict[str, Any]]:
        """Apply one step. Returns the new parameters and state.

        With ``prescaled=True`` the gradients are already multiplied by
        :meth:`gradient_scale` (the training loop does this once on the loss gradient).
        """
        lr = self.lr_at(0) if lr is None else float(lr)
        inplace = bool(self.inplace)
        grads = self._clip(grads)
        t = state["t"] + 1
        new_params, new_slots = [], []
        for layer_p, layer_g, layer_s, decayed in zip(
            params, grads, state["slots"], state["decay_mask"], strict=True
        ):
            out, out_slots = {}, {}
            for key, p in layer_p.items():
                if key not in layer_s:  # frozen: non-trainable state, updated elsewhere
                    out[key] = p
                    continue
                if self.weight_decay and key in decayed:
                    if inplace:
                        p *= 1.0 - lr * self.weight_decay
                    else:
                        p = p * (1.0 - lr * self.weight_decay)
                # A fresh slot dict: the portable path rebinds its entries, and the
                # state passed in must stay as it was (update is a pure function there).
                out_slots[key] = dict(layer_s[key])
                g = layer_g[key]
                if prescaled:
                    out[key] = self._step_prescaled(p, g, out_slots[key], inplace)
                else:
                    out[key] = self._step(p, g, out_slots[key], lr, t, inplace)
            new_params.append(out)
            new_slots.append(out_slots)
        return new_params, {**state, "t": t, "slots": new_slots}

    def _clip(self, grads: Tree) -> Tree:
        if self.clip_value is not None:
            c = float(self.clip_value)
            grads = [
                {k: sync_free.clip(_xp(g), g, -c, c) for k, g in layer.items()} for layer in grads
            ]
        if self.clip_norm is not None:
            leaves = tree_leaves(grads)
            xp = _xp(leaves[0])
            total = xp.sqrt(sum(xp.sum(g * g) for g in leaves))
            # A device 0-d factor, so clipping needs no host read and no branch.
            scale = sync_free.minimum(xp, float(self.clip_norm) / (total + 1e-12), 1.0)
            grads = [
                {k: g * xp.astype(scale, g.dtype) for k, g in layer.items()} for layer in grads
            ]
        return grads

    def _step(self, p, g, slots: dict[str, Any], lr: float, t: int, inplace: bool):
        raise NotImplementedError

    def _step_prescaled(self, p, g, slots: dict[str, Any], inplace: bool):
        raise NotImplementedError(f"{type(self).__name__} takes raw gradients")

    def _unclipped(self) -> bool:
        return self.clip_norm is None and self.clip_value is None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.schedule!r})"


def _xp(array):
    import array_api_compat

    return array_api_compat.array_namespace(array)


def _zeros_like(p):
    return _xp(p).zeros_like(p)


class SGD(Optimizer):
    r"""Plain gradient descent :math:`w \leftarrow w - \eta g`."""

    def gradient_scale(self, lr):
        return lr if self._unclipped() else None

    def _step(self, p, g, slots, lr, t, inplace):
        if inplace:
            g *= lr
            p -= g
            return p
        return p - lr * g

    def _step_prescaled(self, p, g, slots, inplace):  # g is already lr * gradient
        if inplace:
            p -= g
            return p
        return p - g


class Momentum(Optimizer):
    r"""Gradient descent with momentum, in either form the reference studies use.

    * ``form="classic"`` (S1): :math:`v \leftarrow \gamma v - \eta g,\; w \leftarrow w + v`.
    * ``form="ema"`` (S2): :math:`v \leftarrow \gamma v + (1-\gamma) g,\; w \leftarrow w - \eta v`.

    With a constant rate the EMA form equals the classic one with rate
    :math:`\eta(1-\gamma)`.
    """

    slot_names = ("velocity",)

    def __init__(self, lr=0.01, gamma: float = 0.9, form: str = "classic", **kwargs):
        super().__init__(lr, **kwargs)
        if form not in ("classic", "ema"):
            raise ValueError(f"momentum form must be 'classic' or 'ema', got {form!r}")
        if not 0.0 <= gamma < 1.0:
            raise ValueError(f"momentum gamma must be in [0, 1), got {gamma}")
        self.gamma, self.form = float(gamma), form

    def gradient_scale(self, lr):
        return lr if self.form == "classic" and self._unclipped() else None

    def _step_prescaled(self, p, g, slots, inplace):  # classic form, g = lr * gradient
        v = slots["velocity"]
        if inplace:
            v *= self.gamma
            v -= g
            p += v
            return p
        v = self.gamma * v - g
        slots["velocity"] = v
        return p + v

    def _step(self, p, g, slots, lr, t, inplace):
        v, gamma = slots["velocity"], self.gamma
        if self.form == "classic":
            if inplace:
                v *= gamma
                g *= lr
                v -= g
                p += v
                return p
            v = gamma * v - lr * g
            slots["velocity"] = v
            return p + v
        if inplace:
            v *= gamma
            g *= 1.0 - gamma
            v += g
            g[...] = v
            g *= lr
            p -= g
            return p
        v = gamma * v + (1.0 - gamma) * g
        slots["velocity"] = v
        return p - lr * v

    def __repr__(self):
        return f"Momentum(lr={self.schedule!r}, gamma={self.gamma:g}, form={self.form!r})"


class Nesterov(Optimizer):
    r"""Nesterov momentum (the form PyTorch uses):
    :math:`v \leftarrow \mu v + g,\; w \leftarrow w - \eta (g + \mu v)`."""

    slot_names = ("velocity",)

    def __init__(self, lr=0.01, gamma: float = 0.9, **kwargs):
        super().__init__(lr, **kwargs)
        self.gamma = float(gamma)

    def _step(self, p, g, slots, lr, t, inplace):
        v, mu = slots["velocity"], self.gamma
        if inplace:
            v *= mu
            v += g
            g += mu * v
            g *= lr
            p -= g
            return p
        v = mu * v + g
        slots["velocity"] = v
        return p - lr * (g + mu * v)


class RMSProp(Optimizer):
    r"""RMSProp.

    :math:`s \leftarrow \rho s + (1-\rho) g^2,\; w \leftarrow w - \eta\, g / (\sqrt{s} + \epsilon)`.
    """

    slot_names = ("square_avg",)

    def __init__(self, lr=0.001, rho: float = 0.9, eps: float = 1e-8, **kwargs):
        super().__init__(lr, **kwargs)
        self.rho, self.eps = float(rho), float(eps)

    def _step(self, p, g, slots, lr, t, inplace):
        xp = _xp(p)
        s, rho = slots["square_avg"], self.rho
        if inplace:
            s *= rho
            s += (1.0 - rho) * (g * g)
            g /= xp.sqrt(s) + self.eps
            g *= lr
            p -= g
            return p
        s = rho * s + (1.0 - rho) * (g * g)
        slots["square_avg"] = s
        return p - lr * g / (xp.sqrt(s) + self.eps)


class Adam(Optimizer):
    r"""Adam with bias correction.

    .. math::
        m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
        w \leftarrow w - \eta\,\frac{m / (1-\beta_1^t)}{\sqrt{v / (1-\beta_2^t)} + \epsilon}

    The step count ``t`` is a host integer, so the corrections cost no sync. With
    ``weight_decay`` this is AdamW (decoupled decay).
    """

    slot_names = ("m", "v")

    def __init__(
        self, lr=0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, **kwargs
    ):
        super().__init__(lr, **kwargs)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def _step(self, p, g, slots, lr, t, inplace):
        xp = _xp(p)
        b1, b2 = self.beta1, self.beta2
        step = lr / (1.0 - b1**t)
        root_correction = math.sqrt(1.0 - b2**t)
        m, v = slots["m"], slots["v"]
        if inplace:
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            g *= g
            g *= 1.0 - b2
            v += g
            # g is scratch now: g = step * m / (sqrt(v)/c + eps)
            denom = xp.sqrt(v)
            denom /= root_correction
            denom += self.eps
            g[...] = m
            g /= denom
            g *= step
            p -= g
            return p
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * (g * g)
        slots["m"], slots["v"] = m, v
        return p - step * m / (xp.sqrt(v) / root_correction + self.eps)


OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "rmsprop": RMSProp,
    "adam": Adam,
}


def get_optimizer(name: str | Optimizer, **kwargs) -> Optimizer:
    """Build an optimizer by name.

    ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"rmsprop"`` or ``"adam"``; keyword
    arguments go to its constructor.
    """
    if isinstance(name, Optimizer):
        return name
    try:
        cls = OPTIMIZERS[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}"
        ) from None
    return cls(**kwargs)
