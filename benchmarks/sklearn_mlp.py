"""Training time of portnet.sklearn's MLPClassifier against scikit-learn's, in one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.sklearn_mlp
    python -m benchmarks.sklearn_mlp --dtypes float32 --repeats 1 --train-size 5000   # a look
    python -m benchmarks.sklearn_mlp --help

Both estimators get the same data and settings: Fashion-MNIST training images
scaled to [0, 1] in the given dtype, one hidden layer, adam, a fixed number of
epochs (``tol=0, n_iter_no_change=10**6``, so nothing stops early) at a fixed
batch size, ``random_state=0``. Every fit runs in a fresh process, as a user's
would (the C library's allocator starts empty; importing is not timed), and the
libraries take turns, repeat after repeat. The report gives the median seconds
of ``fit``, its ratio to scikit-learn's in the same run, and the test accuracy,
with the CPU and BLAS kernels; it is written to ``benchmarks/results/NAME.md``
and ``.json``. ``portnet-torch`` trains the NumPy data on PyTorch's CPU tensors;
``portnet-cupy`` and ``portnet-torch-cuda`` on a GPU (skipped, with the reason,
where there is none).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from experiments.common import run_cli

from .machine import machine_info
from .report import _machine_lines, write_json, write_markdown

RESULTS = Path(__file__).resolve().parent / "results"
#: The estimator of each library: (module, portnet backend, device).
LIBRARIES = {
    "portnet": ("portnet.sklearn", None, None),
    "scikit-learn": ("sklearn.neural_network", None, None),
    "portnet-torch": ("portnet.sklearn", "torch", "cpu"),
    "portnet-cupy": ("portnet.sklearn", "cupy", "cuda:0"),
    "portnet-torch-cuda": ("portnet.sklearn", "torch", "cuda"),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sklearn_mlp",
        description="Time MLPClassifier.fit in portnet.sklearn and scikit-learn, in one run.",
    )
    parser.add_argument("--train-size", type=int, default=20000, help="images (default 20000)")
    parser.add_argument("--hidden", type=int, default=256, help="hidden units (default 256)")
    parser.add_argument("--max-iter", type=int, default=20, help="epochs (default 20)")
    parser.add_argument("--batch-size", type=int, default=200, help="batch size (default 200)")
    parser.add_argument("--dtypes", default="float32,float64", help="default float32,float64")
    parser.add_argument("--repeats", type=int, default=3, help="fits per library (default 3)")
    parser.add_argument(
        "--libraries",
        default="portnet,scikit-learn",
        help=f"comma-separated, from {', '.join(LIBRARIES)} (default portnet,scikit-learn)",
    )
    parser.add_argument("--name", default="sklearn_mlp", help="report name (default sklearn_mlp)")
    return parser.parse_args(argv)


def _data(train_size: int, dtype: str):
    import numpy as np

    from portnet.data import load_dataset

    ds = load_dataset("fashion_mnist")
    X = ds.X_train[:train_size].reshape(train_size, -1).astype(dtype) / np.asarray(255, dtype)
    X_test = ds.X_test.reshape(len(ds.X_test), -1).astype(dtype) / np.asarray(255, dtype)
    return X, ds.y_train[:train_size], X_test, ds.y_test


def fit_once(library: str, dtype: str, settings: dict[str, Any]) -> dict[str, Any]:
    """One timed fit in this (fresh) process: its seconds and test accuracy."""
    import importlib

    module, backend, device = LIBRARIES[library]
    estimator_class = importlib.import_module(module).MLPClassifier
    extra = {} if module.startswith("sklearn") else {"backend": backend, "device": device}
    try:
        estimator = estimator_class(
            hidden_layer_sizes=(settings["hidden"],),
            max_iter=settings["max_iter"],
            batch_size=settings["batch_size"],
            tol=0.0,
            n_iter_no_change=10**6,
            random_state=0,
            **extra,
        )
        if backend is not None:  # load the backend now: a missing GPU is a skip, not a time
            from portnet import get_backend

            get_backend(backend, device)
    except Exception as exc:  # noqa: BLE001 - reported as the reason to skip
        return {"status": "skipped", "reason": str(exc).split(". ")[0]}
    X, y, X_test, y_test = _data(settings["train_size"], dtype)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the epochs are fixed on purpose
        start = time.perf_counter()
        estimator.fit(X, y)
        seconds = time.perf_counter() - start
    return {
        "status": "ok",
        "seconds": seconds,
        "accuracy": float(estimator.score(X_test, y_test)),
        "n_iter": int(estimator.n_iter_),
    }


def in_fresh_process(library: str, dtype: str, settings: dict[str, Any]) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(fit_once, library, dtype, settings).result()


def summarize(runs: dict[tuple[str, str], list[dict[str, Any]]], dtypes, libraries) -> list[dict]:
    """Median seconds per (dtype, library) and the ratio to scikit-learn's."""
    rows = []
    for dtype in dtypes:
        reference = None
        entries = []
        for library in libraries:
            done = [r for r in runs[(dtype, library)] if r["status"] == "ok"]
            if not done:
                entries.append({"dtype": dtype, "library": library, **runs[(dtype, library)][0]})
                continue
            seconds = [r["seconds"] for r in done]
            entry = {
                "dtype": dtype,
                "library": library,
                "status": "ok",
                "median_s": statistics.median(seconds),
                "min_s": min(seconds),
                "max_s": max(seconds),
                "accuracy": statistics.median(r["accuracy"] for r in done),
            }
            if library == "scikit-learn":
                reference = entry["median_s"]
            entries.append(entry)
        for entry in entries:
            if entry["status"] == "ok" and reference:
                entry["ratio"] = entry["median_s"] / reference
        rows += entries
    return rows


