"""portnet.sklearn.MLPClassifier / MLPRegressor: scikit-learn's MLP on every backend.

scikit-learn's own ``MLPClassifier``/``MLPRegressor`` are the oracle: with the same
``random_state`` the stochastic solvers draw the same initial weights and batches,
so in float64 on NumPy the loss curves agree to rounding. The same fit then runs
on torch, array-api-strict, JAX and the emulated CuPy, and must give the same
curve there too. scikit-learn's own test_mlp.py runs in test_sklearn_upstream.py,
its estimator checks in test_sklearn_checks.py.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from helpers.arrays import assert_on_backend  # noqa: E402
from helpers.cases import EMULATED  # noqa: E402
from scipy import sparse  # noqa: E402
from sklearn import neural_network  # noqa: E402
from sklearn.datasets import (  # noqa: E402
    load_digits,
    load_iris,
    make_multilabel_classification,
    make_regression,
)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import portnet as pn  # noqa: E402
from portnet.errors import BackendError, ConfigError, DeviceMismatchError  # noqa: E402
from portnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from portnet.testing import emulated_cupy  # noqa: E402

X_DIGITS, Y_DIGITS = load_digits(n_class=3, return_X_y=True)
X_DIGITS = X_DIGITS / 16.0
X_REG, Y_REG = make_regression(n_samples=150, n_features=8, noise=10.0, random_state=3)
Y_REG = (Y_REG - Y_REG.mean()) / Y_REG.std()
# Run every epoch asked for: no stop on the loss.
NO_STOP = {"tol": 0.0, "n_iter_no_change": 10**6}


@pytest.fixture(autouse=True)
def scipy_array_api(monkeypatch):
    """scikit-learn refuses array API dispatch unless SCIPY_ARRAY_API=1 is set."""
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


def dispatch():
    return sklearn.config_context(array_api_dispatch=True)


def quietly(fit, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit(*args, **kwargs)


# -- the same training as scikit-learn's -----------------------------------------------
CLASSIFIER_CASES = {
    "adam": {},
    "sgd-nesterov": {"solver": "sgd"},
    "sgd-invscaling": {"solver": "sgd", "learning_rate": "invscaling", "nesterovs_momentum": False},
    "sgd-adaptive-plain": {
        "solver": "sgd",
        "learning_rate": "adaptive",
        "momentum": 0.0,
        "tol": 0.5,
    },
    "early-stopping": {"early_stopping": True, "validation_fraction": 0.2},
    "batch-64-alpha": {"solver": "sgd", "batch_size": 64, "alpha": 0.05},
    "no-shuffle-logistic": {"shuffle": False, "activation": "logistic"},
    "tanh-two-layers": {"activation": "tanh", "hidden_layer_sizes": (12, 7)},
}


@pytest.mark.parametrize("case", list(CLASSIFIER_CASES))
def test_classifier_trains_as_scikit_learn_does(case):
    params = {"hidden_layer_sizes": (16,), "max_iter": 15, "random_state": 0}
    params.update(CLASSIFIER_CASES[case])
    ours = quietly(MLPClassifier(**params).fit, X_DIGITS, Y_DIGITS)
    theirs = quietly(neural_network.MLPClassifier(**params).fit, X_DIGITS, Y_DIGITS)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(
        ours.predict_proba(X_DIGITS), theirs.predict_proba(X_DIGITS), atol=1e-10
    )
    for mine, reference in zip(
        ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True
    ):
        np.testing.assert_allclose(mine, reference, rtol=1e-8, atol=1e-12)
    if theirs.best_loss_ is None:  # early stopping watches the validation score instead
        assert ours.best_loss_ is None
    else:
        assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-10, abs=0)
    if params.get("early_stopping"):
        assert ours.validation_scores_ == theirs.validation_scores_
        assert ours.best_validation_score_ == theirs.best_validation_score_


@pytest.mark.parametrize(
    "params",
    [
        {"loss": "squared_error"},
        {"loss": "poisson", "learning_rate_init": 0.01},
        {"solver": "sgd", "learning_rate_init": 0.01, "early_stopping": True},
    ],
    ids=["squared-error", "poisson", "sgd-early-stopping"],
)
def test_regressor_trains_as_scikit_learn_does(params):
    y = np.exp(Y_REG / 2) if params.get("loss") == "poisson" else Y_REG
    common = {"hidden_layer_sizes": (10,), "max_iter": 12, "random_state": 1, **params}
    ours = quietly(MLPRegressor(**common).fit, X_REG, y)
    theirs = quietly(neural_network.MLPRegressor(**common).fit, X_REG, y)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(ours.predict(X_REG), theirs.predict(X_REG), rtol=1e-9, atol=1e-12)
    assert ours.out_activation_ == theirs.out_activation_


def test_sample_weights_multilabel_and_partial_fit_train_as_scikit_learn_does():
    weights = np.random.default_rng(0).integers(0, 4, len(Y_DIGITS)).astype(float)
    params = {"hidden_layer_sizes": (16,), "max_iter": 8, "random_state": 2, "batch_size": 50}
    ours = quietly(MLPClassifier(**params).fit, X_DIGITS, Y_DIGITS, sample_weight=weights)
    theirs = quietly(
        neural_network.MLPClassifier(**params).fit, X_DIGITS, Y_DIGITS, sample_weight=weights
    )
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)

    X, Y = make_multilabel_classification(n_samples=80, n_classes=4, random_state=0)
    ours = MLPClassifier(solver="sgd", random_state=0, hidden_layer_sizes=(8,))
    theirs = neural_network.MLPClassifier(solver="sgd", random_state=0, hidden_layer_sizes=(8,))
    for _ in range(5):  # each call re-seeds from random_state, as scikit-learn's does
        ours.partial_fit(X, Y, classes=[0, 1, 2, 3])
        theirs.partial_fit(X, Y, classes=[0, 1, 2, 3])
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    assert ours.out_activation_ == "logistic" and ours.predict(X).shape == Y.shape
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_a_warm_start_reads_the_hyper_parameters_afresh_as_scikit_learn_does():
    params = {"hidden_layer_sizes": (12,), "max_iter": 4, "random_state": 0, "warm_start": True}
    curves = []
    for module in (neural_network, None):
        clf = (MLPClassifier if module is None else module.MLPClassifier)(**params)
        quietly(clf.fit, X_DIGITS, Y_DIGITS)
        quietly(clf.set_params(alpha=0.5, activation="tanh").fit, X_DIGITS, Y_DIGITS)
        curves.append(clf.loss_curve_)
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-10)
    assert len(curves[1]) == 8


def test_lbfgs_follows_scipy():
    """Full-batch L-BFGS: the same iterations and loss as scikit-learn's (SciPy's) on
    problems where the line searches agree step by step."""
    X, Y = make_multilabel_classification(n_samples=100, n_features=20, n_classes=5, random_state=0)
    for data in ((X_DIGITS, Y_DIGITS), (X, Y)):
        ours = MLPClassifier(solver="lbfgs", random_state=0).fit(*data)
        theirs = neural_network.MLPClassifier(solver="lbfgs", random_state=0).fit(*data)
        assert ours.n_iter_ == theirs.n_iter_
        assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
        assert len(ours.loss_curve_) == ours.n_iter_
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge after 5 iteration"):
        MLPClassifier(solver="lbfgs", max_iter=5, random_state=0).fit(X_DIGITS, Y_DIGITS)


def test_sparse_input_trains_as_dense_input_does():
    X_sparse = sparse.csr_array(np.where(X_DIGITS > 0.5, X_DIGITS, 0.0))
    X_dense = X_sparse.toarray()
    for solver in ("adam", "lbfgs"):
        params = {"solver": solver, "max_iter": 10, "random_state": 0, "hidden_layer_sizes": (12,)}
        dense = quietly(MLPClassifier(**params).fit, X_dense, Y_DIGITS)
        sparse_fit = quietly(MLPClassifier(**params).fit, X_sparse, Y_DIGITS)
        np.testing.assert_allclose(sparse_fit.loss_curve_, dense.loss_curve_, rtol=1e-12)
        np.testing.assert_allclose(
            sparse_fit.predict_proba(X_sparse), dense.predict_proba(X_dense), atol=1e-12
        )


# -- the same fit on other libraries ------------------------------------------------------
DEVICE_CASES = [
    pytest.param(("torch", "cpu"), id="torch-cpu"),
    pytest.param(("array_api_strict", "device1"), id="strict-device1"),
    pytest.param(("jax", "cpu"), id="jax"),
    pytest.param((EMULATED, "cuda:0"), id="cupy-emulated"),
]


@pytest.fixture(params=DEVICE_CASES)
def device_backend(request):
    name, device = request.param
    if name == EMULATED:
        with emulated_cupy() as cupy, cupy.allow_syncs():  # scikit-learn validates with syncs
            yield pn.get_backend("cupy", device)
        return
    try:
        yield pn.get_backend(name, device)
    except BackendError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize(("dtype", "epochs", "rtol"), [("float64", 20, 1e-6), ("float32", 5, 1e-3)])
def test_the_same_fit_on_every_library(device_backend, dtype, epochs, rtol):
    X, y = X_DIGITS.astype(dtype), Y_DIGITS
    params = {"hidden_layer_sizes": (16,), "max_iter": epochs, "random_state": 0, **NO_STOP}
    reference = quietly(MLPClassifier(**params).fit, X, y)
    X_dev = device_backend.asarray(X, dtype)
    with dispatch():
        clf = quietly(MLPClassifier(**params).fit, X_dev, device_backend.asarray(y))
        proba, labels = clf.predict_proba(X_dev), clf.predict(X_dev)
        log_proba = clf.predict_log_proba(X_dev)
    assert (clf.model_.backend.name, clf.model_.backend.device_name) == (
        device_backend.name,
        device_backend.device_name,
    )
    np.testing.assert_allclose(clf.loss_curve_, reference.loss_curve_, rtol=rtol)
    assert_on_backend(proba, device_backend, dtype, (len(X), 3))
    assert_on_backend(log_proba, device_backend, dtype, (len(X), 3))
    assert_on_backend(labels, device_backend, "int64", (len(X),))
    for W in clf.coefs_ + clf.intercepts_:
        assert_on_backend(W, device_backend, dtype)
    assert isinstance(clf.classes_, np.ndarray)
    np.testing.assert_allclose(
        device_backend.to_numpy(proba), reference.predict_proba(X), atol=10 * rtol
    )


def test_an_epoch_reads_the_device_once_and_uploads_its_order_once():
    strict = pytest.importorskip("array_api_strict")
    device = strict.Device("device1")
    X, y = strict.asarray(X_DIGITS, device=device), strict.asarray(Y_DIGITS, device=device)
    counts = []
    for epochs in (3, 9):
        with dispatch(), pn.count_transfers() as count:
            quietly(MLPClassifier(max_iter=epochs, random_state=0, **NO_STOP).fit, X, y)
        counts.append(count)
    # Six more epochs: six more orders up, six more loss sums down.
    assert counts[1].to_host - counts[0].to_host == 6
    assert counts[1].to_device - counts[0].to_device == 6


def test_emulated_cupy_fit_syncs_a_fixed_number_of_times_whatever_the_epochs():
    """scikit-learn's input checks read the device a few times per call; training adds
    no hidden sync per epoch or per step (each would raise outside allow_syncs)."""
    with emulated_cupy() as cupy:
        backend = pn.get_backend("cupy")
        X, y = backend.asarray(X_DIGITS, "float32"), backend.asarray(Y_DIGITS)
        syncs = []
        for epochs in (2, 6):
            with cupy.allow_syncs(), dispatch():
                before = cupy.counts.syncs
                quietly(MLPClassifier(max_iter=epochs, random_state=0, **NO_STOP).fit, X, y)
                syncs.append(cupy.counts.syncs - before)
    assert syncs[0] == syncs[1], syncs


def test_numpy_data_trains_on_the_chosen_backend_and_answers_in_numpy():
    params = {"hidden_layer_sizes": (8,), "max_iter": 5, "random_state": 0, "backend": "torch"}
    pytest.importorskip("torch")
    clf = quietly(MLPClassifier(**params).fit, X_DIGITS, Y_DIGITS)
    reference = quietly(MLPClassifier(**{**params, "backend": "numpy"}).fit, X_DIGITS, Y_DIGITS)
    assert clf.model_.backend.name == "torch"
    assert isinstance(clf.coefs_[0], np.ndarray) and isinstance(
        clf.predict_proba(X_DIGITS), np.ndarray
    )
    np.testing.assert_allclose(clf.loss_curve_, reference.loss_curve_, rtol=1e-10)
    # Replacing coefs_ by hand is what the next fit starts from, on the model's device too.
    clf.coefs_[0] = np.zeros_like(clf.coefs_[0])
    assert np.all(clf.model_.backend.to_numpy(clf.model_.params[0]["W"]) != 0)
    quietly(clf.set_params(warm_start=True, max_iter=1).fit, X_DIGITS, Y_DIGITS)
    assert np.abs(clf.coefs_[0]).max() < 0.01  # one small epoch from zero


def test_dispatch_refuses_inputs_from_elsewhere():
    strict = pytest.importorskip("array_api_strict")
    device = strict.Device("device1")
    X = strict.asarray(X_DIGITS, device=device)
    with dispatch():
        clf = quietly(MLPClassifier(max_iter=2).fit, X, strict.asarray(Y_DIGITS, device=device))
        for other in (X_DIGITS, strict.asarray(X_DIGITS)):
            with pytest.raises(DeviceMismatchError, match=r"predict\(\).*same namespace"):
                clf.predict(other)
        with pytest.raises(DeviceMismatchError, match="backend='numpy'"):
            MLPClassifier(backend="numpy").fit(X, Y_DIGITS)


# -- what portnet adds ---------------------------------------------------------------------
def test_portnet_options_train_and_the_model_is_a_portnet_model(tmp_path):
    clf = quietly(
        MLPClassifier(
            dropout=0.2, batch_norm=True, l1=1e-4, dtype="float32", max_iter=5, random_state=0
        ).fit,
        X_DIGITS,
        Y_DIGITS,
    )
    assert clf.coefs_[0].dtype == np.float32 and clf.score(X_DIGITS, Y_DIGITS) > 0.9
    names = [type(layer).__name__ for layer in clf.model_.network.layers]
    assert names == ["Dense", "BatchNorm", "ReLU", "Dropout", "Dense"]
    clf.model_.save(tmp_path / "model.npz")
    loaded = pn.Model.load(tmp_path / "model.npz")
    np.testing.assert_allclose(
        loaded.predict_proba(X_DIGITS.astype(np.float32)), clf.predict_proba(X_DIGITS), rtol=1e-6
    )
    with pytest.raises(ConfigError, match="L-BFGS line search"):
        MLPClassifier(solver="lbfgs", dropout=0.1).fit(X_DIGITS, Y_DIGITS)


def test_pickled_estimators_go_on_training_as_if_never_pickled():
    params = {"hidden_layer_sizes": (8,), "random_state": 0, "max_iter": 3}
    first = quietly(MLPRegressor(**params).fit, X_REG, Y_REG)
    second = pickle.loads(pickle.dumps(first))
    for estimator in (first, second):
        for _ in range(3):
            estimator.partial_fit(X_REG, Y_REG)  # Adam's moments and step count survive
    np.testing.assert_array_equal(second.predict(X_REG), first.predict(X_REG))
    assert second.loss_curve_ == first.loss_curve_


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"solver": "newton"}, r"'solver' parameter of MLPClassifier must be one of"),
        ({"hidden_layer_sizes": (10, 0)}, r"hidden_layer_sizes must be > 0, got \[10, 0\]"),
        ({"momentum": 1.5}, r"'momentum' parameter .* in \[0, 1\]; got 1.5"),
        ({"batch_size": 0}, r"'batch_size' parameter .* 'auto' or an int >= 1"),
        ({"n_iter_no_change": 0}, r"'n_iter_no_change' parameter .* numpy.inf"),
        ({"dtype": "float16"}, r"'dtype' parameter .* \[None, 'float32', 'float64'\]"),
    ],
)
def test_bad_hyper_parameters_say_what_to_give(params, message):
    with pytest.raises(ConfigError, match=message):
        MLPClassifier(**params).fit(X_DIGITS, Y_DIGITS)


def test_errors_and_messages_a_user_meets(capsys):
    # NumPy warns of the overflow on the way, as with scikit-learn's MLP.
    with np.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
            quietly(MLPRegressor().fit, np.full((10, 2), 1e300), np.arange(10.0))
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        MLPClassifier().partial_fit(X_DIGITS, Y_DIGITS)
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")
    with pytest.raises(pn.InputError, match="negative.*squared error"):
        MLPRegressor(loss="poisson").fit(X_REG, Y_REG)
    quietly(MLPClassifier(max_iter=2, verbose=True).fit, X_DIGITS, Y_DIGITS)
    assert "Iteration 2, loss = " in capsys.readouterr().out
    X_iris, y_iris = load_iris(return_X_y=True)
    clf = quietly(MLPClassifier(max_iter=3, random_state=0).fit, X_iris, y_iris)
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 4"):
        clf.predict(X_iris[:, :3])


def test_the_replaced_estimators_say_what_replaced_them():
    import portnet.sklearn

    with pytest.raises(ImportError, match="PortnetClassifier was replaced by .*MLPClassifier"):
        portnet.sklearn.PortnetClassifier  # noqa: B018
    with pytest.raises(ImportError, match="fit a MLPRegressor again"):
        pickle.loads(b"cportnet.sklearn\nPortnetRegressor\n.")  # what an old pickle names
