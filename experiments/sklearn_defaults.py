"""portnet's MLP estimators against scikit-learn's, each with its defaults.

    python -m experiments.sklearn_defaults                # the README's table
    python -m experiments.sklearn_defaults --seeds 1      # a quick look
    python -m experiments.sklearn_defaults --help

For each of scikit-learn's bundled data sets (four classifications, two
regressions), 5-fold cross-validation of ``Pipeline([StandardScaler(), estimator])``
with ``portnet.sklearn.MLPClassifier()`` / ``MLPRegressor()`` and with
``sklearn.neural_network``'s, constructed with no argument. Their default
``random_state=None`` draws from NumPy's global generator, which is seeded before
each cross-validation, so the two see the same draws; the table gives the mean
accuracy (R² for regression) over ``--seeds`` seeds and the seconds each took.
Needs scikit-learn (``pip install "portnet[sklearn]"``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

from experiments.common import run_cli

DATA_SETS = ("iris", "wine", "breast_cancer", "digits", "diabetes", "linnerud")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.sklearn_defaults",
        description=(
            "5-fold CV of portnet.sklearn's and scikit-learn's MLPs with their defaults, "
            "in a StandardScaler pipeline, on scikit-learn's bundled data sets."
        ),
    )
    parser.add_argument("--seeds", type=int, default=3, help="global seeds 0..N-1 (default 3)")
    parser.add_argument(
        "--data",
        default=",".join(DATA_SETS),
        help=f"comma-separated (default {','.join(DATA_SETS)})",
    )
    return parser.parse_args(argv)


def load(name: str):
    """``(X, y, is_classification)`` of a bundled data set."""
    from sklearn import datasets

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return X, y, name not in ("diabetes", "linnerud")


def cross_validated(estimator, X, y, seed: int) -> tuple[float, float, int]:
    """Mean 5-fold score, seconds, and ConvergenceWarnings, from a seeded global generator."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # random_state=None draws from NumPy's legacy global generator, in both libraries.
    np.random.seed(seed)  # noqa: NPY002
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        scores = cross_val_score(make_pipeline(StandardScaler(), estimator), X, y, cv=5)
    n_warned = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    return float(np.mean(scores)), time.perf_counter() - start, n_warned


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from sklearn import neural_network

    from portnet import sklearn as portnet_sklearn

    names = [name.strip() for name in args.data.split(",") if name.strip()]
    unknown = sorted(set(names) - set(DATA_SETS))
    if unknown:
        raise SystemExit(f"error: unknown data set(s) {unknown}; choose from {list(DATA_SETS)}")
    print(f"5-fold CV, StandardScaler + defaults, mean over seeds 0..{args.seeds - 1}")
    print(
        "| data set | samples | score | portnet | scikit-learn | difference "
        "| portnet s | scikit-learn s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        X, y, classification = load(name)
        kind = "MLPClassifier" if classification else "MLPRegressor"
        rows = {"portnet": [], "scikit-learn": []}
        for seed in range(args.seeds):
            for library, module in (("portnet", portnet_sklearn), ("scikit-learn", neural_network)):
                rows[library].append(cross_validated(getattr(module, kind)(), X, y, seed))
        ours, theirs = (np.mean([r[0] for r in rows[k]]) for k in ("portnet", "scikit-learn"))
        t_ours, t_theirs = (sum(r[1] for r in rows[k]) for k in ("portnet", "scikit-learn"))
        print(
            f"| {name} | {len(X)} | {'accuracy' if classification else 'R²'} | {ours:.4f} "
            f"| {theirs:.4f} | {ours - theirs:+.4f} | {t_ours:.1f} | {t_theirs:.1f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
