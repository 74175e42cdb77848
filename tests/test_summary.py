"""Model.summary(): shapes from a real forward, counts from the real parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

import portnet as pn


def small_cnn():
    return [
        pn.Reshape((1, 8, 8)),
        pn.Conv2D(1, 4, 3, padding=1),
        pn.BatchNorm(4),
        pn.ReLU(),
        pn.MaxPool2D(2),
        pn.Flatten(),
        pn.Dropout(0.2),
        pn.Dense(64, 10),
    ]


def test_summary_reports_every_layer_on_every_backend(backend):
    model = pn.Model(small_cnn(), backend=backend)
    summary = model.summary(batch_size=32)
    assert [r.name for r in summary.rows] == [type(layer).__name__ for layer in small_cnn()]
    shapes = [r.output_shape for r in summary.rows]
    assert shapes == [(1, 8, 8), (4, 8, 8), (4, 8, 8), (4, 8, 8), (4, 4, 4), (64,), (64,), (10,)]
    weights = model.get_weights()
    assert summary.n_params == sum(a.size for layer in weights for a in layer.values())
    assert [r.n_params for r in summary.rows][1:3] == [4 * 9 + 4, 4 * 4]
    assert summary.rows[2].n_trainable == 8  # gamma and beta; the running statistics are state
    assert summary.n_trainable == summary.n_params - 8
    assert summary.param_bytes == 4 * summary.n_params  # float32
    per_sample = sum(math.prod(s) for s in shapes)
    assert summary.activation_bytes == 32 * 4 * per_sample
    text = str(summary)
    assert "(32, 4, 8, 8)" in text and "8 state" in text
    assert f"{summary.n_params:,} ({summary.n_trainable:,} trainable)" in text


def test_summary_of_the_default_mlp_in_float64():
    model = pn.Model(pn.mlp([784, 128, 10], "relu"), backend="numpy", dtype="float64")
    summary = model.summary(batch_size=100)
    assert summary.n_params == 784 * 128 + 128 + 128 * 10 + 10
    assert summary.param_bytes == 8 * summary.n_params
    assert summary.activation_bytes == 100 * 8 * (128 + 128 + 10)
    assert "activations at batch 100: 212.80 kB" in str(summary)


def test_summary_needs_an_input_shape_when_the_network_has_none():
    model = pn.Model([pn.ReLU(), pn.Flatten()], backend="numpy")  # no layer knows its width
    with pytest.raises(pn.ConfigError, match=r"pass input_shape, e.g. summary\(input_shape="):
        model.summary()
    summary = model.summary(input_shape=(2, 3))
    assert [r.output_shape for r in summary.rows] == [(2, 3), (6,)]
    with pytest.raises(pn.ConfigError, match="batch_size"):
        model.summary(batch_size=0)


def test_summary_does_not_change_the_model():
    model = pn.Model(small_cnn(), backend="numpy", seed=1)
    before = model.get_weights()
    model.summary()
    for a, b in zip(before, model.get_weights(), strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
