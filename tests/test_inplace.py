"""In-place updates: one decision (the library's Ops), same numbers, inputs left alone."""

from __future__ import annotations

import numpy as np
import pytest
from portnet.backends.ops import ops_for

import portnet as pn

NETWORK = [
    pn.Conv2D(1, 3, 3, padding=1),
    pn.BatchNorm(3),
    pn.ReLU(),
    pn.MaxPool2D(2),
    pn.Flatten(),
    pn.Dense(48, 16),
    pn.BatchNorm(16),
    pn.LeakyReLU(0.1),
    pn.Dense(16, 5),
    pn.Tanh(),
]


def test_the_capability_follows_the_array_library(backend):
    expected = backend.name in ("numpy", "torch", "cupy")
    assert ops_for(backend.xp).can_mutate is expected
    assert backend.inplace is expected
    assert ops_for(backend.xp).inplace is expected
    assert ops_for(backend.xp).with_inplace(None).inplace is expected
    assert ops_for(backend.xp).with_inplace(False).inplace is False
    assert ops_for(backend.xp).with_inplace(False).with_inplace(None) is backend.ops


def test_forcing_in_place_where_arrays_cannot_change_is_refused():
    pytest.importorskip("array_api_strict")
    strict = pn.get_backend("array_api_strict")
    with pytest.raises(pn.ConfigError, match="cannot be updated in place"):
        ops_for(strict.xp).with_inplace(True)
    with pytest.raises(pn.ConfigError, match="cannot be updated in place"):
        pn.Model([pn.Dense(2, 2)], optimizer=pn.SGD(0.1, inplace=True), backend=strict).fit(
            np.zeros((4, 2)), np.zeros(4, dtype=int), epochs=1, verbose=0
        )


def test_updates_mutate_only_in_place():
    a, b = np.ones(3), np.full(3, 2.0)
    inplace, rebinding = ops_for(np), ops_for(np).with_inplace(False)
    rebound = rebinding.sub(a, b)
    assert rebound is not a and a.tolist() == [1.0, 1.0, 1.0]
    mutated = inplace.sub(a, b)
    assert mutated is a and a.tolist() == [-1.0, -1.0, -1.0]
    scratch = np.zeros(3)
    assert inplace.assign(scratch, b) is scratch and scratch.tolist() == [2.0] * 3
    assert rebinding.assign(scratch, a) is a


@pytest.mark.parametrize("case", ["numpy", "torch-cpu"])
def test_in_place_layer_path_leaves_inputs_and_weights_unchanged(case):
    """The in-place path of every layer gives the portable path's outputs and gradients,
    and never writes into its input or its parameters."""
    if case == "torch-cpu":
        pytest.importorskip("torch")
    backend = pn.get_backend(*{"numpy": ("numpy",), "torch-cpu": ("torch", "cpu")}[case])
    network = pn.Sequential(NETWORK)
    rng = np.random.default_rng(0)
    host_params = network.init(rng)
    x_host = rng.normal(size=(6, 1, 8, 8)).astype(np.float32)
    dy_host = rng.normal(size=(6, 5)).astype(np.float32)
    results = {}
    for inplace in (False, True):
        params = [{k: backend.asarray(v, "float32") for k, v in p.items()} for p in host_params]
        x = backend.asarray(x_host)
        ctx = pn.Context(xp=backend.xp, training=True, ops=backend.ops.with_inplace(inplace))
        y, backprop, updates = network.forward_with_state(params, x, ctx)
        dx, grads = backprop(backend.asarray(dy_host))
        np.testing.assert_array_equal(backend.to_numpy(x), x_host)
        for p, p_host in zip(params, host_params, strict=True):
            for key, value in p.items():
                np.testing.assert_array_equal(backend.to_numpy(value), p_host[key].astype("f4"))
        results[inplace] = (
            backend.to_numpy(y),
            backend.to_numpy(dx),
            [{k: backend.to_numpy(v) for k, v in g.items()} for g in grads],
            [{k: backend.to_numpy(v) for k, v in u.items()} for u in updates],
        )
    (y0, dx0, g0, u0), (y1, dx1, g1, u1) = results[False], results[True]
    np.testing.assert_allclose(y1, y0, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-5, atol=1e-6)
    for a, b in zip(g1 + u1, g0 + u0, strict=True):
        assert set(a) == set(b)
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert [sorted(u) for u in u0] == [
        [],
        ["running_mean", "running_var"],
        [],
        [],
        [],
        [],
        ["running_mean", "running_var"],
        [],
        [],
        [],
    ]
