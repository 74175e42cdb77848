"""Every layer, activation, loss and regularizer on the backend matrix.

Per op: namespace / device / dtype / shape of every result before its values,
values against a float64 NumPy oracle written here, inputs unchanged after
forward and backprop, float64 central differences, and torch autograd as a
second oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    assert_gradients_on_backend,
    assert_on_backend,
    assert_unchanged,
    host_copies,
    tolerance,
)

import portnet as pn
from portnet.gradcheck import numerical_gradient, relative_error

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


# -- losses ------------------------------------------------------------------------
def loss_data(case, seed=0, n=6, k=4):
    """(loss object, host logits float64, host targets) for a loss case."""
    rng = np.random.default_rng(seed)
    if case == "sce-labels":
        return pn.SoftmaxCrossEntropy(), rng.normal(size=(n, k)) * 2, rng.integers(0, k, n)
    if case == "sce-onehot":
        return (
            pn.SoftmaxCrossEntropy(),
            rng.normal(size=(n, k)) * 2,
            np.eye(k)[rng.integers(0, k, n)],
        )
    if case == "bce-1d":
        return (
            pn.SigmoidBinaryCrossEntropy(),
            rng.normal(size=n) * 2,
            rng.integers(0, 2, n).astype(float),
        )
    if case == "bce-2d":
        return (
            pn.SigmoidBinaryCrossEntropy(),
            rng.normal(size=(n, 1)) * 2,
            rng.integers(0, 2, (n, 1)).astype(float),
        )
    if case == "mse":
        return pn.MeanSquaredError(), rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    raise AssertionError(case)


LOSS_CASES = ["sce-labels", "sce-onehot", "bce-1d", "bce-2d", "mse"]


def loss_oracle(case, z, t):
    """(value, gradient) in float64, in the textbook forms."""
    n = z.shape[0]
    if case.startswith("sce"):
        onehot = np.eye(z.shape[1])[t] if t.ndim == 1 else t
        return -np.sum(onehot * np_log_softmax(z)) / n, (np_softmax(z) - onehot) / n
    if case.startswith("bce"):
        value = np.sum(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))) / n
        return value, (np_sigmoid(z) - t) / n
    return np.mean((z - t) ** 2), 2 * (z - t) / z.size


def targets_on(backend, t, dtype):
    return backend.asarray(t, "int64") if t.dtype.kind == "i" else backend.asarray(t, dtype)


@pytest.mark.parametrize("case", LOSS_CASES)
def test_loss_value_and_gradient(backend, case):
    loss, z_h, t_h = loss_data(case)
    z, t = on(backend, z_h), targets_on(backend, t_h, "float32")
    z_before, t_before = host_copies(z), host_copies(t)
    value, grad = loss(z, t)
    assert_on_backend(value, backend, "float32", ())
    assert_on_backend(grad, backend, "float32", z_h.shape)
    assert_unchanged(z_before, z)
    assert_unchanged(t_before, t)
    v_ref, g_ref = loss_oracle(case, z_h, t_h)
    tol = tolerance("float32")
    np.testing.assert_allclose(float(backend.to_numpy(value)), v_ref, **tol)
    np.testing.assert_allclose(backend.to_numpy(grad), g_ref, **tol)
    # grad_scale (the learning rate the loop folds in) scales the gradient, not the value.
    scaled_value, scaled_grad = loss(z, t, grad_scale=0.25)
    np.testing.assert_allclose(backend.to_numpy(scaled_value), backend.to_numpy(value))
    np.testing.assert_allclose(backend.to_numpy(scaled_grad), 0.25 * g_ref, **tol)


def test_sigmoid_bce_accepts_mixed_target_shapes(backend):
    """(N, 1) logits with (N,) targets and the reverse give the same loss."""
    _, z_h, t_h = loss_data("bce-2d")
    loss = pn.SigmoidBinaryCrossEntropy()
    v1, g1 = loss(on(backend, z_h), on(backend, t_h[:, 0]))
    v2, g2 = loss(on(backend, z_h[:, 0]), on(backend, t_h))
    assert_on_backend(g1, backend, "float32", (6, 1))
    assert_on_backend(g2, backend, "float32", (6,))
    v_ref, g_ref = loss_oracle("bce-2d", z_h, t_h)
    tol = tolerance("float32")
    np.testing.assert_allclose(float(backend.to_numpy(v1)), v_ref, **tol)
    np.testing.assert_allclose(float(backend.to_numpy(v2)), v_ref, **tol)
    np.testing.assert_allclose(backend.to_numpy(g1), g_ref, **tol)
    np.testing.assert_allclose(backend.to_numpy(g2), g_ref[:, 0], **tol)


@pytest.mark.parametrize("case", LOSS_CASES)
def test_loss_extreme_logits(backend, case):
    """Logits of +-1e4 in float32: finite, correct value and gradient."""
    loss, z_h, t_h = loss_data(case, seed=8)
    z_h = np.where(z_h >= 0, 1e4, -1e4)
    if case.startswith("sce"):
        z_h[:, 0] = 0.0  # a mix of huge, tiny and moderate logits in each row
    value, grad = loss(on(backend, z_h), targets_on(backend, t_h, "float32"))
    assert_on_backend(value, backend, "float32", ())
    assert_on_backend(grad, backend, "float32", z_h.shape)
    v, g = float(backend.to_numpy(value)), backend.to_numpy(grad)
    assert np.isfinite(v) and np.all(np.isfinite(g)), (v, g)
    v_ref, g_ref = loss_oracle(case, z_h, t_h)
    assert v_ref > 100 or case == "mse"  # the targets disagree with some huge logits
    np.testing.assert_allclose(v, v_ref, **tolerance("float32"))
    np.testing.assert_allclose(g, g_ref, **tolerance("float32"))


@pytest.mark.parametrize("case", LOSS_CASES)
def test_loss_gradient_check(backend64, case):
    b = backend64
    f64 = b.dtype("float64")
    loss, z_h, t_h = loss_data(case, seed=9)
    t = targets_on(b, t_h, "float64")
    value, grad = loss(b.asarray(z_h, f64), t)
    assert_on_backend(value, b, "float64", ())
    assert_on_backend(grad, b, "float64", z_h.shape)

    def f(v):
        return float(b.to_numpy(loss(b.asarray(v, f64), t)[0]))

    numeric = numerical_gradient(f, z_h.copy(), 1e-6)
    assert relative_error(b.to_numpy(grad), numeric) < GRAD_TOL


def torch_loss(torch, case, z, t):
    F = torch.nn.functional
    if case == "sce-labels":
        return F.cross_entropy(z, torch.tensor(t))
    if case == "sce-onehot":
        return F.cross_entropy(z, torch.tensor(t))  # class-probability targets
    if case.startswith("bce"):
        return F.binary_cross_entropy_with_logits(z, torch.tensor(t))
    return F.mse_loss(z, torch.tensor(t))


@pytest.mark.parametrize("case", LOSS_CASES)
def test_loss_matches_torch_autograd(backend64, case):
    torch = pytest.importorskip("torch")
    loss, z_h, t_h = loss_data(case, seed=10)
    zt = torch.tensor(z_h, requires_grad=True)
    value_t = torch_loss(torch, case, zt, t_h)
    value_t.backward()
    b = backend64
    value, grad = loss(on(b, z_h, "float64"), targets_on(b, t_h, "float64"))
    tol = tolerance("float64")
    np.testing.assert_allclose(float(b.to_numpy(value)), value_t.item(), **tol)
    np.testing.assert_allclose(b.to_numpy(grad), zt.grad.numpy(), **tol)


def test_get_loss_names():
    assert isinstance(pn.get_loss("cross_entropy"), pn.SoftmaxCrossEntropy)
    assert isinstance(pn.get_loss("bce"), pn.SigmoidBinaryCrossEntropy)
    assert isinstance(pn.get_loss("mse"), pn.MeanSquaredError)
    with pytest.raises(ValueError, match="mse"):
        pn.get_loss("hinge")


# -- regularizers ------------------------------------------------------------------
REGS = {"l1": pn.L1, "l2": pn.L2}


def reg_oracle(name, lam, W):
    if name == "l1":
        return lam * np.abs(W).sum(), lam * np.sign(W)
    return 0.5 * lam * (W**2).sum(), lam * W


def reg_weights(seed):
    return away_from_zero(np.random.default_rng(seed), (4, 3), margin=0.01)


@pytest.mark.parametrize("name", list(REGS))
def test_regularizer_value_and_gradient(backend, name):
    lam = 0.03
    W_h = reg_weights(11)
    W = on(backend, W_h)
    before = host_copies(W)
    penalty, grad = REGS[name](lam)(backend.xp, W)
    assert_on_backend(penalty, backend, "float32", ())
    assert_on_backend(grad, backend, "float32", W_h.shape)
    assert_unchanged(before, W)
    p_ref, g_ref = reg_oracle(name, lam, W_h)
    tol = tolerance("float32")
    np.testing.assert_allclose(float(backend.to_numpy(penalty)), p_ref, **tol)
    np.testing.assert_allclose(backend.to_numpy(grad), g_ref, **tol)


@pytest.mark.parametrize("name", list(REGS))
def test_regularizer_gradient_check(backend64, name):
    b = backend64
    f64 = b.dtype("float64")
    reg = REGS[name](0.07)
    W_h = reg_weights(12)  # |W| >= 0.01, far from the L1 kink for eps = 1e-6
    _, grad = reg(b.xp, b.asarray(W_h, f64))
    assert_on_backend(grad, b, "float64", W_h.shape)
    numeric = numerical_gradient(
        lambda v: float(b.to_numpy(reg(b.xp, b.asarray(v, f64))[0])), W_h.copy(), 1e-6
    )
    assert relative_error(b.to_numpy(grad), numeric) < GRAD_TOL


@pytest.mark.parametrize("name", list(REGS))
def test_regularizer_matches_torch_autograd(backend64, name):
    torch = pytest.importorskip("torch")
    lam = 0.05
    W_h = reg_weights(13)
    Wt = torch.tensor(W_h, requires_grad=True)
    value_t = lam * Wt.abs().sum() if name == "l1" else 0.5 * lam * (Wt**2).sum()
    value_t.backward()
    b = backend64
    penalty, grad = REGS[name](lam)(b.xp, on(b, W_h, "float64"))
    tol = tolerance("float64")
    np.testing.assert_allclose(float(b.to_numpy(penalty)), value_t.item(), **tol)
    np.testing.assert_allclose(b.to_numpy(grad), Wt.grad.numpy(), **tol)


def test_regularizer_rejects_bad_strength():
    with pytest.raises(pn.ConfigError, match=r"L2 strength must be in \[0, inf\], got -1.0"):
        pn.L2(-1.0)
    with pytest.raises(pn.ConfigError, match="L1 strength must be finite"):
        pn.L1(float("nan"))
    assert pn.L1(0.0).lam == 0.0  # the boundary is allowed


# -- model-level gradient check and its table --------------------------------------------
def small_tanh_model(backend, l2=1e-2):
    model = pn.Model(
        [pn.Dense(20, 16, init="glorot"), pn.Tanh(), pn.Dense(16, 10, init="glorot"), pn.Softmax()],
        l2=l2,
        backend=backend,
        seed=3,
    )
    rng = np.random.default_rng(14)
    weights = model.get_weights()
    for layer in weights:  # non-zero biases so every checked entry has a real gradient
        if "b" in layer:
            layer["b"] = rng.normal(scale=0.1, size=layer["b"].shape).astype(np.float32)
    model.set_weights(weights)
    X = rng.normal(size=(12, 20)).astype(np.float32)
    y = rng.integers(0, 10, 12).astype(np.int64)
    return model, X, y


def test_model_gradient_check(backend64):
    model, X, y = small_tanh_model(backend64)
    rows = pn.gradient_check(model, X, y, n_per_param=3)
    # 3 entries of each of W1, b1, W2, b2.
    assert len(rows) == 12
    assert {(r.layer, r.param) for r in rows} == {(0, "W"), (0, "b"), (2, "W"), (2, "b")}
    for row in rows:
        assert row.rel_error < GRAD_TOL, row
        assert abs(row.backprop) > 1e-8, row  # a real gradient, not 0 == 0
    # The L2 term is included: without it the W gradients change by lam * W.
    no_l2, _, _ = small_tanh_model(backend64, l2=0.0)
    entries = [(r.layer, r.param, r.index) for r in rows if r.param == "W"]
    plain = {
        (r.layer, r.index): r.backprop for r in pn.gradient_check(no_l2, X, y, entries=entries)
    }
    weights = model.get_weights()
    for row in rows:
        if row.param == "W":
            expected = plain[(row.layer, row.index)] + 1e-2 * float(
                weights[row.layer]["W"][row.index]
            )
            np.testing.assert_allclose(row.backprop, expected, rtol=1e-6, atol=1e-12)


def test_format_gradient_table(numpy_backend):
    model, X, y = small_tanh_model(numpy_backend)
    rows = pn.gradient_check(model, X, y, n_per_param=2)
    table = pn.format_gradient_table(rows, names={(0, "W"): "W1"})
    lines = table.splitlines()
    assert len(lines) == 2 + len(rows)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["weight", "index", "backprop", "numerical", "abs. difference", "rel. error"]
    assert set(lines[1].replace("|", "")) == {"-"}
    for line, row in zip(lines[2:], rows, strict=True):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 6
        assert cells[0] == (
            "W1" if (row.layer, row.param) == (0, "W") else f"layer {row.layer} {row.param}"
        )
        assert cells[1] == ", ".join(map(str, row.index))
        np.testing.assert_allclose(float(cells[2]), row.backprop, rtol=1e-6)
        np.testing.assert_allclose(float(cells[3]), row.numerical, rtol=1e-6)
        np.testing.assert_allclose(float(cells[5]), row.rel_error, rtol=1e-2, atol=1e-300)
