"""Optimizers, gradient clipping and learning-rate schedules.

Each optimizer is compared, step by step, with a float64 NumPy reference written
from the formulas in ``portnet/optim.py``'s docstrings, with ``torch.optim`` where
torch has the same rule, and its in-place path with its portable path.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import assert_on_backend, tolerance

import portnet as pn

# -- the reference, from the docstrings -----------------------------------------------------
OPTIMIZERS = {
    "sgd": (pn.SGD, {}),
    "momentum-classic": (pn.Momentum, {"gamma": 0.8, "form": "classic"}),
    "momentum-ema": (pn.Momentum, {"gamma": 0.8, "form": "ema"}),
    "nesterov": (pn.Nesterov, {"gamma": 0.7}),
    # eps large enough that where it is added (inside or outside the root) shows.
    "rmsprop": (pn.RMSProp, {"rho": 0.85, "eps": 1e-3}),
    "adam": (pn.Adam, {"beta1": 0.8, "beta2": 0.95, "eps": 1e-3}),
}

VARIANTS = {
    "plain": {},
    "weight_decay": {"weight_decay": 0.1},
    "clip_norm": {"clip_norm": 0.5},
    "clip_value": {"clip_value": 0.3},
    "all": {"weight_decay": 0.05, "clip_norm": 1.0, "clip_value": 0.5},
}

LRS = [0.1, 0.05, 0.08, 0.1]  # one rate per step, passed to update()


def reference_step(
    name, hyper, params, grads, slots, lr, t, *, weight_decay=0.0, clip_norm=None, clip_value=None
):
    """One step on host float64 trees (list of dicts), written from the docstrings."""
    if clip_value is not None:
        grads = [
            {k: np.clip(g, -clip_value, clip_value) for k, g in layer.items()} for layer in grads
        ]
    if clip_norm is not None:
        total = math.sqrt(sum(float(np.sum(g * g)) for layer in grads for g in layer.values()))
        scale = min(clip_norm / (total + 1e-12), 1.0)
        grads = [{k: g * scale for k, g in layer.items()} for layer in grads]
    new = []
    for layer_p, layer_g, layer_s in zip(params, grads, slots, strict=True):
        out = {}
        for key, p in layer_p.items():
            g, s = layer_g[key], layer_s[key]
            if weight_decay and key == "W":  # decoupled decay, weights only
                p = p * (1.0 - lr * weight_decay)
            if name == "sgd":
                p = p - lr * g
            elif name == "momentum-classic":
                s["v"] = hyper["gamma"] * s.get("v", 0.0) - lr * g
                p = p + s["v"]
            elif name == "momentum-ema":
                s["v"] = hyper["gamma"] * s.get("v", 0.0) + (1 - hyper["gamma"]) * g
                p = p - lr * s["v"]
            elif name == "nesterov":
                s["v"] = hyper["gamma"] * s.get("v", 0.0) + g
                p = p - lr * (g + hyper["gamma"] * s["v"])
            elif name == "rmsprop":
                s["s"] = hyper["rho"] * s.get("s", 0.0) + (1 - hyper["rho"]) * g * g
                p = p - lr * g / (np.sqrt(s["s"]) + hyper["eps"])
            elif name == "adam":
                b1, b2 = hyper["beta1"], hyper["beta2"]
                s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
                s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
                m_hat, v_hat = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
                p = p - lr * m_hat / (np.sqrt(v_hat) + hyper["eps"])
            out[key] = p
        new.append(out)
    return new


def reference_run(name, hyper, variant, params, grad_seq, lrs):
    slots = [{k: {} for k in layer} for layer in params]
    for t, (grads, lr) in enumerate(zip(grad_seq, lrs, strict=True), start=1):
        params = reference_step(name, hyper, params, grads, slots, lr, t, **variant)
    return params


def problem(seed=0, n_steps=4):
    """Two layers of parameters and a gradient per step, as host float64 arrays."""
    rng = np.random.default_rng(seed)
    params = [
        {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4)},
        {"W": rng.normal(size=(4, 2))},
    ]
    grads = [
        [{k: rng.normal(size=v.shape) for k, v in layer.items()} for layer in params]
        for _ in range(n_steps)
    ]
    return params, grads


def to_device(backend, tree, dtype):
    # Fresh host copies: NumPy and torch-cpu may alias host data, which the in-place path mutates.
    return [
        {k: backend.asarray(np.array(v, copy=True), dtype) for k, v in layer.items()}
        for layer in tree
    ]


def to_host(backend, tree):
    return [
        {k: np.array(backend.to_numpy(v), dtype=np.float64) for k, v in layer.items()}
        for layer in tree
    ]


def run_portnet(backend, opt, params_h, grad_seq_h, lrs, dtype="float32"):
    params = to_device(backend, params_h, dtype)
    state = opt.init(params)
    for grads_h, lr in zip(grad_seq_h, lrs, strict=True):
        params, state = opt.update(params, to_device(backend, grads_h, dtype), state, lr)
    return params, state


def make(name, variant, inplace):
    cls, hyper = OPTIMIZERS[name]
    return cls(0.1, **hyper, **VARIANTS[variant], inplace=inplace)


def assert_trees_close(actual, expected, **tol):
    for a_layer, e_layer in zip(actual, expected, strict=True):
        assert set(a_layer) == set(e_layer)
        for key in e_layer:
            np.testing.assert_allclose(a_layer[key], e_layer[key], err_msg=key, **tol)


# -- against the NumPy reference, on every backend ---------------------------------------------
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_reference(backend, name, variant):
    params_h, grad_seq = problem()
    opt = make(name, variant, inplace=backend.inplace)
    params, state = run_portnet(backend, opt, params_h, grad_seq, LRS)
    assert state["t"] == len(LRS)
    for layer, layer_h in zip(params, params_h, strict=True):
        for key, p in layer.items():
            assert_on_backend(p, backend, "float32", layer_h[key].shape)
    expected = reference_run(name, OPTIMIZERS[name][1], VARIANTS[variant], params_h, grad_seq, LRS)
    assert_trees_close(to_host(backend, params), expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("variant", ["plain", "all"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_reference_float64(backend64, name, variant):
    params_h, grad_seq = problem(seed=1)
    opt = make(name, variant, inplace=backend64.inplace)
    params, _ = run_portnet(backend64, opt, params_h, grad_seq, LRS, dtype="float64")
    assert_on_backend(params[0]["W"], backend64, "float64", (3, 4))
    expected = reference_run(name, OPTIMIZERS[name][1], VARIANTS[variant], params_h, grad_seq, LRS)
    assert_trees_close(to_host(backend64, params), expected, **tolerance("float64"))


def test_optimizer_slots_on_backend(backend):
    params = to_device(backend, problem()[0], "float32")
    state = pn.Adam(0.1).init(params)
    assert state["t"] == 0
    assert state["decay_mask"] == [("W",), ("W",)]
    for layer_s, layer_p in zip(state["slots"], params, strict=True):
        for key, p in layer_p.items():
            for buf in layer_s[key].values():
                assert_on_backend(buf, backend, "float32", tuple(p.shape))
                assert np.all(backend.to_numpy(buf) == 0)


def test_decay_mask_limits_weight_decay(numpy_backend):
    """Only the names in decay_mask are decayed; with zero gradients only they change."""
    params_h, _ = problem()
    zero = [{k: np.zeros_like(v) for k, v in layer.items()} for layer in params_h]
    opt = pn.SGD(0.1, weight_decay=0.5, inplace=False)
    params = to_device(numpy_backend, params_h, "float64")
    state = opt.init(params, decay_mask=[("W", "b"), ()])
    new, _ = opt.update(params, to_device(numpy_backend, zero, "float64"), state, 0.1)
    new = to_host(numpy_backend, new)
    np.testing.assert_allclose(new[0]["W"], params_h[0]["W"] * 0.95)
    np.testing.assert_allclose(new[0]["b"], params_h[0]["b"] * 0.95)
    np.testing.assert_array_equal(new[1]["W"], params_h[1]["W"])


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
    assert model.optimizer.updates_for(model.backend.xp).inplace
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
        assert model.optimizer.updates_for(model.backend.xp).inplace is inplace
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


# -- against torch.optim ---------------------------------------------------------------------
def torch_optimizer(torch, name, variant, tensors):
    """The torch.optim rule equal to ours, or None. ``tensors`` is a list of dicts."""
    wd = VARIANTS[variant].get("weight_decay", 0.0)
    decayed = [t for layer in tensors for k, t in layer.items() if k == "W"]
    rest = [t for layer in tensors for k, t in layer.items() if k != "W"]
    hyper = OPTIMIZERS[name][1]
    lr = 0.1
    if name == "sgd":
        # torch's coupled decay p -= lr (g + wd p) equals our decoupled one for plain SGD.
        groups = [{"params": decayed, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]
        return torch.optim.SGD(groups, lr=lr)
    if wd:
        if name != "adam":
            return None  # torch couples decay into the gradient; ours is decoupled
        groups = [{"params": decayed, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]
        return torch.optim.AdamW(
            groups, lr=lr, betas=(hyper["beta1"], hyper["beta2"]), eps=hyper["eps"]
        )
    params = decayed + rest
    if name == "momentum-classic":
        # buf = mu buf + g; p -= lr buf  equals  v = mu v - lr g; p += v  at a constant rate.
        return torch.optim.SGD(params, lr=lr, momentum=hyper["gamma"])
    if name == "nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=hyper["gamma"], nesterov=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=hyper["rho"], eps=hyper["eps"])
    if name == "adam":
        return torch.optim.Adam(
            params, lr=lr, betas=(hyper["beta1"], hyper["beta2"]), eps=hyper["eps"]
        )
    return None  # the EMA form: torch's dampening skips the first step


TORCH_CASES = [
    (name, variant)
    for name in OPTIMIZERS
    for variant in VARIANTS
    if not (
        name == "momentum-ema"
        or (VARIANTS[variant].get("weight_decay") and name not in ("sgd", "adam"))
    )
]


@pytest.mark.parametrize("inplace", [False, True], ids=["portable", "inplace"])
@pytest.mark.parametrize(("name", "variant"), TORCH_CASES)
def test_optimizer_matches_torch_optim(name, variant, inplace):
    torch = pytest.importorskip("torch")
    backend = pn.get_backend("torch", "cpu")
    params_h, grad_seq = problem(seed=6)
    tensors = [
        {k: torch.tensor(v, requires_grad=True) for k, v in layer.items()} for layer in params_h
    ]
    opt_t = torch_optimizer(torch, name, variant, tensors)
    assert opt_t is not None
    leaves = [t for layer in tensors for t in layer.values()]
    clip = VARIANTS[variant]
    for grads in grad_seq:
        for layer_t, layer_g in zip(tensors, grads, strict=True):
            for key, t in layer_t.items():
                t.grad = torch.tensor(layer_g[key])
        if clip.get("clip_value") is not None:
            torch.nn.utils.clip_grad_value_(leaves, clip["clip_value"])
        if clip.get("clip_norm") is not None:
            torch.nn.utils.clip_grad_norm_(leaves, clip["clip_norm"])
        opt_t.step()
    expected = [{k: t.detach().numpy() for k, t in layer.items()} for layer in tensors]

    lrs = [0.1] * len(grad_seq)  # torch's momentum buffers match ours at a constant rate
    ours, _ = run_portnet(backend, make(name, variant, inplace), params_h, grad_seq, lrs, "float64")
    # torch's clip_grad_norm_ adds 1e-6 to the norm where we add 1e-12.
    tol = {"rtol": 1e-6, "atol": 1e-7} if "clip_norm" in clip else tolerance("float64")
    assert_trees_close(to_host(backend, ours), expected, **tol)


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


# -- EMA momentum equals classic momentum with a rescaled rate -------------------------------
def run_momentum(form, lr, gamma, params_h, grad_seq):
    backend = pn.get_backend("numpy")
    opt = pn.Momentum(lr, gamma=gamma, form=form, inplace=False)
    params, _ = run_portnet(backend, opt, params_h, grad_seq, [lr] * len(grad_seq), "float64")
    return to_host(backend, params)


def check_ema_equals_classic(lr, gamma, seed, n_steps):
    params_h, grad_seq = problem(seed=seed, n_steps=n_steps)
    ema = run_momentum("ema", lr, gamma, params_h, grad_seq)
    classic = run_momentum("classic", lr * (1 - gamma), gamma, params_h, grad_seq)
    assert_trees_close(ema, classic, rtol=1e-10, atol=1e-12)


def test_ema_momentum_equals_classic_with_scaled_rate():
    check_ema_equals_classic(0.1, 0.9, seed=11, n_steps=6)


def test_ema_momentum_equals_classic_property():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=25, deadline=None, derandomize=True)
    @hypothesis.given(
        lr=st.floats(1e-4, 1.0),
        gamma=st.floats(0.0, 0.99),
        seed=st.integers(0, 2**16),
        n_steps=st.integers(1, 6),
    )
    def prop(lr, gamma, seed, n_steps):
        check_ema_equals_classic(lr, gamma, seed, n_steps)

    prop()


def test_momentum_rejects_bad_arguments():
    with pytest.raises(ValueError, match="form"):
        pn.Momentum(0.1, form="heavy-ball")
    with pytest.raises(ValueError, match="gamma"):
        pn.Momentum(0.1, gamma=1.0)
