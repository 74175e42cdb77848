"""Model(test_time_flip=True): predictions average each image's and its mirror image's."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import assert_on_backend

import portnet as pn

N_CLASSES = 4


def _layers(flip=True):
    """A small CNN on 1x6x6 images (36 features) with a RandomFlip, or without one."""
    return [
        pn.Reshape((1, 6, 6)),
        *([pn.RandomFlip()] if flip else []),
        pn.Conv2D(1, 3, 3, padding=1),
        pn.ReLU(),
        pn.Flatten(),
        pn.Dense(108, N_CLASSES),
    ]


def _data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    # Asymmetric images, so an image and its mirror give different predictions.
    X = rng.random((n, 36)) * np.linspace(0.2, 2.0, 6)[None, :].repeat(6, 0).ravel()
    return X, rng.integers(0, N_CLASSES, n)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_probabilities_are_the_mean_over_the_image_and_its_mirror(backend):
    X, y = _data()
    averaged = pn.Model(_layers(), backend=backend, seed=3, test_time_flip=True)
    plain = pn.Model(_layers(), backend=backend, seed=3)  # the same initial weights
    mirrored = X.reshape(-1, 6, 6)[:, :, ::-1].reshape(-1, 36)
    p_plain = backend.to_numpy(plain.predict_proba(X))
    p_mirror = backend.to_numpy(plain.predict_proba(mirrored))
    assert np.abs(p_plain - p_mirror).max() > 1e-3  # the two views do differ
    proba = averaged.predict_proba(X)
    assert_on_backend(proba, backend, "float32", (len(X), N_CLASSES))
    expected = (p_plain + p_mirror) / 2
    np.testing.assert_allclose(backend.to_numpy(proba), expected, rtol=2e-5, atol=1e-6)
    np.testing.assert_array_equal(
        backend.to_numpy(averaged.predict(X)), np.argmax(backend.to_numpy(proba), axis=1)
    )
    # The loss is the cross-entropy of the averaged probabilities.
    result = averaged.evaluate(X, y)
    loss = -np.mean(np.log(expected[np.arange(len(y)), y]))
    assert result["loss"] == pytest.approx(loss, rel=1e-4)
    assert result["accuracy"] == pytest.approx(np.mean(np.argmax(expected, axis=1) == y))


def test_averaging_is_stable_for_huge_logits():
    loss = pn.SoftmaxCrossEntropy()
    a = np.array([[1e4, 0.0, -1e4]])
    b = np.array([[0.0, 1e4, -1e4]])
    z = loss.average_outputs(np, [a, b])
    np.testing.assert_allclose(_softmax(z), [[0.5, 0.5, 0.0]], atol=1e-12)
    c = np.array([[-1e4, 0.0, 1e4]])
    z = loss.average_outputs(np, [a, b, c])
    np.testing.assert_allclose(_softmax(z), [[1 / 3, 1 / 3, 1 / 3]], atol=1e-12)


def test_training_is_unchanged_and_validation_uses_both_views(numpy_backend):
    X, y = _data(200)
    runs = []
    for tta in (False, True):
        model = pn.Model(_layers(), backend=numpy_backend, seed=1, test_time_flip=tta)
        history = model.fit(X, y, epochs=2, batch_size=32, validation_split=0.25)
        runs.append((model, history.history))
    (plain, h_plain), (averaged, h_avg) = runs
    # The same training steps (flips drawn alike), so the same weights ...
    assert h_plain["train_loss"] == h_avg["train_loss"]
    for a, b in zip(plain.get_weights(), averaged.get_weights(), strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # ... but validation is scored on the averaged predictions.
    X_val, y_val = X[150:], y[150:]
    assert h_avg["val_loss"][-1] == pytest.approx(averaged.evaluate(X_val, y_val)["loss"])
    assert h_avg["val_loss"][-1] != pytest.approx(h_plain["val_loss"][-1])


def test_saved_and_loaded_models_keep_it(tmp_path, numpy_backend):
    X, _ = _data()
    model = pn.Model(_layers(), backend=numpy_backend, seed=2, test_time_flip=True)
    model.save(tmp_path / "m.npz")
    loaded = pn.Model.load(tmp_path / "m.npz")
    assert loaded.test_time_flip is True
    np.testing.assert_allclose(
        loaded.backend.to_numpy(loaded.predict_proba(X)),
        model.backend.to_numpy(model.predict_proba(X)),
        rtol=1e-6,
    )


def test_a_network_without_random_flip_is_refused():
    with pytest.raises(pn.ConfigError, match="the network has none: put RandomFlip"):
        pn.Model(_layers(flip=False), test_time_flip=True)


def test_binary_cross_entropy_is_refused():
    layers = [pn.Reshape((1, 6, 6)), pn.RandomFlip(), pn.Flatten(), pn.Dense(36, 1)]
    with pytest.raises(pn.ConfigError, match="not for sigmoid_binary_cross_entropy"):
        pn.Model(layers, loss="sigmoid_binary_cross_entropy", test_time_flip=True)


def test_mean_squared_error_averages_the_outputs(numpy_backend):
    X, _ = _data()
    layers = [pn.Reshape((1, 6, 6)), pn.RandomFlip(), pn.Flatten(), pn.Dense(36, 2)]
    averaged = pn.Model(layers, loss="mse", backend=numpy_backend, seed=0, test_time_flip=True)
    W, b = averaged.get_weights()[3]["W"], averaged.get_weights()[3]["b"]
    mirrored = X.reshape(-1, 6, 6)[:, :, ::-1].reshape(-1, 36)
    expected = ((X @ W + b) + (mirrored @ W + b)) / 2
    np.testing.assert_allclose(averaged.predict(X), expected, rtol=1e-5, atol=1e-6)


def test_the_onnx_graph_averages_the_same_way(tmp_path, numpy_backend):
    pytest.importorskip("ndonnx")
    pytest.importorskip("onnxruntime")
    from portnet.io.onnx_export import run_onnx

    X, _ = _data()
    model = pn.Model(_layers(), backend=numpy_backend, seed=4, test_time_flip=True)
    path = model.export_onnx(tmp_path / "m.onnx")
    np.testing.assert_allclose(
        run_onnx(path, X.astype(np.float32)), model.predict_proba(X), rtol=1e-5, atol=1e-6
    )


def test_the_jitted_evaluation_step_averages_like_the_eager_one():
    pytest.importorskip("jax")
    X, y = _data(120)
    # A flip that never fires in training: eager and jitted steps then draw nothing and
    # train alike, while inference still mirrors for the second view.
    layers = [
        pn.RandomFlip(0.0) if isinstance(layer, pn.RandomFlip) else layer for layer in _layers()
    ]
    histories = []
    for compile in (False, True):
        model = pn.Model(layers, backend="jax", seed=5, test_time_flip=True)
        history = model.fit(X, y, epochs=2, batch_size=40, validation_split=0.25, compile=compile)
        histories.append(history.history["val_loss"])
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5)


def test_the_second_view_does_not_run_beside_the_first_ones_activations(numpy_backend):
    """Inference memory with test-time flips stays that of one pass: the first pass's
    activations are freed before the mirrored pass (a kept backprop closure doubled the
    CNN job's peak once). Measured with tracemalloc, which sees NumPy's buffers."""
    import tracemalloc

    X, _ = _data(400)
    peaks = {}
    for tta in (False, True):
        model = pn.Model(_layers(), backend=numpy_backend, seed=0, test_time_flip=tta)
        model.predict_proba(X[:2])  # the one-off shape probe, outside the measurement
        tracemalloc.start()
        model.trainer.outputs(model.state.params, model.prepare_data(X), 400)
        peaks[tta] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[True] < 1.3 * peaks[False], peaks
