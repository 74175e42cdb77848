"""Run many sweep configurations: in this process, in worker processes, or on Dask.

Everything that can be checked is checked before the first configuration starts
(:func:`run_sweep`): the configurations, the output folder, the backends, and on a
Dask cluster the scheduler's address and, on every worker, that portnet imports,
loads the backends and can write to the output folder. A problem is a
:class:`~portnet.errors.ConfigError` that says what to do.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, PortnetError
from .task import (
    SweepError,
    config_id,
    data_key,
    needs_gpu,
    normalize_config,
    result_path,
    task_key,
    train_config,
)


def check_output_folder(out: str | os.PathLike) -> Path:
    """Create ``out`` if needed and check that files can be written in it (absolute path)."""
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"the sweep's output {out} is a file; give a folder for the results")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot write the sweep's results to {out} ({exc.strerror or exc}); give a folder "
            "you can write to (on a cluster, one every worker reaches at the same path)"
        ) from None
    return out


class Progress:
    """Prints ``[done/total] id (tags) val ... test ... ; ETA`` after each configuration."""

    def __init__(self, total: int, already: int, stream=None):
        self.total, self.done, self.ran = total, already, 0
        self.start = time.perf_counter()
        self.stream = stream or sys.stdout

    def __call__(self, record: Mapping[str, Any]) -> None:
        self.done += 1
        self.ran += 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.ran * (self.total - self.done)
        tags = ", ".join(f"{k}={v}" for k, v in (record.get("tags") or {}).items())
        val = record.get("val_accuracy")
        self.stream.write(
            f"[{self.done}/{self.total}] {record['id']} ({tags}) "
            f"val {float('nan') if val is None else val:.4f} "
            f"test {record.get('test_accuracy', float('nan')):.4f} "
            f"in {record.get('seconds', 0.0):.1f} s; ETA {_duration(eta)}\n"
        )
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _unique_configs(configs: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every configuration normalised, by id (duplicates once); the error names the bad one."""
    unique = {}
    for number, config in enumerate(configs, 1):
        try:
            checked = normalize_config(config)
        except ConfigError as exc:
            raise ConfigError(f"sweep configuration {number}: {exc}") from None
        unique[config_id(checked)] = checked
    return unique


