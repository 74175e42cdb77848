"""portnet inside scikit-learn: GridSearchCV and a Pipeline on the embedded Fashion-MNIST sample.

    python -m experiments.sklearn_demo                    # the README's figures
    python -m experiments.sklearn_demo --train-size 300 --epochs 2 --folds 2   # a quick look
    python -m experiments.sklearn_demo --help

It prints (b) the best parameters and scores of ``GridSearchCV(PortnetClassifier(...),
n_jobs=2)`` and (c) ``cross_val_score`` of ``Pipeline([StandardScaler(),
PortnetClassifier(...)])`` on the 2,000 + 500 images shipped inside portnet, so it
needs no download. Needs scikit-learn (``pip install portnet[sklearn]``).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from experiments.common import run_cli
from portnet.config import check_number
from portnet.data import load_dataset

# Two widths and two learning rates: small enough to finish in seconds on two cores.
PARAM_GRID = {"hidden": [(64,), (256,)], "lr": [1e-3, 3e-3]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.sklearn_demo",
        description=(
            "GridSearchCV and cross_val_score with portnet's scikit-learn classifier on the "
            f"embedded Fashion-MNIST sample. The grid is {PARAM_GRID}."
        ),
    )
    parser.add_argument(
        "--train-size", type=int, default=2000, help="training images, 10..2000 (default 2000)"
    )
    parser.add_argument("--epochs", type=int, default=15, help="epochs per fit (default 15)")
    parser.add_argument("--batch-size", type=int, default=64, help="minibatch size (default 64)")
    parser.add_argument("--folds", type=int, default=3, help="cross-validation folds (default 3)")
    parser.add_argument("--n-jobs", type=int, default=2, help="parallel fits (default 2)")
    parser.add_argument("--backend", default=None, help="portnet backend (default: numpy)")
    parser.add_argument("--device", default=None, help="the backend's device")
    parser.add_argument("--seed", type=int, default=0, help="random_state (default 0)")
    return parser.parse_args(argv)


def load_sample(train_size: int, seed: int):
    """Raw pixels (float32 rows) and labels: a stratified subset of the sample's training part."""
    from sklearn.model_selection import train_test_split

    ds = load_dataset("fashion_mnist_sample")
    X, y = ds.X_train.reshape(len(ds.X_train), -1).astype(np.float32), ds.y_train
    if train_size < len(X):
        X, _, y, _ = train_test_split(X, y, train_size=train_size, stratify=y, random_state=seed)
    X_test = ds.X_test.reshape(len(ds.X_test), -1).astype(np.float32)
    return X, y, X_test, ds.y_test


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_number("--train-size", args.train_size, low=10, high=2000, integer=True)
    check_number("--folds", args.folds, low=2, integer=True)
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from portnet.sklearn import PortnetClassifier

    X_raw, y, X_test_raw, y_test = load_sample(args.train_size, args.seed)
    X, X_test = X_raw / np.float32(255), X_test_raw / np.float32(255)  # pixels in [0, 1]
    print(
        f"data: fashion_mnist_sample, {len(X)} training and {len(X_test)} test images, "
        f"{X.shape[1]} pixels; {args.folds}-fold CV, n_jobs={args.n_jobs}",
        flush=True,
    )
    base = PortnetClassifier(
        epochs=args.epochs,
        batch_size=args.batch_size,
        backend=args.backend,
        device=args.device,
        random_state=args.seed,
    )

    n_fits = args.folds * int(np.prod([len(v) for v in PARAM_GRID.values()]))
    print(f"(b) GridSearchCV over {PARAM_GRID}: {n_fits} fits ...", flush=True)
    start = time.perf_counter()
    search = GridSearchCV(base, PARAM_GRID, cv=args.folds, n_jobs=args.n_jobs).fit(X, y)
    results = search.cv_results_
    for params, mean, std in zip(
        results["params"], results["mean_test_score"], results["std_test_score"], strict=True
    ):
        print(f"    {params}: CV accuracy {mean:.4f} ± {std:.4f}")
    print(
        f"    best params {search.best_params_}: CV accuracy {search.best_score_:.4f}, "
        f"test accuracy {search.score(X_test, y_test):.4f} ({time.perf_counter() - start:.1f} s)",
        flush=True,
    )

    # Raw pixels this time: the Pipeline's StandardScaler does the scaling.
    pipeline = Pipeline(
        [("scale", StandardScaler()), ("net", clone(base).set_params(**search.best_params_))]
    )
    best = ", ".join(f"{key}={value!r}" for key, value in search.best_params_.items())
    print(
        f"(c) cross_val_score(Pipeline([StandardScaler(), PortnetClassifier({best}, ...)]), "
        f"cv={args.folds}) ...",
        flush=True,
    )
    start = time.perf_counter()
    scores = cross_val_score(pipeline, X_raw, y, cv=args.folds, n_jobs=args.n_jobs)
    print(
        f"    fold accuracies {np.round(scores, 4).tolist()}: mean {scores.mean():.4f} "
        f"± {scores.std():.4f} ({time.perf_counter() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