def markdown(document: dict[str, Any]) -> str:
    s = document["settings"]
    lines = [
        "# portnet.sklearn.MLPClassifier against scikit-learn's",
        "",
        f"Command: `{document['command']}`",
        "",
        f"Fashion-MNIST, {s['train_size']} training images in [0, 1], one hidden layer of "
        f"{s['hidden']}, adam, {s['max_iter']} epochs at batch {s['batch_size']} "
        f"(tol=0, n_iter_no_change=10**6), random_state=0. Seconds of `fit`, each in a fresh "
        f"process, libraries taking turns: median (min–max) of {s['repeats']}; the ratio "
        "divides medians from this run; test accuracy on the 10,000 test images.",
        "",
        "| dtype | library | fit s | × scikit-learn | test accuracy |",
        "|---|---|---|---|---|",
    ]
    for row in document["results"]:
        if row["status"] != "ok":
            lines.append(f"| {row['dtype']} | {row['library']} | skipped: {row['reason']} | | |")
            continue
        ratio = f"{row['ratio']:.2f}×" if "ratio" in row else "–"
        lines.append(
            f"| {row['dtype']} | {row['library']} | {row['median_s']:.2f} "
            f"({row['min_s']:.2f}–{row['max_s']:.2f}) | {ratio} | {row['accuracy']:.4f} |"
        )
    return "\n".join([*lines, "", "## Machine", "", *_machine_lines(document["machine"]), ""])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    libraries = [name.strip() for name in args.libraries.split(",") if name.strip()]
    unknown = sorted(set(libraries) - set(LIBRARIES))
    if unknown:
        raise SystemExit(f"error: unknown --libraries {unknown}; choose from {list(LIBRARIES)}")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    settings = {k: getattr(args, k) for k in ("train_size", "hidden", "max_iter", "batch_size")}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {
        (d, lib): [] for d in dtypes for lib in libraries
    }
    for repeat in range(args.repeats):
        for dtype in dtypes:
            for library in libraries:
                result = in_fresh_process(library, dtype, settings)
                runs[(dtype, library)].append(result)
                said = f"{result['seconds']:.2f} s" if result["status"] == "ok" else "skipped"
                print(f"repeat {repeat + 1}, {dtype}, {library}: {said}", flush=True)
    import numpy  # noqa: F401 - so that threadpoolctl sees the BLAS the fits used
    import sklearn  # noqa: F401

    document = {
        "command": "python -m benchmarks.sklearn_mlp " + " ".join(argv or sys.argv[1:]),
        "settings": {**settings, "repeats": args.repeats},
        "results": summarize(runs, dtypes, libraries),
        "machine": machine_info(),
    }
    text = markdown(document)
    write_json(RESULTS / f"{args.name}.json", document)
    write_markdown(RESULTS / f"{args.name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
