"""Every layer and activation on the backend matrix.

Per layer: namespace / device / dtype / shape of every result before its values,
values against a float64 NumPy oracle, inputs unchanged after forward and backprop,
float64 central differences, and torch autograd as a second oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import (
    assert_gradients_on_backend,
    assert_on_backend,
    assert_unchanged,
    host_copies,
    tolerance,
)
from helpers.ops import ALPHA, GRAD_TOL, away_from_zero, ctx_for, on, oracle

import portnet as pn
from portnet.tools.gradcheck import numerical_gradient, relative_error

LAYERS = {
    "dense": lambda: pn.Dense(4, 3),
    "dense-nobias": lambda: pn.Dense(4, 3, bias=False),
    "relu": pn.ReLU,
    "leaky_relu": lambda: pn.LeakyReLU(ALPHA),
    "sigmoid": pn.Sigmoid,
    "tanh": pn.Tanh,
    "softmax": pn.Softmax,
    "identity": pn.Identity,
    "dropout-eval": lambda: pn.Dropout(0.5),
}


def layer_data(name, seed=0):
    """Host float64 input, parameters and output gradient for a layer case."""
    rng = np.random.default_rng(seed)
    x = away_from_zero(rng, (5, 4)) * 2.0
    params = {}
    if name.startswith("dense"):
        params["W"] = rng.normal(size=(4, 3))
        if name == "dense":
            params["b"] = rng.normal(size=3)
    n_out = 3 if name.startswith("dense") else 4
    dy = rng.normal(size=(5, n_out))
    return x, params, dy


# -- layers: forward and backprop on every backend -----------------------------------
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_forward_backprop(backend, name):
    x_h, p_h, dy_h = layer_data(name)
    layer = LAYERS[name]()
    x = on(backend, x_h)
    params = {k: on(backend, v) for k, v in p_h.items()}
    dy = on(backend, dy_h)
    x_before, p_before, dy_before = host_copies(x), host_copies(params), host_copies(dy)

    y, backprop = layer.forward(params, x, ctx_for(backend))
    y_ref, dx_ref, grads_ref = oracle(name, x_h, p_h, dy_h)
    assert_on_backend(y, backend, "float32", y_ref.shape)
    assert_unchanged(x_before, x)
    assert_unchanged(p_before, params)

    dx, grads = backprop(dy)
    assert_gradients_on_backend(dx, grads, backend, x_h.shape, p_h)
    assert_unchanged(x_before, x)
    assert_unchanged(p_before, params)
    assert_unchanged(dy_before, dy)

    tol = tolerance("float32")
    np.testing.assert_allclose(backend.to_numpy(y), y_ref, **tol)
    np.testing.assert_allclose(backend.to_numpy(dx), dx_ref, **tol)
    for key, g in grads.items():
        np.testing.assert_allclose(backend.to_numpy(g), grads_ref[key], **tol)


def test_dense_without_input_gradient(backend):
    """The first layer skips dx (need_input_grad=False) but still returns its parameter grads."""
    x_h, p_h, dy_h = layer_data("dense")
    params = {k: on(backend, v) for k, v in p_h.items()}
    _, backprop = pn.Dense(4, 3).forward(
        params, on(backend, x_h), ctx_for(backend, need_input_grad=False)
    )
    dx, grads = backprop(on(backend, dy_h))
    assert dx is None
    _, _, grads_ref = oracle("dense", x_h, p_h, dy_h)
    for key in ("W", "b"):
        assert_on_backend(grads[key], backend, "float32", p_h[key].shape)
        np.testing.assert_allclose(
            backend.to_numpy(grads[key]), grads_ref[key], **tolerance("float32")
        )


def test_dense_init_schemes():
    rng = np.random.default_rng(0)
    he = pn.Dense(400, 300, init="he").init(rng)
    assert he["W"].shape == (400, 300) and he["b"].shape == (300,)
    assert np.all(he["b"] == 0)
    assert abs(he["W"].std() - np.sqrt(2 / 400)) < 0.01 * np.sqrt(2 / 400) * 5
    glorot = pn.Dense(400, 300, init="glorot").init(rng)["W"]
    limit = np.sqrt(6 / 700)
    assert glorot.max() <= limit and glorot.min() >= -limit and glorot.max() > 0.95 * limit
    assert "b" not in pn.Dense(4, 3, bias=False).init(rng)
    assert np.all(pn.Dense(4, 3, init="zeros").init(rng)["W"] == 0)


# -- dropout in training mode, with a fixed mask ---------------------------------------
def test_dropout_training_fixed_mask(backend):
    rate, shape, seed = 0.3, (6, 50), 123
    rng = np.random.default_rng(1)
    x_h = away_from_zero(rng, shape)
    dy_h = rng.normal(size=shape)
    x, dy = on(backend, x_h), on(backend, dy_h)
    x_before, dy_before = host_copies(x), host_copies(dy)
    ctx = ctx_for(backend, training=True, random=pn.RandomStream(backend, seed))

    y, backprop = pn.Dropout(rate).forward({}, x, ctx)
    assert_on_backend(y, backend, "float32", shape)
    # The same seed on the same backend draws the same uniforms: that is the mask.
    u = backend.to_numpy(pn.RandomStream(backend, seed).uniform(shape, backend.dtype("float32")))
    keep = u >= rate
    assert 0.55 < keep.mean() < 0.85  # about 1 - rate of 300 units survive
    tol = tolerance("float32")
    np.testing.assert_allclose(backend.to_numpy(y), np.where(keep, x_h / (1 - rate), 0.0), **tol)
    assert_unchanged(x_before, x)

    dx, grads = backprop(dy)
    assert grads == {}
    assert_on_backend(dx, backend, "float32", shape)
    np.testing.assert_allclose(backend.to_numpy(dx), np.where(keep, dy_h / (1 - rate), 0.0), **tol)
    assert_unchanged(x_before, x)
    assert_unchanged(dy_before, dy)

    # The next step draws a new mask from the same stream.
    y2, _ = pn.Dropout(rate).forward({}, x, ctx)
    assert not np.array_equal(backend.to_numpy(y2) == 0, ~keep)


def test_dropout_training_needs_random_stream(numpy_backend):
    x = on(numpy_backend, np.ones((2, 3)))
    with pytest.raises(ValueError, match="RandomStream"):
        pn.Dropout(0.5).forward({}, x, ctx_for(numpy_backend, training=True))


def test_dropout_training_gradient_check(backend64):
    rate, seed = 0.4, 7
    rng = np.random.default_rng(2)
    x_h = away_from_zero(rng, (4, 6))
    r = rng.normal(size=(4, 6))
    f64 = backend64.dtype("float64")

    def run(v):
        ctx = ctx_for(backend64, training=True, random=pn.RandomStream(backend64, seed))
        return pn.Dropout(rate).forward({}, backend64.asarray(v, f64), ctx)

    _, backprop = run(x_h)
    dx, _ = backprop(backend64.asarray(r, f64))
    assert_on_backend(dx, backend64, "float64", (4, 6))
    numeric = numerical_gradient(
        lambda v: float(np.sum(backend64.to_numpy(run(v)[0]) * r)), x_h.copy(), 1e-6
    )
    assert relative_error(backend64.to_numpy(dx), numeric) < GRAD_TOL


# -- layers: float64 central differences ------------------------------------------------
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_gradient_check(backend64, name):
    x_h, p_h, _ = layer_data(name, seed=3)
    errors = pn.check_layer_gradients(LAYERS[name](), x_h, p_h, backend=backend64)
    assert set(errors) == {"x", *p_h}
    for key, err in errors.items():
        assert err < GRAD_TOL, f"{name} d{key}: relative error {err:.2e}"


def test_gradient_check_refuses_backend_without_float64():
    backend = pn.get_backend("array_api_strict", "no_float64")
    with pytest.raises(pn.InputError, match="float64"):
        pn.check_layer_gradients(pn.Tanh(), np.ones((2, 2)), backend=backend)


# -- layers: torch autograd oracle ------------------------------------------------------
def torch_layer(torch, name, x, params):
    F = torch.nn.functional
    if name.startswith("dense"):
        y = x @ params["W"]
        return y + params["b"] if "b" in params else y
    return {
        "relu": F.relu,
        "leaky_relu": lambda t: F.leaky_relu(t, ALPHA),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "softmax": lambda t: torch.softmax(t, dim=-1),
        "identity": lambda t: t * 1.0,
        "dropout-eval": lambda t: F.dropout(t, p=0.5, training=False),
    }[name](x)


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_matches_torch_autograd(backend64, name):
    torch = pytest.importorskip("torch")
    x_h, p_h, dy_h = layer_data(name, seed=4)
    xt = torch.tensor(x_h, requires_grad=True)
    pt = {k: torch.tensor(v, requires_grad=True) for k, v in p_h.items()}
    yt = torch_layer(torch, name, xt, pt)
    yt.backward(torch.tensor(dy_h))

    b = backend64
    y, backprop = LAYERS[name]().forward(
        {k: on(b, v, "float64") for k, v in p_h.items()}, on(b, x_h, "float64"), ctx_for(b)
    )
    dx, grads = backprop(on(b, dy_h, "float64"))
    assert_on_backend(y, b, "float64", tuple(yt.shape))
    assert_on_backend(dx, b, "float64", x_h.shape)
    tol = tolerance("float64")
    np.testing.assert_allclose(b.to_numpy(y), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(b.to_numpy(dx), xt.grad.numpy(), **tol)
    assert set(grads) == set(pt)
    for key, g in grads.items():
        np.testing.assert_allclose(b.to_numpy(g), pt[key].grad.numpy(), **tol)
