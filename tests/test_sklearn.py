"""portnet.sklearn: scikit-learn's estimator checks, array API dispatch, errors, the demo."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from conftest import assert_on_backend, synthetic_classification  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import portnet as pn  # noqa: E402
from portnet.errors import (  # noqa: E402
    BackendError,
    ConfigError,
    DeviceMismatchError,
    DivergenceWarning,
    InputError,
)
from portnet.sklearn import PortnetClassifier, PortnetRegressor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Small and quick, yet enough for check_classifiers_train's accuracy bar (0.83).
FAST = {"hidden": (16,), "epochs": 20, "lr": 0.01, "batch_size": 32}
# Checks that cannot pass, each with its reason; scikit-learn marks them xfail. None today.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}
# Where array API dispatch is tested: torch-cpu and array-api-strict, a second device too.
DEVICE_CASES = [
    pytest.param(("torch", "cpu"), id="torch-cpu"),
    pytest.param(("array_api_strict", "CPU_DEVICE"), id="strict"),
    pytest.param(("array_api_strict", "device1"), id="strict-device1"),
]


@pytest.fixture(autouse=True)
def scipy_array_api(monkeypatch):
    """scikit-learn refuses array API dispatch unless SCIPY_ARRAY_API=1 is set."""
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


@pytest.fixture(params=DEVICE_CASES)
def device_backend(request):
    try:
        return pn.get_backend(*request.param)
    except BackendError as exc:
        pytest.skip(str(exc))


def dispatch():
    return sklearn.config_context(array_api_dispatch=True)


def three_classes(n=120):
    return synthetic_classification(n=n, n_features=6, n_classes=3)


# -- scikit-learn's own conformance suite -------------------------------------------


@parametrize_with_checks(
    [
        PortnetClassifier(**FAST),
        PortnetRegressor(**FAST),
        # Early stopping's stratified hold-out, dropout and momentum through every check.
        PortnetClassifier(**FAST, patience=3, dropout=0.1, optimizer="momentum"),
    ],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


# -- where arrays live ----------------------------------------------------------------


def test_dispatch_trains_where_the_input_lives_and_answers_there(device_backend):
    X, y = three_classes()
    reference = PortnetClassifier(**FAST, random_state=0).fit(X, y)
    X_dev, y_dev = device_backend.asarray(X), device_backend.asarray(y)
    with dispatch():
        clf = PortnetClassifier(**FAST, random_state=0).fit(X_dev, y_dev)
        proba, labels = clf.predict_proba(X_dev), clf.predict(X_dev)
        score = clf.score(X_dev, y_dev)
    assert (clf.model_.backend.name, clf.model_.backend.device_name) == (
        device_backend.name,
        device_backend.device_name,
    )
    assert_on_backend(proba, device_backend, "float32", (len(X), 3))
    assert_on_backend(labels, device_backend, "int64", (len(X),))
    assert isinstance(clf.classes_, np.ndarray)
    # The same seed gives the same initial weights on every backend: same training.
    np.testing.assert_allclose(
        device_backend.to_numpy(proba), reference.predict_proba(X), atol=1e-4
    )
    assert score == pytest.approx(reference.score(X, y), abs=0.02)


def test_dispatch_regression_answers_on_the_input_device(device_backend):
    X, _ = three_classes()
    y = X @ np.arange(1.0, 7.0) / 10
    with dispatch():
        reg = PortnetRegressor(**FAST, random_state=0).fit(device_backend.asarray(X), y)
        predicted = reg.predict(device_backend.asarray(X))
    assert_on_backend(predicted, device_backend, "float32", (len(X),))
    assert reg.model_.backend.name == device_backend.name


def test_dispatch_refuses_inputs_from_another_namespace_or_device():
    strict = pytest.importorskip("array_api_strict")
    X, y = three_classes(60)
    X_dev1 = strict.asarray(X, device=strict.Device("device1"))
    with dispatch():
        clf = PortnetClassifier(**FAST).fit(X_dev1, strict.asarray(y, device=X_dev1.device))
        for other in (X, strict.asarray(X)):  # NumPy, then the default device
            with pytest.raises(DeviceMismatchError, match=r"predict\(\).*same namespace"):
                clf.predict(other)
        with pytest.raises(DeviceMismatchError, match="backend='numpy'"):
            PortnetClassifier(**FAST, backend="numpy").fit(X_dev1, y)
    # Without dispatch scikit-learn's rule holds: inputs become NumPy, outputs are NumPy.
    assert isinstance(clf.predict_proba(X), np.ndarray)


@pytest.mark.parametrize(
    "backend, device",
    [("numpy", None), ("torch", "cpu"), ("array_api_strict", "device1")],
    ids=["numpy", "torch-cpu", "strict-device1"],
)
def test_numpy_data_trains_on_the_chosen_backend_and_returns_numpy(backend, device):
    try:
        pn.get_backend(backend, device)
    except BackendError as exc:
        pytest.skip(str(exc))
    X, y = three_classes()
    reference = PortnetClassifier(**FAST, random_state=1).fit(X, y)
    clf = PortnetClassifier(**FAST, backend=backend, device=device, random_state=1).fit(X, y)
    assert clf.model_.backend.name == backend
    proba = clf.predict_proba(X)
    assert isinstance(proba, np.ndarray) and proba.dtype == np.float32
    np.testing.assert_allclose(proba, reference.predict_proba(X), atol=1e-4)


def test_string_labels_stay_numpy_under_dispatch(device_backend):
    X, y = three_classes(60)
    names = np.array(["ankle boot", "bag", "coat"])[y]
    with dispatch():
        clf = PortnetClassifier(**FAST).fit(device_backend.asarray(X), names)
        predicted = clf.predict(device_backend.asarray(X))
    assert predicted.dtype.kind == "U" and set(predicted) <= set(names)


# -- training ----------------------------------------------------------------------


def test_partial_fit_epochs_equal_one_fit_of_as_many_epochs():
    X, y = three_classes()
    fitted = PortnetClassifier(**{**FAST, "epochs": 3}, random_state=0).fit(X, y)
    partial = PortnetClassifier(**FAST, random_state=0)
    for _ in range(3):
        partial.partial_fit(X, y, classes=[0, 1, 2])
    assert partial.n_iter_ == fitted.n_iter_ == 3
    assert partial.history_["train_loss"] == fitted.history_["train_loss"]
    for ours, theirs in zip(partial.model_.get_weights(), fitted.model_.get_weights(), strict=True):
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key])


def test_early_stopping_holds_out_data_and_stops():
    X, y = three_classes(200)
    clf = PortnetClassifier(hidden=(32,), lr=0.05, epochs=300, patience=2, random_state=0)
    clf.fit(X, y)
    assert clf.n_iter_ < 300
    assert len(clf.history_["val_loss"]) == clf.n_iter_
    assert np.isfinite(clf.history_["val_loss"]).all()


def test_the_regressor_learns_a_linear_map():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.01 * rng.normal(size=300)
    reg = PortnetRegressor(hidden=(32,), lr=0.01, epochs=60, batch_size=32, random_state=0)
    assert reg.fit(X, y).score(X, y) > 0.95
    assert reg.predict(X).shape == (300,)


@pytest.mark.parametrize(
    "backend, device", [("numpy", None), ("torch", "cpu")], ids=["numpy", "torch-cpu"]
)
def test_pickle_keeps_the_model_its_backend_and_its_optimizer_state(backend, device):
    try:
        pn.get_backend(backend, device)
    except BackendError as exc:
        pytest.skip(str(exc))
    X, y = three_classes()
    clf = PortnetClassifier(**FAST, backend=backend, device=device, random_state=0).fit(X, y)
    copy = pickle.loads(pickle.dumps(clf))
    assert copy.model_.backend.name == backend
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    # Adam's moments travel too: one more epoch on each gives the same weights.
    clf.partial_fit(X, y)
    copy.partial_fit(X, y)
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))


# -- errors and output -------------------------------------------------------------


@pytest.mark.parametrize(
    "make, X, y, message",
    [
        (PortnetClassifier, [[0.0, np.nan], [1.0, 2.0]], [0, 1], "Input X contains NaN"),
        (PortnetClassifier, [0.0, 1.0, 2.0], [0, 1, 0], "Reshape your data"),
        (PortnetClassifier, [[0.0], [1.0]], [0.5, 1.5], "Unknown label type"),
        (PortnetRegressor, [[0.0], [1.0]], [0.5, np.inf], "Input y contains infinity"),
        (PortnetRegressor, [[0.0], [1.0]], [0.5], "inconsistent numbers of samples"),
    ],
    ids=["nan", "1-d", "continuous-labels", "inf-target", "lengths"],
)
def test_bad_data_is_an_input_error_worded_as_scikit_learn_words_it(make, X, y, message):
    with pytest.raises(InputError, match=message):
        make(**FAST).fit(np.asarray(X), np.asarray(y))


def test_predict_checks_fit_and_features_and_partial_fit_checks_classes():
    X, y = three_classes(60)
    with pytest.raises(NotFittedError):
        PortnetClassifier().predict(X)
    with pytest.raises(InputError, match="classes must be passed"):
        PortnetClassifier().partial_fit(X, y)
    clf = PortnetClassifier(**FAST).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(InputError, match=r"labels \[7\] not in classes_"):
        clf.partial_fit(X, np.full(len(X), 7))
    with pytest.raises(InputError, match="differs from the first call's classes_"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(InputError, match="X has 5 features, but PortnetClassifier is expecting 6"):
        clf.predict(X[:, :5])


@pytest.mark.parametrize(
    "params",
    [
        {"hidden": (0,)},
        {"hidden": 2.5},
        {"activation": "swish"},
        {"activation": 3},
        {"optimizer": "lbfgs"},
        {"lr": -1.0},
        {"epochs": 0},
        {"batch_size": 0},
        {"patience": 2, "validation_fraction": 1.5},
    ],
    ids=lambda params: ",".join(params),
)
def test_bad_hyper_parameters_fail_in_fit_as_config_errors(params):
    X, y = three_classes(60)
    clf = PortnetClassifier(**{**FAST, **params})  # scikit-learn: no checks in __init__
    with pytest.raises(ConfigError):
        clf.fit(X, y)


def test_silent_by_default_and_a_divergence_is_a_warning(capsys):
    X, y = three_classes(60)
    PortnetClassifier(**FAST).fit(X, y)
    assert capsys.readouterr() == ("", "")
    with pytest.warns(DivergenceWarning, match="diverged"):
        PortnetClassifier(**{**FAST, "lr": 1e30}, optimizer="sgd").fit(X * 1e3, y)
    assert capsys.readouterr().err == ""
    PortnetClassifier(**{**FAST, "epochs": 2}, verbose=1).fit(X, y)
    assert capsys.readouterr().out.count("epoch ") == 2


def test_feature_names_are_kept_and_checked():
    pd = pytest.importorskip("pandas")
    X, y = three_classes(60)
    frame = pd.DataFrame(X, columns=[f"pixel{i}" for i in range(X.shape[1])])
    clf = PortnetClassifier(**FAST).fit(frame, y)
    assert clf.feature_names_in_.tolist() == list(frame.columns)
    with pytest.raises(InputError, match="feature names should match"):
        clf.predict(frame.rename(columns={"pixel0": "other"}))


# -- packaging and the demo ----------------------------------------------------------


def run_python(code):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_import_portnet_leaves_sklearn_alone_and_a_missing_sklearn_says_what_to_install():
    result = run_python("import sys, portnet; assert 'sklearn' not in sys.modules, 'imported'")
    assert result.returncode == 0, result.stderr
    # A None entry in sys.modules makes `import sklearn` fail, as if it were not installed.
    result = run_python("import sys; sys.modules['sklearn'] = None; import portnet.sklearn")
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "pip install portnet[sklearn]" in result.stderr


def test_the_demo_prints_the_grid_search_and_the_pipeline_scores():
    result = subprocess.run(
        [sys.executable, "-m", "experiments.sklearn_demo", "--train-size", "200"]
        + ["--epochs", "2", "--folds", "2", "--n-jobs", "2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    best = next(line for line in lines if "best params" in line)
    assert "'hidden'" in best and "'lr'" in best
    cv = float(best.split("CV accuracy ")[1].split(",")[0])
    mean = float(next(line for line in lines if "fold accuracies" in line).split("mean ")[1][:6])
    assert 0.2 < cv <= 1 and 0.2 < mean <= 1  # ten classes: chance is 0.1
