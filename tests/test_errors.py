"""Bad input gives one clear error that names the problem, never a traceback from the maths."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_classification

import portnet as pn
from portnet.errors import InputError, PortnetError


@pytest.fixture
def model(backend):
    return pn.Model(pn.mlp([20, 8, 10]), backend=backend)


@pytest.fixture
def data():
    return synthetic_classification(n=50)


def _fit(model, X, y):
    model.fit(X, y, epochs=1, verbose=0)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        pytest.param(lambda X, y: (X[:, :19], y), "expects 20", id="wrong-width"),
        pytest.param(lambda X, y: (X.reshape(50, 4, 5), y), "2-D", id="wrong-ndim"),
        pytest.param(lambda X, y: (np.where(np.arange(20) == 3, np.nan, X), y), "NaN", id="nan"),
        pytest.param(
            lambda X, y: (X, np.where(np.arange(50) == 7, 10, y)),
            "outside [0, 10)",
            id="label-too-big",
        ),
        pytest.param(lambda X, y: (X, y - 1), "outside [0, 10)", id="negative-label"),
        pytest.param(lambda X, y: (X[:0], y[:0]), "empty", id="empty"),
        pytest.param(lambda X, y: (X, y[:40]), "40 entries", id="length-mismatch"),
        pytest.param(lambda X, y: (X, y + 0.5), "integer", id="fractional-labels"),
    ],
)
def test_bad_training_data_is_named(model, data, mutate, needle, backend):
    X, y = mutate(*data)
    with pytest.raises(InputError) as info:
        _fit(model, X, y)
    assert needle in str(info.value)
    # Also when the data already lives on the backend (validated without a full copy).
    if X.shape[0] and X.ndim == 2 and X.shape[0] == y.shape[0] and y.dtype.kind in "iu":
        with pytest.raises(InputError, match=needle.split()[0]):
            _fit(model, backend.asarray(X.astype(np.float32)), backend.asarray(y))


def test_errors_are_portnet_errors_with_short_tracebacks(numpy_backend, data):
    model = pn.Model(pn.mlp([20, 8, 10]), backend=numpy_backend)
    X, y = data
    with pytest.raises(PortnetError) as info:
        _fit(model, X[:, :5], y)
    # Raised from the validation layer, not from inside a matmul.
    assert info.traceback[-1].path.name == "validation.py"


def test_evaluate_and_predict_validate_too(numpy_backend, data):
    model = pn.Model(pn.mlp([20, 8, 10]), backend=numpy_backend)
    X, y = data
    with pytest.raises(InputError, match="expects 20"):
        model.predict(X[:, :3])
    with pytest.raises(InputError, match="outside"):
        model.evaluate(X, y + 100)


def test_bad_hyperparameters(numpy_backend, data):
    X, y = data
    model = pn.Model(pn.mlp([20, 8, 10]), backend=numpy_backend)
    with pytest.raises(pn.ConfigError, match="batch_size"):
        model.fit(X, y, batch_size=0, verbose=0)
    with pytest.raises(pn.ConfigError, match="validation_split"):
        model.fit(X, y, validation_split=1.5, verbose=0)
    with pytest.raises(ValueError, match="unknown activation"):
        pn.mlp([2, 4, 3], "swishy")
    with pytest.raises(ValueError, match="unknown optimizer"):
        pn.Model(pn.mlp([2, 3]), optimizer="adagrad")
    with pytest.raises(ValueError, match="unknown loss"):
        pn.Model(pn.mlp([2, 3]), loss="hinge")


def test_binary_targets_must_be_zero_or_one(numpy_backend):
    model = pn.Model([pn.Dense(3, 1)], loss="bce", backend=numpy_backend)
    with pytest.raises(InputError, match="0/1"):
        _fit(model, np.ones((4, 3)), np.array([0, 1, 2, 1]))
