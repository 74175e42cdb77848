"""A resumable hyper-parameter sweep: one result file per configuration, run in parallel.

Each configuration gets a stable id, a hash of its sorted JSON, and its result
goes to ``<out>/<id>.json``, written atomically (temporary file, then rename).
A configuration whose file exists is skipped, so a sweep that was killed
resumes where it stopped. Configurations run in worker processes started with
multiprocessing's ``spawn`` method (a forked child cannot use a CUDA context its
parent created), or one per task on a Dask distributed cluster.

python -m experiments.sweep --grid reduced --workers 2 --out runs/s3-grid
python -m experiments.sweep --grid full --scheduler tcp://10.0.0.5:8786 --out runs/s3-full
python -m experiments.sweep --out runs/s3-grid --summarize       # top-10 table only
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.common import write_json

#: Columns of the top-k table: (config key, header), as the paper's Table 2.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("lr", "Learning rate"),
    ("l2", "λ"),
    ("hidden", "Hidden layer 1"),
    ("hidden", "Hidden layer 2"),
    ("decay", "LR decay"),
)


def config_id(config: Mapping[str, Any]) -> str:
    """A stable 12-hex-digit id: the SHA-256 of the configuration's sorted JSON.

    The same configuration always gets the same id, in any process, on any machine
    (``hash()`` is salted per process, so it cannot be used).
    """
    text = json.dumps(dict(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def config_seed(config: Mapping[str, Any]) -> int:
    """The seed of a configuration, derived from its id (fits in 31 bits)."""
    return int(config_id(config), 16) % (2**31 - 1)


def expand_grid(base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of ``grid``'s values on top of ``base`` (in a deterministic order)."""
    keys = list(grid)
    return [
        {**base, **dict(zip(keys, values, strict=True))}
        for values in itertools.product(*(grid[k] for k in keys))
    ]


def result_path(out: str | os.PathLike, config: Mapping[str, Any]) -> Path:
    return Path(out) / f"{config_id(config)}.json"


def run_config(config: dict[str, Any], out: str, task: str = "rookie") -> dict[str, Any]:
    """Run one configuration and write ``<out>/<id>.json`` atomically; skip it if done.

    Parameters
    ----------
    config : dict
        The configuration (JSON-serialisable). Unless it holds a ``seed``, the seed
        is derived from its id.
    out : str
        Folder of the result files.
    task : str
        What to run; ``"rookie"`` trains study S3's network (see
        :func:`experiments.reproduce._rookie.train_rookie`).

    Returns
    -------
    dict
        The result record (also the file's content), with ``"skipped": True`` when
        the file already existed.
    """
    path = result_path(out, config)
    if path.is_file():
        return {**json.loads(path.read_text()), "skipped": True}
    run_config_seed = config.get("seed", config_seed(config))
    record: dict[str, Any] = {
        "id": config_id(config),
        "config": config,
        "seed": run_config_seed,
        "task": task,
        "pid": os.getpid(),
        "started": time.time(),
    }
    if task == "rookie":
        from experiments.reproduce._rookie import train_rookie

        result = train_rookie({**config, "seed": run_config_seed})
        record.update(
            val_accuracy=result["val_accuracy"],
            test_accuracy=result["test_accuracy"],
            test_loss=result["test_loss"],
            seconds=result["seconds"],
            history=result["history"].to_dict(),
        )
    elif task == "sleep":  # for tests of the runner itself: no training
        time.sleep(float(config.get("sleep", 0.1)))
        record.update(val_accuracy=0.0, test_accuracy=float(config.get("score", 0.0)), seconds=0.0)
    else:
        raise ValueError(f"unknown sweep task {task!r}; known: rookie, sleep")
    write_json(path, record)
    return {**record, "skipped": False}


class Progress:
    """Prints ``[done/total] id ... ; ETA`` after each finished configuration."""

    def __init__(self, total: int, already: int, stream=None):
        self.total, self.done, self.ran = total, already, 0
        self.start = time.perf_counter()
        self.stream = stream or sys.stdout

    def __call__(self, record: Mapping[str, Any]) -> None:
        self.done += 1
        self.ran += 1
        elapsed = time.perf_counter() - self.start
        remaining = self.total - self.done
        eta = elapsed / self.ran * remaining
        cfg = record.get("config", {})
        short = ", ".join(f"{k}={cfg[k]}" for k in ("lr", "l2", "hidden", "decay") if k in cfg)
        self.stream.write(
            f"[{self.done}/{self.total}] {record['id']} ({short}) "
            f"val {record.get('val_accuracy', float('nan')):.4f} "
            f"test {record.get('test_accuracy', float('nan')):.4f} "
            f"in {record.get('seconds', 0.0):.1f} s; ETA {_duration(eta)}\n"
        )
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class _Deferred:
    """A configuration run in this process when its ``result()`` is asked for."""

    def __init__(self, config: dict[str, Any], out: str, task: str):
        self.args = (config, out, task)

    def result(self) -> dict[str, Any]:
        return run_config(*self.args)


