"""``python -m experiments.reproduce STUDY``: regenerate a reference study's tables and figures.

python -m experiments.reproduce s1                 # the full study, NumPy
python -m experiments.reproduce s1 --quick         # a small, CI-sized version
python -m experiments.reproduce s2 --backend torch --dataset fashion_mnist
python -m experiments.reproduce report             # rebuild REPRODUCTION.md
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import numbers
import re
import sys
import time
from pathlib import Path
from typing import Any

import portnet as pn
from experiments.common import (
    THREADS_HELP,
    Number,
    check_output_dir,
    default_out_dir,
    fail,
    load_config_file,
    positive_int,
    run_cli,
    write_json,
)
from experiments.reproduce import STUDIES
from experiments.reproduce.results import write_reproduction_report, write_results

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclasses.dataclass
class StudyContext:
    """What a study's ``run`` gets: its merged config, the backend and where to write."""

    study: str
    config: dict[str, Any]
    backend: pn.Backend
    out: Path
    quick: bool
    plots: bool
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
        + "; ".join(f"{k}: {v}" for k, v in STUDIES.items())
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


def resolve_config(module, args: argparse.Namespace) -> dict[str, Any]:
    """DEFAULTS < config file < (with --quick) QUICK < the file's ``quick:`` block < flags.

    A ``--config`` file must exist; every value is checked by :func:`check_study_config`.
    """
    config = dict(module.DEFAULTS)
    path = Path(args.config) if args.config else CONFIGS / f"{args.study}.yaml"
    file_config = load_config_file(path) if (args.config or path.is_file()) else {}
    quick_block = file_config.pop("quick", None) or {}
    if not isinstance(quick_block, dict):
        fail(f"the quick: block of {path} must be a mapping of option: value, got {quick_block!r}")
    for source, values in ((path, file_config), (f"{path} (quick)", quick_block)):
        unknown = sorted(set(values) - set(config))
        if unknown:
            fail(
                f"unknown option(s) in {source}: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(config))}"
            )
        check_study_config(values, module.DEFAULTS, str(source))
    config.update(file_config)
    if args.quick:
        config.update(getattr(module, "QUICK", {}))
        config.update(quick_block)
    return config


# Study options by name: counts of at least 1, rates above 0, fractions in (0, 1), and
# options with a fixed set of values. Every other number must be finite and not negative.
_COUNT = re.compile(
    r"(epochs|batch_sizes?|folds|components|components_shown|patience|every|workers|samples"
    r"|hidden|hidden_units|topologies|top_k|n_misclassified|threads|size)$"
)
_RATE = re.compile(r"(^|_)(lr|eps|learning_rates)$")
_FRACTION = re.compile(r"(^|_)fraction$")
_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")
_CHOICES = {
    "l2_form": ("half", "full"),
    "monitor": ("val_loss", "val_accuracy"),
    "softmax_monitor": ("val_loss", "val_accuracy"),
    "grid": ("reduced", "full", "none"),
    "activation": _ACTIVATIONS,
    "units_activation": _ACTIVATIONS,
    "activations": _ACTIVATIONS,
    "cnn_optimizer": ("sgd", "momentum", "nesterov", "rmsprop", "adam"),
}


def _type_word(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    return {str: "a string", list: "a list", dict: "a mapping"}.get(type(value), "")


def _same_kind(value: Any, default: Any) -> bool:
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, numbers.Real)
    return isinstance(value, type(default))


def _check_numbers(key: str, value: Any, where: str) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _check_numbers(key, item, where)
        return
    if isinstance(value, list):
        for item in value:
            _check_numbers(key, item, where)
        return
    if isinstance(value, str) and key in _CHOICES and value not in _CHOICES[key]:
        fail(f"{where}: {key} must be one of {', '.join(_CHOICES[key])}, got {value!r}.")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return
    if not math.isfinite(value):
        fail(f"{where}: {key} must be finite, got {value}. Fix the value and run again.")
    if _COUNT.search(key) and value < 1:
        fail(f"{where}: {key} must be at least 1, got {value}. Fix the value and run again.")
    if _RATE.search(key) and value <= 0:
        fail(f"{where}: {key} must be above 0, got {value}. Fix the value and run again.")
    if _FRACTION.search(key) and not 0 < value < 1:
        fail(f"{where}: {key} must be between 0 and 1, got {value}. Fix the value and run again.")
    if value < 0:
        fail(f"{where}: {key} must not be negative, got {value}. Fix the value and run again.")


def check_study_config(values: dict[str, Any], defaults: dict[str, Any], where: str) -> None:
    """Exit 2 naming the first value of the wrong type (against the study's default), not
    finite, negative, or out of its range; ``None`` is allowed where the default is ``None``."""
    for key, value in values.items():
        default = defaults.get(key)
        if value is None:
            if default is not None:
                fail(f"{where}: {key} needs a value ({_type_word(default)}), got null.")
            continue
        if not _same_kind(value, default):
            fail(
                f"{where}: {key} must be {_type_word(default)} like its default {default!r}, "
                f"got {value!r} ({type(value).__name__}). Fix the value and run again."
            )
        _check_numbers(key, value, where)


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
    module = importlib.import_module(f"experiments.reproduce.{args.study}")
    config = resolve_config(module, args)
    for key in ("dataset", "data_dir", "seed"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    backend = pn.get_backend(args.backend, args.device)
    pn.limit_threads(args.threads)  # after the backend import: threadpoolctl sees its BLAS
    out = Path(args.out) if args.out else check_output_dir(default_out_dir(args.study))
    ctx = StudyContext(args.study, config, backend, out, args.quick, args.plots)
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / "config.json",
        {
            **config,
            "quick": args.quick,
            "backend": backend.name,
            "device": backend.device_name,
            "threads": args.threads,
        },
    )
    ctx.log(
        f"{STUDIES[args.study]} — backend {backend.name}, device {backend.device_name}"
        f"{', quick' if args.quick else ''}; writing to {out}/"
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
