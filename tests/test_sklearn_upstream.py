"""scikit-learn's own test_mlp.py, with only its import changed, passes on portnet.sklearn.

tools/sklearn_mlp_tests.py copies the installed scikit-learn's file, changes the one
import line, provides the global_random_seed fixture and runs it with scikit-learn's
warning filters. The only failures allowed are the five tests that read
scikit-learn's private attributes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("pandas")  # as scikit-learn runs it: test_preserve_feature_names needs it

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import sklearn_mlp_tests  # noqa: E402


def test_scikit_learns_mlp_tests_pass_with_only_the_import_changed(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "sklearn_mlp_tests.py"), "--keep", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = done.stdout.strip().splitlines()
    head = next(line for line in summary if line.startswith("scikit-learn "))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "59 tests, 54 passed, 5 failed, 0 skipped" in head, head
    copied = (tmp_path / "test_mlp.py").read_text()
    assert sklearn_mlp_tests.PORTNET_IMPORT in copied
    assert "sklearn.neural_network import" not in copied


def test_the_runner_fails_on_any_other_failure():
    outcomes = {name: "failed" for name in sklearn_mlp_tests.PRIVATE} | {"test_fit": "passed"}
    assert sklearn_mlp_tests.summarize(outcomes)[1]
    text, ok = sklearn_mlp_tests.summarize({**outcomes, "test_fit": "failed"})
    assert not ok and "test_fit UNEXPECTED" in text
    assert not sklearn_mlp_tests.summarize({**outcomes, "test_alpha": "skipped"})[1]
