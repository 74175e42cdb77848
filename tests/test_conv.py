"""Conv2D, MaxPool2D, AvgPool2D, Flatten and Reshape on the backend matrix.

Per layer: namespace / device / dtype / shape of every result before its values,
inputs unchanged, values and gradients against ``torch.nn.functional`` (float64 on
the host, from the same float32-rounded data), float64 central differences, and a
small CNN that learns through :class:`portnet.Model`.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import (
    assert_gradients_on_backend,
    assert_on_backend,
    assert_unchanged,
    f32,
    host_copies,
    tolerance,
)

import portnet as pn
from portnet.layers import layer_from_config
from portnet.layers.conv import Conv2D, Flatten, Reshape
from portnet.layers.pooling import AvgPool2D, MaxPool2D

GRAD_TOL = 1e-6

# (in, out, H, W, kernel, stride, padding, bias)
CONV_CASES = {
    "3x3-s1-p1": (3, 4, 7, 6, 3, 1, 1, True),
    "3x2-s2-p10": (2, 5, 9, 8, (3, 2), 2, (1, 0), True),
    "5x5-p2-nobias": (1, 3, 5, 5, 5, 1, 2, False),
    "2x2-s2": (2, 2, 8, 8, 2, 2, 0, True),
}
# (H, W, kernel, stride, padding)
POOL_CASES = {
    "2x2": (8, 8, 2, None, 0),
    "3x3-s2-p1": (7, 9, 3, 2, 1),
    "3x3-s1": (6, 6, 3, 1, 0),
    "2x3-s12-p1": (5, 7, (2, 3), (1, 2), 1),
}


def conv_data(case, seed=0):
    c, f, h, w, k, s, p, bias = CONV_CASES[case]
    layer = Conv2D(c, f, k, stride=s, padding=p, bias=bias)
    rng = np.random.default_rng(seed)
    params = layer.init(rng)
    if bias:
        params["b"] = rng.normal(size=f)
    params = {k_: f32(v) for k_, v in params.items()}
    return layer, f32(rng.normal(size=(2, c, h, w))), params, rng


def distinct_values(rng, shape):
    """Values that are all different, at least 0.01 apart: no ties in a max-pool window,
    even after a central-difference step."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 - 1.0


def make_pool(kind, case):
    h, w, k, s, p = POOL_CASES[case]
    return (MaxPool2D if kind == "max" else AvgPool2D)(k, stride=s, padding=p), (h, w)


def run_layer(backend, layer, x_h, p_h, dy_fn):
    """Forward and backprop on ``backend`` in float32, checking placement and inputs."""
    x = backend.asarray(x_h, "float32")
    params = {k: backend.asarray(v, "float32") for k, v in p_h.items()}
    x_before, p_before = host_copies(x), host_copies(params)
    y, backprop = layer.forward(params, x, pn.Context(xp=backend.xp))
    assert_on_backend(y, backend, "float32")
    dy_h = f32(dy_fn(tuple(y.shape)))
    dy = backend.asarray(dy_h, "float32")
    dx, grads = backprop(dy)
    assert_gradients_on_backend(dx, grads, backend, x_h.shape, p_h)
    assert_unchanged(x_before, x)
    assert_unchanged(p_before, params)
    assert_unchanged(dy_h.astype(np.float32), dy)
    return host_copies(y), dy_h, host_copies(dx), host_copies(grads)


# -- against torch.nn.functional, every backend case --------------------------------
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_matches_torch(backend, case):
    torch = pytest.importorskip("torch")
    layer, x_h, p_h, rng = conv_data(case)
    y, dy_h, dx, grads = run_layer(backend, layer, x_h, p_h, lambda s: rng.normal(size=s))

    xt = torch.tensor(x_h, requires_grad=True)
    pt = {k: torch.tensor(v, requires_grad=True) for k, v in p_h.items()}
    yt = torch.nn.functional.conv2d(
        xt, pt["W"], pt.get("b"), stride=layer.stride, padding=layer.padding
    )
    assert y.shape == tuple(yt.shape)
    yt.backward(torch.tensor(dy_h))
    tol = tolerance("float32")
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    for key in p_h:
        np.testing.assert_allclose(grads[key], pt[key].grad.numpy(), **tol)


