"""A network whose layers do not chain is refused where it is built, not in a matmul."""

from __future__ import annotations

import re

import numpy as np
import pytest

import portnet as pn
from portnet.training.validation import check_chain


def image(*more):
    return [pn.Reshape((1, 8, 8)), *more]


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (
            [pn.Dense(20, 16), pn.ReLU(), pn.Dense(17, 3)],
            "layer 3 (Dense) takes 17 inputs but layer 2 (ReLU) gives 16: make them equal.",
        ),
        (
            [pn.Dense(20, 16), pn.Dense(17, 3)],
            "layer 2 (Dense) takes 17 inputs but layer 1 (Dense) gives 16: make them equal.",
        ),
        (
            image(pn.Conv2D(3, 4, 3)),
            "layer 2 (Conv2D) takes images of 3 channels (3 x H x W) but layer 1 (Reshape) "
            "gives samples of shape (1, 8, 8): make them fit.",
        ),
        (
            image(pn.Conv2D(1, 4, 3), pn.Conv2D(5, 2, 3)),
            "layer 3 (Conv2D) takes images of 5 channels (5 x H x W) but layer 2 (Conv2D) "
            "gives samples of shape (4, 6, 6)",
        ),
        (
            image(pn.Conv2D(1, 4, 9)),
            "layer 2 (Conv2D) takes images of at least 9 x 9 pixels (padding included)",
        ),
        (
            [pn.Dense(20, 16), pn.BatchNorm(8)],
            "layer 2 (BatchNorm) takes 8 features (8 or 8 x H x W per sample) but layer 1 "
            "(Dense) gives 16",
        ),
        (
            image(pn.Conv2D(1, 4, 3), pn.BatchNorm(3)),
            "layer 3 (BatchNorm) takes 3 features",
        ),
        (
            [pn.Dense(20, 30), pn.Reshape((1, 5, 5))],
            "layer 2 (Reshape) takes 25 values per sample (to make (1, 5, 5)) but layer 1 "
            "(Dense) gives 30",
        ),
        (
            image(pn.Conv2D(1, 4, 3), pn.Flatten(), pn.Dense(100, 3)),
            "layer 4 (Dense) takes 100 inputs but layer 3 (Flatten) gives 144",
        ),
        (
            image(pn.Conv2D(1, 4, 3), pn.Dense(144, 3)),
            "layer 3 (Dense) takes 144 inputs as flat rows (put a Flatten before it) but "
            "layer 2 (Conv2D) gives samples of shape (4, 6, 6)",
        ),
        (  # pooling declares no shape: found by a forward pass on zeros
            image(pn.Conv2D(1, 4, 3), pn.MaxPool2D(2), pn.Flatten(), pn.Dense(144, 3)),
            "layer 5 (Dense) takes 144 inputs but layer 4 (Flatten) gives 36",
        ),
    ],
)
def test_layers_that_do_not_chain_are_refused_at_construction(layers, message):
    with pytest.raises(pn.ConfigError, match=re.escape(message)):
        pn.Model(layers, backend="numpy")


def test_layers_that_chain_give_the_output_shape():
    layers = image(
        pn.Conv2D(1, 4, 3, padding=1),
        pn.BatchNorm(4),
        pn.ReLU(),
        pn.AvgPool2D(2),
        pn.Flatten(),
        pn.Dense(64, 10),
        pn.Softmax(),
    )
    assert check_chain(layers, (64,)) == (10,)
    pn.Model(layers, backend="numpy")  # accepted


def test_data_that_do_not_fit_the_first_layer_are_refused_before_training():
    model = pn.Model([pn.Dense(20, 16), pn.ReLU(), pn.Dense(16, 3)], backend="numpy")
    X, y = np.zeros((10, 784)), np.zeros(10, dtype=np.int64)
    message = "layer 1 (Dense) takes 20 inputs but X has 784 features per sample"
    with pytest.raises(pn.InputError, match=re.escape(message)):
        model.fit(X, y, epochs=1)
    with pytest.raises(pn.InputError, match=re.escape(message.replace("X has", "X_val has"))):
        model.fit(np.zeros((10, 20)), y, epochs=1, validation_data=(X, y))
    with pytest.raises(pn.InputError, match=r"layer 1 \(Dense\) takes 20 inputs"):
        model.predict(X)


def test_a_network_without_an_input_width_is_checked_against_the_data():
    model = pn.Model([pn.Flatten(), pn.Dense(20, 3)], backend="numpy")  # Flatten: any width
    model.fit(np.zeros((8, 20)), np.zeros(8, dtype=np.int64), epochs=1)
    with pytest.raises(pn.ConfigError, match=r"layer 2 \(Dense\) takes 20 inputs but layer 1"):
        model.predict(np.zeros((8, 30)))


def test_a_layer_whose_shape_is_unknown_ends_the_check_without_error():
    class Broken(pn.Layer):  # fails on zeros: the check cannot learn its output shape
        def forward(self, params, x, ctx):
            raise RuntimeError("no shape for you")

    assert check_chain([pn.Dense(4, 3), Broken(), pn.Dense(99, 2)], (4,)) is None
