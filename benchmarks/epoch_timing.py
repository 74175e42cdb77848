"""The timed part of :mod:`benchmarks.epoch_time`: one (workload, batch size) group at a time.

:func:`load_data` loads the training images once; :func:`run_group` builds every
implementation on them, runs the untimed warm-up epoch, then the interleaved timed
repeats, and returns one result entry per implementation with its median time and
ratios; :func:`count_ops` and :func:`attach_op_counts` add the op counts of one
training step (see :mod:`benchmarks.counters`).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

import numpy as np

from experiments.common import fail

from . import counters
from .implementations import IMPLEMENTATIONS, BenchData, Implementation
from .workloads import CNNWorkload, Workload


def load_data(dataset: str, train_size: int | None) -> BenchData:
    """Load the training images once, scaled to [0, 1] float32, labels int64."""
    from portnet.data import load_dataset, scale_images

    ds = load_dataset(dataset)
    X, y = scale_images(ds.X_train), np.asarray(ds.y_train, dtype=np.int64)
    if train_size is not None:
        if train_size > X.shape[0]:
            fail(f"--train-size {train_size} is more than the {X.shape[0]} images of {dataset}.")
        X, y = X[:train_size], y[:train_size]
    return BenchData(np.ascontiguousarray(X), np.ascontiguousarray(y), ds.n_classes)


def _say(text: str) -> None:
    print(text, flush=True)


def _time_epochs(impl: Implementation, epochs: int) -> tuple[float, float, float]:
    """Wall seconds and process CPU seconds per epoch over ``epochs`` epochs, and the last loss.

    CPU time (all threads of this process) is recorded beside wall time because on
    a shared machine it is far less sensitive to other processes: with one thread
    per library it is the better estimate of the cost; with several it also counts
    threads spinning while they wait.
    """
    impl.synchronize()
    cpu_start, start = time.process_time(), time.perf_counter()
    loss = float("nan")
    for _ in range(epochs):
        loss = impl.run_epoch()
    impl.synchronize()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return wall / epochs, cpu / epochs, loss


def _entry(
    workload: Workload | CNNWorkload, batch_size: int, name: str, data: BenchData
) -> dict[str, Any]:
    return {
        "workload": workload.name,
        "workload_label": workload.label,
        "batch_size": batch_size,
        "implementation": name,
        "status": "ok",
        "reason": None,
        "n_train": data.n,
        "steps_per_epoch": -(-data.n // batch_size),
        "median_s": None,
        "min_s": None,
        "max_s": None,
        "times_s": [],
        "cpu_median_s": None,
        "cpu_times_s": [],
        "ratio_to_torch": None,
        "ratio_to_gemm_only": None,
        "final_loss": None,
        "transfers_per_epoch": None,
        "ops_per_step": None,
        "kernels_per_step": None,
        "op_list": None,
        "op_count_source": None,
    }


def run_group(
    workload: Workload | CNNWorkload, batch_size: int, data: BenchData, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Time every implementation on one (workload, batch size), interleaved; return entries."""
    tag = f"[{workload.name} b{batch_size}]"
    entries: dict[str, dict[str, Any]] = {}
    impls: dict[str, Implementation] = {}
    for name in args.implementation_names:
        entry = entries[name] = _entry(workload, batch_size, name, data)
        cls = IMPLEMENTATIONS[name]
        reason = cls.unsupported_reason(workload) or cls.unavailable_reason()
        if reason is None:
            try:
                impls[name] = cls(workload, batch_size, data, args.seed)
            except Exception as exc:  # one broken implementation must not sink the run
                reason = f"setup failed: {type(exc).__name__}: {exc}"
        if reason is not None:
            entry.update(status="skipped", reason=reason)
            _say(f"{tag} {name}: skipped ({reason.splitlines()[0]})")

    for name, impl in impls.items():
        # The warm-up epoch, untimed; for portnet it also counts the epoch's transfers.
        start = time.perf_counter()
        if impl.backend is not None:
            entries[name]["transfers_per_epoch"] = counters.transfers_of_epoch(impl)
        else:
            impl.run_epoch()
        impl.synchronize()
        _say(f"{tag} warm-up {name}: {time.perf_counter() - start:.3f} s")
        compile_seconds = getattr(impl, "compile_seconds", None)
        if compile_seconds is not None:  # a compiled step: its one-time cost, apart
            entries[name]["compile_s"] = compile_seconds
            _say(f"{tag} {name}: compiled in {compile_seconds:.3f} s (once, in the warm-up)")

    names = list(impls)
    for r in range(args.repeats):
        # Rotate the order each repeat, so no implementation always runs first or last.
        k = r % len(names) if names else 0
        for name in names[k:] + names[:k]:
            seconds, cpu, loss = _time_epochs(impls[name], args.epochs)
            entries[name]["times_s"].append(seconds)
            entries[name]["cpu_times_s"].append(cpu)
            entries[name]["final_loss"] = loss
            _say(
                f"{tag} repeat {r + 1}/{args.repeats} {name}: {seconds:.3f} s/epoch "
                f"(CPU {cpu:.3f} s)"
            )

    for entry in entries.values():
        if entry["status"] == "ok":
            times = entry["times_s"]
            entry.update(median_s=statistics.median(times), min_s=min(times), max_s=max(times))
            entry["cpu_median_s"] = statistics.median(entry["cpu_times_s"])
    add_ratios(entries)
    impls.clear()
    gc.collect()
    return list(entries.values())


def add_ratios(entries: dict[str, dict[str, Any]]) -> None:
    """Median ratios: to the torch run on the same kind of device, and (CPU only) to the
    matrix-product floor."""
    for entry in entries.values():
        if entry["status"] != "ok":
            continue
        kind = IMPLEMENTATIONS[entry["implementation"]].device_kind
        baselines = {"ratio_to_torch": "torch" if kind == "cpu" else "torch-cuda"}
        if kind == "cpu":
            baselines["ratio_to_gemm_only"] = "gemm-only"
        for key, ref in baselines.items():
            base = entries.get(ref)
            if base and base["status"] == "ok":
                entry[key] = entry["median_s"] / base["median_s"]


def count_ops(
    workload: Workload | CNNWorkload, batch_size: int, data: BenchData, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Op counts of one training step, for each implementation that has a counter,
    measured on its own path (see :mod:`benchmarks.counters`)."""
    out = []
    for name in args.implementation_names:
        if counters.counter_unavailable(name):
            continue
        c = counters.COUNTERS[name](workload, batch_size, data, args.seed)
        out.append({"workload": workload.name, "implementation": name, **c.to_dict()})
    return out


def attach_op_counts(entries: list[dict[str, Any]], op_counts: list[dict[str, Any]]) -> None:
    """Give each entry the op count of its own implementation's step, where one was made."""
    for entry in entries:
        count = next(
            (
                c
                for c in op_counts
                if c["workload"] == entry["workload"]
                and c["implementation"] == entry["implementation"]
            ),
            None,
        )
        if count is not None:
            entry.update(
                ops_per_step=count["total"],
                kernels_per_step=count["kernels"],
                op_list=count["ops"],
                op_count_source=count["counted_on"],
            )
