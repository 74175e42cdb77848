r"""Optimizers: ``init(params) -> state``, ``update(params, grads, state, lr) -> (params, state)``.

Each formula is written once, as its paper writes it, through the library's
:class:`~portnet.backends.ops.Ops` (``ops.ema``, ``ops.descend``, ``ops.add`` ...):
on NumPy, CuPy and torch they update parameters and buffers in place
(``p -= g``) and reuse the gradient arrays as scratch, so a step allocates no
parameter-sized temporaries; on other libraries (array-api-strict, JAX) the same
lines rebind (``p = p - g``). Gradients passed to ``update`` are consumed, and on
the in-place libraries the parameters passed in are the ones updated.

Every optimizer describes itself with ``get_config()`` and is rebuilt by
:func:`optimizer_from_spec`, so a saved model keeps its algorithm, its
hyper-parameters, its schedule and (see :mod:`portnet.io.model_file`) its state.
"""

from __future__ import annotations

from typing import Any

from .._array import Tree, tree_leaves, xp_of
from ..backends.ops import Ops, ops_for
from ..config import build, check_number, spec_of
from ..errors import ConfigError
from .schedules import Constant, Schedule, as_schedule, schedule_from_spec


def _optional_positive(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    return check_number(name, value, low=0.0, low_open=True)


class Optimizer:
    r"""Base optimizer.

    Parameters
    ----------
    lr : float or Schedule
        Learning rate (finite, >= 0), or a schedule evaluated once per epoch.
    weight_decay : float
        Decoupled weight decay :math:`w \leftarrow w - \eta \lambda_{wd} w`, applied to
        weights only (see ``decay_mask`` in :meth:`init`).
    clip_norm : float, optional
        Rescale the whole gradient so its global L2 norm is at most this. Done
        branch-free on the device: :math:`g \cdot \min(1, c / (\lVert g\rVert + 10^{-12}))`.
    clip_value : float, optional
        Clip every gradient entry to ``[-clip_value, clip_value]``.
    inplace : bool, optional
        Force the rebinding path (``False``) or the in-place one (``True``, refused
        where the arrays cannot be mutated); by default the arrays decide.

    Raises
    ------
    ConfigError
        For a non-finite or out-of-range hyper-parameter.
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
        self.weight_decay = check_number("weight_decay", weight_decay, low=0.0)
        self.clip_norm = _optional_positive("clip_norm", clip_norm)
        self.clip_value = _optional_positive("clip_value", clip_value)
        self.inplace = None if inplace is None else bool(inplace)

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

    def ops_for(self, xp_or_array: Any) -> Ops:
        """The :class:`~portnet.backends.ops.Ops` this optimizer updates arrays of
        namespace ``xp_or_array`` (or of that array's) with: in place or rebinding,
        as the ``inplace`` argument asks.

        Raises
        ------
        ConfigError
            ``inplace=True`` for a library whose arrays cannot be mutated.
        """
        return ops_for(xp_or_array).with_inplace(self.inplace)

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
        if lr is None:
            lr = self.lr_at(0)
        elif isinstance(lr, int | float):
            lr = float(
                lr
            )  # a Python number; a traced JAX scalar (portnet.training.compiled) stays one
        first = next((p for layer in params for p in layer.values()), None)
        ops = None if first is None else self.ops_for(first)  # None: no parameters
        grads = self._clip(grads)
        t = state["t"] + 1
        # Under jax.jit the step count is an int64 device scalar, and b ** t of it would
        # be float64 and promote every parameter: the powers are taken in their dtype.
        t_power = t if ops is None or isinstance(t, int) else ops.xp.astype(t, first.dtype)
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
                    p = ops.mul(p, 1.0 - lr * self.weight_decay)
                # A fresh slot dict: the rebinding path replaces its entries, and the
                # state passed in must stay as it was (update is a pure function there).
                out_slots[key] = dict(layer_s[key])
                g = layer_g[key]
                blocks = ops.blocks(p, g, *out_slots[key].values())
                if blocks is None:
                    out[key] = self._one_step(p, g, out_slots[key], lr, t_power, ops, prescaled)
                    continue
                flat = [xp_reshape(a) for a in (p, g)]
                slots_flat = {name: xp_reshape(s) for name, s in out_slots[key].items()}
                for part in blocks:  # in place: each block writes into p and the slots
                    views = {name: s[part] for name, s in slots_flat.items()}
                    self._one_step(flat[0][part], flat[1][part], views, lr, t_power, ops, prescaled)
                out[key] = p
            new_params.append(out)
            new_slots.append(out_slots)
        return new_params, {**state, "t": t, "slots": new_slots}

    def _one_step(self, p, g, slots, lr, t, ops: Ops, prescaled: bool):
        if prescaled:
            return self._step_prescaled(p, g, slots, ops)
        return self._step(p, g, slots, lr, t, ops)

    def _clip(self, grads: Tree) -> Tree:
        if self.clip_value is not None:
            c = float(self.clip_value)
            grads = [{k: ops_for(g).clip(g, -c, c) for k, g in layer.items()} for layer in grads]
        if self.clip_norm is not None:
            leaves = tree_leaves(grads)
            ops = ops_for(leaves[0])
            xp = ops.xp
            total = xp.sqrt(sum(xp.sum(g * g) for g in leaves))
            # A device 0-d factor, so clipping needs no host read and no branch.
            scale = ops.minimum(float(self.clip_norm) / (total + 1e-12), 1.0)
            grads = [
                {k: g * xp.astype(scale, g.dtype) for k, g in layer.items()} for layer in grads
            ]
        return grads

    def _step(self, p, g, slots: dict[str, Any], lr: float, t: Any, ops: Ops):
        """The update of one parameter ``p`` with gradient ``g``; may consume ``g``.

        ``t`` is the step count from 1: a Python int, or under ``jax.jit`` a 0-d
        array in ``p``'s dtype. New slot values go into ``slots``.
        """
        raise NotImplementedError

    def _step_prescaled(self, p, g, slots: dict[str, Any], ops: Ops):
        raise NotImplementedError(f"{type(self).__name__} takes raw gradients")

    def _unclipped(self) -> bool:
        return self.clip_norm is None and self.clip_value is None

    def _hyper_parameters(self) -> dict[str, Any]:
        """The constructor arguments of a subclass, besides the base ones."""
        return {}

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON data (a constant rate as a number)."""
        lr = self.schedule.lr if type(self.schedule) is Constant else spec_of(self.schedule)
        return {
            "lr": lr,
            **self._hyper_parameters(),
            "weight_decay": self.weight_decay,
            "clip_norm": self.clip_norm,
            "clip_value": self.clip_value,
        }

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self._hyper_parameters().items())
        if self.weight_decay:
            extra += f", weight_decay={self.weight_decay:g}"
        return f"{type(self).__name__}(lr={self.schedule!r}{extra})"


def xp_reshape(array):
    """A flat view of a contiguous array."""
    return xp_of(array).reshape(array, (-1,))


def _zeros_like(p):
    return xp_of(p).zeros_like(p)


def _fraction(name: str, value: float) -> float:
    """A decay factor in [0, 1)."""
    return check_number(name, value, low=0.0, high=1.0, high_open=True)


class SGD(Optimizer):
    r"""Plain gradient descent :math:`w \leftarrow w - \eta g`."""

    def gradient_scale(self, lr):
        return lr if self._unclipped() else None

    def _step(self, p, g, slots, lr, t, ops):
        return ops.descend(p, g, lr)  # w <- w - lr g

    def _step_prescaled(self, p, g, slots, ops):  # g is already lr * gradient
        return ops.sub(p, g)


class Momentum(Optimizer):
    r"""Gradient descent with momentum, in either form the reference studies use.

    * ``form="classic"`` (S1): :math:`v \leftarrow \gamma v - \eta g,\; w \leftarrow w + v`.
    * ``form="ema"`` (S2): :math:`v \leftarrow \gamma v + (1-\gamma) g,\; w \leftarrow w - \eta v`.

    With a constant rate the EMA form equals the classic one with rate
    :math:`\eta(1-\gamma)`. ``nesterov=True`` (classic form only) steps from the
    look-ahead point, :math:`w \leftarrow w + \gamma v - \eta g` after the velocity
    update (Sutskever et al., 2013), as scikit-learn's ``nesterovs_momentum`` does;
    since the rate sits inside :math:`v`, a schedule changes only new steps.
    """

    slot_names = ("velocity",)

    def __init__(
        self, lr=0.01, gamma: float = 0.9, form: str = "classic", nesterov: bool = False, **kwargs
    ):
        super().__init__(lr, **kwargs)
        if form not in ("classic", "ema"):
            raise ConfigError(f"momentum form must be 'classic' or 'ema', got {form!r}")
        if nesterov and form != "classic":
            raise ConfigError("nesterov=True needs form='classic' (the rate inside the velocity)")
        self.gamma, self.form, self.nesterov = _fraction("momentum gamma", gamma), form, nesterov

    def gradient_scale(self, lr):
        return lr if self.form == "classic" and self._unclipped() else None

    def _step_prescaled(self, p, g, slots, ops):  # classic form, g = lr * gradient
        gamma = self.gamma
        v = slots["velocity"] = ops.sub(ops.mul(slots["velocity"], gamma), g)  # v <- gamma v - lr g
        if self.nesterov:
            return ops.sub(ops.add(p, gamma * v), g)  # w <- w + gamma v - lr g
        return ops.add(p, v)  # w <- w + v

    def _step(self, p, g, slots, lr, t, ops):
        if self.form == "classic":
            return self._step_prescaled(p, ops.mul(g, lr), slots, ops)
        # v <- gamma v + (1 - gamma) g, with g as scratch for the (1 - gamma) g term
        v = slots["velocity"] = ops.ema(slots["velocity"], g, self.gamma, consume=True)
        # w <- w - lr v, through g again rather than a new array
        return ops.descend(p, ops.assign(g, v), lr)

    def _hyper_parameters(self):
        extra = {"nesterov": True} if self.nesterov else {}
        return {"gamma": self.gamma, "form": self.form, **extra}


class Nesterov(Optimizer):
    r"""Nesterov momentum (the form PyTorch uses):
    :math:`v \leftarrow \mu v + g,\; w \leftarrow w - \eta (g + \mu v)`."""

    slot_names = ("velocity",)

    def __init__(self, lr=0.01, gamma: float = 0.9, **kwargs):
        super().__init__(lr, **kwargs)
        self.gamma = _fraction("Nesterov gamma", gamma)

    def _step(self, p, g, slots, lr, t, ops):
        mu = self.gamma
        v = slots["velocity"] = ops.add(ops.mul(slots["velocity"], mu), g)  # v <- mu v + g
        return ops.descend(p, ops.add(g, mu * v), lr)  # w <- w - lr (g + mu v)

    def _hyper_parameters(self):
        return {"gamma": self.gamma}


class RMSProp(Optimizer):
    r"""RMSProp.

    :math:`s \leftarrow \rho s + (1-\rho) g^2,\; w \leftarrow w - \eta\, g / (\sqrt{s} + \epsilon)`.
    """

    slot_names = ("square_avg",)

    def __init__(self, lr=0.001, rho: float = 0.9, eps: float = 1e-8, **kwargs):
        super().__init__(lr, **kwargs)
        self.rho = _fraction("RMSProp rho", rho)
        self.eps = check_number("RMSProp eps", eps, low=0.0, low_open=True)

    def _step(self, p, g, slots, lr, t, ops):
        # s <- rho s + (1 - rho) g^2  (g * g is a fresh array the average may consume)
        s = slots["square_avg"] = ops.ema(slots["square_avg"], g * g, self.rho, consume=True)
        # w <- w - lr g / (sqrt(s) + eps)
        return ops.descend(p, ops.div(g, ops.xp.sqrt(s) + self.eps), lr)

    def _hyper_parameters(self):
        return {"rho": self.rho, "eps": self.eps}


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), in either of its paper's forms.

    .. math::
        m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2

    * ``form="corrected"`` (Algorithm 1): :math:`w \leftarrow w - \eta\,\frac{m /
      (1-\beta_1^t)}{\sqrt{v / (1-\beta_2^t)} + \epsilon}`.
    * ``form="efficient"`` (the reordering of the paper's Section 2, which scikit-learn's
      MLP and TensorFlow compute): :math:`\eta_t = \eta\sqrt{1-\beta_2^t}/(1-\beta_1^t)`,
      :math:`w \leftarrow w - \eta_t\, m / (\sqrt{v} + \hat\epsilon)`. It differs from
      Algorithm 1 only in where :math:`\epsilon` sits, and saves one pass over :math:`v`.

    The step count ``t`` is a host integer, so the corrections cost no sync. With
    ``weight_decay`` this is AdamW (decoupled decay).
    """

    slot_names = ("m", "v")

    def __init__(
        self,
        lr=0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        form: str = "corrected",
        **kwargs,
    ):
        super().__init__(lr, **kwargs)
        if form not in ("corrected", "efficient"):
            raise ConfigError(f"Adam form must be 'corrected' or 'efficient', got {form!r}")
        self.beta1 = _fraction("Adam beta1", beta1)
        self.beta2 = _fraction("Adam beta2", beta2)
        self.eps = check_number("Adam eps", eps, low=0.0, low_open=True)
        self.form = form

    def _step(self, p, g, slots, lr, t, ops):
        b1, b2, eps, sqrt = self.beta1, self.beta2, self.eps, ops.xp.sqrt
        m = slots["m"] = ops.ema(slots["m"], g, b1)  # m <- b1 m + (1 - b1) g
        # v <- b2 v + (1 - b2) g^2, squaring g in place: m no longer needs it
        v = slots["v"] = ops.ema(slots["v"], ops.mul(g, g), b2, consume=True)
        # ** 0.5, not math.sqrt: under jax.jit the step count t is a traced array.
        root_correction = (1.0 - b2**t) ** 0.5
        if self.form == "efficient":
            # w <- w - lr_t m / (sqrt(v) + eps),  lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
            lr_t = lr * root_correction / (1.0 - b1**t)
            return ops.descend(p, m / ops.add(sqrt(v), eps), lr_t)
        # w <- w - lr m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)
        sqrt_v_hat = ops.div(sqrt(v), root_correction)
        return ops.descend(p, m / ops.add(sqrt_v_hat, eps), lr / (1.0 - b1**t))

    def _hyper_parameters(self):
        extra = {"form": self.form} if self.form != "corrected" else {}
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps, **extra}


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
    cls = OPTIMIZERS.get(name.lower()) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return cls(**kwargs)


def optimizer_from_spec(spec: dict[str, Any]) -> Optimizer:
    """Rebuild an optimizer from :func:`~portnet.config.spec_of` output.

    The ``lr`` entry may be a number or a schedule spec.
    """
    spec = dict(spec)
    config = dict(spec.get("config") or {})
    if isinstance(config.get("lr"), dict):
        config["lr"] = schedule_from_spec(config["lr"])
    return build(
        {**spec, "config": config}, {c.__name__: c for c in OPTIMIZERS.values()}, "optimizer"
    )
