"""Shared by the tests of layers, Sequential, losses and regularizers: inputs, float64 oracles."""

from __future__ import annotations

import numpy as np

import portnet as pn

GRAD_TOL = 1e-6  # relative error of float64 central differences


# -- helpers ------------------------------------------------------------------
def away_from_zero(rng, shape, margin=0.1):
    """Normal samples pushed at least ``margin`` away from 0 (no ReLU / L1 kink nearby)."""
    u = rng.normal(size=shape)
    return np.where(u >= 0, 1.0, -1.0) * (margin + np.abs(u))


def on(backend, host, dtype="float32"):
    return backend.asarray(np.asarray(host), dtype)


def ctx_for(backend, **kwargs):
    return pn.Context(xp=backend.xp, **kwargs)


# -- NumPy float64 oracles -------------------------------------------------------
def np_sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for any z


def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_log_softmax(z):
    s = z - z.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


ALPHA = 0.1  # LeakyReLU slope used below


def oracle(name, x, params, dy):
    """(y, dx, grads) of layer ``name`` in float64."""
    if name in ("dense", "dense-nobias"):
        W = params["W"]
        y = x @ W + (params["b"] if "b" in params else 0.0)
        grads = {"W": x.T @ dy}
        if "b" in params:
            grads["b"] = dy.sum(axis=0)
        return y, dy @ W.T, grads
    if name == "relu":
        return np.maximum(x, 0.0), dy * (x > 0), {}
    if name == "leaky_relu":
        return np.where(x > 0, x, ALPHA * x), np.where(x > 0, dy, ALPHA * dy), {}
    if name == "sigmoid":
        y = np_sigmoid(x)
        return y, dy * y * (1.0 - y), {}
    if name == "tanh":
        y = np.tanh(x)
        return y, dy * (1.0 - y**2), {}
    if name == "softmax":
        y = np_softmax(x)
        return y, y * (dy - (dy * y).sum(axis=-1, keepdims=True)), {}
    if name in ("identity", "dropout-eval"):
        return x.copy(), dy.copy(), {}
    raise AssertionError(name)
