"""L1 and L2 on the backend matrix: NumPy oracle, central differences, torch autograd."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import assert_on_backend, assert_unchanged, host_copies, tolerance
from helpers.ops import GRAD_TOL, away_from_zero, on

import portnet as pn
from portnet.tools.gradcheck import numerical_gradient, relative_error

# -- regularizers ------------------------------------------------------------------
REGS = {"l1": pn.L1, "l2": pn.L2}


def reg_oracle(name, lam, W):
    if name == "l1":
        return lam * np.abs(W).sum(), lam * np.sign(W)
    return 0.5 * lam * (W**2).sum(), lam * W


def reg_weights(seed):
    return away_from_zero(np.random.default_rng(seed), (4, 3), margin=0.01)


@pytest.mark.parametrize("name", list(REGS))
def test_regularizer_value_and_gradient(backend, name):
    lam = 0.03
    W_h = reg_weights(11)
    W = on(backend, W_h)
    before = host_copies(W)
    penalty, grad = REGS[name](lam)(backend.xp, W)
    assert_on_backend(penalty, backend, "float32", ())
    assert_on_backend(grad, backend, "float32", W_h.shape)
    assert_unchanged(before, W)
    p_ref, g_ref = reg_oracle(name, lam, W_h)
    tol = tolerance("float32")
    np.testing.assert_allclose(float(backend.to_numpy(penalty)), p_ref, **tol)
    np.testing.assert_allclose(backend.to_numpy(grad), g_ref, **tol)


@pytest.mark.parametrize("name", list(REGS))
def test_regularizer_gradient_check(backend64, name):
    b = backend64
    f64 = b.dtype("float64")
    reg = REGS[name](0.07)
    W_h = reg_weights(12)  # |W| >= 0.01, far from the L1 kink for eps = 1e-6
    _, grad = reg(b.xp, b.asarray(W_h, f64))
    assert_on_backend(grad, b, "float64", W_h.shape)
    numeric = numerical_gradient(
        lambda v: float(b.to_numpy(reg(b.xp, b.asarray(v, f64))[0])), W_h.copy(), 1e-6
    )
    assert relative_error(b.to_numpy(grad), numeric) < GRAD_TOL


@pytest.mark.parametrize("name", list(REGS))
def test_regularizer_matches_torch_autograd(backend64, name):
    torch = pytest.importorskip("torch")
    lam = 0.05
    W_h = reg_weights(13)
    Wt = torch.tensor(W_h, requires_grad=True)
    value_t = lam * Wt.abs().sum() if name == "l1" else 0.5 * lam * (Wt**2).sum()
    value_t.backward()
    b = backend64
    penalty, grad = REGS[name](lam)(b.xp, on(b, W_h, "float64"))
    tol = tolerance("float64")
    np.testing.assert_allclose(float(b.to_numpy(penalty)), value_t.item(), **tol)
    np.testing.assert_allclose(b.to_numpy(grad), Wt.grad.numpy(), **tol)


def test_regularizer_rejects_bad_strength():
    with pytest.raises(pn.ConfigError, match=r"L2 strength must be in \[0, inf\], got -1.0"):
        pn.L2(-1.0)
    with pytest.raises(pn.ConfigError, match="L1 strength must be finite"):
        pn.L1(float("nan"))
    assert pn.L1(0.0).lam == 0.0  # the boundary is allowed


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_a_per_sample_penalty_is_divided_by_the_weight_sum(backend64, weighted):
    """scikit-learn's alpha: the step adds lam W / n to the gradient and, where the
    trainer reports penalties, lam |W|^2 / (2 n) to the loss; n is the batch's total
    sample weight (its size without weights)."""
    b, lam = backend64, 0.3
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    w = np.array([1.0, 2.0, 0.0, 3.0, 1.0]) if weighted else np.ones(5)
    model = pn.Model(
        [pn.Dense(3, 2)],
        loss="half_squared_error",
        optimizer="sgd",
        regularizers=[pn.L2(lam, per_sample=True)],
        backend=b,
        dtype="float64",
    )
    model.trainer.loss_includes_penalty = True
    W, bias = (model.get_weights()[0][k] for k in ("W", "b"))
    ctx = pn.Context(xp=b.xp, training=True, need_input_grad=False)
    loss, _, grads, _ = model.trainer.loss_and_grads(
        model.params, on(b, X, "float64"), on(b, y, "float64"), ctx,
        sample_weight=on(b, w, "float64") if weighted else None,
    )  # fmt: skip
    residual = X @ W + bias - y
    n = w.sum()
    expected_loss = np.sum(w * 0.5 * np.sum(residual**2, axis=1)) / n + 0.5 * lam * np.sum(W**2) / n
    expected_grad = X.T @ (w[:, None] * residual) / n + lam * W / n
    tol = tolerance("float64")
    np.testing.assert_allclose(float(b.to_numpy(loss)), expected_loss, **tol)
    np.testing.assert_allclose(b.to_numpy(grads[0]["W"]), expected_grad, **tol)


def test_a_per_sample_penalty_is_saved_with_the_model(tmp_path):
    reg = pn.L2(0.2, per_sample=True)
    assert reg.get_config() == {"lam": 0.2, "per_sample": True} and "per_sample" in repr(reg)
    assert pn.L2(0.2).get_config() == {"lam": 0.2}  # files of plain penalties are unchanged
    pn.Model([pn.Dense(3, 2)], regularizers=[reg]).save(tmp_path / "m.npz")
    (loaded,) = pn.Model.load(tmp_path / "m.npz").regularizers
    assert isinstance(loaded, pn.L2) and (loaded.lam, loaded.per_sample) == (0.2, True)
