"""portnet.lr_find: a ramp of rates, a loss curve, a suggestion; the model left untouched."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import synthetic_classification

import portnet as pn


def test_lr_find_leaves_the_model_as_it_was_on_every_backend(backend):
    X, y = synthetic_classification(n=200, seed=1)
    model = pn.Model(pn.mlp([20, 16, 10], "relu"), optimizer=pn.Momentum(0.1), backend=backend)
    before = model.get_weights()
    result = pn.lr_find(model, X, y, start=1e-4, end=1.0, steps=20, batch_size=32)
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) <= 20
    np.testing.assert_allclose(result.lrs[:2], [1e-4, 1e-4 * 10 ** (4 / 19)], rtol=1e-12)
    assert np.isfinite(result.smoothed).all()
    assert 1e-4 <= result.suggested_lr <= result.min_loss_lr <= 1.0
    for a, b in zip(before, model.get_weights(), strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert model.epochs_trained == 0


def test_the_suggestion_sits_where_the_loss_falls_and_divergence_ends_the_curve(tmp_path):
    X, y = synthetic_classification(n=2000, seed=2)
    model = pn.Model([pn.Dense(20, 10)], optimizer=pn.SGD(0.1), backend="numpy", seed=0)
    result = pn.lr_find(model, X, y, start=1e-5, end=1e3, steps=120, batch_size=64)
    # Rates up to 1e3 blow plain SGD up: the curve stops where the loss exploded.
    assert result.stopped_early and result.lrs[-1] < 1e3
    assert result.smoothed.max() <= 4.0 * result.smoothed.min() + 1e-12
    # Softmax regression on standardised features learns fast between 1e-2 and 10.
    assert 1e-3 < result.suggested_lr < result.min_loss_lr < 1e2
    at = np.searchsorted(result.lrs, result.suggested_lr)
    assert result.smoothed[at] < result.smoothed[0] - 0.1  # already falling there

    # Training at the suggestion beats the smallest rate tried, over the same steps.
    def trained_loss(lr):
        m = pn.Model([pn.Dense(20, 10)], optimizer=pn.SGD(lr), backend="numpy", seed=0)
        return m.fit(X, y, epochs=2, batch_size=64, verbose=0).history["train_loss"][-1]

    assert trained_loss(result.suggested_lr) < trained_loss(1e-5) - 0.5
    path = result.plot(tmp_path / "lr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    record = result.to_dict()
    assert record["suggested_lr"] == result.suggested_lr and len(record["lrs"]) == len(result.lrs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": 1.0, "end": 0.1}, "start < end"),
        ({"start": 0.0}, "start must be in"),
        ({"steps": 3}, "steps must be in"),
        ({"smoothing": 1.0}, "smoothing must be in"),
        ({"diverge": 1.0}, "diverge must be in"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, message):
    X, y = synthetic_classification(n=50, seed=3)
    model = pn.Model([pn.Dense(20, 10)], backend="numpy")
    with pytest.raises(pn.ConfigError, match=message):
        pn.lr_find(model, X, y, **kwargs)
