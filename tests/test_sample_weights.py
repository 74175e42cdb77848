"""Sample and class weights: weight 2 is a duplicated sample, class weights move the
predictions toward the weighted class, and bad weights get errors that say what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import synthetic_classification

import portnet as pn
from portnet.errors import InputError
from portnet.layers import Context

LOSSES = {
    "softmax": (pn.mlp([6, 8, 3], "relu"), "softmax_cross_entropy", lambda r: r.integers(0, 3, 7)),
    "bce": ([pn.Dense(6, 1)], "sigmoid_binary_cross_entropy", lambda r: r.integers(0, 2, 7)),
    "mse": ([pn.Dense(6, 2)], "mse", lambda r: r.normal(size=(7, 2))),
}


@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_weight_two_gives_the_gradients_of_a_duplicated_sample(backend, loss_name):
    layers, loss, targets = LOSSES[loss_name]
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(7, 6)), targets(rng)
    model = pn.Model(layers, loss=loss, backend=backend, seed=3)
    trainer, params = model.trainer, model.state.params
    xp = backend.xp

    def loss_and_grads(X, y, w=None):
        X_dev, y_dev = model.prepare_data(X, y)
        w_dev = None if w is None else backend.asarray(w, "float32")
        ctx = Context(xp=xp, training=True, need_input_grad=False)
        loss, _, grads, _ = trainer.loss_and_grads(params, X_dev, y_dev, ctx, sample_weight=w_dev)
        return backend.to_numpy(loss), [
            {k: backend.to_numpy(g) for k, g in layer.items()} for layer in grads
        ]

    weights = np.ones(7)
    weights[2] = 2.0
    weighted = loss_and_grads(X, y, weights)
    duplicated = loss_and_grads(np.insert(X, 3, X[2], axis=0), np.insert(y, 3, y[2], axis=0))
    unweighted = loss_and_grads(X, y)
    np.testing.assert_allclose(weighted[0], duplicated[0], rtol=1e-5)
    differs = False
    for w_layer, d_layer, u_layer in zip(weighted[1], duplicated[1], unweighted[1], strict=True):
        for key in w_layer:
            np.testing.assert_allclose(w_layer[key], d_layer[key], rtol=1e-4, atol=1e-6)
            differs |= not np.allclose(w_layer[key], u_layer[key], rtol=1e-3)
    assert differs  # the weight did change the gradients


def test_unit_weights_train_as_no_weights():
    X, y = synthetic_classification(n=200, seed=1)

    def losses(**weights):
        model = pn.Model(pn.mlp([20, 16, 10], "relu"), backend="numpy", seed=4)
        history = model.fit(X, y, epochs=2, batch_size=32, verbose=0, **weights)
        return history.history["train_loss"]

    np.testing.assert_allclose(losses(sample_weight=np.ones(200)), losses(), rtol=1e-5)
    np.testing.assert_allclose(
        losses(class_weight={k: 1.0 for k in range(10)}), losses(), rtol=1e-5
    )


def _imbalanced(seed=2):
    rng = np.random.default_rng(seed)
    n = 600
    y = (rng.random(n) < 0.2).astype(np.int64)  # class 1 is rare
    X = rng.normal(size=(n, 2)) + 0.8 * y[:, None]  # and overlaps class 0
    return X.astype(np.float32), y


@pytest.mark.parametrize("backend_name", ["numpy", "torch", "jax"])
def test_class_weights_move_the_confusion_matrix_toward_the_weighted_class(backend_name):
    pytest.importorskip(backend_name)
    X, y = _imbalanced()

    def confusion(**weights):
        model = pn.Model([pn.Dense(2, 2)], optimizer=pn.Adam(0.05), backend=backend_name, seed=0)
        model.fit(X, y, epochs=15, batch_size=64, verbose=0, **weights)
        predicted = model.backend.to_numpy(model.predict(X))
        return pn.confusion_matrix(y, predicted, n_classes=2)

    plain = confusion()
    rare_up = confusion(class_weight={1: 8.0})
    balanced = confusion(class_weight="balanced")
    # Rows are true classes: the weighted rare class is found more often ...
    assert rare_up[1, 1] > plain[1, 1] and balanced[1, 1] > plain[1, 1]
    # ... at the price of more common samples called rare.
    assert rare_up[0, 1] > plain[0, 1]


def test_balanced_class_weights_give_every_class_the_same_total():
    from portnet.training.sample_weights import prepare_sample_weights

    backend = pn.get_backend("numpy")
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    model = pn.Model([pn.Dense(2, 4)], backend=backend)  # class 3 is absent
    _, y_dev = model.prepare_data(np.zeros((12, 2)), y)
    w = prepare_sample_weights(backend, model.dtype, model.loss, y_dev, 4, class_weight="balanced")
    totals = np.bincount(y, weights=backend.to_numpy(w))
    np.testing.assert_allclose(totals[:3], [4.0, 4.0, 4.0], rtol=1e-6)  # N / K_present each
    both = prepare_sample_weights(
        backend, model.dtype, model.loss, y_dev, 4, np.arange(12) + 1.0, {2: 0.5}
    )
    expected = (np.arange(12) + 1.0) * np.where(y == 2, 0.5, 1.0)
    np.testing.assert_allclose(backend.to_numpy(both), expected)


def test_compiled_training_uses_the_weights():
    pytest.importorskip("jax")
    X, y = synthetic_classification(n=256, seed=5)
    w = np.random.default_rng(0).random(256) * 3

    def losses(compile):
        model = pn.Model(pn.mlp([20, 16, 10], "relu"), backend="jax", seed=4)
        history = model.fit(
            X, y, epochs=2, batch_size=64, verbose=0, sample_weight=w, compile=compile
        )
        return history.history["train_loss"]

    np.testing.assert_allclose(losses(True), losses(False), rtol=1e-5)


def test_validation_split_splits_the_weights_too():
    X, y = synthetic_classification(n=100, seed=6)
    w = np.ones(100)
    w[80:] = np.nan  # held out: never checked as a training weight ... but checked first
    model = pn.Model(pn.mlp([20, 10]), backend="numpy")
    with pytest.raises(InputError, match="sample_weight contains NaN"):
        model.fit(X, y, epochs=1, validation_split=0.2, sample_weight=w, verbose=0)
    w[80:] = 0.0
    w[:80] = 0.0
    w[0] = 1.0
    history = model.fit(X, y, epochs=1, validation_split=0.2, sample_weight=w, verbose=0)
    assert np.isfinite(history.history["val_loss"]).all()


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"sample_weight": np.ones(5)}, r"one weight per sample, shape \(40,\); got shape \(5,\)"),
        ({"sample_weight": np.ones((40, 1))}, r"got shape \(40, 1\)"),
        ({"sample_weight": np.full(40, np.nan)}, "contains NaN"),
        ({"sample_weight": -np.ones(40)}, "non-negative; found 40 negative"),
        ({"sample_weight": np.zeros(40)}, "zero for every sample"),
        ({"sample_weight": np.array(["a"] * 40)}, "must be numbers"),
        ({"class_weight": {10: 2.0}}, r"names class 10, but the model has classes 0\.\.9"),
        ({"class_weight": {1: -2.0}}, r"class_weight\[1\] must be a finite, non-negative"),
        ({"class_weight": {1: "x"}}, r"class_weight\[1\] must be"),
        ({"class_weight": {"1": 2.0}}, "keys must be integer classes"),
        ({"class_weight": "auto"}, "or 'balanced', got 'auto'"),
        ({"class_weight": [1, 2]}, "or 'balanced', got list"),
        ({"class_weight": {k: 0.0 for k in range(10)}}, "zero for every sample"),
    ],
)
def test_bad_weights_are_refused_with_the_fix(weights, message):
    X, y = synthetic_classification(n=40, seed=7)
    model = pn.Model(pn.mlp([20, 10]), backend="numpy")
    with pytest.raises(InputError, match=message):
        model.fit(X, y, epochs=1, verbose=0, **weights)


def test_class_weights_need_a_loss_with_classes():
    model = pn.Model([pn.Dense(3, 1)], loss="mse", backend="numpy")
    with pytest.raises(InputError, match="class weights need a classification loss.*mse"):
        model.fit(np.zeros((8, 3)), np.zeros(8), class_weight="balanced", verbose=0)
