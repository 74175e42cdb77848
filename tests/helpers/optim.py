"""Shared by the optimizer tests: the optimizers and variants tested, a problem, tree helpers."""

from __future__ import annotations

import numpy as np

import portnet as pn

OPTIMIZERS = {
    "sgd": (pn.SGD, {}),
    "momentum-classic": (pn.Momentum, {"gamma": 0.8, "form": "classic"}),
    "momentum-ema": (pn.Momentum, {"gamma": 0.8, "form": "ema"}),
    "momentum-nesterov": (pn.Momentum, {"gamma": 0.8, "nesterov": True}),
    "nesterov": (pn.Nesterov, {"gamma": 0.7}),
    # eps large enough that where it is added (inside or outside the root) shows.
    "rmsprop": (pn.RMSProp, {"rho": 0.85, "eps": 1e-3}),
    "adam": (pn.Adam, {"beta1": 0.8, "beta2": 0.95, "eps": 1e-3}),
    "adam-efficient": (pn.Adam, {"beta1": 0.8, "beta2": 0.95, "eps": 1e-3, "form": "efficient"}),
}

VARIANTS = {
    "plain": {},
    "weight_decay": {"weight_decay": 0.1},
    "clip_norm": {"clip_norm": 0.5},
    "clip_value": {"clip_value": 0.3},
    "all": {"weight_decay": 0.05, "clip_norm": 1.0, "clip_value": 0.5},
}

LRS = [0.1, 0.05, 0.08, 0.1]  # one rate per step, passed to update()


def problem(seed=0, n_steps=4):
    """Two layers of parameters and a gradient per step, as host float64 arrays."""
    rng = np.random.default_rng(seed)
    params = [
        {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4)},
        {"W": rng.normal(size=(4, 2))},
    ]
    grads = [
        [{k: rng.normal(size=v.shape) for k, v in layer.items()} for layer in params]
        for _ in range(n_steps)
    ]
    return params, grads


def to_device(backend, tree, dtype):
    # Fresh host copies: NumPy and torch-cpu may alias host data, which the in-place path mutates.
    return [
        {k: backend.asarray(np.array(v, copy=True), dtype) for k, v in layer.items()}
        for layer in tree
    ]


def to_host(backend, tree):
    return [
        {k: np.array(backend.to_numpy(v), dtype=np.float64) for k, v in layer.items()}
        for layer in tree
    ]


def run_portnet(backend, opt, params_h, grad_seq_h, lrs, dtype="float32"):
    params = to_device(backend, params_h, dtype)
    state = opt.init(params)
    for grads_h, lr in zip(grad_seq_h, lrs, strict=True):
        params, state = opt.update(params, to_device(backend, grads_h, dtype), state, lr)
    return params, state


def make(name, variant, inplace):
    cls, hyper = OPTIMIZERS[name]
    return cls(0.1, **hyper, **VARIANTS[variant], inplace=inplace)


def assert_trees_close(actual, expected, **tol):
    for a_layer, e_layer in zip(actual, expected, strict=True):
        assert set(a_layer) == set(e_layer)
        for key in e_layer:
            np.testing.assert_allclose(a_layer[key], e_layer[key], err_msg=key, **tol)
