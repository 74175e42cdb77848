"""scikit-learn's estimator checks on portnet.sklearn's MLPClassifier and MLPRegressor.

Four configurations: each estimator with its defaults and with ``solver="lbfgs"``.
No check is skipped or expected to fail. The sample-weight equivalence checks
(a weight of 2 must equal a repeated sample) hold only for a full-batch solver,
since minibatches of repeated data differ from minibatches of weighted data: as
scikit-learn does for its own MLP, they run on the ``lbfgs`` configuration of
the same estimator.
"""

from __future__ import annotations

import functools

import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.utils.estimator_checks import estimator_checks_generator  # noqa: E402

from portnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

ESTIMATORS = [
    MLPClassifier(),
    MLPRegressor(),
    MLPClassifier(solver="lbfgs"),
    MLPRegressor(solver="lbfgs"),
]
#: Checks that need a full-batch solver, and so run on the lbfgs configuration.
FULL_BATCH_CHECKS = (
    "check_sample_weight_equivalence_on_dense_data",
    "check_sample_weight_equivalence_on_sparse_data",
)


def _name(check) -> str:
    return (check.func if isinstance(check, functools.partial) else check).__name__


def _cases():
    for estimator in ESTIMATORS:
        for est, check in estimator_checks_generator(estimator, legacy=True, mark=None):
            name = _name(check)
            if name in FULL_BATCH_CHECKS and est.solver != "lbfgs":
                est = clone(est).set_params(solver="lbfgs")
                label = f"{est!r}-{name}-on-lbfgs"
            else:
                label = f"{est!r}-{name}"
            yield pytest.param(est, check, id=label)


@pytest.fixture(autouse=True)
def scipy_array_api(monkeypatch):
    """scikit-learn refuses array API dispatch unless SCIPY_ARRAY_API=1 is set."""
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


# The default max_iter=200 does not converge on the checks' small data sets; scikit-learn
# warns about it, as it does for its own MLP.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("estimator, check", list(_cases()))
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_every_configuration_runs_the_checks_that_matter():
    """The sample-weight checks and the array API checks run on every configuration."""
    ran = {(repr(case.values[0]), _name(case.values[1])) for case in _cases()}
    for estimator in ESTIMATORS:
        on_lbfgs = repr(clone(estimator).set_params(solver="lbfgs"))
        for name in ("check_array_api_input", "check_sample_weights_shape"):
            assert (repr(estimator), name) in ran, name
        for name in FULL_BATCH_CHECKS:
            assert (on_lbfgs, name) in ran, name
