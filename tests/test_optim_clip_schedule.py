"""Gradient clipping (global norm and value, without host reads) and learning-rate schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.arrays import assert_on_backend
from helpers.optim import LRS, OPTIMIZERS, make, problem, to_device, to_host

import portnet as pn


# -- clipping --------------------------------------------------------------------------------
def clipped_gradients(backend, opt, grads_h):
    """SGD with lr=1 from zero parameters returns exactly minus the clipped gradients."""
    zeros = [{k: np.zeros_like(v) for k, v in layer.items()} for layer in grads_h]
    params = to_device(backend, zeros, "float32")
    new, _ = opt.update(params, to_device(backend, grads_h, "float32"), opt.init(params), 1.0)
    return new


@pytest.fixture
def no_host_reads(monkeypatch):
    """Make bool()/float()/int() of an array-api-strict array fail, as a sync would be a bug."""
    from array_api_strict._array_object import Array

    def forbidden(self, *args):
        raise AssertionError("a Python branch or conversion on a device value")

    for dunder in ("__bool__", "__float__", "__int__", "__index__", "__complex__"):
        monkeypatch.setattr(Array, dunder, forbidden)


@pytest.mark.parametrize("limit", [0.5, 100.0], ids=["active", "inactive"])
def test_clip_norm_on_strict_device1(no_host_reads, limit):
    backend = pn.get_backend("array_api_strict", "device1")
    _, grad_seq = problem(seed=7)
    grads_h = grad_seq[0]
    with pn.count_transfers() as count:
        new = clipped_gradients(backend, pn.SGD(1.0, clip_norm=limit, inplace=False), grads_h)
    assert count.to_host == 0
    for layer, layer_h in zip(new, grads_h, strict=True):
        for key, p in layer.items():
            assert_on_backend(p, backend, "float32", layer_h[key].shape)
    clipped = -np.concatenate(
        [v.ravel() for layer in to_host(backend, new) for v in layer.values()]
    )
    original = np.concatenate([v.ravel() for layer in grads_h for v in layer.values()])
    norm = np.linalg.norm(clipped)
    assert norm <= limit * (1 + 1e-6)
    if limit < np.linalg.norm(original):
        np.testing.assert_allclose(norm, limit, rtol=1e-5)
    else:
        np.testing.assert_allclose(clipped, original, rtol=1e-6)
    # Same direction: a positive multiple of the original.
    np.testing.assert_allclose(
        clipped / norm, original / np.linalg.norm(original), rtol=1e-5, atol=1e-6
    )


def test_clip_value_on_strict_device1(no_host_reads):
    backend = pn.get_backend("array_api_strict", "device1")
    _, grad_seq = problem(seed=8)
    grads_h = grad_seq[0]
    new = clipped_gradients(backend, pn.SGD(1.0, clip_value=0.3, inplace=False), grads_h)
    for layer, layer_h in zip(to_host(backend, new), grads_h, strict=True):
        for key, value in layer.items():
            np.testing.assert_allclose(-value, np.clip(layer_h[key], -0.3, 0.3), rtol=1e-6)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_steps_without_host_reads(no_host_reads, name):
    """A full update (clipping, decay, the rule) runs on strict-device1 without host reads."""
    backend = pn.get_backend("array_api_strict", "device1")
    params_h, grad_seq = problem(seed=9)
    with pn.count_transfers() as count:
        params = to_device(backend, params_h, "float32")
        grads = [to_device(backend, g, "float32") for g in grad_seq]
        opt = make(name, "all", False)
        state = opt.init(params)
        for g, lr in zip(grads, LRS, strict=True):
            params, state = opt.update(params, g, state, lr)
    assert count.to_host == 0
    assert_on_backend(params[1]["W"], backend, "float32", (4, 2))


def test_clip_norm_global_across_backends(backend):
    _, grad_seq = problem(seed=10)
    new = clipped_gradients(
        backend, pn.SGD(1.0, clip_norm=0.25, inplace=backend.inplace), grad_seq[0]
    )
    norm = math.sqrt(
        sum(float(np.sum(v * v)) for layer in to_host(backend, new) for v in layer.values())
    )
    assert norm <= 0.25 * (1 + 1e-6)
    np.testing.assert_allclose(norm, 0.25, rtol=1e-5)


# -- schedules --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (pn.Constant(0.1), {0: 0.1, 1: 0.1, 50: 0.1}),
        (
            pn.StepDecay(0.1, factor=0.5, every=3),
            {0: 0.1, 2: 0.1, 3: 0.05, 5: 0.05, 6: 0.025, 9: 0.0125},
        ),
        (pn.ExponentialDecay(0.2, gamma=0.9), {0: 0.2, 1: 0.18, 2: 0.162, 10: 0.2 * 0.9**10}),
        (
            pn.CosineDecay(0.1, epochs=10, min_lr=0.01),
            {0: 0.1, 5: 0.055, 10: 0.01, 15: 0.01, 2: 0.01 + 0.045 * (1 + math.cos(math.pi * 0.2))},
        ),
        (pn.CosineDecay(0.1, epochs=4), {0: 0.1, 2: 0.05, 4: 0.0, 9: 0.0}),
    ],
    ids=["constant", "step", "exponential", "cosine-min", "cosine"],
)
def test_schedule_values(schedule, expected):
    for epoch, lr in expected.items():
        value = schedule(epoch)
        assert isinstance(value, float)
        assert value == pytest.approx(lr, rel=1e-12, abs=1e-15), (epoch, value, lr)
    # An optimizer evaluates its schedule per epoch.
    opt = pn.SGD(schedule)
    for epoch, lr in expected.items():
        assert opt.lr_at(epoch) == pytest.approx(lr, rel=1e-12, abs=1e-15)


def test_schedule_errors_and_float_rate():
    with pytest.raises(ValueError, match="every"):
        pn.StepDecay(0.1, every=0)
    assert pn.SGD(0.3).lr_at(7) == 0.3