def run_sweep(
    configs: Iterable[Mapping[str, Any]],
    out: str | os.PathLike,
    *,
    task: Callable[[dict[str, Any], str], Mapping[str, Any]] = train_config,
    workers: int = 1,
    scheduler: str | None = None,
    dask_workers: int | None = None,
    retries: int = 2,
    connect_timeout: float = 10.0,
    progress: Callable[[Mapping[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Run every configuration whose result file is missing; return run/skip counts.

    Parameters
    ----------
    configs : iterable of dict
        Sweep configurations (:class:`portnet.RunConfig` mappings plus ``tags``);
        duplicates run once.
    out : path
        Folder of the result files (created). On a cluster every worker must reach it
        at the same absolute path.
    task : callable
        ``task(config, out) -> record``, run once per pending configuration; by
        default :func:`~portnet.sweeps.train_config`. On Dask it must be importable
        on the workers (a function of an installed package).
    workers : int
        Worker processes (``spawn``); 1 runs in this process.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``): one task per configuration.
    dask_workers : int, optional
        Or start a local Dask cluster of this many single-threaded worker processes.
    retries : int
        Dask retries of a configuration that raised an error.
    connect_timeout : float
        Seconds to wait for the scheduler and its first worker.
    progress : callable, optional
        Called with each finished record; by default a :class:`Progress` printer.
    log : callable, optional
        Where the runner's messages go (default: print).

    Returns
    -------
    dict
        ``{"total", "skipped", "ran"}``.

    Raises
    ------
    ConfigError
        Before anything runs: a bad configuration, an output folder that cannot be
        written, an unknown or unloadable backend, an unreachable scheduler, workers
        without portnet or without access to ``out``.
    SweepError
        After every configuration has been tried, when some failed.
    """
    say = log or (lambda message: print(message, flush=True))
    unique = _unique_configs(configs)
    out = check_output_folder(out)
    pending = [c for c in unique.values() if not result_path(out, c).is_file()]
    backends = sorted({(c["backend"], c["device"]) for c in unique.values()}, key=str)
    if not (scheduler or dask_workers):
        _check_backends_here(unique.values())
    report = progress or Progress(len(unique), len(unique) - len(pending))
    if scheduler or dask_workers:
        runner = _DaskRunner(scheduler, dask_workers, connect_timeout)
        try:
            runner.check(str(out), backends, pending)  # before the counts: nothing has run
            say(_counts_line(unique, pending, out))
            say(f"sweep: Dask scheduler {runner.address}, {runner.n_workers} worker(s)")
            runner.run(task, pending, str(out), retries, report)
        finally:
            runner.close()
    else:
        say(_counts_line(unique, pending, out))
        if workers <= 1:
            _collect(((task, c, str(out)) for c in pending), report, in_process=True)
        else:
            _run_pool(task, pending, str(out), report, workers)
    return {"total": len(unique), "skipped": len(unique) - len(pending), "ran": len(pending)}


def _counts_line(unique, pending, out) -> str:
    done = len(unique) - len(pending)
    return (
        f"sweep: {len(unique)} configurations, {done} already done in {out}/, {len(pending)} to run"
    )


def _check_backends_here(configs) -> None:
    """Each backend loads here, and compiles where a configuration asks for it."""
    from ..backends import get_backend
    from ..training.compiled import check_compilable

    placements = {(c["backend"], c["device"], c["compile"]) for c in configs}
    for name, device, compile in sorted(placements, key=str):
        backend = get_backend(name, device)  # BackendError says what to install
        if compile:
            check_compilable(backend)


def _collect(items, report, in_process: bool = False) -> None:
    """Report each finished configuration; a failure does not stop the others."""
    failures = []
    for item in items:
        try:
            record = item[0](*item[1:]) if in_process else item.result()
            report(record)
        except Exception as exc:  # noqa: BLE001 - reported, then raised after the rest
            failures.append(exc)
            print(f"sweep: a configuration failed: {type(exc).__name__}: {exc}", flush=True)
    if failures:
        raise SweepError(
            f"{len(failures)} configuration(s) failed (first: {type(failures[0]).__name__}: "
            f"{failures[0]}); the others' results are saved, and running the sweep again "
            "retries only the failed ones"
        )


def _thread_env(workers: int) -> dict[str, str]:
    # Each worker gets its share of the cores: N workers x all-core BLAS would
    # oversubscribe the machine and make every configuration slower.
    threads = str(max(1, (os.cpu_count() or 1) // max(1, workers)))
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    return {name: os.environ.get(name, threads) for name in names}


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


def _run_pool(task, pending, out: str, report, workers: int) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: a forked child cannot use a CUDA context its parent created.
    context = multiprocessing.get_context("spawn")
    with _Environ(_thread_env(workers)):
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(task, c, out) for c in pending]
            _collect(as_completed(futures), report)


def probe_worker(
    out: str, backends: list[tuple[str, str | None]], data: list[str] = ()
) -> dict[str, Any]:
    """What a worker can do: portnet's version, writing to ``out``, loading each backend
    and preparing each data set (``data``: JSON of the configurations' ``data`` entries;
    the prepared arrays stay cached in the worker for its configurations)."""
    from .. import __version__
    from ..backends import get_backend
    from .task import _prepared

    found: dict[str, Any] = {"portnet": __version__, "write": None, "backends": {}, "data": {}}
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        found["write"] = f"{exc.strerror or exc}"
    for name, device in backends:
        try:
            get_backend(name, device)
        except PortnetError as exc:
            found["backends"][f"{name} {device or ''}".strip()] = str(exc)
    for spec in data:
        try:
            _prepared(spec)
        except PortnetError as exc:
            found["data"][json.loads(spec)["dataset"]] = str(exc)
    return found


def data_specs(configs) -> list[str]:
    """The distinct data options of the configurations (:func:`data_key`)."""
    return sorted({data_key(c) for c in configs})


def dask_options(config: Mapping[str, Any], out: str, retries: int) -> dict[str, Any]:
    """``client.submit`` options of a configuration's task: its key (the same for every
    driver writing to ``out``, so the scheduler runs it once), retries, and one ``GPU``
    resource for GPU backends (start GPU workers with ``--resources "GPU=1"``)."""
    return {
        "key": task_key(config, out),
        "retries": int(retries),
        "resources": {"GPU": 1} if needs_gpu(config) else None,
        "pure": False,
    }


class _DaskRunner:
    def __init__(self, scheduler: str | None, dask_workers: int | None, timeout: float):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise ImportError(
                'the Dask runner needs dask.distributed: pip install "portnet[dask]"'
            ) from None
        self.cluster = None
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=timeout)
            except (OSError, TimeoutError, ValueError, TypeError) as exc:
                raise ConfigError(
                    f"cannot reach the Dask scheduler at {scheduler!r} ({exc}). Start one with "
                    "`dask scheduler` and give the address it prints (tcp://host:8786)"
                ) from None
        else:
            with _Environ(_thread_env(int(dask_workers))):
                # ":0": its HTTP server on a free port; None still takes 8787, or
                # warns and moves when another cluster holds it.
                self.cluster = LocalCluster(
                    n_workers=int(dask_workers), threads_per_worker=1, dashboard_address=":0"
                )
            self.client = Client(self.cluster)
        self.address = self.client.scheduler.address
        self.timeout = timeout
        self.n_workers = 0

    def check(self, out: str, backends, pending) -> None:
        try:
            self.client.wait_for_workers(1, timeout=self.timeout)
        except (TimeoutError, OSError):
            raise ConfigError(
                f"no worker is connected to the Dask scheduler at {self.address}; start "
                f"`dask worker {self.address}` on each machine, then run the sweep again"
            ) from None
        try:
            found = self.client.run(probe_worker, out, list(backends), data_specs(pending))
        except Exception as exc:  # noqa: BLE001 - anything here means the workers lack portnet
            raise ConfigError(
                f"the Dask workers cannot run portnet's sweep ({type(exc).__name__}: {exc}). "
                'Install it on every worker machine: pip install "portnet[dask]"'
            ) from None
        self.n_workers = len(found)
        unwritable = {w: f["write"] for w, f in found.items() if f["write"]}
        if unwritable:
            raise ConfigError(
                f"{len(unwritable)} worker(s) cannot write to {out}: "
                + "; ".join(f"{w}: {why}" for w, why in sorted(unwritable.items()))
                + ". Give an output folder every worker reaches at the same path"
            )
        gpu_workers = set()
        if any(needs_gpu(c) for c in pending):
            info = self.client.scheduler_info()["workers"]
            gpu_workers = {w for w, i in info.items() if i.get("resources", {}).get("GPU")}
            if not gpu_workers:
                raise ConfigError(
                    "the sweep has GPU configurations but no worker offers a GPU; start "
                    'the GPU machines\' workers with `dask worker ADDRESS --resources "GPU=1"`'
                )
        for worker, f in sorted(found.items()):
            for dataset, why in f["data"].items():
                raise ConfigError(f"worker {worker} cannot load data set {dataset}: {why}")
        for name, device in backends:
            label = f"{name} {device or ''}".strip()
            gpu = needs_gpu({"backend": name, "device": device})
            for worker, f in found.items():
                if label in f["backends"] and (worker in gpu_workers or not gpu):
                    raise ConfigError(
                        f"worker {worker} cannot use backend {label}: {f['backends'][label]}"
                    )

    def run(self, task, pending, out: str, retries: int, report) -> None:
        from dask.distributed import as_completed

        futures = [
            self.client.submit(task, c, out, **dask_options(c, out, retries)) for c in pending
        ]
        _collect(as_completed(futures), report)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
