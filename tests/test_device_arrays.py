"""Host-facing functions take device arrays, as Model.predict and the metrics return them.

A GPU array refuses ``np.asarray`` (the emulated CuPy does too); plots,
cross-validation, gradient checks and ``set_weights`` bring arrays to the host
through their backend instead.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import synthetic_classification

import portnet as pn
from portnet.io.plots import plot_confusion, plot_misclassified


@pytest.fixture
def data():
    return synthetic_classification(n=80, n_features=16, n_classes=3, seed=2)


def test_plots_take_device_arrays(backend, data, tmp_path):
    X, y = data
    model = pn.Model(pn.mlp([16, 8, 3]), backend=backend)
    X_dev, y_dev = backend.asarray(X), backend.asarray(y)
    predicted = model.predict(X_dev)
    cm = pn.confusion_matrix(y_dev, predicted, 3)
    names = ["a", "b", "c"]
    # The same pixels as the plots of the host copies: the device arrays were read, not
    # merely accepted.
    host_pred, host_cm = backend.to_numpy(predicted), backend.to_numpy(cm)
    assert 0 < np.sum(host_pred != y) < len(y)  # some images to show as misclassified
    pairs = [
        (
            plot_confusion(cm, names, tmp_path / "cm.png"),
            plot_confusion(host_cm, names, tmp_path / "cm_h.png"),
        ),
        (
            plot_misclassified(X_dev, y_dev, predicted, names, tmp_path / "wrong.png"),
            plot_misclassified(X, y, host_pred, names, tmp_path / "wrong_h.png"),
        ),
    ]
    for from_device, from_host in pairs:
        assert from_device.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert from_device.read_bytes() == from_host.read_bytes(), from_device.name


def test_cross_validate_takes_device_arrays(backend, data):
    X, y = data
    result = pn.cross_validate(
        lambda fold: pn.Model(pn.mlp([16, 8, 3]), optimizer=pn.SGD(0.1), backend=backend),
        backend.asarray(X),
        backend.asarray(y),
        k=2,
        epochs=2,
        batch_size=20,
    )
    on_host = pn.cross_validate(
        lambda fold: pn.Model(pn.mlp([16, 8, 3]), optimizer=pn.SGD(0.1), backend=backend),
        X,
        y,
        k=2,
        epochs=2,
        batch_size=20,
    )
    np.testing.assert_allclose(result.curves["val_loss"], on_host.curves["val_loss"], rtol=1e-6)


def test_gradient_checks_take_device_arrays(backend64, data):
    X, y = data
    model = pn.Model(pn.mlp([16, 8, 3], "tanh"), backend=backend64, l2=1e-3)
    rows = pn.gradient_check(model, backend64.asarray(X[:10]), backend64.asarray(y[:10]))
    assert rows and max(row.rel_error for row in rows) < 1e-6
    layer = pn.Dense(16, 4)
    params = {k: backend64.asarray(v) for k, v in layer.init(np.random.default_rng(0)).items()}
    errors = pn.check_layer_gradients(layer, backend64.asarray(X[:5]), params, backend=backend64)
    assert max(errors.values()) < 1e-6


def test_set_weights_takes_device_arrays(backend, data):
    X, y = data
    source = pn.Model(pn.mlp([16, 8, 3]), backend=backend, seed=1)
    target = pn.Model(pn.mlp([16, 8, 3]), backend=backend, seed=2)
    target.set_weights(source.params)
    assert target.evaluate(X, y) == source.evaluate(X, y)
    # A copy: training the target leaves the source's weights alone.
    before = source.get_weights()
    target.fit(X, y, epochs=1, verbose=0)
    for old, now in zip(before, source.get_weights(), strict=True):
        for key in old:
            np.testing.assert_array_equal(old[key], now[key])
