"""Model(test_time_shift=s): predictions average each image's and its copies moved by s
pixels up, down, left and right (and, with test_time_flip, the mirror images' too)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import assert_on_backend

import portnet as pn
from portnet.layers.base import Context

N_CLASSES = 4
SIDE = 6


def _layers(shift=True, flip=False, max_shift=1):
    """A small CNN on 1x6x6 images (36 features), with or without RandomShift/RandomFlip."""
    return [
        pn.Reshape((1, SIDE, SIDE)),
        *([pn.RandomFlip()] if flip else []),
        *([pn.RandomShift(max_shift)] if shift else []),
        pn.Conv2D(1, 3, 3, padding=1),
        pn.ReLU(),
        pn.Flatten(),
        pn.Dense(3 * SIDE * SIDE, N_CLASSES),
    ]


def _data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    # Uneven images, so every moved or mirrored copy gets its own prediction.
    ramp = np.linspace(0.2, 2.0, SIDE)
    X = rng.random((n, SIDE * SIDE)) * np.outer(ramp[::-1], ramp).ravel()
    return X, rng.integers(0, N_CLASSES, n)


def _moved(X, rows, cols, mirror=False):
    """Flat images with ``y[i, j] = x[i + rows, j + cols]``, zero outside; mirrored first."""
    images = X.reshape(-1, SIDE, SIDE)
    if mirror:
        images = images[:, :, ::-1]
    out = np.zeros_like(images)
    for i in range(SIDE):
        for j in range(SIDE):
            if 0 <= i + rows < SIDE and 0 <= j + cols < SIDE:
                out[:, i, j] = images[:, i + rows, j + cols]
    return out.reshape(len(X), -1)


def _views(s, flip):
    shifts = [(0, 0), (s, 0), (-s, 0), (0, s), (0, -s)]
    return [(mirror, shift) for mirror in ((False, True) if flip else (False,)) for shift in shifts]


def _expected(plain, backend, X, s, flip):
    """The mean of the plain model's probabilities over the views, made on the host."""
    probabilities = [
        backend.to_numpy(plain.predict_proba(_moved(X, *shift, mirror=mirror)))
        for mirror, shift in _views(s, flip)
    ]
    return np.mean(probabilities, axis=0), probabilities


def test_probabilities_are_the_mean_over_the_moved_and_mirrored_images(backend):
    X, y = _data()
    layers = _layers(flip=True)
    averaged = pn.Model(layers, backend=backend, seed=3, test_time_flip=True, test_time_shift=1)
    plain = pn.Model(layers, backend=backend, seed=3)  # the same weights, one pass
    expected, views = _expected(plain, backend, X, 1, flip=True)
    assert len(views) == 10
    assert min(np.abs(views[0] - view).max() for view in views[1:]) > 1e-4  # all differ
    proba = averaged.predict_proba(X)
    assert_on_backend(proba, backend, "float32", (len(X), N_CLASSES))
    np.testing.assert_allclose(backend.to_numpy(proba), expected, rtol=2e-5, atol=1e-6)
    # The loss is the cross-entropy of the averaged probabilities.
    result = averaged.evaluate(X, y)
    loss = -np.mean(np.log(expected[np.arange(len(y)), y]))
    assert result["loss"] == pytest.approx(loss, rel=1e-4)
    assert result["accuracy"] == pytest.approx(np.mean(np.argmax(expected, axis=1) == y))


@pytest.mark.parametrize("s", [1, 2])
def test_shifts_alone_and_larger_shifts(numpy_backend, s):
    X, _ = _data()
    # A RandomShift of 1 in training does not limit the test-time shift.
    averaged = pn.Model(_layers(), backend=numpy_backend, dtype="float64", test_time_shift=s)
    plain = pn.Model(_layers(), backend=numpy_backend, dtype="float64")
    expected, _ = _expected(plain, numpy_backend, X, s, flip=False)
    np.testing.assert_allclose(averaged.predict_proba(X), expected, rtol=1e-12)


def test_the_views_are_listed_in_order():
    trainer = pn.Model(_layers(flip=True), test_time_flip=True, test_time_shift=2).trainer
    assert trainer.test_time_views() == _views(2, flip=True)
    plain = pn.Model(_layers(flip=True), test_time_flip=True).trainer
    assert plain.test_time_views() == [(False, (0, 0)), (True, (0, 0))]


