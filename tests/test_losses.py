"""Every loss on the backend matrix.

Value and gradient against float64 NumPy oracles, inputs unchanged, extreme logits,
float64 central differences, and torch autograd as a second oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import assert_on_backend, assert_unchanged, host_copies, tolerance
from helpers.ops import GRAD_TOL, np_log_softmax, np_sigmoid, np_softmax, on

import portnet as pn
from portnet.tools.gradcheck import numerical_gradient, relative_error


# -- losses ------------------------------------------------------------------------
def loss_data(case, seed=0, n=6, k=4):
    """(loss object, host logits float64, host targets) for a loss case."""
    rng = np.random.default_rng(seed)
    if case == "sce-labels":
        return pn.SoftmaxCrossEntropy(), rng.normal(size=(n, k)) * 2, rng.integers(0, k, n)
    if case == "sce-smooth":
        return (
            pn.SoftmaxCrossEntropy(label_smoothing=SMOOTHING),
            rng.normal(size=(n, k)) * 2,
            rng.integers(0, k, n),
        )
    if case == "sce-onehot":
        return (
            pn.SoftmaxCrossEntropy(),
            rng.normal(size=(n, k)) * 2,
            np.eye(k)[rng.integers(0, k, n)],
        )
    if case == "bce-1d":
        return (
            pn.SigmoidBinaryCrossEntropy(),
            rng.normal(size=n) * 2,
            rng.integers(0, 2, n).astype(float),
        )
    if case == "bce-2d":
        return (
            pn.SigmoidBinaryCrossEntropy(),
            rng.normal(size=(n, 1)) * 2,
            rng.integers(0, 2, (n, 1)).astype(float),
        )
    if case == "bce-multilabel":
        return (
            pn.SigmoidBinaryCrossEntropy(),
            rng.normal(size=(n, 3)) * 2,
            rng.integers(0, 2, (n, 3)).astype(float),
        )
    if case == "mse":
        return pn.MeanSquaredError(), rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    if case == "half-se":
        return pn.HalfSquaredError(), rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    if case == "poisson":  # log-means and counts, zeros among them
        return pn.HalfPoissonDeviance(), rng.normal(size=(n, 3)), rng.poisson(1.5, (n, 3))
    raise AssertionError(case)


SMOOTHING = 0.1
LOSS_CASES = [
    "sce-labels",
    "sce-smooth",
    "sce-onehot",
    "bce-1d",
    "bce-2d",
    "bce-multilabel",
    "mse",
    "half-se",
    "poisson",
]
# A log-link output of 1e4 is a mean of e^10000: no float holds it.
EXTREME_CASES = [case for case in LOSS_CASES if case != "poisson"]


def loss_oracle(case, z, t):
    """(value, gradient) in float64, in the textbook forms."""
    n = z.shape[0]
    if case.startswith("sce"):
        onehot = np.eye(z.shape[1])[t] if t.ndim == 1 else t
        if case == "sce-smooth":
            onehot = onehot * (1 - SMOOTHING) + SMOOTHING / z.shape[1]
        return -np.sum(onehot * np_log_softmax(z)) / n, (np_softmax(z) - onehot) / n
    if case.startswith("bce"):
        value = np.sum(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))) / n
        return value, (np_sigmoid(z) - t) / n
    if case == "half-se":
        return 0.5 * np.sum((z - t) ** 2) / n, (z - t) / n
    if case == "poisson":
        t_log_t = np.where(t > 0, t * np.log(np.where(t > 0, t, 1)), 0.0)
        return np.sum(np.exp(z) - t * z + t_log_t - t) / n, (np.exp(z) - t) / n
    return np.mean((z - t) ** 2), 2 * (z - t) / z.size


def targets_on(backend, t, dtype):
    if t.dtype.kind == "i" and t.ndim == 1:
        return backend.asarray(t, "int64")
    return backend.asarray(t, dtype)


@pytest.mark.parametrize("case", LOSS_CASES)
def test_loss_value_and_gradient(backend, case):
    loss, z_h, t_h = loss_data(case)
    z, t = on(backend, z_h), targets_on(backend, t_h, "float32")
    z_before, t_before = host_copies(z), host_copies(t)
    value, grad = loss(z, t)
    assert_on_backend(value, backend, "float32", ())
    assert_on_backend(grad, backend, "float32", z_h.shape)
    assert_unchanged(z_before, z)
    assert_unchanged(t_before, t)
    v_ref, g_ref = loss_oracle(case, z_h, t_h)
    tol = tolerance("float32")
    np.testing.assert_allclose(float(backend.to_numpy(value)), v_ref, **tol)
    np.testing.assert_allclose(backend.to_numpy(grad), g_ref, **tol)
    # grad_scale (the learning rate the loop folds in) scales the gradient, not the value.
    scaled_value, scaled_grad = loss(z, t, grad_scale=0.25)
    np.testing.assert_allclose(backend.to_numpy(scaled_value), backend.to_numpy(value))
    np.testing.assert_allclose(backend.to_numpy(scaled_grad), 0.25 * g_ref, **tol)


def test_sigmoid_bce_accepts_mixed_target_shapes(backend):
    """(N, 1) logits with (N,) targets and the reverse give the same loss."""
    _, z_h, t_h = loss_data("bce-2d")
    loss = pn.SigmoidBinaryCrossEntropy()
    v1, g1 = loss(on(backend, z_h), on(backend, t_h[:, 0]))
    v2, g2 = loss(on(backend, z_h[:, 0]), on(backend, t_h))
    assert_on_backend(g1, backend, "float32", (6, 1))
    assert_on_backend(g2, backend, "float32", (6,))
    v_ref, g_ref = loss_oracle("bce-2d", z_h, t_h)
    tol = tolerance("float32")
    np.testing.assert_allclose(float(backend.to_numpy(v1)), v_ref, **tol)
    np.testing.assert_allclose(float(backend.to_numpy(v2)), v_ref, **tol)
    np.testing.assert_allclose(backend.to_numpy(g1), g_ref, **tol)
    np.testing.assert_allclose(backend.to_numpy(g2), g_ref[:, 0], **tol)


@pytest.mark.parametrize("case", EXTREME_CASES)
def test_loss_extreme_logits(backend, case):
    """Logits of +-1e4 in float32: finite, correct value and gradient."""
    loss, z_h, t_h = loss_data(case, seed=8)
    z_h = np.where(z_h >= 0, 1e4, -1e4)
    if case.startswith("sce"):
        z_h[:, 0] = 0.0  # a mix of huge, tiny and moderate logits in each row
    value, grad = loss(on(backend, z_h), targets_on(backend, t_h, "float32"))
    assert_on_backend(value, backend, "float32", ())
    assert_on_backend(grad, backend, "float32", z_h.shape)
    v, g = float(backend.to_numpy(value)), backend.to_numpy(grad)
    assert np.isfinite(v) and np.all(np.isfinite(g)), (v, g)
    v_ref, g_ref = loss_oracle(case, z_h, t_h)
    assert v_ref > 100 or case.endswith("se")  # the targets disagree with some huge logits
    np.testing.assert_allclose(v, v_ref, **tolerance("float32"))
    np.testing.assert_allclose(g, g_ref, **tolerance("float32"))


@pytest.mark.parametrize("case", LOSS_CASES)
def test_loss_gradient_check(backend64, case):
    b = backend64
    f64 = b.dtype("float64")
    loss, z_h, t_h = loss_data(case, seed=9)
    t = targets_on(b, t_h, "float64")
    value, grad = loss(b.asarray(z_h, f64), t)
    assert_on_backend(value, b, "float64", ())
    assert_on_backend(grad, b, "float64", z_h.shape)

    def f(v):
        return float(b.to_numpy(loss(b.asarray(v, f64), t)[0]))

    numeric = numerical_gradient(f, z_h.copy(), 1e-6)
    assert relative_error(b.to_numpy(grad), numeric) < GRAD_TOL


def torch_loss(torch, case, z, t):
    F = torch.nn.functional
    if case == "sce-labels":
        return F.cross_entropy(z, torch.tensor(t))
    if case == "sce-smooth":
        return F.cross_entropy(z, torch.tensor(t), label_smoothing=SMOOTHING)
    if case == "sce-onehot":
        return F.cross_entropy(z, torch.tensor(t))  # class-probability targets
    if case == "bce-multilabel":  # summed over a sample's outputs
        return F.binary_cross_entropy_with_logits(z, torch.tensor(t), reduction="sum") / len(z)
    if case.startswith("bce"):
        return F.binary_cross_entropy_with_logits(z, torch.tensor(t))
    if case == "half-se":
        return 0.5 * F.mse_loss(z, torch.tensor(t), reduction="sum") / len(z)
    if case == "poisson":
        t = torch.tensor(t, dtype=z.dtype)
        constant = torch.sum(torch.special.xlogy(t, t) - t)
        return (F.poisson_nll_loss(z, t, log_input=True, reduction="sum") + constant) / len(z)
    return F.mse_loss(z, torch.tensor(t))


@pytest.mark.parametrize("case", LOSS_CASES)
def test_loss_matches_torch_autograd(backend64, case):
    torch = pytest.importorskip("torch")
    loss, z_h, t_h = loss_data(case, seed=10)
    zt = torch.tensor(z_h, requires_grad=True)
    value_t = torch_loss(torch, case, zt, t_h)
    value_t.backward()
    b = backend64
    value, grad = loss(on(b, z_h, "float64"), targets_on(b, t_h, "float64"))
    tol = tolerance("float64")
    np.testing.assert_allclose(float(b.to_numpy(value)), value_t.item(), **tol)
    np.testing.assert_allclose(b.to_numpy(grad), zt.grad.numpy(), **tol)


def test_get_loss_names():
    assert isinstance(pn.get_loss("cross_entropy"), pn.SoftmaxCrossEntropy)
    assert isinstance(pn.get_loss("bce"), pn.SigmoidBinaryCrossEntropy)
    assert isinstance(pn.get_loss("mse"), pn.MeanSquaredError)
    assert isinstance(pn.get_loss("half_squared_error"), pn.HalfSquaredError)
    assert isinstance(pn.get_loss("poisson"), pn.HalfPoissonDeviance)
    with pytest.raises(ValueError, match="mse"):
        pn.get_loss("hinge")


def test_label_smoothing_is_saved_and_checked(tmp_path):
    model = pn.Model([pn.Dense(4, 3)], loss=pn.SoftmaxCrossEntropy(label_smoothing=0.2))
    model.save(tmp_path / "m.npz")
    loaded = pn.Model.load(tmp_path / "m.npz")
    assert isinstance(loaded.loss, pn.SoftmaxCrossEntropy)
    assert loaded.loss.label_smoothing == 0.2
    # Without smoothing the file keeps the plain name, as version 1 files do.
    assert pn.Model([pn.Dense(4, 3)]).get_config()["loss"] == "softmax_cross_entropy"
    with pytest.raises(pn.ConfigError, match="label_smoothing"):
        pn.SoftmaxCrossEntropy(label_smoothing=1.0)


def test_poisson_loss_refuses_negative_targets_and_is_zero_at_the_targets(backend64):
    loss = pn.HalfPoissonDeviance()
    with pytest.raises(pn.InputError, match="negative.*squared error"):
        loss.check_host_targets(np.array([1.0, -2.0]), 1, 2)
    counts = np.array([[0.0], [1.0], [4.0]])
    logits = np.log(np.where(counts > 0, counts, 1e-300))  # the mean equals the count
    value, _ = loss(on(backend64, logits, "float64"), on(backend64, counts, "float64"))
    assert abs(float(backend64.to_numpy(value))) < 1e-12
