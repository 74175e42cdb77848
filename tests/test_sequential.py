"""Sequential on the backend matrix: nesting, values against the flat chain, gradients."""

from __future__ import annotations

import numpy as np
from helpers.arrays import assert_on_backend, assert_unchanged, host_copies, tolerance
from helpers.ops import ALPHA, GRAD_TOL, away_from_zero, ctx_for, on, oracle

import portnet as pn
from portnet.tools.gradcheck import numerical_gradient, relative_error


# -- Sequential --------------------------------------------------------------------
def chain():
    """Five layers, one of them a nested Sequential."""
    return pn.Sequential(
        [
            pn.Dense(5, 6, init="glorot"),
            pn.Tanh(),
            pn.Sequential([pn.Dense(6, 4, init="glorot"), pn.LeakyReLU(ALPHA)]),
            pn.Dense(4, 3, init="glorot"),
            pn.Sigmoid(),
        ]
    )


def chain_params(seed=0):
    rng = np.random.default_rng(seed)
    params = chain().init(rng)
    for layer in params:  # non-zero biases, so their gradients are checked for real
        if "b" in layer:
            layer["b"] = rng.normal(scale=0.5, size=layer["b"].shape)
    return params


def test_nested_sequential_flattens(backend):
    seq = chain()
    kinds = [type(layer).__name__ for layer in seq.layers]
    assert kinds == ["Dense", "Tanh", "Dense", "LeakyReLU", "Dense", "Sigmoid"]
    assert seq.n_in == 5 and seq.n_out == 3
    p_h = chain_params()
    assert len(p_h) == 6 and [sorted(p) for p in p_h] == [
        ["W", "b"],
        [],
        ["W", "b"],
        [],
        ["W", "b"],
        [],
    ]

    rng = np.random.default_rng(5)
    x_h = away_from_zero(rng, (7, 5))
    params = [{k: on(backend, v) for k, v in layer.items()} for layer in p_h]
    x = on(backend, x_h)
    before = host_copies(params)
    y, backprop = seq.forward(params, x, ctx_for(backend))
    assert_on_backend(y, backend, "float32", (7, 3))
    # Oracle: the flat chain, layer by layer.
    h = x_h
    for name, p in zip(
        ["dense", "tanh", "dense", "leaky_relu", "dense", "sigmoid"], p_h, strict=True
    ):
        h = (
            oracle(name, h, p, np.zeros_like(h))[0]
            if not name.startswith("dense")
            else h @ p["W"] + p["b"]
        )
    np.testing.assert_allclose(backend.to_numpy(y), h, **tolerance("float32"))
    dx, grads = backprop(on(backend, np.ones((7, 3))))
    assert_on_backend(dx, backend, "float32", (7, 5))
    assert isinstance(grads, list) and len(grads) == 6
    assert_unchanged(before, params)


def test_sequential_chain_gradients(backend64):
    """Central differences through the whole 6-layer chain, every parameter and the input."""
    b = backend64
    f64 = b.dtype("float64")
    seq = chain()
    p_h = chain_params(seed=1)
    rng = np.random.default_rng(6)
    x_h = away_from_zero(rng, (4, 5))
    r = rng.normal(size=(4, 3))

    def run(x_host, params_host):
        params = [{k: b.asarray(v, f64) for k, v in layer.items()} for layer in params_host]
        return seq.forward(params, b.asarray(x_host, f64), ctx_for(b))

    def objective(x_host, params_host):
        return float(np.sum(b.to_numpy(run(x_host, params_host)[0]) * r))

    y, backprop = run(x_h, p_h)
    assert_on_backend(y, b, "float64", (4, 3))
    dx, grads = backprop(b.asarray(r, f64))
    numeric_x = numerical_gradient(lambda v: objective(v, p_h), x_h.copy(), 1e-6)
    assert relative_error(b.to_numpy(dx), numeric_x) < GRAD_TOL
    for i, layer in enumerate(p_h):
        for key in layer:

            def f(v, i=i, key=key):
                return objective(
                    x_h, [{**lay, key: v} if j == i else lay for j, lay in enumerate(p_h)]
                )

            numeric = numerical_gradient(f, layer[key].copy(), 1e-6)
            err = relative_error(b.to_numpy(grads[i][key]), numeric)
            assert err < GRAD_TOL, f"layer {i} {key}: relative error {err:.2e}"


def test_check_layer_gradients_accepts_sequential(numpy_backend):
    """A Sequential is a Layer, so check_layer_gradients must handle its list of parameter dicts."""
    x_h = away_from_zero(np.random.default_rng(7), (4, 5))
    errors = pn.check_layer_gradients(chain(), x_h, backend=numpy_backend)
    # The input and every parameter of the three Dense layers (flattened indices 0, 2, 4).
    assert set(errors) == {"x", "0.W", "0.b", "2.W", "2.b", "4.W", "4.b"}, errors
    assert all(err < GRAD_TOL for err in errors.values()), errors


class Spy(pn.Layer):
    """The identity, recording the context it gets and how often its backprop runs."""

    def __init__(self):
        self.need_input_grad, self.backprop_calls = [], 0

    def forward(self, params, x, ctx):
        self.need_input_grad.append(ctx.need_input_grad)

        def backprop(dy):
            self.backprop_calls += 1
            return dy, {}

        return x, backprop


def test_backprop_stops_at_the_first_layer_with_parameters(backend):
    # The training step asks for no input gradient: the parameter-free layers before
    # the first convolution are not backpropagated through, and the convolution folds
    # no gradient back to its input; every parameter gradient is the full chain's.
    before, after = Spy(), Spy()
    layers = [pn.Reshape((1, 5, 5)), before, pn.Conv2D(1, 2, 3, padding=1), after]
    net = pn.Sequential([*layers, pn.ReLU(), pn.Flatten(), pn.Dense(50, 3)])
    params = net.init(np.random.default_rng(0))
    params = [{k: on(backend, v) for k, v in layer.items()} for layer in params]
    x = on(backend, np.random.default_rng(1).normal(size=(4, 25)))
    dy = on(backend, np.random.default_rng(2).normal(size=(4, 3)))
    results = {}
    for need in (False, True):
        y, backprop = net.forward(params, x, ctx_for(backend, training=True, need_input_grad=need))
        results[need] = backprop(dy)
    dx_short, grads_short = results[False]
    dx_full, grads_full = results[True]
    assert dx_short is None and tuple(dx_full.shape) == (4, 25)
    assert before.need_input_grad == [False, True] and after.need_input_grad == [True, True]
    assert before.backprop_calls == 1 and after.backprop_calls == 2  # only the full chain's
    assert [sorted(g) for g in grads_short] == [sorted(g) for g in grads_full]
    for short, full in zip(grads_short, grads_full, strict=True):
        for key in full:
            np.testing.assert_allclose(
                backend.to_numpy(short[key]), backend.to_numpy(full[key]), **tolerance("float32")
            )
