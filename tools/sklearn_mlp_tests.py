"""Run scikit-learn's own MLP tests against portnet's estimators.

Copies ``sklearn/neural_network/tests/test_mlp.py`` from the installed
scikit-learn into a temporary folder, changes its one import line to
``from portnet.sklearn import MLPClassifier, MLPRegressor``, adds the
``global_random_seed`` fixture scikit-learn's own conftest provides, and runs it
with pytest as scikit-learn runs it (its default warning filters, not portnet's
warnings-as-errors). Five tests read scikit-learn's private attributes
(``_loss_grad_lbfgs``, ``_optimizer``, ``_no_improvement_count``) and are
expected to fail; any other failure, or a scikit-learn other than the one
whose file was checked, fails the run::

    python tools/sklearn_mlp_tests.py            # exit 0: only the five fail
    python tools/sklearn_mlp_tests.py --keep DIR # keep the copied file and the report
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

#: The scikit-learn release whose test_mlp.py was read (pinned in the dev extra).
SKLEARN_VERSION = "1.9.1"
ORIGINAL_IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
PORTNET_IMPORT = "from portnet.sklearn import MLPClassifier, MLPRegressor"
#: Tests that read scikit-learn's private attributes, with the attribute.
PRIVATE = {
    "test_gradient": "_loss_grad_lbfgs",
    "test_learning_rate_warmstart": "_optimizer",
    "test_adaptive_learning_rate": "_optimizer",
    "test_n_iter_no_change": "_no_improvement_count",
    "test_n_iter_no_change_inf": "_no_improvement_count",
}

CONFTEST = '''"""The global_random_seed fixture of scikit-learn's test suite: seed 42, or the
seeds SKLEARN_TESTS_GLOBAL_RANDOM_SEED names ("all", "7" or "1-5")."""
import os


def pytest_generate_tests(metafunc):
    if "global_random_seed" not in metafunc.fixturenames:
        return
    value = os.environ.get("SKLEARN_TESTS_GLOBAL_RANDOM_SEED")
    if value is None:
        seeds = [42]
    elif value == "all":
        seeds = list(range(100))
    elif "-" in value:
        low, high = map(int, value.split("-"))
        seeds = list(range(low, high + 1))
    else:
        seeds = [int(value)]
    metafunc.parametrize("global_random_seed", seeds)
'''


def copy_tests(folder: Path) -> Path:
    """Write the changed ``test_mlp.py`` and the conftest into ``folder``."""
    import sklearn

    if sklearn.__version__ != SKLEARN_VERSION:
        raise SystemExit(
            f"scikit-learn {sklearn.__version__} is installed, but the expected results are "
            f"for {SKLEARN_VERSION}: pip install scikit-learn=={SKLEARN_VERSION}"
        )
    source = Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"
    text = source.read_text()
    if text.count(ORIGINAL_IMPORT) != 1:
        raise SystemExit(f"{source} no longer has the line {ORIGINAL_IMPORT!r} exactly once")
    target = folder / "test_mlp.py"
    target.write_text(text.replace(ORIGINAL_IMPORT, PORTNET_IMPORT))
    (folder / "conftest.py").write_text(CONFTEST)
    return target


def run(folder: Path) -> dict[str, str]:
    """Run the copied tests; each test's outcome, from pytest's JUnit XML."""
    report = folder / "report.xml"
    env = {**os.environ, "PYTHONWARNINGS": ""}
    subprocess.run(
        [sys.executable, "-m", "pytest", "test_mlp.py", "-q", "-p", "no:cacheprovider",
         f"--junitxml={report}", "--rootdir", str(folder)],
        cwd=folder, env=env, check=False,
    )  # fmt: skip
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = "failed" if kinds & {"failure", "error"} else "passed"
        outcomes[case.get("name")] = "skipped" if "skipped" in kinds else outcome
    return outcomes


def summarize(outcomes: dict[str, str]) -> tuple[str, bool]:
    """A report in words, and whether only the private-attribute tests failed."""
    failed = sorted(name for name, outcome in outcomes.items() if outcome == "failed")
    counts = {kind: list(outcomes.values()).count(kind) for kind in ("passed", "failed", "skipped")}
    unexpected = [name for name in failed if name.split("[")[0] not in PRIVATE]
    lines = [
        f"scikit-learn {SKLEARN_VERSION} test_mlp.py with portnet.sklearn: {len(outcomes)} "
        f"tests, {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    ]
    for name in failed:
        reason = PRIVATE.get(name.split("[")[0])
        lines.append(f"  failed: {name}" + (f" (reads {reason})" if reason else " UNEXPECTED"))
    return "\n".join(lines), not unexpected and counts["passed"] + len(failed) == len(outcomes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="write the copied tests and report here")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="sklearn-mlp-tests-"))
    try:
        copy_tests(folder)
        text, ok = summarize(run(folder))
        print(text)
        if args.keep:
            shutil.copytree(folder, args.keep, dirs_exist_ok=True)
        return 0 if ok else 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
