"""Full-batch L-BFGS on the Array API: the minimizer behind ``solver="lbfgs"``.

Limited-memory BFGS (Nocedal & Wright, *Numerical Optimization*, 2nd ed.:
the two-loop recursion, Algorithm 7.4) with a line search that meets the strong
Wolfe conditions (Algorithms 3.5 and 3.6). Its settings and stopping rules are
those of SciPy's L-BFGS-B without bounds, which scikit-learn's MLP calls: 10
stored pairs, a first step of length :math:`1/\\lVert g\\rVert`, constants
:math:`10^{-3}` (decrease) and 0.9 (curvature), at most 20 evaluations per line
search; it stops when the largest gradient entry is at most ``gtol``, when f
falls by a relative :math:`\\le` ``ftol``, or at ``max_iter`` iterations or
``max_fun`` evaluations.

The iterate, the gradients and the stored pairs stay on the device. The host
reads three or four numbers per function evaluation, in one transfer: the value,
the slope along the search direction, the largest gradient entry (and, at a line
search's first trial, the slope at its start). The two-loop recursion itself
reads nothing: its scalars stay 0-d device arrays.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._array import namespace_of, to_host
from ..backends.ops import ops_for

#: SciPy's default ``factr`` times float64's machine epsilon.
FTOL_FLOAT64 = 1e7 * float(np.finfo(np.float64).eps)
#: Relative changes of f below this are rounding noise in float32 sums.
FTOL_FLOAT32 = 10 * float(np.finfo(np.float32).eps)
DECREASE, CURVATURE = 1e-3, 0.9  # the strong Wolfe constants c1, c2


@dataclasses.dataclass
class LBFGSResult:
    """What :func:`minimize_lbfgs` found.

    Attributes
    ----------
    x : array
        The last iterate, on the device.
    fun : float
        f at ``x``.
    n_iter, n_fun : int
        Iterations done and function evaluations made.
    status : int
        0 converged; 1 stopped by ``max_iter`` or ``max_fun``; 2 the line search
        found no acceptable step.
    message : str
        Why it stopped, in words.
    history : list of float
        f after each iteration.
    """

    x: Any
    fun: float
    n_iter: int
    n_fun: int
    status: int
    message: str
    history: list[float]


@dataclasses.dataclass
class _Point:
    """An evaluated point: device iterate and gradient, host value and largest gradient entry."""

    x: Any
    g: Any
    f: float
    g_max: float


def minimize_lbfgs(
    fun_and_grad: Callable[[Any], tuple[Any, Any]],
    x0: Any,
    *,
    max_iter: int = 15000,
    max_fun: int = 15000,
    gtol: float = 1e-5,
    ftol: float | None = None,
    memory: int = 10,
    max_line_search: int = 20,
    callback: Callable[[int, float], None] | None = None,
) -> LBFGSResult:
    """Minimize a smooth function of one device vector.

    Parameters
    ----------
    fun_and_grad : callable
        ``fun_and_grad(x) -> (f, g)``: f a 0-d array, g an array like ``x``.
    x0 : array
        The starting point, a 1-D floating array of any Array API library.
    max_iter, max_fun : int
        The iteration and evaluation limits (status 1 when reached; the
        evaluation limit is checked after each iteration, as SciPy does).
    gtol : float
        Stop when the largest entry of :math:`|g|` is at most this.
    ftol : float, optional
        Stop when :math:`(f_k - f_{k+1}) / \\max(|f_k|, |f_{k+1}|, 1)` is at most
        this; by default SciPy's :data:`FTOL_FLOAT64` in float64 and
        :data:`FTOL_FLOAT32` in float32.
    memory : int
        Pairs of steps and gradient changes kept for the curvature model.
    max_line_search : int
        Evaluations a line search may make.
    callback : callable, optional
        ``callback(iteration, f)`` after each iteration.

    Returns
    -------
    LBFGSResult
    """
    xp = namespace_of(x0)
    if ftol is None:
        ftol = FTOL_FLOAT64 if x0.dtype == xp.float64 else FTOL_FLOAT32
    resolution = 10 * float(xp.finfo(x0.dtype).eps)
    evaluate = _Evaluations(fun_and_grad, ops_for(xp))
    point, g_square = evaluate.start(x0)
    model = _CurvatureModel(evaluate.ops, memory)
    history: list[float] = []
    n_iter = 0

    def finish(status: int, message: str) -> LBFGSResult:
        return LBFGSResult(point.x, point.f, n_iter, evaluate.count, status, message, history)

    if not math.isfinite(point.f):
        return finish(2, f"the function is {point.f} at the starting point")
    if point.g_max <= gtol:
        return finish(0, _GTOL_MESSAGE)
    first_step = 1.0 / math.sqrt(g_square)
    while True:
        d = model.direction(point.g)
        step = first_step if n_iter == 0 else 1.0  # SciPy: 1/|g| on the first iteration only
        found, slope0 = _line_search(evaluate, point, d, step, max_line_search)
        if found is None:
            if slope0 is not None and -slope0 <= resolution * max(abs(point.f), 1.0):
                # Even a full step would lower f by less than its rounding: done.
                return finish(0, "converged: f cannot decrease at this floating precision")
            if not model.pairs:
                return finish(2, "the line search found no step that lowers f enough")
            model.forget()  # a stale curvature model: start again from -g
            continue
        new, slope_new, slope_old, alpha = found
        n_iter += 1
        model.learn(point, new, alpha * (slope_new - slope_old), -alpha * slope_old)
        f_old, point = point.f, new
        history.append(point.f)
        if callback is not None:
            callback(n_iter, point.f)
        stop = _stop_reason(n_iter, evaluate.count, point, f_old, max_iter, max_fun, gtol, ftol)
        if stop is not None:
            return finish(*stop)


_GTOL_MESSAGE = "converged: the largest gradient entry is at most gtol"


def _stop_reason(
    n_iter: int,
    n_fun: int,
    point: _Point,
    f_old: float,
    max_iter: int,
    max_fun: int,
    gtol: float,
    ftol: float,
) -> tuple[int, str] | None:
    """``(status, message)`` when an iteration ends the run, else ``None``; the
    tests in SciPy's order."""
    if n_iter >= max_iter:
        return 1, f"stopped: {n_iter} iterations, the max_iter limit"
    if n_fun > max_fun:
        return 1, f"stopped: {n_fun} evaluations, over the max_fun limit"
    if point.g_max <= gtol:
        return 0, _GTOL_MESSAGE
    if (f_old - point.f) <= ftol * max(abs(f_old), abs(point.f), 1.0):
        return 0, "converged: the relative decrease of f is at most ftol"
    return None


