"""RandomFlip: training-time mirroring, on every backend case of the matrix."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import assert_on_backend, synthetic_classification

import portnet as pn
from portnet.tools.gradcheck import numerical_gradient, relative_error


def _ctx(backend, training, seed=None):
    random = None if seed is None else pn.RandomStream(backend, seed)
    return pn.Context(xp=backend.xp, training=training, random=random)


def _expected_flips(backend, seed, n, p):
    """The draws the layer takes from a fresh stream with the same seed."""
    u = backend.to_numpy(pn.RandomStream(backend, seed).uniform((n,), backend.dtype("float32")))
    return u < p


def test_training_mirrors_the_drawn_samples_forward_and_back(backend):
    n, seed = 40, 11
    rng = np.random.default_rng(0)
    x_h = rng.normal(size=(n, 2, 5, 7))
    dy_h = rng.normal(size=x_h.shape)
    x = backend.asarray(x_h, "float32")
    y, backprop = pn.RandomFlip().forward({}, x, _ctx(backend, True, seed))
    assert_on_backend(y, backend, "float32", x_h.shape)
    flipped = _expected_flips(backend, seed, n, 0.5)
    assert 10 <= flipped.sum() <= 30  # about half of 40
    expected = np.where(flipped[:, None, None, None], x_h[..., ::-1], x_h)
    np.testing.assert_allclose(backend.to_numpy(y), expected, rtol=1e-6)
    np.testing.assert_allclose(backend.to_numpy(x), x_h, rtol=1e-6)  # input untouched
    dx, grads = backprop(backend.asarray(dy_h, "float32"))
    assert grads == {}
    assert_on_backend(dx, backend, "float32", x_h.shape)
    expected_dx = np.where(flipped[:, None, None, None], dy_h[..., ::-1], dy_h)
    np.testing.assert_allclose(backend.to_numpy(dx), expected_dx, rtol=1e-6)


def test_inference_and_probability_zero_are_the_identity(numpy_backend):
    x = numpy_backend.asarray(np.arange(24.0).reshape(2, 1, 3, 4), "float32")
    y, _ = pn.RandomFlip().forward({}, x, _ctx(numpy_backend, False))
    assert y is x
    y, _ = pn.RandomFlip(0.0).forward({}, x, _ctx(numpy_backend, True, 0))
    assert y is x
    y, _ = pn.RandomFlip(1.0).forward({}, x, _ctx(numpy_backend, True, 0))
    np.testing.assert_array_equal(y, np.asarray(x)[..., ::-1])


def test_gradient_check_float64(backend64):
    rng = np.random.default_rng(3)
    x_h, r = rng.normal(size=(6, 1, 3, 4)), rng.normal(size=(6, 1, 3, 4))
    f64 = backend64.dtype("float64")

    def run(v):
        return pn.RandomFlip().forward({}, backend64.asarray(v, f64), _ctx(backend64, True, 5))

    _, backprop = run(x_h)
    dx, _ = backprop(backend64.asarray(r, f64))
    numeric = numerical_gradient(
        lambda v: float(np.sum(backend64.to_numpy(run(v)[0]) * r)), x_h.copy(), 1e-6
    )
    assert relative_error(backend64.to_numpy(dx), numeric) < 1e-6


def test_bad_input_and_settings_are_refused(numpy_backend):
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        pn.RandomFlip(1.5)
    flat = numpy_backend.asarray(np.ones((4, 784)), "float32")
    with pytest.raises(ValueError, match="after a Reshape"):
        pn.RandomFlip().forward({}, flat, _ctx(numpy_backend, True, 0))
    image = numpy_backend.asarray(np.ones((4, 1, 2, 2)), "float32")
    with pytest.raises(ValueError, match="RandomStream"):
        pn.RandomFlip().forward({}, image, _ctx(numpy_backend, True))


def test_model_with_flip_trains_saves_and_reloads(numpy_backend, tmp_path):
    X, y = synthetic_classification(n=200, n_features=16)
    layers = [
        pn.Reshape((1, 4, 4)),
        pn.RandomFlip(),
        pn.Flatten(),
        pn.Dense(16, 10),
    ]
    model = pn.Model(layers, optimizer=pn.Adam(1e-2), backend=numpy_backend, seed=0)
    history = model.fit(X, y, epochs=5, batch_size=20, verbose=0)
    assert history.history["train_loss"][-1] < history.history["train_loss"][0]
    # Inference ignores the flip: the probabilities are those of the Dense layer on the
    # unflipped images, softmax(X W + b); mirrored images give different ones.
    dense = model.get_weights()[3]
    logits = X.astype(np.float64) @ dense["W"] + dense["b"]
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-5, atol=1e-6)
    mirrored = X.reshape(-1, 1, 4, 4)[..., ::-1].reshape(-1, 16)
    assert not np.allclose(model.predict_proba(mirrored), expected, atol=1e-3)
    model.save(tmp_path / "m.npz")
    loaded = pn.Model.load(tmp_path / "m.npz", backend=numpy_backend)
    assert isinstance(loaded.network.layers[1], pn.RandomFlip)
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=1e-6)
