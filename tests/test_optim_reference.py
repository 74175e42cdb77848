"""Optimizers against references.

Each optimizer is compared, step by step, with a float64 NumPy reference written
from the formulas in ``portnet/training/optim.py``'s docstrings, and with ``torch.optim``
where torch has the same rule; EMA momentum against classic momentum.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.arrays import assert_on_backend, tolerance
from helpers.optim import (
    LRS,
    OPTIMIZERS,
    VARIANTS,
    assert_trees_close,
    make,
    problem,
    run_portnet,
    to_device,
    to_host,
)

import portnet as pn


# -- the reference, from the docstrings -----------------------------------------------------
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
            elif name == "momentum-nesterov":  # the look-ahead step, rate inside v
                s["v"] = hyper["gamma"] * s.get("v", 0.0) - lr * g
                p = p + hyper["gamma"] * s["v"] - lr * g
            elif name == "momentum-ema":
                s["v"] = hyper["gamma"] * s.get("v", 0.0) + (1 - hyper["gamma"]) * g
                p = p - lr * s["v"]
            elif name == "nesterov":
                s["v"] = hyper["gamma"] * s.get("v", 0.0) + g
                p = p - lr * (g + hyper["gamma"] * s["v"])
            elif name == "rmsprop":
                s["s"] = hyper["rho"] * s.get("s", 0.0) + (1 - hyper["rho"]) * g * g
                p = p - lr * g / (np.sqrt(s["s"]) + hyper["eps"])
            elif name.startswith("adam"):
                b1, b2 = hyper["beta1"], hyper["beta2"]
                s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
                s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
                if hyper.get("form") == "efficient":  # the paper's Section 2 reordering
                    lr_t = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
                    p = p - lr_t * s["m"] / (np.sqrt(s["v"]) + hyper["eps"])
                else:
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
    if name in ("nesterov", "momentum-nesterov"):
        # Both forms take the same steps at a constant rate (they differ once it changes).
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
        name in ("momentum-ema", "adam-efficient")  # torch has neither form
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