class _Evaluations:
    """``fun_and_grad`` with its evaluation count; each evaluation reads the host once."""

    def __init__(self, fun_and_grad: Callable[[Any], tuple[Any, Any]], ops: Any) -> None:
        self.fun_and_grad, self.ops, self.count = fun_and_grad, ops, 0

    def start(self, x0: Any) -> tuple[_Point, float]:
        """The starting point, and its squared gradient norm (for the first step)."""
        xp = self.ops.xp
        f0, g0 = self.fun_and_grad(x0)
        self.count += 1
        f, g_max, g_square = (
            float(v) for v in to_host(xp.stack([f0, xp.max(xp.abs(g0)), self.ops.dot(g0, g0)]))
        )
        return _Point(x0, g0, f, g_max), g_square

    def __call__(self, x: Any, d: Any, g_old: Any = None) -> tuple[_Point, float, float | None]:
        """The point ``x`` with its slope along ``d`` (and ``g_old``'s)."""
        xp, dot = self.ops.xp, self.ops.dot
        f, g = self.fun_and_grad(x)
        self.count += 1
        values = [f, dot(g, d), xp.max(xp.abs(g))]
        if g_old is not None:
            values.append(dot(g_old, d))
        host = [float(v) for v in to_host(xp.stack(values))]
        return _Point(x, g, host[0], host[2]), host[1], (host[3] if g_old is not None else None)


class _CurvatureModel:
    """The inverse-Hessian model: the last ``memory`` pairs :math:`(s, y, 1/s^\top y)`
    and the scaling :math:`\\gamma = s^\top y / y^\top y` of the newest."""

    def __init__(self, ops: Any, memory: int) -> None:
        self.ops, self.memory = ops, memory
        self.pairs: list[tuple[Any, Any, float]] = []
        self.gamma: Any = None

    def direction(self, g: Any) -> Any:
        """The search direction :math:`-H g`."""
        return -_two_loop(self.ops, g, self.pairs, self.gamma)

    def learn(self, old: _Point, new: _Point, sy: float, descent: float) -> None:
        """Store the step from ``old`` to ``new``, whose :math:`s^\top y` is ``sy``,
        where the curvature is clearly positive (SciPy's test, against the
        ``descent`` :math:`-\alpha\\, g^\top d` along the step)."""
        if sy > float(np.finfo(np.float64).eps) * descent:
            y = new.g - old.g
            self.pairs = [*self.pairs[-(self.memory - 1) :], (new.x - old.x, y, 1.0 / sy)]
            self.gamma = sy / self.ops.dot(y, y)

    def forget(self) -> None:
        """Drop the pairs: the next direction is :math:`-g`."""
        self.pairs, self.gamma = [], None