def test_the_view_shift_backprops_its_adjoint():
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=(2, 3, 5, 7)), rng.normal(size=(2, 3, 5, 7))
    ctx = Context(xp=np, training=False, test_time_shift=(2, -1))
    y, backprop = pn.RandomShift(1).forward({}, x, ctx)
    expected = np.zeros_like(x)
    expected[:, :, :3, 1:] = x[:, :, 2:, :6]  # y[i, j] = x[i + 2, j - 1]
    np.testing.assert_array_equal(y, expected)
    dx, grads = backprop(dy)
    assert grads == {}
    assert np.sum(y * dy) == pytest.approx(np.sum(x * dx), rel=1e-12)


def test_training_is_unchanged_and_each_epochs_validation_leaves_shifts_out(numpy_backend):
    X, y = _data(200)
    runs = []
    for s in (0, 1):
        model = pn.Model(_layers(flip=True), backend=numpy_backend, seed=1, test_time_shift=s)
        history = model.fit(X, y, epochs=2, batch_size=32, validation_split=0.25)
        runs.append((model, history.history))
    (plain, h_plain), (shifted, h_shifted) = runs
    assert h_plain["train_loss"] == h_shifted["train_loss"]
    for a, b in zip(plain.get_weights(), shifted.get_weights(), strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # Each epoch's validation is the plain model's; evaluate uses the shifts.
    X_val, y_val = X[150:], y[150:]
    assert h_shifted["val_loss"] == h_plain["val_loss"]
    assert h_shifted["val_loss"][-1] == pytest.approx(plain.evaluate(X_val, y_val)["loss"])
    assert shifted.evaluate(X_val, y_val)["loss"] != pytest.approx(h_shifted["val_loss"][-1])


def test_the_jitted_validation_leaves_shifts_out_like_the_eager_one():
    pytest.importorskip("jax")
    X, y = _data(120)
    # Augmentations that never fire in training: eager and jitted steps then draw nothing
    # and train alike, while inference still moves the images.
    layers = [
        pn.RandomShift(0) if isinstance(layer, pn.RandomShift) else layer for layer in _layers()
    ]
    histories, models = [], []
    for compile in (False, True):
        model = pn.Model(layers, backend="jax", seed=5, test_time_shift=1)
        history = model.fit(X, y, epochs=2, batch_size=40, validation_split=0.25, compile=compile)
        histories.append(history.history["val_loss"])
        models.append(model)
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5)
    plain = pn.Model(layers, backend="jax", seed=5)
    plain.set_weights(models[1].get_weights())
    X_val, y_val = X[90:], y[90:]
    assert histories[1][-1] == pytest.approx(plain.evaluate(X_val, y_val)["loss"], rel=1e-5)


def test_saved_and_loaded_models_keep_it(tmp_path, numpy_backend):
    X, _ = _data()
    model = pn.Model(_layers(), backend=numpy_backend, seed=2, test_time_shift=1)
    model.save(tmp_path / "m.npz")
    loaded = pn.Model.load(tmp_path / "m.npz")
    assert loaded.test_time_shift == 1
    np.testing.assert_allclose(
        loaded.backend.to_numpy(loaded.predict_proba(X)),
        model.backend.to_numpy(model.predict_proba(X)),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    ("layers", "options", "message"),
    [
        (_layers(shift=False), {"test_time_shift": 1}, "the network has none: put RandomShift"),
        (_layers(), {"test_time_shift": -1}, "test_time_shift must be"),
        (_layers(), {"test_time_shift": 0.5}, "test_time_shift must be"),
        (
            [pn.Reshape((1, 6, 6)), pn.RandomShift(), pn.Flatten(), pn.Dense(36, 1)],
            {"test_time_shift": 1, "loss": "sigmoid_binary_cross_entropy"},
            "not for sigmoid_binary_cross_entropy",
        ),
    ],
)
def test_bad_settings_are_refused(layers, options, message):
    with pytest.raises(pn.ConfigError, match=message):
        pn.Model(layers, **options)


def test_the_onnx_graph_averages_the_same_way(tmp_path, numpy_backend):
    pytest.importorskip("ndonnx")
    pytest.importorskip("onnxruntime")
    from portnet.io.onnx_export import run_onnx

    X, _ = _data()
    model = pn.Model(
        _layers(flip=True), backend=numpy_backend, seed=4, test_time_flip=True, test_time_shift=1
    )
    path = model.export_onnx(tmp_path / "m.onnx")
    np.testing.assert_allclose(
        run_onnx(path, X.astype(np.float32)), model.predict_proba(X), rtol=1e-5, atol=1e-6
    )
