"""Training across backends: same numbers everywhere, few host transfers, safe stops."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers.arrays import synthetic_classification
from helpers.cases import gpu_marks

import portnet as pn
from portnet.testing import emulated_cupy

AGREEMENT_CASES = [
    pytest.param((name, device), id=case_id, marks=gpu_marks(case_id))
    for case_id, name, device in [
        ("numpy", "numpy", None),
        ("strict-device1", "array_api_strict", "device1"),
        ("strict-nof64", "array_api_strict", "no_float64"),
        ("torch-cpu", "torch", "cpu"),
        ("cupy-emulated", "cupy", "cuda:0"),
        ("cupy", "cupy", "cuda:0"),
        ("torch-cuda", "torch", "cuda"),
        ("jax", "jax", "cpu"),
        ("jax-cuda", "jax", "cuda"),
    ]
]


def _adam_mlp_losses(name, device, dtype="float32", epochs=4):
    X, y = synthetic_classification(n=600, seed=3)
    model = pn.Model(
        pn.mlp([20, 32, 32, 10], "relu"),
        optimizer=pn.Adam(3e-3),
        backend=name,
        device=device,
        dtype=dtype,
        seed=11,
    )
    history = model.fit(X, y, epochs=epochs, batch_size=50, validation_split=0.2, verbose=0)
    return np.array(history.history["train_loss"]), np.array(history.history["val_loss"])


@pytest.fixture(scope="module")
def float64_reference():
    return _adam_mlp_losses("numpy", None, dtype="float64")


@pytest.fixture(scope="module")
def float32_numpy():
    return _adam_mlp_losses("numpy", None)


@pytest.mark.parametrize("case", AGREEMENT_CASES)
def test_adam_mlp_losses_agree_across_backends(request, case, float32_numpy, float64_reference):
    pytest.importorskip(case[0]) if case[0] in ("torch", "jax") else None
    if case[0] == "array_api_strict":
        pytest.importorskip("array_api_strict")
    if request.node.callspec.id == "cupy-emulated":
        with emulated_cupy():
            train, val = _adam_mlp_losses(*case)
    else:
        train, val = _adam_mlp_losses(*case)
    # The loss must actually fall, or agreement would prove little.
    assert train[-1] < 0.8 * train[0]
    np.testing.assert_allclose(train, float32_numpy[0], rtol=1e-4)
    np.testing.assert_allclose(val, float32_numpy[1], rtol=1e-4)
    np.testing.assert_allclose(train, float64_reference[0], rtol=1e-3)
    np.testing.assert_allclose(val, float64_reference[1], rtol=1e-3)


def _guard_strict_scalar_reads(monkeypatch):
    """Make any implicit device->host read of an array-api-strict array fail loudly."""
    import array_api_strict

    array_type = type(array_api_strict.asarray(0.0))

    def refuse(self, *args):
        raise AssertionError("hidden host read (float/bool/int) of a device array during fit")

    for dunder in ("__float__", "__bool__", "__int__", "__complex__"):
        monkeypatch.setattr(array_type, dunder, refuse)


def test_fit_makes_at_most_two_host_transfers_per_epoch(backend, monkeypatch):
    X, y = synthetic_classification(n=300)
    model = pn.Model(pn.mlp([20, 16, 10], "tanh"), optimizer=pn.Momentum(0.05), backend=backend)
    X_dev, y_dev = backend.asarray(X), backend.asarray(y)
    X_val, y_val = backend.asarray(X[:100]), backend.asarray(y[:100])
    if backend.name == "array_api_strict":
        _guard_strict_scalar_reads(monkeypatch)
    epochs = 5
    with pn.count_transfers() as count:
        model.fit(
            X_dev, y_dev, epochs=epochs, batch_size=32, validation_data=(X_val, y_val), verbose=0
        )
    # Before the epochs, once per dataset (train, validation): a 0-d NaN check of the
    # features and a min/max read of the labels. Per dataset, not per epoch.
    setup = 4
    assert count.total - setup <= 2 * epochs, count
    assert count.to_host - setup <= epochs, count
    # The public optimizer state counted every step: 300 images in batches of 32.
    assert model.optimizer_state["t"] == epochs * 10


# The overflow is the point of this test; NumPy's warnings about it are expected.
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nonfinite_loss_stops_and_keeps_best_weights(numpy_backend):
    X, y = synthetic_classification(n=400)
    model = pn.Model(pn.mlp([20, 16, 10], "relu"), optimizer=pn.SGD(0.05), backend=numpy_backend)
    model.fit(X, y, epochs=2, batch_size=32, verbose=0)
    good = model.get_weights()
    before = model.evaluate(X, y)
    model.trainer.optimizer.schedule = pn.Constant(1e6)
    with pytest.warns(pn.DivergenceWarning, match="diverged .* keeping the weights of epoch"):
        history = model.fit(X, y, epochs=10, batch_size=32, verbose=0)
    assert history.stop_reason == "non_finite_loss"
    assert history.epochs_run < 10
    for layer_now, layer_good in zip(model.get_weights(), good, strict=True):
        for key in layer_now:
            assert np.all(np.isfinite(layer_now[key]))
            np.testing.assert_array_equal(layer_now[key], layer_good[key])
    # The model still predicts exactly as before the failed run.
    assert model.evaluate(X, y) == before


def test_early_stopping_restores_best_epoch(numpy_backend):
    X, y = synthetic_classification(n=300, seed=5)
    noise = np.random.default_rng(1).integers(0, 10, size=100)  # unlearnable validation labels
    model = pn.Model(pn.mlp([20, 64, 10], "relu"), optimizer=pn.Adam(1e-2), backend=numpy_backend)
    seen_val_loss = []

    class Snapshot(pn.Callback):
        def on_epoch_end(self, model, epoch, logs):
            # Callbacks see this epoch's weights: evaluating them gives this epoch's val_loss.
            seen_val_loss.append(model.evaluate(X[200:], noise)["loss"])

    history = model.fit(
        X[:200],
        y[:200],
        validation_data=(X[200:], noise),
        epochs=60,
        batch_size=20,
        patience=3,
        verbose=0,
        callbacks=[Snapshot()],
    )
    assert history.stop_reason == "early_stopping"
    val = history.history["val_loss"]
    assert history.best_epoch == int(np.argmin(val)) + 1
    assert history.epochs_run == history.best_epoch + 3
    restored = model.evaluate(X[200:], noise)["loss"]
    assert restored == pytest.approx(val[history.best_epoch - 1], rel=1e-5)
    np.testing.assert_allclose(seen_val_loss, val, rtol=1e-5)


def test_dropout_is_active_in_training_only(backend):
    x = backend.asarray(np.ones((64, 50), dtype=np.float32))
    layer = pn.Dropout(0.5)
    random = pn.RandomStream(backend, seed=0)
    train_out, back = layer.forward({}, x, pn.Context(xp=backend.xp, training=True, random=random))
    eval_out, _ = layer.forward({}, x, pn.Context(xp=backend.xp, training=False))
    kept = backend.to_numpy(train_out)
    assert set(np.unique(kept).tolist()) <= {0.0, 2.0}
    assert 0.4 < np.mean(kept == 0.0) < 0.6
    np.testing.assert_array_equal(backend.to_numpy(eval_out), np.ones((64, 50)))
    dx, _ = back(backend.asarray(np.ones((64, 50), dtype=np.float32)))
    np.testing.assert_array_equal(backend.to_numpy(dx), kept)  # same mask forward and back


def test_progress_logger_prints_one_line_per_epoch(numpy_backend):
    X, y = synthetic_classification(n=200)
    stream = io.StringIO()
    model = pn.Model(pn.mlp([20, 8, 10]), backend=numpy_backend)
    model.fit(
        X,
        y,
        epochs=3,
        verbose=0,
        callbacks=[pn.ProgressLogger(3, stream=stream)],
        validation_split=0.25,
    )
    lines = stream.getvalue().strip().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("epoch   3/3") and "val_acc" in lines[-1]


def test_l2_shrinks_weights_and_l1_sparsifies(numpy_backend):
    X, y = synthetic_classification(n=400)
    norms = {}
    for name, kwargs in {"none": {}, "l2": {"l2": 0.05}, "l1": {"l1": 0.01}}.items():
        model = pn.Model(
            pn.mlp([20, 16, 10]), optimizer=pn.SGD(0.05), backend=numpy_backend, **kwargs
        )
        model.fit(X, y, epochs=15, batch_size=20, verbose=0)
        W = model.get_weights()[0]["W"]
        norms[name] = (np.linalg.norm(W), np.mean(np.abs(W) < 1e-2))
    assert norms["l2"][0] < 0.8 * norms["none"][0]
    assert norms["l1"][1] > 2 * norms["none"][1]


def test_binary_task_with_sigmoid_output(backend):
    X, y = synthetic_classification(n=400, n_classes=2, seed=2)
    model = pn.Model(
        [pn.Dense(20, 1, init="glorot"), pn.Sigmoid()],
        loss="sigmoid_binary_cross_entropy",
        optimizer=pn.SGD(0.5),
        backend=backend,
    )
    model.fit(X, y, epochs=10, batch_size=40, verbose=0)
    assert model.evaluate(X, y)["accuracy"] > 0.9
    proba = backend.to_numpy(model.predict_proba(X))
    assert proba.shape == (400, 1) and np.all((proba > 0) & (proba < 1))
    labels = backend.to_numpy(model.predict(X))
    np.testing.assert_array_equal(labels, (proba[:, 0] > 0.5).astype(np.int64))


@pytest.mark.parametrize(
    "make_optimizer",
    [lambda **kw: pn.SGD(0.1, **kw), lambda **kw: pn.Momentum(0.05, gamma=0.9, **kw)],
    ids=["sgd", "momentum"],
)
def test_lr_prescaled_gradients_train_like_raw_gradients(backend, make_optimizer):
    """The loop folds lr into the loss gradient for SGD/momentum; clipping turns that off."""
    X, y = synthetic_classification(n=300, seed=4)
    histories = []
    for kwargs in ({}, {"clip_norm": 1e30}):  # a clip that never bites forces the raw path
        optimizer = make_optimizer(**kwargs)
        assert (optimizer.gradient_scale(0.1) is None) == bool(kwargs)
        model = pn.Model(pn.mlp([20, 16, 10]), optimizer=optimizer, l2=1e-3, backend=backend)
        histories.append(model.fit(X, y, epochs=3, batch_size=30, verbose=0).history)
    np.testing.assert_allclose(histories[0]["train_loss"], histories[1]["train_loss"], rtol=2e-5)


def test_early_stopping_can_keep_the_last_weights(numpy_backend):
    X, y = synthetic_classification(n=300, seed=5)
    noise = np.random.default_rng(1).integers(0, 10, size=100)
    model = pn.Model(pn.mlp([20, 64, 10], "relu"), optimizer=pn.Adam(1e-2), backend=numpy_backend)
    history = model.fit(
        X[:200],
        y[:200],
        validation_data=(X[200:], noise),
        epochs=60,
        batch_size=20,
        patience=3,
        restore_best=False,
        verbose=0,
    )
    assert history.stop_reason == "early_stopping" and not history.restored_best
    last = model.evaluate(X[200:], noise)["loss"]
    assert last == pytest.approx(history.history["val_loss"][-1], rel=1e-5)
    assert last > min(history.history["val_loss"])


def test_callbacks_see_the_current_epochs_weights(backend):
    X, y = synthetic_classification(n=200, seed=6)
    seen = []

    class Probe(pn.Callback):
        def on_epoch_end(self, model, epoch, logs):
            seen.append(model.evaluate(X, y)["loss"])

    model = pn.Model(pn.mlp([20, 16, 10]), optimizer=pn.SGD(0.1), backend=backend)
    model.fit(X, y, epochs=3, batch_size=20, verbose=0, callbacks=[Probe()])
    assert seen[0] != seen[1] != seen[2]  # weights move between epochs
    assert seen[-1] == pytest.approx(model.evaluate(X, y)["loss"], rel=1e-6)
