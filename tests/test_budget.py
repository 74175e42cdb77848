"""Evaluation and prediction batch sizes follow a memory budget (portnet.training.budget)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from helpers.arrays import synthetic_classification

import portnet as pn
from portnet.training.budget import (
    DEFAULT_MEMORY_BUDGET,
    MAX_INFERENCE_BATCH,
    inference_batch_size,
    inference_bytes_per_sample,
)


def _cnn(backend, memory_budget=DEFAULT_MEMORY_BUDGET):
    layers = [
        pn.Reshape((1, 8, 8)),
        pn.Conv2D(1, 16, 3, padding=1),
        pn.BatchNorm(16),
        pn.ReLU(),
        pn.MaxPool2D(2),
        pn.Flatten(),
        pn.Dense(256, 10),
    ]
    return pn.Model(layers, backend=backend, seed=0, memory_budget=memory_budget)


def test_the_estimate_matches_the_memory_numpy_allocates(numpy_backend):
    """tracemalloc sees NumPy's buffers: an evaluation within a budget stays within it,
    and the estimate per sample is close to what the forward really takes."""
    X, y = synthetic_classification(n=3000, n_features=64)
    budget = 2 * 2**20
    model = _cnn(numpy_backend, memory_budget=budget)
    batch = inference_batch_size(model, (64,))
    assert 1 < batch < 3000  # the budget binds
    model.evaluate(X[:10], y[:10])  # first-call allocations out of the measurement
    tracemalloc.start()
    bounded = model.evaluate(X, y)
    bounded_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    whole = model.evaluate(X, y, batch_size=3000)
    whole_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert bounded_peak <= budget
    per_sample = inference_bytes_per_sample(model, (64,))
    # The estimate is an upper bound, and not a loose one: within 2x of the real peak.
    assert whole_peak / 3000 <= per_sample <= 2 * whole_peak / 3000
    assert bounded == pytest.approx(whole, rel=1e-5)


def test_results_do_not_depend_on_the_budget(backend):
    X, _ = synthetic_classification(n=300, n_features=64)
    big, small = _cnn(backend), _cnn(backend, memory_budget=200_000)
    assert inference_batch_size(small, (64,)) < 300 <= inference_batch_size(big, (64,))
    np.testing.assert_allclose(
        backend.to_numpy(small.predict_proba(X)), backend.to_numpy(big.predict_proba(X)), rtol=1e-5
    )


def test_batch_sizes_are_clamped_and_the_budget_checked(numpy_backend):
    tiny_mlp = pn.Model([pn.Dense(4, 2)], backend=numpy_backend)
    assert inference_batch_size(tiny_mlp, (4,)) == MAX_INFERENCE_BATCH
    assert inference_batch_size(tiny_mlp, (4,), memory_budget=1) == 1
    with pytest.raises(ValueError, match="memory_budget"):
        pn.Model([pn.Dense(4, 2)], backend=numpy_backend, memory_budget=0)


def test_conv_workspace_counts_the_padded_input_and_the_columns():
    conv = pn.Conv2D(3, 8, kernel_size=3, padding=1)
    # padded 3 x 10 x 10, columns 9 x 3 x 8 x 8
    assert conv.inference_workspace((3, 8, 8)) == 3 * 100 + 9 * 3 * 64
    strided = pn.Conv2D(2, 4, kernel_size=2, stride=2)
    assert strided.inference_workspace((2, 6, 6)) == 2 * 36 + 4 * 2 * 9
    assert pn.ReLU().inference_workspace((5,)) == 0


def test_validation_during_fit_uses_the_budget(numpy_backend, monkeypatch):
    X, y = synthetic_classification(n=400, n_features=64)
    model = _cnn(numpy_backend, memory_budget=300_000)
    seen = []
    original = model.trainer.evaluate_sums

    def spy(params, X, y, batch_size=2048, **kwargs):
        seen.append(batch_size)
        return original(params, X, y, batch_size, **kwargs)

    monkeypatch.setattr(model.trainer, "evaluate_sums", spy)
    model.fit(X, y, epochs=2, batch_size=50, validation_split=0.25)
    assert seen == [inference_batch_size(model, (64,))] * 2
    assert seen[0] < 100  # the whole hold-out would not have fit


def test_the_size_probe_runs_once_per_network_and_writes_nothing_into_the_model(monkeypatch):
    import portnet.training.budget as budget

    calls = []
    probe = budget.inference_bytes_per_sample
    monkeypatch.setattr(
        budget, "inference_bytes_per_sample", lambda *a: calls.append(1) or probe(*a)
    )
    model = _cnn("numpy")
    before = set(vars(model))
    first = inference_batch_size(model, (64,))
    assert inference_batch_size(model, (64,)) == first and len(calls) == 1
    assert set(vars(model)) == before  # the cache lives in portnet.training.budget
    inference_batch_size(_cnn("numpy"), (64,))  # another network: probed afresh
    assert len(calls) == 2
