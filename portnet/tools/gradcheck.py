r"""Gradient checks by central differences, in float64.

.. math:: \frac{\partial E}{\partial w} \approx \frac{E(w + \epsilon) - E(w - \epsilon)}{2\epsilon}

compared with the backprop gradient. Entries are perturbed through a host copy
(the standard has no scatter / in-place index update that every backend honours);
this is a diagnostic, so the transfers do not matter.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._array import to_host
from ..errors import InputError
from ..layers.base import Context, Layer


@dataclasses.dataclass
class GradientCheckRow:
    """One checked entry: where it is and the two gradients."""

    layer: int
    param: str
    index: tuple[int, ...]
    backprop: float
    numerical: float

    @property
    def abs_diff(self) -> float:
        return abs(self.backprop - self.numerical)

    @property
    def rel_error(self) -> float:
        scale = max(abs(self.backprop) + abs(self.numerical), 1e-12)
        return self.abs_diff / scale

    def to_dict(self) -> dict:
        """JSON-ready: position, both gradients, their absolute and relative difference."""
        return {
            "layer": self.layer,
            "param": self.param,
            "index": list(self.index),
            "backprop": self.backprop,
            "numerical": self.numerical,
            "abs_diff": self.abs_diff,
            "rel_error": self.rel_error,
        }


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    r"""Whole-array relative error.

    :math:`\lVert a - b\rVert / \max(\lVert a\rVert + \lVert b\rVert, 10^{-12})`.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


def _require_float64(backend) -> Any:
    try:
        return backend.asarray(np.zeros(1), "float64") is not None and backend.dtype("float64")
    except Exception as exc:
        raise InputError(
            f"Gradient checks run in float64, which {backend} does not support ({exc}); "
            "run them on a CPU backend."
        ) from None


def numerical_gradient(f, x_host: np.ndarray, eps: float, indices=None) -> np.ndarray:
    """Central differences of the scalar function ``f(host array)`` at ``x_host``.

    ``indices`` limits the entries perturbed (all by default); others stay 0.
    """
    grad = np.zeros_like(x_host, dtype=np.float64)
    for index in np.ndindex(x_host.shape) if indices is None else indices:
        original = x_host[index]
        x_host[index] = original + eps
        plus = f(x_host)
        x_host[index] = original - eps
        minus = f(x_host)
        x_host[index] = original
        grad[index] = (plus - minus) / (2.0 * eps)
    return grad


def check_layer_gradients(
    layer: Layer,
    x: Any,
    params: dict[str, Any] | None = None,
    *,
    backend,
    eps: float = 1e-6,
    seed: int = 0,
    training: bool = False,
) -> dict[str, float]:
    r"""Relative error of every gradient of a layer (input and parameters), in float64.

    Uses the scalar :math:`E = \sum_{ij} y_{ij} r_{ij}` with a fixed random ``r``, whose
    gradient with respect to the output is ``r``.

    Parameters
    ----------
    layer : Layer
    x : array_like
        Host input (converted to float64 on ``backend``).
    params : dict or list of dict, optional
        Host parameters (a list of per-layer dicts for a Sequential); by default
        ``layer.init`` with ``seed``.
    backend : Backend
    training : bool
        Check the training-mode maths (e.g. batch statistics in BatchNorm).
        Non-trainable state (``Layer.state_names``) is never checked.

    Returns
    -------
    dict
        ``{"x": err, "<param>": err, ...}``; for a Sequential the parameter names
        are ``"<layer index>.<param>"``.
    """
    with backend.device_scope():
        f64 = _require_float64(backend)
        rng = np.random.default_rng(seed)
        initial = layer.init(rng) if params is None else params
        nested = isinstance(initial, list)
        host_params = {k: to_host(v).astype(np.float64) for k, v in _flatten(initial).items()}
        x_host = to_host(x).astype(np.float64)
        ctx = Context(xp=backend.xp, training=training, need_input_grad=True)

        def run(x_h, p_h):
            p = {k: backend.asarray(v, f64) for k, v in p_h.items()}
            p = _unflatten(p, len(initial)) if nested else p
            return layer.forward(p, backend.asarray(x_h, f64), ctx)

        y, backprop = run(x_host, host_params)
        r = rng.normal(size=tuple(y.shape))
        dx, grads = backprop(backend.asarray(r, f64))
        grads = _flatten(grads)
        state = _state_names(layer, nested)
        checked = {k: backend.to_numpy(grads[k]) for k in host_params if k not in state}

        def objective(x_h, p_h):
            return float(np.sum(backend.to_numpy(run(x_h, p_h)[0]) * r))

        return _layer_errors(objective, x_host, host_params, backend.to_numpy(dx), checked, eps)


def _flatten(tree: dict | list[dict]) -> dict:
    """A Sequential's list of per-layer dicts as one dict keyed ``"<layer index>.<name>"``."""
    if isinstance(tree, list):
        return {f"{i}.{k}": v for i, layer_p in enumerate(tree) for k, v in layer_p.items()}
    return dict(tree)


