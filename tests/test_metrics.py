"""Metrics on the backend matrix, against scikit-learn, with results kept on the device."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import assert_on_backend, tolerance

import portnet as pn

N_CLASSES = 4


def labels(seed=0, n=40):
    """True labels of 4 classes and predictions that never say class 3 (but class 3 occurs)."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, N_CLASSES, n).astype(np.int64)
    y_true[:3] = 3
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, N_CLASSES, n))
    y_pred = np.where(y_pred == 3, 2, y_pred).astype(np.int64)
    assert 3 in y_true and 3 not in y_pred
    return y_true, y_pred


def on(backend, host):
    return backend.asarray(host, "int64")


def test_accuracy(backend):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    y_true, y_pred = labels()
    t, p = on(backend, y_true), on(backend, y_pred)
    acc = pn.accuracy(t, p)
    assert_on_backend(acc, backend, "float32", ())
    np.testing.assert_allclose(
        float(backend.to_numpy(acc)),
        sklearn_metrics.accuracy_score(y_true, y_pred),
        **tolerance("float32"),
    )
    np.testing.assert_array_equal(backend.to_numpy(t), y_true)  # inputs unchanged
    np.testing.assert_array_equal(backend.to_numpy(p), y_pred)


def test_accuracy_edge_values(backend):
    y = np.array([0, 1, 2, 1], dtype=np.int64)
    assert float(backend.to_numpy(pn.accuracy(on(backend, y), on(backend, y)))) == 1.0
    assert float(backend.to_numpy(pn.accuracy(on(backend, y), on(backend, (y + 1) % 3)))) == 0.0
    with pytest.raises(ValueError, match="empty"):
        pn.accuracy(on(backend, y[:0]), on(backend, y[:0]))


def test_confusion_matrix(backend):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    y_true, y_pred = labels(seed=1)
    cm = pn.confusion_matrix(on(backend, y_true), on(backend, y_pred), N_CLASSES)
    assert_on_backend(cm, backend, "int64", (N_CLASSES, N_CLASSES))
    expected = sklearn_metrics.confusion_matrix(y_true, y_pred, labels=list(range(N_CLASSES)))
    np.testing.assert_array_equal(backend.to_numpy(cm), expected)
    assert backend.to_numpy(cm)[:, 3].sum() == 0  # class 3 is never predicted


def test_confusion_matrix_class_absent_everywhere(backend):
    """A class in neither labels nor predictions gets an all-zero row and column."""
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    y_true = np.array([0, 1, 1, 0, 2], dtype=np.int64)
    y_pred = np.array([0, 1, 0, 0, 1], dtype=np.int64)
    cm = pn.confusion_matrix(on(backend, y_true), on(backend, y_pred), 5)
    assert_on_backend(cm, backend, "int64", (5, 5))
    np.testing.assert_array_equal(
        backend.to_numpy(cm),
        sklearn_metrics.confusion_matrix(y_true, y_pred, labels=list(range(5))),
    )


@pytest.mark.parametrize("average", ["macro", None])
def test_precision_recall_f1_multiclass(backend, average):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    y_true, y_pred = labels(seed=2)
    cm = pn.confusion_matrix(on(backend, y_true), on(backend, y_pred), N_CLASSES)
    cm_before = backend.to_numpy(cm)
    scores = pn.precision_recall_f1(cm, average=average)
    precision, recall, f1, _ = sklearn_metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(N_CLASSES)), average=average, zero_division=0
    )
    expected = {"precision": precision, "recall": recall, "f1": f1}
    assert set(scores) == set(expected)
    shape = () if average else (N_CLASSES,)
    for key, value in scores.items():
        assert_on_backend(value, backend, "float32", shape)
        np.testing.assert_allclose(
            backend.to_numpy(value), expected[key], **tolerance("float32"), err_msg=key
        )
    if average is None:
        # Class 3 is never predicted: precision 0 by convention (zero_division=0), recall 0, F1 0.
        for key in ("precision", "recall", "f1"):
            assert backend.to_numpy(scores[key])[3] == 0.0
    np.testing.assert_array_equal(backend.to_numpy(cm), cm_before)


@pytest.mark.parametrize("positive", [1, 0])
def test_precision_recall_f1_binary(backend, positive):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 2, 30).astype(np.int64)
    y_pred = np.where(rng.random(30) < 0.7, y_true, 1 - y_true).astype(np.int64)
    cm = pn.confusion_matrix(on(backend, y_true), on(backend, y_pred), 2)
    scores = pn.precision_recall_f1(cm, average="binary", positive=positive)
    precision, recall, f1, _ = sklearn_metrics.precision_recall_fscore_support(
        y_true, y_pred, average="binary", pos_label=positive, zero_division=0
    )
    for key, ref in {"precision": precision, "recall": recall, "f1": f1}.items():
        assert_on_backend(scores[key], backend, "float32", ())
        np.testing.assert_allclose(
            float(backend.to_numpy(scores[key])), ref, **tolerance("float32"), err_msg=key
        )


def test_precision_recall_f1_binary_never_predicted(backend):
    """The positive class is never predicted: precision, recall and F1 are 0, not NaN."""
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    y_true = np.array([1, 0, 1, 0, 0], dtype=np.int64)
    y_pred = np.zeros(5, dtype=np.int64)
    cm = pn.confusion_matrix(on(backend, y_true), on(backend, y_pred), 2)
    scores = pn.precision_recall_f1(cm, average="binary")
    ref = sklearn_metrics.precision_recall_fscore_support(
        y_true, y_pred, average="binary", zero_division=0
    )[:3]
    got = [float(backend.to_numpy(scores[k])) for k in ("precision", "recall", "f1")]
    assert got == [0.0, 0.0, 0.0] == [float(r) for r in ref]


def test_precision_recall_f1_rejects_unknown_average(numpy_backend):
    cm = pn.confusion_matrix(
        on(numpy_backend, np.array([0, 1])), on(numpy_backend, np.array([0, 1])), 2
    )
    with pytest.raises(ValueError, match="average"):
        pn.precision_recall_f1(cm, average="micro")


def test_metrics_on_model_predictions(backend):
    """predict() output feeds the metrics directly, on the model's device."""
    X = np.random.default_rng(4).normal(size=(20, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = pn.Model([pn.Dense(3, 2)], backend=backend, seed=1)
    y_pred = model.predict(X)
    assert_on_backend(y_pred, backend, "int64", (20,))
    t = on(backend, y)
    acc = pn.accuracy(t, y_pred)
    cm = pn.confusion_matrix(t, y_pred, 2)
    assert_on_backend(acc, backend, "float32", ())
    assert_on_backend(cm, backend, "int64", (2, 2))
    host_pred = backend.to_numpy(y_pred)
    np.testing.assert_allclose(float(backend.to_numpy(acc)), np.mean(host_pred == y), rtol=1e-6)
    assert int(backend.to_numpy(cm).sum()) == 20
    assert int(np.trace(backend.to_numpy(cm))) == int(np.sum(host_pred == y))
