"""The optimizers' in-place path against their portable path, and what each may write."""

from __future__ import annotations

import numpy as np
import portnet.backends.ops
import pytest
from helpers.arrays import assert_on_backend
from helpers.optim import (
    LRS,
    OPTIMIZERS,
    assert_trees_close,
    make,
    problem,
    run_portnet,
    to_device,
    to_host,
)
from portnet.backends.ops import ops_for

import portnet as pn


# -- in-place path against the portable path -----------------------------------------------------
@pytest.mark.parametrize("variant", ["plain", "all"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize(
    "backend_case", [("numpy", None), ("torch", "cpu")], ids=["numpy", "torch-cpu"]
)
def test_inplace_equals_portable(backend_case, name, variant):
    if backend_case[0] == "torch":
        pytest.importorskip("torch")
    backend = pn.get_backend(*backend_case)
    params_h, grad_seq = problem(seed=2)
    portable, _ = run_portnet(backend, make(name, variant, False), params_h, grad_seq, LRS)
    inplace, _ = run_portnet(backend, make(name, variant, True), params_h, grad_seq, LRS)
    assert_trees_close(to_host(backend, inplace), to_host(backend, portable), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_inplace_path_updates_in_place(numpy_backend, name):
    """The in-place path returns the same parameter arrays, mutated."""
    params_h, grad_seq = problem(seed=3)
    params = to_device(numpy_backend, params_h, "float32")
    opt = make(name, "weight_decay", True)
    new, _ = opt.update(
        params, to_device(numpy_backend, grad_seq[0], "float32"), opt.init(params), 0.1
    )
    for old_layer, new_layer in zip(params, new, strict=True):
        for key in old_layer:
            assert new_layer[key] is old_layer[key]
    assert not np.allclose(numpy_backend.to_numpy(params[0]["W"]), params_h[0]["W"])


@pytest.mark.parametrize(
    "backend_case", [("numpy", None), ("torch", "cpu")], ids=["numpy", "torch-cpu"]
)
def test_inplace_training_leaves_host_weights_unchanged(backend_case):
    """Weights handed to set_weights stay the caller's: in-place steps must not write into them.

    On a GPU the device copy is separate by nature; NumPy and torch-cpu must copy too.
    """
    if backend_case[0] == "torch":
        pytest.importorskip("torch")
    model = pn.Model(
        [pn.Dense(3, 4), pn.Tanh(), pn.Dense(4, 2)],
        optimizer=pn.SGD(0.1),
        backend=pn.get_backend(*backend_case),
    )
    assert model.optimizer.ops_for(model.backend.xp).inplace
    host = model.get_weights()  # float32 host arrays, the model's dtype
    before = [{k: v.copy() for k, v in layer.items()} for layer in host]
    model.set_weights(host)
    rng = np.random.default_rng(12)
    model.fit(
        rng.normal(size=(16, 3)).astype(np.float32),
        rng.integers(0, 2, 16),
        epochs=1,
        batch_size=8,
        verbose=0,
    )
    assert not np.allclose(model.get_weights()[0]["W"], before[0]["W"])  # training did happen
    assert_trees_close(host, before, rtol=0, atol=0)


@pytest.mark.parametrize(
    "backend_case", [("numpy", None), ("torch", "cpu")], ids=["numpy", "torch-cpu"]
)
def test_inplace_training_equals_portable_training(backend_case):
    """The whole in-place path (bias add, ReLU mask, momentum update) trains exactly as
    the portable one: same data, same seed, two epochs, float64."""
    if backend_case[0] == "torch":
        pytest.importorskip("torch")
    backend = pn.get_backend(*backend_case)
    rng = np.random.default_rng(21)
    X, y = rng.normal(size=(96, 12)), rng.integers(0, 5, 96)
    weights = []
    for inplace in (True, False):
        model = pn.Model(
            pn.mlp([12, 16, 8, 5], "relu", dropout=0.2),
            optimizer=pn.Momentum(0.05, inplace=inplace),
            backend=backend,
            dtype="float64",
            seed=3,
        )
        assert model.optimizer.ops_for(model.backend.xp).inplace is inplace
        model.fit(X, y, epochs=2, batch_size=16, verbose=0)
        weights.append(model.get_weights())
    assert_trees_close(weights[0], weights[1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_portable_path_leaves_inputs_unchanged(backend, name):
    params_h, grad_seq = problem(seed=4)
    params = to_device(backend, params_h, "float32")
    grads = to_device(backend, grad_seq[0], "float32")
    opt = make(name, "all", False)
    state = opt.init(params)
    before_p, before_g = to_host(backend, params), to_host(backend, grads)
    new, _ = opt.update(params, grads, state, 0.1)
    assert_trees_close(to_host(backend, params), before_p, rtol=0, atol=0)
    assert_trees_close(to_host(backend, grads), before_g, rtol=0, atol=0)
    assert not np.allclose(to_host(backend, new)[0]["W"], before_p[0]["W"])


@pytest.mark.parametrize("variant", ["plain", "all"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_portable_path_same_numbers_on_strict_device1(name, variant):
    numpy_backend = pn.get_backend("numpy")
    strict = pn.get_backend("array_api_strict", "device1")
    params_h, grad_seq = problem(seed=5)
    on_numpy, _ = run_portnet(numpy_backend, make(name, variant, False), params_h, grad_seq, LRS)
    on_strict, _ = run_portnet(strict, make(name, variant, False), params_h, grad_seq, LRS)
    assert_on_backend(on_strict[0]["W"], strict, "float32", (3, 4))
    assert_trees_close(
        to_host(strict, on_strict), to_host(numpy_backend, on_numpy), rtol=1e-6, atol=1e-7
    )


# -- block by block (Ops.blocks): the same bits as whole arrays ---------------------------
def big_problem(seed=0):
    """A parameter large enough to be updated in cache-sized blocks, and its gradients."""
    rng = np.random.default_rng(seed)
    n_steps = len(LRS)
    params = [{"W": rng.normal(size=(300, 500)), "b": rng.normal(size=500)}]
    grads = [[{k: rng.normal(size=v.shape) for k, v in params[0].items()}] for _ in range(n_steps)]
    return params, grads


@pytest.mark.parametrize("variant", ["plain", "all"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_blockwise_updates_equal_whole_array_updates_bit_for_bit(
    numpy_backend, monkeypatch, name, variant
):
    params_h, grad_seq = big_problem()
    W = pn.get_backend("numpy").asarray(params_h[0]["W"], "float32")
    assert ops_for(np).blocks(W) is not None  # 600 kB: blocked
    assert ops_for(np).with_inplace(False).blocks(W) is None  # rebinding: whole arrays
    blocked, blocked_state = run_portnet(
        numpy_backend, make(name, variant, True), params_h, grad_seq, LRS
    )
    monkeypatch.setattr(portnet.backends.ops, "_BLOCK_BYTES", 2**40)  # one block: whole arrays
    assert ops_for(np).blocks(W) is None
    whole, whole_state = run_portnet(
        numpy_backend, make(name, variant, True), params_h, grad_seq, LRS
    )
    for key in ("W", "b"):
        np.testing.assert_array_equal(blocked[0][key], whole[0][key])
    for slots_a, slots_b in zip(
        blocked_state["slots"][0].values(), whole_state["slots"][0].values(), strict=True
    ):
        for a, b in zip(slots_a.values(), slots_b.values(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_blockwise_penalty_gradients_equal_whole_array_ones(numpy_backend, monkeypatch):
    rng = np.random.default_rng(4)
    trainer = pn.Trainer(pn.Sequential([pn.Dense(300, 500)]), pn.get_loss("mse"), pn.SGD(0.1),
                         [pn.L2(0.3, per_sample=True), pn.L1(0.01)])  # fmt: skip
    params = [{"W": rng.normal(size=(300, 500)).astype(np.float32), "b": np.zeros(500, np.float32)}]
    results = []
    for block_bytes in (portnet.backends.ops._BLOCK_BYTES, 2**40):
        monkeypatch.setattr(portnet.backends.ops, "_BLOCK_BYTES", block_bytes)
        grads = [{k: np.ones_like(v) for k, v in params[0].items()}]
        results.append(trainer.add_penalty_grads(np, params, grads, 0.5, 7, inplace=True)[0]["W"])
    np.testing.assert_array_equal(results[0], results[1])
    expected = 1 + 0.5 * (0.3 * params[0]["W"] / 7 + 0.01 * np.sign(params[0]["W"]))
    np.testing.assert_allclose(results[0], expected, rtol=1e-6)


def test_a_non_contiguous_gradient_is_updated_whole_not_in_lost_blocks(numpy_backend):
    """A transposed (non-contiguous) gradient has no flat view to write blocks through."""
    params_h, grad_seq = big_problem()
    params = to_device(numpy_backend, params_h, "float32")
    grads = [{"W": np.ascontiguousarray(grad_seq[0][0]["W"].T, dtype=np.float32).T,
              "b": grad_seq[0][0]["b"].astype(np.float32)}]  # fmt: skip
    assert not grads[0]["W"].flags.c_contiguous
    assert ops_for(np).blocks(params[0]["W"], grads[0]["W"]) is None
    expected = params_h[0]["W"] - 0.1 * grad_seq[0][0]["W"]
    updated, _ = pn.SGD(0.1, inplace=True).update(params, grads, pn.SGD(0.1).init(params), 0.1)
    np.testing.assert_allclose(updated[0]["W"], expected, rtol=1e-5, atol=1e-6)