@pytest.mark.parametrize("case", list(POOL_CASES))
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_matches_torch(backend, kind, case):
    torch = pytest.importorskip("torch")
    layer, (h, w) = make_pool(kind, case)
    rng = np.random.default_rng(1)
    x_h = f32(distinct_values(rng, (2, 3, h, w)))
    y, dy_h, dx, grads = run_layer(backend, layer, x_h, {}, lambda s: rng.normal(size=s))
    assert grads == {}

    xt = torch.tensor(x_h, requires_grad=True)
    fn = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
    yt = fn(xt, layer.kernel_size, layer.stride, layer.padding)
    assert y.shape == tuple(yt.shape)
    yt.backward(torch.tensor(dy_h))
    np.testing.assert_allclose(y, yt.detach().numpy(), **tolerance("float32"))
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tolerance("float32"))


def test_maxpool_ties_go_to_first_element(backend):
    """All-equal windows (common after ReLU): the whole gradient goes to the first
    element of each window, as in PyTorch."""
    x_h = np.zeros((1, 1, 2, 4))
    y, _, dx, _ = run_layer(backend, MaxPool2D(2), x_h, {}, lambda s: np.full(s, 3.0))
    expected = np.array([[[[3.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])
    np.testing.assert_array_equal(y, np.zeros((1, 1, 1, 2)))
    np.testing.assert_array_equal(dx, expected)


def test_flatten_and_reshape(backend):
    rng = np.random.default_rng(2)
    x_h = f32(rng.normal(size=(3, 2, 4, 5)))
    y, dy_h, dx, _ = run_layer(backend, Flatten(), x_h, {}, lambda s: rng.normal(size=s))
    np.testing.assert_array_equal(y, x_h.reshape(3, 40).astype(np.float32))
    np.testing.assert_array_equal(dx, dy_h.reshape(x_h.shape).astype(np.float32))

    rows = x_h.reshape(3, 40)
    y, dy_h, dx, _ = run_layer(backend, Reshape((2, 4, 5)), rows, {}, lambda s: rng.normal(size=s))
    np.testing.assert_array_equal(y, x_h.astype(np.float32))
    np.testing.assert_array_equal(dx, dy_h.reshape(3, 40).astype(np.float32))
    assert Reshape((1, 28, 28)).n_in == 784


def test_conv_first_layer_skips_input_gradient(backend):
    layer, x_h, p_h, rng = conv_data("3x3-s1-p1")
    params = {k: backend.asarray(v, "float32") for k, v in p_h.items()}
    ctx = pn.Context(xp=backend.xp, need_input_grad=False)
    y, backprop = layer.forward(params, backend.asarray(x_h, "float32"), ctx)
    dx, grads = backprop(backend.asarray(rng.normal(size=tuple(y.shape)), "float32"))
    assert dx is None
    assert_on_backend(grads["W"], backend, "float32", p_h["W"].shape)


# -- float64 central differences ------------------------------------------------------
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_gradient_check(backend64, case):
    layer, x_h, p_h, _ = conv_data(case, seed=3)
    errors = pn.check_layer_gradients(layer, x_h[:1], p_h, backend=backend64)
    assert set(errors) == {"x", *p_h}
    assert max(errors.values()) < GRAD_TOL, errors


@pytest.mark.parametrize("case", ["3x3-s2-p1", "2x3-s12-p1"])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_gradient_check(backend64, kind, case):
    layer, (h, w) = make_pool(kind, case)
    x_h = distinct_values(np.random.default_rng(4), (1, 2, h, w))
    errors = pn.check_layer_gradients(layer, x_h, {}, backend=backend64)
    assert errors["x"] < GRAD_TOL, errors


# -- no per-shape state: slices need no index arrays -------------------------------------
def test_layers_keep_no_per_shape_state(numpy_backend):
    """The slice-based layers build nothing per input shape (the gather-based ones cached
    index arrays per shape and device); a layer's attributes are its configuration."""
    layers = [Conv2D(2, 3, 3, padding=1), MaxPool2D(2), AvgPool2D(3, 2, 1)]
    ctx = pn.Context(xp=numpy_backend.xp)
    for layer in layers:
        before = dict(vars(layer))
        params = {
            k: numpy_backend.asarray(v, "float32")
            for k, v in layer.init(np.random.default_rng(0)).items()
        }
        for shape in ((4, 2, 6, 6), (1, 2, 5, 7)):
            layer.forward(params, numpy_backend.asarray(np.ones(shape), "float32"), ctx)
        assert vars(layer) == before


def test_bad_shapes_and_configs():
    rng = np.random.default_rng(0)
    backend = pn.get_backend("numpy")
    layer = Conv2D(3, 4, 3)
    params = {k: backend.asarray(v, "float32") for k, v in layer.init(rng).items()}
    with pytest.raises(ValueError, match="expects N x 3 x H x W"):
        layer.forward(
            params, backend.asarray(np.ones((2, 2, 5, 5)), "float32"), pn.Context(xp=backend.xp)
        )
    with pytest.raises(ValueError, match="does not fit"):
        layer.forward(
            params, backend.asarray(np.ones((2, 3, 2, 2)), "float32"), pn.Context(xp=backend.xp)
        )
    with pytest.raises(ValueError):
        Conv2D(3, 4, 0)
    with pytest.raises(ValueError):
        MaxPool2D(2, padding=2)
    with pytest.raises(ValueError):
        Reshape((0, 4))


def test_config_round_trip():
    for layer in (
        Conv2D(3, 8, (3, 5), stride=2, padding=(1, 2), bias=False),
        MaxPool2D(3, 2, 1),
        AvgPool2D(2),
        Flatten(),
        Reshape((1, 28, 28)),
    ):
        again = layer_from_config({"class": type(layer).__name__, "config": layer.get_config()})
        assert again.get_config() == layer.get_config()


# -- a small CNN learns, through the Model façade ---------------------------------------
def bars(n=256, seed=0):
    """8x8 images holding one noisy bar: horizontal (class 0), vertical (1), diagonal (2)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    X = 0.3 * rng.normal(size=(n, 8, 8))
    pos = rng.integers(1, 7, size=n)
    for i in range(n):
        if y[i] == 0:
            X[i, pos[i], :] += 1.0
        elif y[i] == 1:
            X[i, :, pos[i]] += 1.0
        else:
            X[i] += np.eye(8)[:, ::-1] if pos[i] % 2 else np.eye(8)
    return X.reshape(n, 64).astype(np.float32), y


def small_cnn():
    return [
        Reshape((1, 8, 8)),
        Conv2D(1, 4, 3, padding=1),
        pn.ReLU(),
        MaxPool2D(2),
        Flatten(),
        pn.Dense(4 * 4 * 4, 3),
    ]


def test_small_cnn_trains(backend, tmp_path):
    X, y = bars()
    model = pn.Model(small_cnn(), optimizer=pn.Adam(0.01), backend=backend, seed=0)
    before = model.evaluate(X, y)["loss"]
    history = model.fit(X, y, epochs=4, batch_size=32, verbose=0)
    losses = history.history["train_loss"]
    after = model.evaluate(X, y)
    assert losses[-1] < losses[0] and after["loss"] < 0.5 * before, (before, losses)
    assert after["accuracy"] > 0.8
    assert_on_backend(model.predict(X), backend, shape=(X.shape[0],))
    # The architecture and weights survive save / load (no change to the file format).
    model.save(tmp_path / "cnn.npz")
    again = pn.Model.load(tmp_path / "cnn.npz", backend="numpy")
    np.testing.assert_allclose(
        np.asarray(again.predict_proba(X)),
        host_copies(model.predict_proba(X)),
        rtol=1e-4,
        atol=1e-5,
    )
