"""pn.mlp: the layer list it builds, with batch norm and random flips."""

from __future__ import annotations

import numpy as np
import pytest

import portnet as pn


def test_batch_norm_sits_between_each_hidden_dense_and_its_activation():
    layers = pn.mlp([12, 8, 6, 3], dropout=0.2, batch_norm=True)
    kinds = [type(layer).__name__ for layer in layers]
    assert kinds == ["Dense", "BatchNorm", "ReLU", "Dropout"] * 2 + ["Dense"]
    dense = [layer for layer in layers if isinstance(layer, pn.Dense)]
    # Hidden layers lose their bias (the normalization removes any constant); the output keeps it.
    assert [layer.bias for layer in dense] == [False, False, True]
    assert [bn.n_features for bn in layers if isinstance(bn, pn.BatchNorm)] == [8, 6]


def test_flip_mirrors_training_images_and_leaves_inference_alone():
    plain = pn.mlp([16, 5, 3])
    flipped = pn.mlp([16, 5, 3], flip=(1, 4, 4))
    assert [type(layer).__name__ for layer in flipped[:3]] == ["Reshape", "RandomFlip", "Flatten"]
    backend = pn.get_backend("numpy")
    params = pn.Sequential(plain).init(np.random.default_rng(0))
    x = np.random.default_rng(1).random((64, 16))
    inference = pn.Context(xp=np, training=False)
    y_plain = pn.Sequential(plain).forward(params, x, inference)[0]
    y_flip = pn.Sequential(flipped).forward([{}, {}, {}, *params], x, inference)[0]
    np.testing.assert_array_equal(y_flip, y_plain)
    # In training each row is either itself or its left-right mirror, and both occur.
    ctx = pn.Context(xp=np, training=True, random=pn.RandomStream(backend, seed=3))
    rows = pn.Sequential(flipped[:3]).forward([{}, {}, {}], x, ctx)[0]
    mirrored = x.reshape(64, 4, 4)[:, :, ::-1].reshape(64, 16)
    same = np.all(rows == x, axis=1)
    mirror = np.all(rows == mirrored, axis=1)
    assert np.all(same | mirror) and same.any() and mirror.any()


def test_flip_shape_must_hold_one_input_row():
    with pytest.raises(pn.ConfigError, match=r"holds 784 values but the input rows have 100"):
        pn.mlp([100, 10], flip=(1, 28, 28))