def _unflatten(flat: dict, n_layers: int) -> list[dict]:
    """The inverse of :func:`_flatten` for a Sequential of ``n_layers`` layers."""
    tree = [{} for _ in range(n_layers)]
    for name, value in flat.items():
        i, key = name.split(".", 1)
        tree[int(i)][key] = value
    return tree


def _state_names(layer: Layer, nested: bool) -> set[str]:
    """The (flattened) names of non-trainable state, which no check compares."""
    sublayers = layer.layers if nested else [layer]
    return {
        (f"{i}.{k}" if nested else k) for i, sub in enumerate(sublayers) for k in sub.state_names
    }


def _layer_errors(objective, x_host, host_params, dx, grads, eps) -> dict[str, float]:
    """Relative errors of backprop's ``dx`` and ``grads`` (host arrays) against
    central differences of ``objective(x, params)``."""
    errors = {
        "x": relative_error(
            dx, numerical_gradient(lambda v: objective(v, host_params), x_host, eps)
        )
    }
    for key, grad in grads.items():

        def f(v, key=key):
            return objective(x_host, {**host_params, key: v})

        errors[key] = relative_error(grad, numerical_gradient(f, host_params[key], eps))
    return errors


def gradient_check(
    model,
    X: Any,
    y: Any,
    *,
    entries: list[tuple[int, str, tuple[int, ...]]] | None = None,
    n_per_param: int = 2,
    eps: float = 1e-5,
    seed: int = 0,
) -> list[GradientCheckRow]:
    """Compare backprop with central differences on chosen or random weights of a model.

    The objective is the model's training loss (data loss plus penalties) on
    ``X, y``, computed in float64 on the model's backend from its current weights.

    Parameters
    ----------
    model : Model
    X, y : array_like
        A small batch (host arrays).
    entries : list of (layer, param, index), optional
        The entries to check; by default ``n_per_param`` random entries of every
        parameter (S1's Table 3 / S2's Table 1 check a few per kind).
    eps : float
        Finite-difference step.

    Returns
    -------
    list of GradientCheckRow
    """
    from ..model import Model

    backend = model.backend
    with backend.device_scope():
        _require_float64(backend)
        weights = model.get_weights()
        model64 = Model(
            model.network,
            loss=model.loss,
            optimizer="sgd",
            regularizers=model.regularizers,
            backend=backend,
            dtype="float64",
        )
        model64.set_weights(weights)
        X_dev, y_dev = model64.prepare_data(to_host(X).astype(np.float64), to_host(y))
        trainer = model64.trainer
        host = [{k: np.array(v, dtype=np.float64) for k, v in layer.items()} for layer in weights]
        objective, grads = _training_loss(trainer, backend, host, X_dev, y_dev)
        if entries is None:
            entries = _random_entries(host, trainer.network.layers, n_per_param, seed)
        rows = []
        for i, key, index in entries:
            analytic = backend.to_numpy(grads[i][key])[index]

            def f(v, i=i, key=key):
                return objective(
                    [{**layer, key: v} if j == i else layer for j, layer in enumerate(host)]
                )

            numeric = numerical_gradient(f, host[i][key], eps, indices=[index])[index]
            rows.append(GradientCheckRow(i, key, tuple(index), float(analytic), float(numeric)))
        return rows


def _training_loss(trainer, backend, host: list[dict], X_dev, y_dev):
    """The float64 training loss (data loss plus penalties) as a function of host
    parameters, and backprop's gradients at ``host``."""
    xp = backend.xp
    ctx = Context(xp=xp, training=False, need_input_grad=False)

    def to_device(host_params):
        return [{k: backend.asarray(v, "float64") for k, v in p.items()} for p in host_params]

    def objective(host_params) -> float:
        params = to_device(host_params)
        outputs, _ = trainer.network.forward(params, X_dev, ctx)
        loss = trainer.loss(outputs, y_dev)[0]
        if trainer.regularizers:
            loss = loss + trainer.penalty(xp, params, X_dev.shape[0])
        return float(backend.to_numpy(loss))

    _, _, grads, _ = trainer.loss_and_grads(to_device(host), X_dev, y_dev, ctx)
    return objective, grads


def _random_entries(host: list[dict], layers, n_per_param: int, seed: int) -> list[tuple]:
    """``n_per_param`` random ``(layer, param, index)`` of every trainable parameter."""
    rng = np.random.default_rng(seed)
    entries = []
    for i, layer in enumerate(host):
        for key, value in layer.items():
            if key in layers[i].state_names:
                continue
            for _ in range(n_per_param):
                entries.append((i, key, tuple(int(rng.integers(d)) for d in value.shape)))
    return entries


def format_gradient_table(
    rows: list[GradientCheckRow], names: dict[tuple[int, str], str] | None = None
) -> str:
    """A Markdown table like S1's Table 3: backprop vs numerical gradient per entry."""
    lines = [
        "| weight | index | backprop | numerical | abs. difference | rel. error |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        label = (names or {}).get((row.layer, row.param), f"layer {row.layer} {row.param}")
        lines.append(
            f"| {label} | {', '.join(map(str, row.index))} | {row.backprop:.6e} | "
            f"{row.numerical:.6e} | {row.abs_diff:.3e} | {row.rel_error:.2e} |"
        )
    return "\n".join(lines)
