"""Seconds per training epoch: portnet on each backend against PyTorch, scikit-learn,
course-style NumPy and the matrix-product floor, timed side by side in one run.

Run ``python -m benchmarks.epoch_time --help``. Every implementation trains the
same network from the same initial weights on the same pre-loaded Fashion-MNIST
arrays with SGD + momentum 0.9 (lr 0.01). Each gets one untimed warm-up epoch;
then repeat *r* times every implementation once, in an order rotated by *r*, so
slow drifts of the machine (other processes, thermal state) hit all of them
alike. The clock is read only after the backend's ``synchronize``. Results: a
JSON file, a Markdown report and a PNG chart (see :mod:`benchmarks.report`).

This module is the command line and the run as a whole; the timing of each
(workload, batch size) group is :mod:`benchmarks.epoch_timing`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import portnet as pn
from experiments.common import check_output_dir, check_output_file, run_cli
from portnet.config import Number

from . import report
from .epoch_timing import _say, attach_op_counts, count_ops, load_data, run_group
from .implementations import IMPLEMENTATIONS
from .isa import add_emulation_argument, restart_emulating
from .isa import label as isa_label
from .isa import title as isa_title
from .machine import machine_info
from .workloads import WORKLOADS

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
QUICK_DATASET = "fashion_mnist_sample"


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (every flag documented in ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.epoch_time",
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog=(
            "Speed is never asserted; ratios are only meaningful within one run. On a busy "
            "or small machine, repeat the run and compare the min columns."
        ),
    )
    _add_what_to_time(parser)
    _add_data_arguments(parser)
    _add_output_arguments(parser)
    _add_run_arguments(parser)
    return parser


def _add_what_to_time(parser: argparse.ArgumentParser) -> None:
    """Workloads, batch sizes, epochs, repeats, implementations, device."""
    parser.add_argument(
        "--workload",
        action="append",
        metavar="NAME[,NAME]",
        help=(
            "network(s) to train; repeatable or comma-separated: "
            + "; ".join(w.label for w in WORKLOADS.values())
            + " (default mlp-s3)"
        ),
    )
    parser.add_argument(
        "--batch-size",
        metavar="N[,N]",
        help="minibatch size(s), comma-separated, e.g. 128,512 (default 128)",
    )
    parser.add_argument(
        "--epochs",
        type=Number(low=1, integer=True).arg,
        default=1,
        help="timed epochs per repeat; the reported time is per epoch (default 1)",
    )
    parser.add_argument(
        "--repeats",
        type=Number(low=1, integer=True).arg,
        help="interleaved repeats; median, min and max are over these (default 5, quick 1)",
    )
    parser.add_argument(
        "--implementations",
        metavar="NAME[,NAME]",
        help=(
            "comma-separated subset of "
            + ", ".join(IMPLEMENTATIONS)
            + " (default: all of --device's; unavailable ones are listed as skipped with "
            "the reason)"
        ),
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda", "all"),
        default="all",
        help=(
            "which implementations run by default: cpu (NumPy, torch on the CPU, "
            "scikit-learn ...), cuda (portnet-cupy, portnet-torch-cuda and native "
            "torch-cuda, on an NVIDIA GPU) or all (default; without a GPU the cuda ones are "
            "listed as skipped). Ratios to torch divide by the torch run on the same device"
        ),
    )


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The training images: how many, which dataset, and --quick."""
    parser.add_argument(
        "--train-size",
        type=Number(low=1, integer=True).arg,
        metavar="N",
        help="train on the first N training images (default: all of the dataset)",
    )
    parser.add_argument(
        "--dataset",
        help=(
            "portnet dataset name (default fashion_mnist; with --quick "
            f"{QUICK_DATASET}, the 2,000 images shipped with portnet, so CI needs no download)"
        ),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            "tiny CI-sized run: the 2,000 shipped images, 1 repeat, 1 thread per library, "
            "the warm-up is one epoch of those 2,000 images; finishes in seconds and "
            "checks that everything runs, not speed (explicit flags still override)"
        ),
    )


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the JSON, Markdown and PNG results go."""
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="directory for the Markdown report and the PNG chart (default benchmarks/results/)",
    )
    parser.add_argument(
        "--name",
        help=(
            "base name of the output files <out>/<name>.{json,md,png} (default: the stem of "
            "--json if given, else epoch_time, or epoch_time_quick with --quick)"
        ),
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="where to write the JSON results (default <out>/<name>.json)",
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The process's settings, the same for every implementation: malloc, threads, seed."""
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help=(
            "leave glibc's malloc as it is (freed memory goes back to the kernel and is "
            "page-faulted in again next step), to measure what portnet.retain_freed_memory "
            "saves; by default it is applied to the whole process, so to every implementation "
            "alike, as the experiment commands do"
        ),
    )
    parser.add_argument(
        "--threads",
        type=Number(low=1, integer=True).arg,
        metavar="N",
        help=(
            "limit every BLAS and OpenMP pool (threadpoolctl) and torch.set_num_threads to N "
            "for all implementations alike (default: each library's own default; --quick "
            "uses 1, so that CI on a loaded machine stays fast: oversubscribed multi-threaded "
            "BLAS can be 50x slower there)"
        ),
    )
    parser.add_argument(
        "--seed",
        type=Number(low=0, integer=True).arg,
        default=0,
        help="seed of the initial weights and shuffles (default 0)",
    )
    add_emulation_argument(parser)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and validate the command line; fills in the defaults that depend on ``--quick``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    names = [n for item in (args.workload or ["mlp-s3"]) for n in _comma_list(item)]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        known = ", ".join(WORKLOADS)
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {known}")
    args.workloads = [WORKLOADS[n] for n in dict.fromkeys(names)]
    try:
        args.batch_sizes = [int(b) for b in _comma_list(args.batch_size or "128")]
    except ValueError:
        parser.error(f"--batch-size takes integers like 128,512, got {args.batch_size!r}")
    impls = (
        _comma_list(args.implementations)
        if args.implementations
        else [
            name for name, cls in IMPLEMENTATIONS.items() if args.device in ("all", cls.device_kind)
        ]
    )
    unknown = [n for n in impls if n not in IMPLEMENTATIONS]
    if unknown:
        parser.error(
            f"unknown implementation(s) {', '.join(unknown)}; choose from "
            f"{', '.join(IMPLEMENTATIONS)}"
        )
    args.implementation_names = list(dict.fromkeys(impls))
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 5)
    args.dataset = args.dataset or (QUICK_DATASET if args.quick else "fashion_mnist")
    if args.threads is None and args.quick:
        args.threads = 1
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    for flag in ("epochs", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    if min(args.batch_sizes, default=0) < 1:
        parser.error("--batch-size takes positive integers")
    if args.train_size is not None and args.train_size < 1:
        parser.error("--train-size must be positive")
    if args.name is None:
        args.name = args.json.stem if args.json else "epoch_time" + ("_quick" if args.quick else "")
    args.json = args.json or args.out / f"{args.name}.json"
    check_output_dir(args.out, "--out")
    check_output_file(args.json, "--json")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write ``<name>.json``, ``<name>.md`` and ``<name>.png``."""
    args = parse_args(argv)
    restart_emulating(args.emulate_isa, "benchmarks.epoch_time", argv)
    command = "python -m benchmarks.epoch_time " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    data = load_data(args.dataset, args.train_size)
    # Import the libraries under test before recording the machine, so threadpoolctl
    # sees their BLAS and OpenMP runtimes.
    for name in args.implementation_names:
        IMPLEMENTATIONS[name].unavailable_reason()
    restore_threads = pn.limit_threads(args.threads)
    retained = False if args.default_malloc else pn.retain_freed_memory()
    machine = {**machine_info(), "freed_memory_retained": retained, "emulated": isa_label()}
    _say(
        f"{args.dataset}: {data.n} images; {len(args.implementation_names)} implementations; "
        f"{args.repeats} repeat(s) of {args.epochs} epoch(s); CPU {machine['cpu_model']}, "
        f"load {machine['load_average']}"
    )
    results: list[dict[str, Any]] = []
    op_counts: list[dict[str, Any]] = []
    for workload in args.workloads:
        counted = False
        for batch_size in args.batch_sizes:
            entries = run_group(workload, batch_size, data, args)
            if not counted:
                # Op counts do not depend on the batch size: count once per workload.
                op_counts += count_ops(workload, batch_size, data, args)
                counted = True
            attach_op_counts(entries, op_counts)
            results += entries
    machine["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    document = {
        "benchmark": "epoch_time",
        "command": command,
        "settings": {
            "dataset": args.dataset,
            "train_size": data.n,
            "workloads": [w.name for w in args.workloads],
            "batch_sizes": args.batch_sizes,
            "epochs": args.epochs,
            "repeats": args.repeats,
            "warmup_epochs": 1,
            "implementations": args.implementation_names,
            "device": args.device,
            "quick": args.quick,
            "seed": args.seed,
            "threads": args.threads,
        },
        "machine": machine,
        "notes": {n: IMPLEMENTATIONS[n].note for n in args.implementation_names},
        "results": results,
        "op_counts": op_counts,
    }
    out_md = args.out / f"{args.name}.md"
    out_png = args.out / f"{args.name}.png"
    report.write_json(args.json, document)
    markdown = report.markdown_report(report.json_safe(document))
    report.write_markdown(out_md, markdown)
    emulated = f", {isa_title()}" if isa_title() else ""
    report.write_plot(
        out_png, results, f"Seconds per epoch, {args.dataset} ({data.n} images){emulated}"
    )
    _say("")
    _say(markdown)
    _say(f"wrote {args.json}, {out_md}, {out_png}")
    restore_threads()
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
