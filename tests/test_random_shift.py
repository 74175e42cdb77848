"""RandomShift: training-time shifts with zero fill, on every backend case of the matrix."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import assert_on_backend, synthetic_classification

import portnet as pn
from portnet.tools.gradcheck import numerical_gradient, relative_error


def _ctx(backend, training, seed=None):
    random = None if seed is None else pn.RandomStream(backend, seed)
    return pn.Context(xp=backend.xp, training=training, random=random)


def _expected_shifts(backend, seed, n, s):
    """The per-sample (row, column) shifts the layer draws from a fresh stream."""
    u = backend.to_numpy(pn.RandomStream(backend, seed).uniform((n, 2), backend.dtype("float32")))
    return np.floor(u * (2 * s + 1)).astype(int) - s


def _shift_reference(x, shifts):
    """Plain loops: out[n, ..., i, j] = x[n, ..., i + a, j + b], zero outside."""
    out = np.zeros_like(x)
    height, width = x.shape[-2:]
    for n, (a, b) in enumerate(shifts):
        for i in range(height):
            for j in range(width):
                if 0 <= i + a < height and 0 <= j + b < width:
                    out[n, ..., i, j] = x[n, ..., i + a, j + b]
    return out


def test_training_shifts_the_drawn_samples_forward_and_back(backend):
    n, seed, s = 60, 7, 2
    rng = np.random.default_rng(0)
    x_h = rng.normal(size=(n, 2, 5, 6))
    dy_h = rng.normal(size=x_h.shape)
    x = backend.asarray(x_h, "float32")
    y, backprop = pn.RandomShift(s).forward({}, x, _ctx(backend, True, seed))
    assert_on_backend(y, backend, "float32", x_h.shape)
    shifts = _expected_shifts(backend, seed, n, s)
    # Every shift in [-2, 2] along each axis is drawn among 60 samples, and no other.
    assert set(shifts[:, 0]) == set(shifts[:, 1]) == set(range(-s, s + 1))
    np.testing.assert_allclose(backend.to_numpy(y), _shift_reference(x_h, shifts), rtol=1e-6)
    np.testing.assert_allclose(backend.to_numpy(x), x_h, rtol=1e-6)  # input untouched
    dx, grads = backprop(backend.asarray(dy_h, "float32"))
    assert grads == {}
    assert_on_backend(dx, backend, "float32", x_h.shape)
    # Backprop is the adjoint: the opposite shift with zero fill.
    np.testing.assert_allclose(backend.to_numpy(dx), _shift_reference(dy_h, -shifts), rtol=1e-6)
    inner_y = float(np.sum(backend.to_numpy(y) * dy_h))
    inner_x = float(np.sum(x_h * backend.to_numpy(dx)))
    assert inner_y == pytest.approx(inner_x, rel=1e-4)


def test_inference_and_zero_shift_are_the_identity(numpy_backend):
    x = numpy_backend.asarray(np.arange(24.0).reshape(2, 1, 3, 4), "float32")
    y, _ = pn.RandomShift().forward({}, x, _ctx(numpy_backend, False))
    assert y is x
    y, _ = pn.RandomShift(0).forward({}, x, _ctx(numpy_backend, True, 0))
    assert y is x


def test_gradient_check_float64(backend64):
    rng = np.random.default_rng(3)
    x_h, r = rng.normal(size=(8, 1, 4, 5)), rng.normal(size=(8, 1, 4, 5))
    f64 = backend64.dtype("float64")

    def run(v):
        return pn.RandomShift(1).forward({}, backend64.asarray(v, f64), _ctx(backend64, True, 5))

    _, backprop = run(x_h)
    dx, _ = backprop(backend64.asarray(r, f64))
    numeric = numerical_gradient(
        lambda v: float(np.sum(backend64.to_numpy(run(v)[0]) * r)), x_h.copy(), 1e-6
    )
    assert relative_error(backend64.to_numpy(dx), numeric) < 1e-6


def test_bad_input_and_settings_are_refused(numpy_backend):
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="whole number of pixels"):
            pn.RandomShift(bad)
    flat = numpy_backend.asarray(np.ones((4, 784)), "float32")
    with pytest.raises(ValueError, match="after a Reshape"):
        pn.RandomShift().forward({}, flat, _ctx(numpy_backend, True, 0))
    image = numpy_backend.asarray(np.ones((4, 1, 3, 3)), "float32")
    with pytest.raises(ValueError, match="RandomStream"):
        pn.RandomShift().forward({}, image, _ctx(numpy_backend, True))


def test_model_with_shift_trains_saves_and_reloads(numpy_backend, tmp_path):
    X, y = synthetic_classification(n=200, n_features=16)
    layers = [pn.Reshape((1, 4, 4)), pn.RandomShift(1), pn.Flatten(), pn.Dense(16, 10)]
    model = pn.Model(layers, optimizer=pn.Adam(1e-2), backend=numpy_backend, seed=0)
    history = model.fit(X, y, epochs=5, batch_size=20, verbose=0)
    assert history.history["train_loss"][-1] < history.history["train_loss"][0]
    model.save(tmp_path / "m.npz")
    loaded = pn.Model.load(tmp_path / "m.npz", backend=numpy_backend)
    assert isinstance(loaded.network.layers[1], pn.RandomShift)
    assert loaded.network.layers[1].max_shift == 1
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=1e-6)


def test_compiled_training_with_shift_is_reproducible():
    """Under jax.jit the draws come from the step's key: same seed, same losses."""
    pytest.importorskip("jax")
    backend = pn.get_backend("jax")
    X, y = synthetic_classification(n=96, n_features=16)

    def losses():
        layers = [pn.Reshape((1, 4, 4)), pn.RandomShift(1), pn.Flatten(), pn.Dense(16, 10)]
        model = pn.Model(layers, optimizer=pn.Adam(1e-2), backend=backend, seed=3)
        return model.fit(X, y, epochs=3, batch_size=32, compile=True).history["train_loss"]

    first = losses()
    assert first == losses()
    assert first[-1] < first[0]