def _two_loop(ops: Any, g: Any, pairs: list[tuple[Any, Any, float]], gamma: Any) -> Any:
    """H g for the inverse-Hessian model of the stored pairs (Algorithm 7.4)."""
    q, alphas = g, []
    for s, y, rho in reversed(pairs):
        a = rho * ops.dot(s, q)
        q = q - a * y
        alphas.append(a)
    r = q if gamma is None else gamma * q
    for (s, y, rho), a in zip(pairs, reversed(alphas), strict=True):
        r = r + (a - rho * ops.dot(y, r)) * s
    return r


def _line_search(evaluate, start: _Point, d: Any, alpha: float, max_evals: int):
    """A step along ``d`` meeting the strong Wolfe conditions (Algorithm 3.5).

    Returns ``(found, slope at start)``: ``found`` is ``(point, slope there, slope at
    start, step)``, or ``None`` after ``max_evals`` evaluations without one, or when
    ``d`` does not descend (the slope at start is ``None`` if nothing was evaluated).
    """
    f0 = start.f
    slope0 = None
    previous = (0.0, f0, None)  # step, value, slope
    for i in range(max_evals):
        point, slope, first_slope = evaluate(start.x + alpha * d, d, start.g if i == 0 else None)
        if i == 0:
            slope0 = first_slope
            previous = (0.0, f0, slope0)
            if not slope0 < 0:
                return None, slope0  # not a descent direction: rounding spoilt the model
        if (
            not math.isfinite(point.f)
            or point.f > f0 + DECREASE * alpha * slope0
            or (i > 0 and point.f >= previous[1])
        ):
            low, high = previous, (alpha, point.f, slope)
            return _zoom(evaluate, start, d, slope0, low, high, max_evals - i - 1), slope0
        if abs(slope) <= -CURVATURE * slope0:
            return (point, slope, slope0, alpha), slope0
        if slope >= 0:
            low, high = (alpha, point.f, slope), previous
            return _zoom(evaluate, start, d, slope0, low, high, max_evals - i - 1), slope0
        previous, alpha = (alpha, point.f, slope), _extrapolate(previous, (alpha, point.f, slope))
    return None, slope0


def _zoom(evaluate, start, d, slope0, low, high, max_evals):
    """Shrink ``[low, high]`` to a strong Wolfe step (Algorithm 3.6); each end is
    ``(step, value, slope)``, ``low`` the one with the lower value so far."""
    f0 = start.f
    for _ in range(max_evals):
        alpha = _interpolate(low, high)
        if not min(low[0], high[0]) < alpha < max(low[0], high[0]):
            return None  # the interval has shrunk to rounding
        point, slope, _ = evaluate(start.x + alpha * d, d)
        if (
            not math.isfinite(point.f)
            or point.f > f0 + DECREASE * alpha * slope0
            or point.f >= low[1]
        ):
            high = (alpha, point.f, slope)
            continue
        if abs(slope) <= -CURVATURE * slope0:
            return point, slope, slope0, alpha
        if slope * (high[0] - low[0]) >= 0:
            high = low
        low = (alpha, point.f, slope)
    return None


def _cubic_minimizer(a: tuple, b: tuple) -> float | None:
    """The minimizer of the cubic through two (step, value, slope) triples, if real."""
    (x1, f1, g1), (x2, f2, g2) = a, b
    if x1 == x2 or g1 is None or g2 is None or not all(map(math.isfinite, (f1, f2, g1, g2))):
        return None
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    radicand = d1 * d1 - g1 * g2
    if radicand < 0:
        return None
    d2 = math.copysign(math.sqrt(radicand), x2 - x1)
    denominator = g2 - g1 + 2 * d2
    if denominator == 0:
        return None
    return x2 - (x2 - x1) * (g2 + d2 - d1) / denominator


def _interpolate(low: tuple, high: tuple) -> float:
    """A trial step inside the interval: the cubic's minimizer kept 10 % from each
    end, else the midpoint."""
    lo, hi = sorted((low[0], high[0]))
    margin = 0.1 * (hi - lo)
    trial = _cubic_minimizer(low, high)
    if trial is None or not lo + margin <= trial <= hi - margin:
        return 0.5 * (lo + hi)
    return trial


def _extrapolate(previous: tuple, current: tuple) -> float:
    """A longer step: the cubic's minimizer beyond ``current``, between 1.1 and 4
    times the last increase (SciPy's line search bounds)."""
    increase = current[0] - previous[0]
    low, high = current[0] + 1.1 * increase, current[0] + 4.0 * increase
    trial = _cubic_minimizer(previous, current)
    if trial is None or not low <= trial <= high:
        return high
    return trial
