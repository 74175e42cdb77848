"""BatchNorm on the backend matrix: torch.nn.functional.batch_norm as the oracle in
training and inference mode (running-statistics updates included), float64
gradient checks, and the running statistics' life in a Model (fit updates them,
the optimizer does not, save/load keeps them)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.arrays import assert_on_backend, f32, host_copies, tolerance

import portnet as pn
from portnet.layers.conv import Conv2D, Flatten, Reshape
from portnet.layers.normalization import BatchNorm

GRAD_TOL = 1e-6
CNN_CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "cnn.yaml"
SHAPES = {"NxF": (6, 4), "NxCxHxW": (3, 4, 3, 2)}


def bn_data(shape, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    params = {
        "gamma": f32(rng.uniform(0.5, 1.5, size=c)),
        "beta": f32(rng.normal(size=c)),
        "running_mean": f32(rng.normal(size=c)),
        "running_var": f32(rng.uniform(0.5, 2.0, size=c)),
    }
    return f32(2.0 + 3.0 * rng.normal(size=shape)), params, f32(rng.normal(size=shape))


@pytest.mark.parametrize("inplace", [False, True], ids=["portable", "inplace"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_batchnorm_matches_torch(backend, shape, training, inplace):
    torch = pytest.importorskip("torch")
    if inplace and not backend.inplace:
        pytest.skip(f"{backend.name} has no in-place path")
    x_h, p_h, dy_h = bn_data(SHAPES[shape])
    layer = BatchNorm(x_h.shape[1], momentum=0.2)
    x = backend.asarray(x_h, "float32")
    params = {k: backend.asarray(v, "float32") for k, v in p_h.items()}
    ctx = pn.Context(xp=backend.xp, training=training, ops=backend.ops.with_inplace(inplace))
    y, backprop, updates = layer.forward_with_state(params, x, ctx)
    assert_on_backend(y, backend, "float32", x_h.shape)
    dx, grads = backprop(backend.asarray(dy_h, "float32"))
    assert_on_backend(dx, backend, "float32", x_h.shape)
    assert set(grads) == {"gamma", "beta"}  # never a gradient for running statistics
    for key, g in grads.items():
        assert_on_backend(g, backend, "float32", p_h[key].shape)
    np.testing.assert_array_equal(host_copies(x), x_h.astype(np.float32))
    for key in p_h:
        np.testing.assert_array_equal(host_copies(params[key]), p_h[key].astype(np.float32))

    xt = torch.tensor(x_h, requires_grad=True)
    gt = torch.tensor(p_h["gamma"], requires_grad=True)
    bt = torch.tensor(p_h["beta"], requires_grad=True)
    rm, rv = torch.tensor(p_h["running_mean"]), torch.tensor(p_h["running_var"])
    yt = torch.nn.functional.batch_norm(
        xt, rm, rv, gt, bt, training=training, momentum=0.2, eps=layer.eps
    )
    yt.backward(torch.tensor(dy_h))
    tol = tolerance("float32")
    np.testing.assert_allclose(host_copies(y), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(host_copies(dx), xt.grad.numpy(), **tol)
    np.testing.assert_allclose(host_copies(grads["gamma"]), gt.grad.numpy(), **tol)
    np.testing.assert_allclose(host_copies(grads["beta"]), bt.grad.numpy(), **tol)
    if training:
        # torch updated rm / rv in place: the running statistics after this batch.
        assert set(updates) == {"running_mean", "running_var"}
        for name, ref in (("running_mean", rm), ("running_var", rv)):
            assert_on_backend(updates[name], backend, "float32", (x_h.shape[1],))
            np.testing.assert_allclose(host_copies(updates[name]), ref.numpy(), **tol)
    else:
        assert updates == {}


def test_batchnorm_forward_drops_the_state_updates(backend):
    """Plain ``forward`` normalizes by the batch and leaves the running statistics alone."""
    x_h, p_h, _ = bn_data(SHAPES["NxF"])
    params = {k: backend.asarray(v, "float32") for k, v in p_h.items()}
    ctx = pn.Context(xp=backend.xp, training=True)
    y, _ = BatchNorm(4).forward(params, backend.asarray(x_h, "float32"), ctx)
    for key in ("running_mean", "running_var"):
        np.testing.assert_array_equal(host_copies(params[key]), p_h[key].astype(np.float32))
    # Training-mode output is normalized by the batch statistics.
    np.testing.assert_allclose(
        host_copies(y),
        (x_h - x_h.mean(0)) / np.sqrt(x_h.var(0) + 1e-5) * p_h["gamma"] + p_h["beta"],
        **tolerance("float32"),
    )


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_batchnorm_gradient_check(backend64, shape, training):
    x_h, p_h, _ = bn_data(SHAPES[shape], seed=1)
    errors = pn.check_layer_gradients(
        BatchNorm(x_h.shape[1]), x_h, p_h, backend=backend64, training=training
    )
    assert set(errors) == {"x", "gamma", "beta"}
    assert max(errors.values()) < GRAD_TOL, errors


def test_batchnorm_names_and_config():
    layer = BatchNorm(8, momentum=0.05, eps=1e-3)
    assert layer.weight_names == ()
    assert layer.state_names == ("running_mean", "running_var")
    p = layer.init(np.random.default_rng(0))
    np.testing.assert_array_equal(p["gamma"], np.ones(8))
    np.testing.assert_array_equal(p["running_var"], np.ones(8))
    assert layer.get_config() == {"n_features": 8, "momentum": 0.05, "eps": 1e-3}
    with pytest.raises(ValueError):
        BatchNorm(0)
    with pytest.raises(ValueError, match="expects"):
        backend = pn.get_backend("numpy")
        params = {k: backend.asarray(v, "float32") for k, v in p.items()}
        layer.forward(params, backend.asarray(np.ones((2, 3)), "float32"), pn.Context(xp=np))


# -- in a Model: fit updates the statistics, the optimizer does not ----------------------
def test_fit_updates_running_stats_not_optimizer(backend, tmp_path):
    rng = np.random.default_rng(3)
    X = (5.0 + 2.0 * rng.normal(size=(32, 4))).astype(np.float32)
    y = rng.integers(0, 3, size=32)
    # lr = 0: the optimizer cannot move anything, so any change comes from the trainer.
    model = pn.Model([BatchNorm(4), pn.Dense(4, 3)], optimizer=pn.SGD(0.0), backend=backend)
    start = model.get_weights()
    model.fit(X, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    w = model.get_weights()
    np.testing.assert_allclose(w[0]["running_mean"], 0.1 * X.mean(0), rtol=1e-5)
    np.testing.assert_allclose(w[0]["running_var"], 0.9 + 0.1 * X.var(0, ddof=1), rtol=1e-5)
    for key in ("gamma", "beta"):
        np.testing.assert_array_equal(w[0][key], start[0][key])
    assert "running_mean" not in model.optimizer_state["slots"][0]

    # A real optimizer trains gamma / beta and still leaves the statistics to the trainer.
    model = pn.Model([BatchNorm(4), pn.Dense(4, 3)], optimizer=pn.Adam(0.05), backend=backend)
    model.fit(X, y, epochs=3, batch_size=8, verbose=0)
    w = model.get_weights()
    assert not np.allclose(w[0]["gamma"], 1.0)
    np.testing.assert_allclose(w[0]["running_mean"], X.mean(0), rtol=0.4)

    # Save / load keeps the statistics, and inference uses them.
    model.save(tmp_path / "bn.npz")
    again = pn.Model.load(tmp_path / "bn.npz", backend="numpy")
    for key, value in w[0].items():
        np.testing.assert_array_equal(again.get_weights()[0][key], value)
    np.testing.assert_allclose(
        np.asarray(again.predict_proba(X)),
        host_copies(model.predict_proba(X)),
        rtol=1e-4,
        atol=1e-5,
    )


def test_cnn_with_batchnorm_trains(numpy_backend):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=128)
    X = rng.normal(size=(128, 1, 6, 6)) * 0.5
    X[:, 0, :, :3] += 2.0 * y[:, None, None]  # class 1: bright left half
    layers = [
        Reshape((1, 6, 6)),
        Conv2D(1, 3, 3, padding=1),
        BatchNorm(3),
        pn.ReLU(),
        Flatten(),
        pn.Dense(108, 2),
    ]
    model = pn.Model(layers, optimizer=pn.Adam(0.01), backend=numpy_backend)
    history = model.fit(X.reshape(128, 36), y, epochs=5, batch_size=16, verbose=0)
    assert history.history["train_loss"][-1] < 0.5 * history.history["train_loss"][0]
    assert not np.allclose(model.get_weights()[2]["running_mean"], 0.0)


def test_a_convolution_bias_before_batchnorm_changes_nothing(backend64):
    """Why experiments/configs/cnn.yaml's convolutions have no bias: in training the
    BatchNorm after them subtracts each channel's batch mean, so a per-channel bias
    leaves the output and the weight gradient as they are, and its own gradient is 0."""
    rng = np.random.default_rng(3)
    x_h, dy_h = rng.normal(size=(4, 2, 5, 5)), rng.normal(size=(4, 3, 5, 5))
    W_h = rng.normal(size=(3, 2, 3, 3))
    bn_h = {"gamma": rng.uniform(0.5, 1.5, 3), "beta": rng.normal(size=3)}
    bn_h.update(running_mean=np.zeros(3), running_var=np.ones(3))
    ctx = pn.Context(xp=backend64.xp, training=True)
    outputs = {}
    for bias in (False, True):
        conv, bn = Conv2D(2, 3, 3, padding=1, bias=bias), BatchNorm(3)
        p_conv = {"W": backend64.asarray(W_h, "float64")}
        if bias:
            p_conv["b"] = backend64.asarray(rng.normal(scale=5.0, size=3), "float64")
        p_bn = {k: backend64.asarray(v, "float64") for k, v in bn_h.items()}
        h, conv_backprop = conv.forward(p_conv, backend64.asarray(x_h, "float64"), ctx)
        y, bn_backprop = bn.forward(p_bn, h, ctx)
        dx, conv_grads = conv_backprop(bn_backprop(backend64.asarray(dy_h, "float64"))[0])
        outputs[bias] = [host_copies(a) for a in (y, dx, conv_grads["W"])]
        if bias:
            db = host_copies(conv_grads["b"])
            assert np.abs(db).max() < 1e-12 * np.abs(dy_h).sum()
    for with_bias, without in zip(outputs[True], outputs[False], strict=True):
        np.testing.assert_allclose(with_bias, without, rtol=1e-10, atol=1e-12)
    # And the job's network follows it: no convolution there feeds a BatchNorm with a bias.
    spec = yaml.safe_load(CNN_CONFIG.read_text())["layers"]
    for layer, after in itertools.pairwise(spec):
        if layer["class"] == "Conv2D" and after["class"] == "BatchNorm":
            assert layer["config"].get("bias") is False, layer
