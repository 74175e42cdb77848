"""compile=True: the training step under jax.jit is the eager step, pure and sync-free."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import synthetic_classification

import portnet as pn
from portnet.training.compiled import CompileError

jax = pytest.importorskip("jax")


def losses(layers, backend, compile, X, y, epochs=3, seed=11, dtype="float32"):
    model = pn.Model(layers(), optimizer=pn.Adam(3e-3), backend=backend, seed=seed, dtype=dtype)
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
    for compile in (False, True):
        train, val = losses(network, "jax", compile, X, y)
        np.testing.assert_allclose(train, reference[0], rtol=1e-4)
        if network is not cnn_batchnorm:
            np.testing.assert_allclose(val, reference[1], rtol=1e-4)
    assert reference[0][-1] < reference[0][0]


def test_with_batchnorm_the_maths_agree_to_float64_rounding():
    # Early in training the validation loss through BatchNorm's running statistics is
    # ill-conditioned: in float32, NumPy, torch and JAX each differ from the float64
    # result by up to 8e-4 (relative). In float64, eager and jitted JAX agree with NumPy
    # to rounding, so the maths are the same.
    X, y = synthetic_classification(n=330, n_features=36, seed=3)
    reference = losses(cnn_batchnorm, "numpy", False, X, y, dtype="float64")
    for compile in (False, True):
        for got, want in zip(
            losses(cnn_batchnorm, "jax", compile, X, y, dtype="float64"), reference, strict=True
        ):
            np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize(
    "optimizer",
    [lambda: pn.SGD(0.1), lambda: pn.Momentum(0.05), lambda: pn.RMSProp(1e-3)],
    ids=["sgd", "momentum", "rmsprop"],
)
def test_jitted_optimizers_and_penalties_match_eager(optimizer):
    # SGD and classic momentum scale the loss gradient by the (traced) learning rate,
    # which the L1/L2 penalty gradients then follow.
    X, y = synthetic_classification(n=300, seed=9)

    def run(backend, compile):
        model = pn.Model(mlp(), optimizer=optimizer(), l1=1e-4, l2=1e-3, backend=backend, seed=2)
        history = model.fit(X, y, epochs=2, batch_size=64, verbose=0, compile=compile)
        return history.history["train_loss"]

    np.testing.assert_allclose(run("jax", True), run("numpy", False), rtol=1e-4)


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


class InferenceHostRead(pn.Layer):
    """A host read on the inference path only: the training step traces, evaluation does not."""

    def forward(self, params, x, ctx):
        if not ctx.training:
            float(ctx.xp.sum(x))
        return x, lambda dy: (dy, {})


def test_evaluation_runs_jitted_too():
    X, y = synthetic_classification(n=128, seed=5)

    def planted():
        return [pn.Dense(20, 16), pn.ReLU(), InferenceHostRead(), pn.Dense(16, 10)]

    assert np.isfinite(losses(planted, "jax", False, X, y, epochs=1)[1]).all()
    with pytest.raises(CompileError, match=r"evaluation step .*layer 2, InferenceHostRead"):
        losses(planted, "jax", True, X, y, epochs=1)


class CountCalls(pn.Layer):
    """Counts its forward calls by mode: under jax.jit, forward runs only when tracing."""

    def __init__(self):
        self.calls = {True: 0, False: 0}

    def forward(self, params, x, ctx):
        self.calls[ctx.training] += 1
        return x, lambda dy: (dy, {})


def test_each_step_compiles_once_per_shape_not_per_epoch():
    X, y = synthetic_classification(n=330, seed=7)
    counter = CountCalls()
    model = pn.Model([pn.Dense(20, 16), counter, pn.Dense(16, 10)], backend="jax", seed=1)
    probes = counter.calls[False]  # the shape check's forward on zeros, at construction
    # 264 training rows in batches of 64: four full batches and one of 8, each epoch;
    # 66 validation rows in one evaluation batch (the memory budget allows 4,096).
    model.fit(X, y, epochs=3, batch_size=64, validation_split=0.2, verbose=0, compile=True)
    # One trace of the training step, plus the eager last batch of each epoch.
    assert counter.calls[True] == 1 + 3
    # One trace of the evaluation step for the whole fit, plus the one eager inference
    # forward that probes the layer shapes for the evaluation batch size.
    assert counter.calls[False] - probes == 1 + 1
    # Adam's bias correction under jit (a traced step count) keeps float32 float32.
    dtypes = {str(p.dtype) for layer in model.state.params for p in layer.values()}
    assert dtypes == {"float32"}


def test_jitted_dropout_resumes_exactly_at_an_epoch_boundary():
    # The carried key restarts each epoch from (seed, epoch), so two fits of two
    # epochs draw the masks that one fit of four epochs does.
    X, y = synthetic_classification(n=300, seed=8)

    def model():
        layers = pn.mlp([20, 32, 10], "relu", dropout=0.3)
        return pn.Model(layers, optimizer=pn.Adam(3e-3), backend="jax", seed=5)

    def fit(m, epochs):
        return m.fit(X, y, epochs=epochs, batch_size=64, verbose=0, compile=True, seed=9)

    whole = fit(model(), 4).history["train_loss"]
    resumed = model()
    halves = fit(resumed, 2).history["train_loss"] + fit(resumed, 2).history["train_loss"]
    np.testing.assert_array_equal(whole, halves)


def test_compile_needs_the_jax_backend():
    X, y = synthetic_classification(n=64, seed=6)
    with pytest.raises(pn.ConfigError, match="needs the jax backend"):
        losses(mlp, "numpy", True, X, y, epochs=1)
