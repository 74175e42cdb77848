"""Bad input gives one clear error that names the problem, never a traceback from the maths."""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import numpy as np
import pytest
from helpers.arrays import synthetic_classification

import portnet as pn
from portnet.config import check_number
from portnet.errors import InputError, PortnetError


@pytest.fixture
def model(backend):
    return pn.Model(pn.mlp([20, 8, 10]), backend=backend)


@pytest.fixture
def data():
    return synthetic_classification(n=50)


def _fit(model, X, y):
    model.fit(X, y, epochs=1, verbose=0)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        pytest.param(
            lambda X, y: (X[:, :19], y), "takes 20 inputs but X has 19 features", id="wrong-width"
        ),
        pytest.param(lambda X, y: (X.reshape(50, 4, 5), y), "2-D", id="wrong-ndim"),
        pytest.param(lambda X, y: (np.where(np.arange(20) == 3, np.nan, X), y), "NaN", id="nan"),
        pytest.param(
            lambda X, y: (X, np.where(np.arange(50) == 7, 10, y)),
            "outside [0, 10)",
            id="label-too-big",
        ),
        pytest.param(lambda X, y: (X, y - 1), "outside [0, 10)", id="negative-label"),
        pytest.param(lambda X, y: (X[:0], y[:0]), "empty", id="empty"),
        pytest.param(lambda X, y: (X, y[:40]), "40 entries", id="length-mismatch"),
        pytest.param(lambda X, y: (X, y + 0.5), "integer", id="fractional-labels"),
    ],
)
def test_bad_training_data_is_named(model, data, mutate, needle, backend):
    X, y = mutate(*data)
    with pytest.raises(InputError) as info:
        _fit(model, X, y)
    assert needle in str(info.value)
    # Also when the data already lives on the backend (validated without a full copy).
    if X.shape[0] and X.ndim == 2 and X.shape[0] == y.shape[0] and y.dtype.kind in "iu":
        with pytest.raises(InputError, match=needle.split()[0]):
            _fit(model, backend.asarray(X.astype(np.float32)), backend.asarray(y))


def test_errors_are_portnet_errors_with_short_tracebacks(numpy_backend, data):
    model = pn.Model(pn.mlp([20, 8, 10]), backend=numpy_backend)
    X, y = data
    with pytest.raises(PortnetError) as info:
        _fit(model, X[:, :5], y)
    # Raised from the validation layer, not from inside a matmul.
    assert info.traceback[-1].path.name == "validation.py"


def test_evaluate_and_predict_validate_too(numpy_backend, data):
    model = pn.Model(pn.mlp([20, 8, 10]), backend=numpy_backend)
    X, y = data
    with pytest.raises(InputError, match="takes 20 inputs but X has 3 features"):
        model.predict(X[:, :3])
    with pytest.raises(InputError, match="outside"):
        model.evaluate(X, y + 100)


def test_bad_hyperparameters(numpy_backend, data):
    X, y = data
    model = pn.Model(pn.mlp([20, 8, 10]), backend=numpy_backend)
    with pytest.raises(pn.ConfigError, match="batch_size"):
        model.fit(X, y, batch_size=0, verbose=0)
    with pytest.raises(pn.ConfigError, match="validation_split"):
        model.fit(X, y, validation_split=1.5, verbose=0)
    with pytest.raises(pn.ConfigError, match="unknown activation"):
        pn.mlp([2, 4, 3], "swishy")
    with pytest.raises(pn.ConfigError, match="unknown optimizer"):
        pn.Model(pn.mlp([2, 3]), optimizer="adagrad")
    with pytest.raises(pn.ConfigError, match="unknown loss"):
        pn.Model(pn.mlp([2, 3]), loss="hinge")


def test_binary_targets_must_be_zero_or_one(numpy_backend):
    model = pn.Model([pn.Dense(3, 1)], loss="bce", backend=numpy_backend)
    with pytest.raises(InputError, match="0/1"):
        _fit(model, np.ones((4, 3)), np.array([0, 1, 2, 1]))


REPO = Path(__file__).resolve().parents[1]
BUILTIN_ERRORS = {
    "Exception",
    "ValueError",
    "TypeError",
    "RuntimeError",
    "KeyError",
    "IndexError",
    "OSError",
    "IOError",
    "FileNotFoundError",
    "AssertionError",
}
# Raised and caught inside portnet, never seen by a user: (path, error). All mirrors of a
# download failing: load_dataset catches it and raises a DatasetError naming the fix.
CAUGHT_INSIDE = {("portnet/data/fetch.py", "OSError"), ("portnet/data/registry.py", "OSError")}


def _raised_builtins(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = getattr(target, "id", None) or getattr(target, "attr", None)
            if name in BUILTIN_ERRORS:
                found.append((node.lineno, name))
    return found


def test_the_library_raises_only_portnet_errors():
    """Every error a user can cause in portnet is a PortnetError subclass (ConfigError,
    InputError, ModelFileError, DatasetError ...), so the CLIs can turn it into exit 2;
    the test helpers in portnet.testing are left out."""
    offenders = []
    for root in ("portnet", "backends"):
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith("portnet/testing/"):
                continue
            offenders += [
                f"{rel}:{line} raises {name}"
                for line, name in _raised_builtins(path)
                if (rel, name) not in CAUGHT_INSIDE
            ]
    assert not offenders, "\n".join(offenders)


def test_the_scan_sees_a_bare_value_error(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f(x):\n    if x:\n        raise ValueError('bad')\n    raise pn.E()\n")
    assert _raised_builtins(sample) == [(3, "ValueError")]


def _yaml_error():
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load("a: [1")


@pytest.mark.parametrize(
    ("raise_it", "needle"),
    [
        pytest.param(lambda: check_number("lr", float("nan")), "lr must be finite", id="config"),
        pytest.param(lambda: open("/no/such/file.yaml"), "/no/such/file.yaml", id="os-error"),
        pytest.param(lambda: json.loads("{"), "could not be parsed", id="json"),
        pytest.param(_yaml_error, "YAML file could not be parsed", id="yaml"),
        pytest.param(lambda: b"\xff".decode(), "could not be parsed", id="unicode"),
        pytest.param(
            lambda: (_ for _ in ()).throw(argparse.ArgumentTypeError("widths must be positive")),
            "widths must be positive",
            id="argument-type",
        ),
        pytest.param(lambda: __import__("no_such_package_xyz"), "Install", id="import"),
    ],
)
def test_run_cli_turns_user_errors_into_one_line_and_exit_2(capsys, raise_it, needle):
    from experiments.common import run_cli

    def main(argv):
        raise_it()

    with pytest.raises(SystemExit) as info:
        run_cli(main, [])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err
    assert err.strip().count("\n") == 0


def test_run_cli_keeps_bugs_as_tracebacks_and_passes_the_exit_code():
    from experiments.common import run_cli

    with pytest.raises(ZeroDivisionError):
        run_cli(lambda argv: 1 / 0, [])
    with pytest.raises(SystemExit) as info:
        run_cli(lambda argv: 0, [])
    assert info.value.code == 0
    with pytest.raises(SystemExit) as info:
        run_cli(lambda argv: 1, [])
    assert info.value.code == 1
