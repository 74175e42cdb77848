"""portnet's MLPClassifier inside scikit-learn: GridSearchCV (on one machine or a Dask
cluster) and a Pipeline, on the Fashion-MNIST sample shipped inside portnet.

    python -m experiments.sklearn_demo                    # the README's figures
    python -m experiments.sklearn_demo --scheduler tcp://127.0.0.1:8786   # + on a cluster
    python -m experiments.sklearn_demo --train-size 300 --max-iter 2 --folds 2   # a look
    python -m experiments.sklearn_demo --help

It prints (a) every candidate of ``GridSearchCV(MLPClassifier(...), PARAM_GRID,
n_jobs=2)`` with its CV accuracy, the best parameters and their test accuracy;
with ``--scheduler``, the same search through joblib's Dask backend on that
cluster first, its time, and whether both picked the same parameters; and (b)
``cross_val_score`` of ``Pipeline([StandardScaler(), MLPClassifier(best)])``.
The 2,000 + 500 images ship with portnet, so nothing is downloaded. Needs
scikit-learn (``pip install "portnet[sklearn]"``), and for ``--scheduler`` Dask
(``pip install "portnet[dask]"``) with portnet installed on every worker.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings

import numpy as np

from experiments.common import run_cli
from portnet.config import check_number
from portnet.data import load_dataset

# Eight candidates: two widths, two learning rates, two penalties.
PARAM_GRID = {
    "hidden_layer_sizes": [(64,), (256,)],
    "learning_rate_init": [1e-3, 3e-3],
    "alpha": [1e-4, 1e-2],
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.sklearn_demo",
        description=(
            "GridSearchCV (on this machine, and with --scheduler on a Dask cluster) and "
            "cross_val_score with portnet.sklearn.MLPClassifier on the embedded Fashion-MNIST "
            f"sample. The grid is {PARAM_GRID}."
        ),
    )
    parser.add_argument(
        "--train-size", type=int, default=2000, help="training images, 10..2000 (default 2000)"
    )
    parser.add_argument("--max-iter", type=int, default=15, help="epochs per fit (default 15)")
    parser.add_argument("--batch-size", type=int, default=64, help="minibatch size (default 64)")
    parser.add_argument("--folds", type=int, default=3, help="cross-validation folds (default 3)")
    parser.add_argument("--n-jobs", type=int, default=2, help="parallel local fits (default 2)")
    parser.add_argument(
        "--scheduler",
        help="a running Dask scheduler (tcp://host:8786): run the grid search there too",
    )
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


@contextlib.contextmanager
def on_cluster(address: str):
    """joblib's Dask backend on the cluster at ``address``."""
    try:
        import joblib
        from distributed import Client
    except ImportError as exc:
        raise SystemExit(
            f'error: --scheduler needs Dask: pip install "portnet[dask]" ({exc})'
        ) from None
    try:
        client = Client(address, timeout="10s")
    except OSError as exc:
        raise SystemExit(
            f"error: cannot reach the Dask scheduler at {address} ({exc}): start one with "
            "`dask scheduler` and at least one `dask worker ADDRESS`, then pass its address."
        ) from None
    with client, joblib.parallel_backend("dask"):
        n_workers = len(client.scheduler_info()["workers"])
        yield n_workers


def grid_search(base, X, y, folds: int, n_jobs: int):
    """``GridSearchCV`` over :data:`PARAM_GRID`, and its seconds."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed epoch budget, on purpose
        search = GridSearchCV(base, PARAM_GRID, cv=folds, n_jobs=n_jobs).fit(X, y)
    return search, time.perf_counter() - start


def report(search, seconds: float, X_test, y_test, where: str) -> None:
    results = search.cv_results_
    for params, mean, std in zip(
        results["params"], results["mean_test_score"], results["std_test_score"], strict=True
    ):
        print(f"    {params}: CV accuracy {mean:.4f} ± {std:.4f}")
    print(
        f"    best params {search.best_params_}: CV accuracy {search.best_score_:.4f}, "
        f"test accuracy {search.score(X_test, y_test):.4f} ({where}: {seconds:.1f} s)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_number("--train-size", args.train_size, low=10, high=2000, integer=True)
    check_number("--folds", args.folds, low=2, integer=True)
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from portnet.sklearn import MLPClassifier

    X_raw, y, X_test_raw, y_test = load_sample(args.train_size, args.seed)
    X, X_test = X_raw / np.float32(255), X_test_raw / np.float32(255)  # pixels in [0, 1]
    print(
        f"data: fashion_mnist_sample, {len(X)} training and {len(X_test)} test images, "
        f"{X.shape[1]} pixels; {args.folds}-fold CV",
        flush=True,
    )
    base = MLPClassifier(
        max_iter=args.max_iter,
        batch_size=args.batch_size,
        random_state=args.seed,
        backend=args.backend,
        device=args.device,
    )
    n_fits = args.folds * int(np.prod([len(v) for v in PARAM_GRID.values()]))
    on_dask = None
    if args.scheduler:
        with on_cluster(args.scheduler) as n_workers:
            print(
                f"(a) GridSearchCV, {n_fits} fits, Dask at {args.scheduler} ({n_workers} workers)"
            )
            on_dask, seconds = grid_search(base, X, y, args.folds, n_jobs=-1)
        report(on_dask, seconds, X_test, y_test, "Dask")
    print(f"(a) GridSearchCV over {PARAM_GRID}: {n_fits} fits, n_jobs={args.n_jobs} ...")
    search, seconds = grid_search(base, X, y, args.folds, args.n_jobs)
    report(search, seconds, X_test, y_test, f"n_jobs={args.n_jobs}")
    if on_dask is not None:
        same = on_dask.best_params_ == search.best_params_
        verdict = "the same" if same else "DIFFERENT"
        print(f"    Dask and n_jobs={args.n_jobs} picked {verdict} parameters")

    # Raw pixels this time: the Pipeline's StandardScaler does the scaling.
    best = clone(base).set_params(**search.best_params_)
    pipeline = Pipeline([("scale", StandardScaler()), ("net", best)])
    print(f"(b) cross_val_score(Pipeline([StandardScaler(), {best!r}]), cv={args.folds}) ...")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = cross_val_score(pipeline, X_raw, y, cv=args.folds, n_jobs=args.n_jobs)
    print(
        f"    fold accuracies {np.round(scores, 4).tolist()}: mean {scores.mean():.4f} "
        f"± {scores.std():.4f} ({time.perf_counter() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
