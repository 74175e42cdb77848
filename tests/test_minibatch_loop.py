"""One minibatch loop (portnet.training.core.run_batches), and a trainer that lines up
with the network."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import synthetic_classification

import portnet as pn
import portnet.training.core


@pytest.fixture
def loops(monkeypatch):
    """Counts the epochs that go through run_batches, by caller."""
    calls = []
    run_batches = portnet.training.core.run_batches

    def counting(step, *args, **kwargs):
        calls.append(step.__qualname__.split(".")[0])
        return run_batches(step, *args, **kwargs)

    for module in (
        "portnet.training.core",
        "portnet.training.compiled",
        "portnet.training.lr_range",
    ):
        monkeypatch.setattr(f"{module}.run_batches", counting)
    return calls


def model(backend="numpy"):
    return pn.Model([pn.Dense(20, 16), pn.ReLU(), pn.Dense(16, 10)], backend=backend, seed=0)


def test_eager_training_lr_find_and_the_compiled_path_share_the_loop(loops):
    X, y = synthetic_classification(n=100, seed=1)
    model().fit(X, y, epochs=2, batch_size=32)
    pn.lr_find(model(), X, y, steps=6, batch_size=16)
    assert loops == ["Trainer", "Trainer", "lr_find"]
    pytest.importorskip("jax")
    model("jax").fit(X, y, epochs=1, batch_size=32, compile=True)
    assert loops[-1] == "train_epoch_compiled"


def test_the_loop_sums_on_the_device_in_batch_order():
    xp = np
    X, y = np.arange(10.0)[:, None], np.arange(10.0)
    order = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    seen = []

    def step(batch):
        xb, yb, wb = batch.arrays()
        seen.append((batch.number, batch.size, xb[:, 0].tolist(), wb.tolist()))
        return xp.mean(yb), xp.asarray(1.0)

    loss_sum, correct_sum = portnet.training.core.run_batches(
        step, X, y, order, 4, sample_weight=np.full(10, 0.5)
    )
    assert [s[:3] for s in seen] == [
        (0, 4, [9.0, 8.0, 7.0, 6.0]),
        (1, 4, [5.0, 4.0, 3.0, 2.0]),
        (2, 2, [1.0, 0.0]),
    ]
    assert seen[0][3] == [0.5] * 4
    assert float(loss_sum) == 45.0 and float(correct_sum) == 3.0  # mean x size, summed


def test_a_fused_output_activation_keeps_network_and_trained_layers_aligned():
    model = pn.Model([pn.Dense(6, 3), pn.Softmax()], backend="numpy")
    assert len(model.trainer.layers) == len(model.network.layers) == 2
    assert isinstance(model.trainer.layers[-1], pn.Identity)  # the loss applies softmax
    assert model.params is model.state.params
    X = np.random.default_rng(0).normal(size=(5, 6))
    p = np.asarray(model.predict_proba(X))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
