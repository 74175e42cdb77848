"""``python -m experiments.sweep``: study S3's grid (its Table 1) as a resumable sweep.

S3 builds the configurations (:func:`experiments.reproduce.s3.grid.grid_configs`),
plain data; :func:`portnet.sweeps.run_sweep` runs them with
:func:`portnet.sweeps.train_config`, which writes ``<out>/<id>.json`` atomically.
Finished configurations are skipped, so a killed sweep resumes where it stopped.
On a Dask cluster the workers need only ``pip install "portnet[dask]"`` and the
data set, and ``--out`` must be a folder every worker reaches at the same path.

python -m experiments.sweep --grid reduced --workers 2 --out runs/s3-grid
python -m experiments.sweep --grid full --scheduler tcp://10.0.0.5:8786 --out /shared/s3-full
python -m experiments.sweep --out runs/s3-grid --summarize       # top-10 table only
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.common import fail, run_cli
from portnet.config import Number
from portnet.sweeps import SweepError, load_results, run_sweep

_COUNT = Number(low=1, integer=True)


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
        help="reduced: the grid_* lists of experiments/configs/s3.yaml (12 configurations); "
        "full: the paper's 216 (6 lr x 3 lambda x 2 x 2 hidden x 3 decay)",
    )
    p.add_argument("--config", help="S3 YAML config (default experiments/configs/s3.yaml)")
    p.add_argument("--quick", action="store_true", help="S3's quick grid (2 tiny configurations)")
    p.add_argument("--epochs", type=_COUNT.arg, help="epochs per configuration (grid_epochs)")
    p.add_argument("--train-size", type=_COUNT.arg, help="training images per configuration")
    p.add_argument("--dataset", help="dataset (default fashion_mnist)")
    p.add_argument("--data-dir", help="folder of the dataset's IDX files, on every worker")
    p.add_argument("--backend", help="backend of every configuration (numpy, torch, cupy, ...)")
    p.add_argument("--device", help="device of the backend (cuda:0, ...)")
    p.add_argument(
        "--compile",
        action="store_true",
        help="compile every configuration's training step with jax.jit (needs --backend jax)",
    )
    p.add_argument("--workers", type=_COUNT.arg, default=1, help="worker processes; default 1")
    p.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:8786)")
    p.add_argument("--dask-workers", type=_COUNT.arg, help="start a local Dask cluster of N")
    p.add_argument(
        "--retries",
        type=Number(low=0, integer=True).arg,
        default=2,
        help="Dask retries of a configuration that raised an error (default 2)",
    )
    p.add_argument(
        "--timeout",
        type=Number(low=0, low_open=True).arg,
        default=10.0,
        help="seconds to wait for the scheduler and its first worker (default 10)",
    )
    p.add_argument("--top", type=_COUNT.arg, default=10, help="rows of the summary table")
    p.add_argument(
        "--summarize", action="store_true", help="only print the table of the existing results"
    )
    return p


def grid_from_args(args: argparse.Namespace) -> list[dict]:
    """The sweep configurations the flags ask for (S3's config, overridden by the flags)."""
    from experiments.reproduce.registry import study_config
    from experiments.reproduce.s3.grid import grid_configs

    config = study_config("s3", args.config, quick=args.quick)
    overrides = {
        "grid_epochs": args.epochs,
        "grid_train_size": args.train_size,
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "backend": args.backend,
        "device": args.device,
        "compile": args.compile or None,
    }
    config.update({k: v for k, v in overrides.items() if v is not None})
    return grid_configs(config, full=args.grid == "full")


def main(argv: list[str] | None = None) -> int:
    from experiments.reproduce.s3.grid import top_k_markdown

    args = build_parser().parse_args(argv)
    if args.scheduler and args.dask_workers:
        fail("give --scheduler (a running cluster) or --dask-workers (a local one), not both.")
    if not args.summarize:
        # Every check (configurations, --out, backend, scheduler, workers) comes before
        # the first configuration starts; a failure is a ConfigError, exit 2.
        try:
            counts = run_sweep(
                grid_from_args(args),
                args.out,
                workers=args.workers,
                scheduler=args.scheduler,
                dask_workers=args.dask_workers,
                retries=args.retries,
                connect_timeout=args.timeout,
            )
        except SweepError as exc:
            print(f"sweep: {exc}", file=sys.stderr)
            return 1
        print(f"sweep: ran {counts['ran']}, skipped {counts['skipped']} of {counts['total']}")
    elif not Path(args.out).is_dir():
        fail(f"--out {args.out} is not a folder of sweep results; run the sweep first.")
    records = load_results(args.out)
    if not records:
        print(f"no results in {args.out}/")
        return 1
    k = min(args.top, len(records))
    print(f"\nTop {k} of {len(records)} configurations (test accuracy):\n")
    print(top_k_markdown(records, args.top))
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
