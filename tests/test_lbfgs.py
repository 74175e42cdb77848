"""portnet.training.lbfgs: full-batch L-BFGS on every backend, against SciPy's L-BFGS-B."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import assert_on_backend

import portnet as pn
from portnet.training.lbfgs import minimize_lbfgs

scipy_optimize = pytest.importorskip("scipy.optimize")


def least_squares(backend, dtype="float64", n=40, d=6, seed=0):
    """A convex quadratic 0.5 |A x - b|^2 / n on the device, and its minimizer."""
    rng = np.random.default_rng(seed)
    A, b = rng.normal(size=(n, d)), rng.normal(size=n)
    A_dev, b_dev = backend.asarray(A, dtype), backend.asarray(b, dtype)
    xp = backend.xp

    def fun_and_grad(x):
        residual = xp.matmul(A_dev, x) - b_dev
        return 0.5 * xp.vecdot(residual, residual) / n, xp.matmul(
            xp.permute_dims(A_dev, (1, 0)), residual
        ) / n

    return fun_and_grad, np.linalg.lstsq(A, b, rcond=None)[0]


def test_least_squares_on_every_backend_reads_once_per_evaluation(backend64):
    fun_and_grad, solution = least_squares(backend64)
    x0 = backend64.asarray(np.zeros(6), "float64")
    with pn.count_transfers() as count:
        result = minimize_lbfgs(fun_and_grad, x0, gtol=1e-7, ftol=0.0)
    assert result.status == 0, result.message
    assert_on_backend(result.x, backend64, "float64", (6,))
    np.testing.assert_allclose(backend64.to_numpy(result.x), solution, atol=1e-6)
    # The line search and the stopping tests read one stacked array per evaluation; the
    # direction (the two-loop recursion) reads nothing. (NumPy data is read in place.)
    assert count.to_host == (0 if backend64.name == "numpy" else result.n_fun)
    assert result.history == sorted(result.history, reverse=True)


def test_float32_stops_at_float32_resolution(backend):
    fun_and_grad, solution = least_squares(backend, "float32")
    result = minimize_lbfgs(fun_and_grad, backend.asarray(np.zeros(6), "float32"), gtol=0.0)
    assert result.status == 0, result.message  # the relative decrease, not a failure
    np.testing.assert_allclose(backend.to_numpy(result.x), solution, atol=1e-3)


@pytest.mark.parametrize("n", [2, 10, 40])
def test_rosenbrock_takes_scipys_iterations(n):
    """Same memory, first step, line-search constants and stopping rules as SciPy's
    L-BFGS-B: the iteration counts agree to a few percent on a hard problem."""
    x0 = np.tile([-1.2, 1.0], n // 2)

    def fun_and_grad(x):
        return np.asarray(scipy_optimize.rosen(x)), scipy_optimize.rosen_der(x)

    ours = minimize_lbfgs(fun_and_grad, x0, gtol=1e-6)
    theirs = scipy_optimize.minimize(
        fun_and_grad, x0, jac=True, method="L-BFGS-B", options={"gtol": 1e-6, "maxiter": 15000}
    )
    assert ours.status == 0 and theirs.status == 0
    np.testing.assert_allclose(ours.x, np.ones(n), atol=1e-4)
    assert abs(ours.n_iter - theirs.nit) <= max(2, 0.05 * theirs.nit), (ours.n_iter, theirs.nit)


def test_limits_and_failures_have_their_status():
    def rosen(x):
        return np.asarray(scipy_optimize.rosen(x)), scipy_optimize.rosen_der(x)

    x0 = np.array([-1.2, 1.0])
    by_iterations = minimize_lbfgs(rosen, x0, max_iter=5)
    assert (by_iterations.status, by_iterations.n_iter) == (1, 5)
    assert "max_iter" in by_iterations.message
    by_evaluations = minimize_lbfgs(rosen, x0, max_fun=10)
    assert by_evaluations.status == 1 and by_evaluations.n_fun > 10
    assert by_evaluations.n_iter <= 10 and "max_fun" in by_evaluations.message
    at_minimum = minimize_lbfgs(rosen, np.ones(2))
    assert (at_minimum.status, at_minimum.n_iter) == (0, 0)

    def wrong_gradient(x):  # an ascent direction: no step can lower f
        return np.asarray(np.sum(x * x)), -2 * x

    failed = minimize_lbfgs(wrong_gradient, np.ones(3))
    assert failed.status == 2 and "line search" in failed.message