def _collect(futures, report) -> None:
    """Report each finished future; a failed configuration does not stop the others."""
    failures = []
    for future in futures:
        try:
            report(future.result())
        except Exception as exc:  # noqa: BLE001 - reported, then raised after the rest finish
            failures.append(exc)
            print(f"sweep: a configuration failed: {type(exc).__name__}: {exc}", flush=True)
    if failures:
        raise RuntimeError(
            f"{len(failures)} configuration(s) failed (first: {failures[0]!r}); the others' "
            "results are saved, and running the sweep again retries only the failed ones"
        ) from failures[0]


def _thread_env(workers: int) -> dict[str, str]:
    # Each worker gets its share of the cores: N workers x all-core BLAS would
    # oversubscribe the machine and make every configuration slower.
    threads = str(max(1, (os.cpu_count() or 1) // max(1, workers)))
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    return {name: os.environ.get(name, threads) for name in names}


def _python_path_env() -> dict[str, str]:
    # Spawned processes must import ``experiments`` (not installed, lives in the repo).
    root = str(Path(__file__).resolve().parents[1])
    current = os.environ.get("PYTHONPATH", "")
    parts = [p for p in current.split(os.pathsep) if p]
    return {"PYTHONPATH": os.pathsep.join([root, *[p for p in parts if p != root]])}


class _Environ:
    """Temporarily set environment variables (inherited by processes started inside)."""

    def __init__(self, values: Mapping[str, str]):
        self.values, self.saved = dict(values), {}

    def __enter__(self):
        for k, v in self.values.items():
            self.saved[k] = os.environ.get(k)
            os.environ[k] = v

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_sweep(
    configs: Iterable[dict[str, Any]],
    out: str | os.PathLike,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    dask_workers: int | None = None,
    task: str = "rookie",
    progress: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[str, int]:
    """Run every configuration whose result file is missing; return run/skip counts.

    Parameters
    ----------
    configs : iterable of dict
        The configurations; duplicates (same id) run once.
    out : path
        Folder of the result files (created).
    workers : int
        Worker processes (``spawn`` context); 1 runs in this process.
    scheduler : str, optional
        Address of an existing Dask distributed scheduler: one task per configuration.
        Every worker must be able to import ``experiments`` and read ``out``.
    dask_workers : int, optional
        Start a local Dask cluster with this many single-threaded worker processes.
    task : str
        Passed to :func:`run_config`.
    progress : callable, optional
        Called with each finished record; by default a :class:`Progress` printer.

    Returns
    -------
    dict
        ``{"total", "skipped", "ran"}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unique = {config_id(c): dict(c) for c in configs}
    pending = [c for c in unique.values() if not result_path(out, c).is_file()]
    skipped = len(unique) - len(pending)
    print(
        f"sweep: {len(unique)} configurations, {skipped} already done in {out}/, "
        f"{len(pending)} to run",
        flush=True,
    )
    report = progress or Progress(len(unique), skipped)
    if pending:
        if scheduler or dask_workers:
            _run_dask(pending, str(out), task, report, scheduler, dask_workers)
        elif workers <= 1:
            _collect((_Deferred(c, str(out), task) for c in pending), report)
        else:
            _run_pool(pending, str(out), task, report, workers)
    return {"total": len(unique), "skipped": skipped, "ran": len(pending)}


def _run_pool(pending, out: str, task: str, report, workers: int) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    with _Environ({**_thread_env(workers), **_python_path_env()}):
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(run_config, c, out, task) for c in pending]
            _collect(as_completed(futures), report)


def _import_dask():
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ImportError(
            'the Dask runner needs dask.distributed: pip install "portnet[dask]" '
            '(or pip install "dask[distributed]")'
        ) from None
    return Client, LocalCluster, as_completed


def _run_dask(pending, out: str, task: str, report, scheduler, dask_workers) -> None:
    Client, LocalCluster, as_completed = _import_dask()
    cluster = None
    with _Environ({**_thread_env(dask_workers or 1), **_python_path_env()}):
        if scheduler:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(
                n_workers=int(dask_workers), threads_per_worker=1, dashboard_address=None
            )
            client = Client(cluster)
        try:
            print(f"sweep: Dask scheduler {client.scheduler.address}", flush=True)
            # pure=False: a configuration is one task, never deduplicated or cached by Dask.
            futures = [client.submit(run_config, c, out, task, pure=False) for c in pending]
            _collect(as_completed(futures), report)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def load_results(out: str | os.PathLike) -> list[dict[str, Any]]:
    """Every result record in ``out`` (half-written temporary files are ignored)."""
    return [json.loads(p.read_text()) for p in sorted(Path(out).glob("*.json"))]


def top_k(
    records: Sequence[Mapping[str, Any]], k: int = 10, key: str = "test_accuracy"
) -> list[Mapping[str, Any]]:
    """The ``k`` best records by ``key``, ties broken by id so the order is stable."""
    return sorted(records, key=lambda r: (-r[key], r["id"]))[:k]


def top_k_markdown(
    records: Sequence[Mapping[str, Any]], k: int = 10, key: str = "test_accuracy"
) -> str:
    """The top-k table as Markdown, in the layout of the paper's Table 2."""
    headers = [h for _, h in TABLE_COLUMNS] + ["Val. accuracy", "Test accuracy ↑", "epochs", "id"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in top_k(records, k, key):
        cfg = r["config"]
        hidden = list(cfg.get("hidden", [])) + ["—", "—"]
        cells = [
            f"{cfg.get('lr', '—')}",
            f"{cfg.get('l2', '—'):g}" if "l2" in cfg else "—",
            str(hidden[0]),
            str(hidden[1]),
            f"{cfg.get('decay', '—')}",
            f"{100 * r.get('val_accuracy', float('nan')):.2f} %",
            f"{100 * r[key]:.2f} %",
            str(cfg.get("epochs", "—")),
            f"`{r['id']}`",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.sweep",
        description="Run study S3's hyper-parameter grid (its Table 1) as a resumable sweep: "
        "one result file per configuration in --out, finished ones skipped, "
        "then print the top-k table (its Table 2).",
    )
    p.add_argument("--out", required=True, help="folder of the result files (resumes from it)")
    p.add_argument(
        "--grid",
        choices=["reduced", "full"],
        default="reduced",
        help="reduced: the grid of experiments/configs/s3.yaml's grid_reduced (>= 12 "
        "configurations); full: the paper's 216 (6 lr x 3 lambda x 2 x 2 hidden x 3 decay)",
    )
    p.add_argument("--config", help="S3 YAML config (default experiments/configs/s3.yaml)")
    p.add_argument("--epochs", type=int, help="epochs per configuration (default: grid_epochs)")
    p.add_argument("--train-size", type=int, help="training images per configuration")
    p.add_argument("--dataset", help="dataset (default fashion_mnist)")
    p.add_argument("--backend", help="backend of every worker (numpy, torch, cupy, ...)")
    p.add_argument("--device", help="device of the backend")
    p.add_argument("--workers", type=int, default=1, help="worker processes (spawn); default 1")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler (tcp://host:8786)")
    p.add_argument("--dask-workers", type=int, help="start a local Dask cluster of N workers")
    p.add_argument("--top", type=int, default=10, help="rows of the summary table (default 10)")
    p.add_argument(
        "--summarize", action="store_true", help="only print the table of the existing results"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.summarize:
        from experiments.reproduce.s3 import grid_configs, load_s3_config

        config = load_s3_config(args.config)
        for key in ("epochs", "train_size", "dataset", "backend", "device"):
            value = getattr(args, key)
            if value is not None:
                config["grid_" + key if key in ("epochs", "train_size") else key] = value
        configs = grid_configs(config, full=args.grid == "full")
        counts = run_sweep(
            configs,
            args.out,
            workers=args.workers,
            scheduler=args.scheduler,
            dask_workers=args.dask_workers,
        )
        print(f"sweep: ran {counts['ran']}, skipped {counts['skipped']} of {counts['total']}")
    records = load_results(args.out)
    if not records:
        print(f"no results in {args.out}/")
        return 1
    print(
        f"\nTop {min(args.top, len(records))} of {len(records)} configurations (test accuracy):\n"
    )
    print(top_k_markdown(records, args.top))
    return 0


if __name__ == "__main__":
    from experiments.common import run_cli

    run_cli(main, sys.argv[1:])
