"""compile=True: the training step under jax.jit is the eager step, pure and sync-free."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_classification

import portnet as pn
from portnet.compiled import CompileError

jax = pytest.importorskip("jax")


def losses(layers, backend, compile, X, y, epochs=3, seed=11):
    model = pn.Model(layers(), optimizer=pn.Adam(3e-3), backend=backend, seed=seed)
    history = model.fit(
        X, y, epochs=epochs, batch_size=64, validation_split=0.2, verbose=0, compile=compile
    )
    return np.array(history.history["train_loss"]), np.array(history.history["val_loss"])


def mlp():
    return pn.mlp([20, 32, 32, 10], "relu")


def cnn():
    return [
        pn.Reshape((1, 6, 6)),
        pn.Conv2D(1, 4, 3, padding=1),
        pn.ReLU(),
        pn.MaxPool2D(2),
        pn.Flatten(),
        pn.Dense(36, 10),
    ]


def cnn_batchnorm():
    return [*cnn()[:2], pn.BatchNorm(4), *cnn()[2:]]


@pytest.mark.parametrize(
    "network, n_in", [(mlp, 20), (cnn, 36), (cnn_batchnorm, 36)], ids=["mlp", "cnn", "cnn-bn"]
)
def test_jitted_and_eager_jax_agree_with_numpy(network, n_in):
    X, y = synthetic_classification(n=330, n_features=n_in, seed=3)  # 264 rows: a ragged batch
    reference = losses(network, "numpy", False, X, y)
    # With BatchNorm the validation loss runs on running statistics of few samples,
    # which amplifies float32 rounding: torch-cpu differs from NumPy there by 2e-4 too.
    val_rtol = 1e-3 if network is cnn_batchnorm else 1e-4
    for compile in (False, True):
        train, val = losses(network, "jax", compile, X, y)
        np.testing.assert_allclose(train, reference[0], rtol=1e-4)
        np.testing.assert_allclose(val, reference[1], rtol=val_rtol)
    assert reference[0][-1] < reference[0][0]


def test_jitted_dropout_is_reproducible():
    X, y = synthetic_classification(n=300, seed=4)

    def dropout_mlp():
        return pn.mlp([20, 32, 10], "relu", dropout=0.3)

    first = losses(dropout_mlp, "jax", True, X, y)
    again = losses(dropout_mlp, "jax", True, X, y)
    other_seed = losses(dropout_mlp, "jax", True, X, y, seed=12)
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], other_seed[0])


class HostRead(pn.Layer):
    """A layer with a planted host read: fine eagerly, untraceable under jax.jit."""

    def forward(self, params, x, ctx):
        scale = 1.0 + 0.0 * float(ctx.xp.sum(x))  # the host read
        return x * scale, lambda dy: (dy * scale, {})


def test_a_planted_host_read_fails_under_jit_naming_the_layer():
    X, y = synthetic_classification(n=128, seed=5)

    def planted():
        return [pn.Dense(20, 16), HostRead(), pn.ReLU(), pn.Dense(16, 10)]

    eager = losses(planted, "jax", False, X, y, epochs=1)
    assert np.isfinite(eager[0]).all()
    with pytest.raises(CompileError, match=r"layer 1, HostRead.*float\(\)"):
        losses(planted, "jax", True, X, y, epochs=1)


def test_compile_needs_the_jax_backend():
    X, y = synthetic_classification(n=64, seed=6)
    with pytest.raises(pn.ConfigError, match="needs the jax backend"):
        losses(mlp, "numpy", True, X, y, epochs=1)
