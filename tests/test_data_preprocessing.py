"""Tests of portnet.data's preprocessing: scaling, standardizing, labels, splits and folds."""

from __future__ import annotations

import numpy as np
import pytest

from portnet.data import (
    StandardScaler,
    class_subset,
    kfold_indices,
    one_hot,
    one_vs_rest,
    scale_images,
    standardize_per_image,
    stratified_split,
)

# --------------------------------------------------------------------------- preprocessing


def test_scale_images():
    X = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    out = scale_images(X)
    assert out.dtype == np.float32 and out.shape == (1, 4)
    np.testing.assert_allclose(out, [[0, 1, 0.2, 0.4]], rtol=1e-7)
    assert scale_images(X, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="uint8"):
        scale_images(X.astype(np.float32))
    with pytest.raises(ValueError, match="floating"):
        scale_images(X, dtype=np.int32)


def test_standard_scaler_uses_train_stats_only():
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 2.0, (500, 3)).astype(np.float32)
    train[:, 2] = 7.0  # constant feature: scale guarded to 1
    test = rng.normal(-3.0, 9.0, (100, 3)).astype(np.float32)
    train_copy, test_copy = train.copy(), test.copy()
    scaler = StandardScaler().fit(train)
    np.testing.assert_allclose(scaler.mean_, train.mean(axis=0, dtype=np.float64))
    assert scaler.scale_[2] == 1.0
    z_train = scaler.transform(train)
    z_test = scaler.transform(test)
    assert z_train.dtype == np.float32
    np.testing.assert_allclose(z_train[:, :2].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z_train[:, :2].std(axis=0), 1, atol=1e-5)
    np.testing.assert_array_equal(z_train[:, 2], 0)
    # Test data use the training statistics, so they are NOT centred on their own.
    expected = (test[:, :2] - scaler.mean_[:2]) / scaler.scale_[:2]
    np.testing.assert_allclose(z_test[:, :2], expected, rtol=1e-5)
    assert abs(z_test[:, 0].mean()) > 1
    np.testing.assert_allclose(scaler.inverse_transform(z_test), test, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(train, train_copy)  # inputs unchanged
    np.testing.assert_array_equal(test, test_copy)
    assert StandardScaler().fit_transform(np.arange(6, dtype=np.uint8).reshape(3, 2)).dtype == (
        np.float32
    )
    with pytest.raises(ValueError, match="not fitted"):
        StandardScaler().transform(train)
    with pytest.raises(ValueError, match="features"):
        scaler.transform(train[:, :2])
    with pytest.raises(ValueError, match="2-d"):
        scaler.fit(train[0])


def test_standardize_per_image():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    X[3] = 17  # blank image -> zeros, not NaN
    Z = standardize_per_image(X)
    assert Z.dtype == np.float32 and Z.shape == X.shape
    np.testing.assert_allclose(Z[:3].mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(Z[:3].std(axis=(1, 2)), 1, atol=1e-5)
    np.testing.assert_array_equal(Z[3], 0)
    x0 = X[0].astype(np.float64)
    np.testing.assert_allclose(Z[0], (x0 - x0.mean()) / x0.std(), rtol=1e-5, atol=1e-5)


def test_one_hot():
    out = one_hot(np.array([2, 0, 1], dtype=np.uint8), 3)
    np.testing.assert_array_equal(out, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert out.dtype == np.float32
    assert one_hot(np.array([1]), 2, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        one_hot(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="outside"):
        one_hot(np.array([-1, 0]), 3)
    with pytest.raises(ValueError, match="integer"):
        one_hot(np.array([0.0, 1.0]), 3)


def test_stratified_split_keeps_class_proportions():
    y = np.repeat(np.arange(4), [400, 200, 100, 300]).astype(np.uint8)
    train_idx, val_idx = stratified_split(y, 0.2, seed=1)
    assert len(val_idx) == 200 and len(train_idx) == 800
    assert np.intersect1d(train_idx, val_idx).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(1000))
    np.testing.assert_array_equal(np.bincount(y[val_idx]), [80, 40, 20, 60])
    again = stratified_split(y, 0.2, seed=1)
    np.testing.assert_array_equal(again[1], val_idx)
    assert not np.array_equal(stratified_split(y, 0.2, seed=2)[1], val_idx)
    # Awkward counts: the total is still exact, each class within one of ideal.
    y2 = np.repeat(np.arange(3), [7, 11, 13])
    tr, va = stratified_split(y2, 0.3, seed=0)
    assert len(va) == round(0.3 * 31)
    assert np.all(np.abs(np.bincount(y2[va]) - np.array([7, 11, 13]) * 0.3) < 1)
    for bad in (0, 1, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
            stratified_split(y, bad)
    with pytest.raises(ValueError, match="empty"):
        stratified_split(np.array([0, 1, 0]), 0.01)


@pytest.mark.parametrize("stratified", [False, True])
@pytest.mark.parametrize("n, k", [(10, 2), (103, 5), (7, 7)])
def test_kfold_partitions_every_index_once(n, k, stratified):
    y = (np.arange(n) * 7 % 3) if stratified else None
    folds = list(kfold_indices(n, k, seed=0, y=y))
    assert len(folds) == k
    vals = np.concatenate([v for _, v in folds])
    np.testing.assert_array_equal(np.sort(vals), np.arange(n))  # each exactly once
    sizes = [len(v) for _, v in folds]
    assert max(sizes) - min(sizes) <= 1
    for train_idx, val_idx in folds:
        assert np.intersect1d(train_idx, val_idx).size == 0
        assert len(train_idx) + len(val_idx) == n
    if stratified:
        per_fold = np.array([np.bincount(y[v], minlength=3) for _, v in folds])
        assert np.all(per_fold.max(axis=0) - per_fold.min(axis=0) <= 1)


def test_kfold_validates_eagerly():
    for n, k in [(5, 1), (5, 6), (0, 2)]:
        with pytest.raises(ValueError, match="2 <= k <= n"):
            kfold_indices(n, k)  # raised at the call, not at the first next()
    with pytest.raises(ValueError, match="labels"):
        kfold_indices(5, 2, y=np.zeros(4, dtype=int))
    a = [v for _, v in kfold_indices(20, 4, seed=3)]
    b = [v for _, v in kfold_indices(20, 4, seed=3)]
    for va, vb in zip(a, b, strict=True):
        np.testing.assert_array_equal(va, vb)


def test_class_subset_and_one_vs_rest():
    y = np.array([9, 0, 3, 9, 0, 5], dtype=np.uint8)
    X = np.arange(6 * 2).reshape(6, 2)
    X_sub, y_sub = class_subset(X, y, (0, 9))  # T-shirt/top vs Ankle boot
    np.testing.assert_array_equal(X_sub, X[[0, 1, 3, 4]])
    np.testing.assert_array_equal(y_sub, [1, 0, 1, 0])
    assert y_sub.dtype == np.uint8
    _, y_rev = class_subset(X, y, [9, 0])  # the given order defines the labels
    np.testing.assert_array_equal(y_rev, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="distinct"):
        class_subset(X, y, [0, 0])
    with pytest.raises(ValueError, match="no samples"):
        class_subset(X, y, [0, 7])
    with pytest.raises(ValueError, match="samples"):
        class_subset(X[:5], y, [0, 9])
    np.testing.assert_array_equal(one_vs_rest(y, 9), [1, 0, 0, 1, 0, 0])
    assert one_vs_rest(y, 9, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="integer"):
        one_vs_rest(y.astype(float), 9)
