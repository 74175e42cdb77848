"""``python -m experiments.reproduce STUDY``: regenerate a reference study's tables and figures.

python -m experiments.reproduce s1                 # the full study, NumPy
python -m experiments.reproduce s1 --quick         # a small, CI-sized version
python -m experiments.reproduce s2 --backend torch --dataset fashion_mnist
python -m experiments.reproduce report             # rebuild REPRODUCTION.md
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import portnet as pn
from experiments.common import (
    THREADS_HELP,
    check_output_dir,
    default_out_dir,
    fail,
    positive_int,
    run_cli,
    write_json,
)
from experiments.reproduce.registry import STUDIES, study_config
from experiments.reproduce.results import write_reproduction_report, write_results
from portnet.config import Number


@dataclasses.dataclass
class StudyContext:
    """What a study's ``run`` gets: its merged config, the backend and where to write."""

    study: str
    config: dict[str, Any]
    backend: pn.Backend
    out: Path
    quick: bool
    plots: bool
    #: Train with ``Model.fit(compile=True)`` (jax.jit; the jax backend only).
    compile: bool = False
    started: float = dataclasses.field(default_factory=time.perf_counter)
    #: Markdown a study adds below the claims table (its own tables, figure list).
    extra_markdown: str = ""

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def log(self, message: str) -> None:
        print(f"[{self.study} {self.elapsed():7.1f}s] {message}", flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.reproduce",
        description="Reproduce a reference study with portnet: every table and figure it "
        "reports, side by side with the paper's numbers (results.json, results.md, PNGs).",
        epilog="Studies: "
        + "; ".join(f"{k}: {v.title}" for k, v in STUDIES.items())
        + ". 'report' rebuilds REPRODUCTION.md from experiments/results/*.json.",
    )
    p.add_argument("study", choices=[*STUDIES, "report"], help="which study to run")
    p.add_argument(
        "--backend",
        help="numpy, torch, cupy or array_api_strict (default: $PORTNET_BACKEND, else numpy)",
    )
    p.add_argument("--device", help="device of the backend (cpu, cuda:0, device1, ...)")
    p.add_argument("--threads", type=positive_int, metavar="N", help=THREADS_HELP)
    p.add_argument(
        "--compile",
        action="store_true",
        help="compile the training steps with jax.jit (needs --backend jax; S4's "
        "per-backend timing table stays eager)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small, fast version of the same study (fewer images and epochs)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="YAML config overriding the study's "
        "defaults (default: experiments/configs/<study>.yaml)",
    )
    p.add_argument("--dataset", help="dataset to run the study on, where the study allows it")
    p.add_argument("--data-dir", help="folder holding the dataset's IDX files")
    p.add_argument(
        "--seed",
        type=Number(low=0, integer=True).arg,
        help="random seed, 0 or more (default from the config)",
    )
    p.add_argument("--out", help="output folder (default runs/<study>-<timestamp>)")
    p.add_argument(
        "--save-results",
        action="store_true",
        help="also copy results.json to experiments/results/<study>.json and "
        "rebuild REPRODUCTION.md (for full runs)",
    )
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the figures")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Flags that can be checked before anything runs: paths, dataset name, flag clashes."""
    if args.save_results and args.quick:
        fail("--save-results is for full runs; drop --quick (or --save-results).")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        fail(f"--data-dir {args.data_dir} is not a folder; give the folder of the IDX files.")
    if args.dataset is not None:
        from portnet.data import available_datasets

        if args.dataset.strip().lower().replace("-", "_") not in available_datasets():
            fail(
                f"unknown dataset {args.dataset!r} for --dataset; known datasets: "
                f"{', '.join(available_datasets())}."
            )
    if args.out is not None:
        check_output_dir(args.out, "--out")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    if args.study == "report":
        print(f"wrote {write_reproduction_report()}")
        return 0
    module = STUDIES[args.study].module()
    config = study_config(args.study, args.config, args.quick)
    for key in ("dataset", "data_dir", "seed"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    backend = pn.get_backend(args.backend, args.device)
    if args.compile and not backend.ops.can_compile:
        fail(
            f"--compile compiles the training steps with jax.jit and needs --backend jax; "
            f"this run's backend is {backend.name}. Drop --compile or use --backend jax."
        )
    pn.limit_threads(args.threads)  # after the backend import: threadpoolctl sees its BLAS
    pn.retain_freed_memory()  # no page faults on each step's fresh arrays
    out = Path(args.out) if args.out else check_output_dir(default_out_dir(args.study))
    ctx = StudyContext(args.study, config, backend, out, args.quick, args.plots, args.compile)
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / "config.json",
        {
            **config,
            "quick": args.quick,
            "backend": backend.name,
            "device": backend.device_name,
            "threads": args.threads,
            "compile": args.compile,
        },
    )
    ctx.log(
        f"{STUDIES[args.study].title} — backend {backend.name}, device {backend.device_name}"
        f"{', quick' if args.quick else ''}{', compiled' if args.compile else ''}; "
        f"writing to {out}/"
    )
    claims = module.run(ctx)
    paper_dataset = getattr(module, "PAPER_DATASET", None)
    other_dataset = paper_dataset is not None and config.get("dataset") != paper_dataset
    for claim in claims:
        claim.backend = claim.backend or backend.name
        claim.device = claim.device or backend.device_name
        if other_dataset:
            claim.comparable = False
    write_results(out, args.study, claims, ctx.extra_markdown)
    print((out / "results.md").read_text())
    if args.save_results:
        import shutil

        from experiments.reproduce.results import COMMITTED

        COMMITTED.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "results.json", COMMITTED / f"{args.study}.json")
        print(f"wrote {write_reproduction_report()}")
    ctx.log(f"done in {ctx.elapsed():.1f} s")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
