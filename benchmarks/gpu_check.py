"""One command for a machine with an NVIDIA GPU: portnet's GPU tests, a sync check of
every training option, and epoch times against native PyTorch on the same GPU.

Run ``python -m benchmarks.gpu_check`` (``--help`` for the flags). It checks each of
CuPy, a CUDA build of PyTorch and JAX's CUDA build that works here, within a time
budget (``--budget``, default 8 minutes), and always writes its report:

0. **set-up**: the GPUs (nvidia-smi, CuPy, torch), which libraries work and why the
   others do not, and what each uses for float32 products (:mod:`benchmarks.gpu_precision`);
1. **tests** (:mod:`benchmarks.gpu_tests`): the test cases marked ``gpu``, one pytest
   run per library with ``--junitxml`` and a time limit sized from its case count;
   a non-zero exit, no case run, every case skipped or a failed case is a failure;
2. **sync check** (:mod:`benchmarks.gpu_sync_check`): every option of
   :mod:`portnet.testing.options` trains, evaluates and predicts on each library
   while the steps after an epoch's first are watched for host syncs;
3. **epoch times** of the ``mlp-s3`` and ``cnn`` workloads for the GPU
   implementations of the working libraries, as ratios to native PyTorch on the
   same GPU (``python -m benchmarks.epoch_time --device cuda``).

Each section runs inside a guard: an exception marks it failed, with its traceback,
and the next section runs. The report (default ``benchmarks/results/gpu_check.md``)
is rewritten atomically after every section, so even a killed run leaves one. The
budget is shared out as the run goes (the tests up to 60 % of it, the sync check
up to half of what is left, the epoch times the rest); when it runs out, or on
SIGTERM, the running section stops and is reported as stopped. Exit code: 0 when
everything passed, 1 when anything failed or did not finish, 2 when no GPU library
works here (the report says why).

Stand-ins, for proving the command without a GPU: ``PORTNET_GPU_CHECK_EMULATE=cupy``
runs everything with :mod:`portnet.testing.emulated_cupy` as CuPy (its tests are the
``cupy-emulated`` cases), and ``PORTNET_GPU_CHECK_PYTEST`` replaces the pytest command
(see :mod:`benchmarks.gpu_tests`). The report says when a stand-in was used.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import portnet as pn
from experiments.common import check_output_file, run_cli
from portnet.config import Number
from portnet.io.model_file import atomic_write_bytes

from . import epoch_time, gpu_precision, gpu_tests

# The sync check's names stay reachable as gpu_check.<name> (redundant aliases re-export them).
from .gpu_sync_check import CupySpin as CupySpin
from .gpu_sync_check import SyncCheck, sync_checks
from .gpu_sync_check import _fit_watched as _fit_watched
from .gpu_sync_check import _WatchSteps as _WatchSteps
from .gpu_sync_check import check_cupy as check_cupy
from .gpu_sync_check import check_jax as check_jax
from .gpu_sync_check import check_torch as check_torch
from .gpu_tests import TestRun as TestRun
from .machine import gpu_info

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu_check.md"
EMULATE_ENV = "PORTNET_GPU_CHECK_EMULATE"
# Label -> (backend, device), in the order the tests run: torch compiles nothing, so
# it reports first; CuPy compiles kernels with NVRTC, JAX every operation with XLA.
GPU_BACKENDS = {
    "torch-cuda": ("torch", "cuda"),
    "cupy": ("cupy", "cuda:0"),
    "jax-cuda": ("jax", "cuda"),
}
# The GPU implementations of benchmarks.epoch_time that each library's working enables.
BENCHMARK_IMPLEMENTATIONS = {
    "torch-cuda": ("portnet-torch-cuda", "torch-cuda"),
    "cupy": ("portnet-cupy",),
    "jax-cuda": ("portnet-jax-cuda", "portnet-jax-jit-cuda"),
}
TESTS_SHARE = 0.6  # of the budget left when the tests start
SYNC_SHARE = 0.5  # of the budget left when the sync check starts
REPORT_RESERVE = 10.0  # seconds kept back to write the report (a tenth of a small budget)


class BudgetExceeded(BaseException):
    """The time budget ran out, or SIGTERM arrived, while a section was running.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` in the
    code under test swallows it.
    """


def available_gpu_backends() -> tuple[dict[str, Any], dict[str, str]]:
    """``(working, missing)``: the GPU backends that load here, and why the others do not."""
    working, missing = {}, {}
    for label, (name, device) in GPU_BACKENDS.items():
        try:
            working[label] = pn.get_backend(name, device)
        except Exception as exc:  # BackendError, or a library that breaks in its own way
            missing[label] = str(exc) or type(exc).__name__
    return working, missing


# -- the run's clock --------------------------------------------------------------------


class Clock:
    """The budget: when the run started and when it must stop."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.start = time.perf_counter()
        self.end = self.start + budget - min(REPORT_RESERVE, 0.1 * budget)

    def left(self) -> float:
        return self.end - time.perf_counter()

    def share(self, fraction: float) -> float:
        """A deadline ``fraction`` of the time left from now."""
        return time.perf_counter() + fraction * max(self.left(), 0.0)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


@contextlib.contextmanager
def budget_alarm(clock: Clock) -> Iterator[None]:
    """Raise :class:`BudgetExceeded` in the main thread at ``clock.end`` or on SIGTERM."""
    main_thread = threading.current_thread() is threading.main_thread()
    if not hasattr(signal, "setitimer") or not main_thread:
        yield  # signals reach the main thread only (and Windows has no setitimer)
        return

    def stop(signum, frame):
        name = "SIGTERM" if signum == signal.SIGTERM else f"the {clock.budget:.0f} s budget"
        raise BudgetExceeded(f"stopped by {name}")

    old_alarm = signal.signal(signal.SIGALRM, stop)
    old_term = signal.signal(signal.SIGTERM, stop)
    signal.setitimer(signal.ITIMER_REAL, max(clock.left(), 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_alarm)
        signal.signal(signal.SIGTERM, old_term)


# -- sections ---------------------------------------------------------------------------


@dataclasses.dataclass
class Section:
    """One part of the report: its status, its Markdown, and what failed in it."""

    title: str
    status: str = "pending"  # running, ok, failed, stopped, skipped, not run
    body: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0


@dataclasses.dataclass
class Run:
    """Everything the report shows; filled as the sections run."""

    budget: float
    emulated: bool = False
    gpus: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    working: list[str] = dataclasses.field(default_factory=list)
    missing: dict[str, str] = dataclasses.field(default_factory=dict)
    setup: list[str] = dataclasses.field(default_factory=list)
    sections: dict[str, Section] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    stopped: str | None = None  # why the remaining sections did not run

    @property
    def problems(self) -> list[str]:
        return [f"{key}: {p}" for key, s in self.sections.items() for p in s.problems]


def run_section(run: Run, key: str, body: Callable[[Section], None], save: Callable) -> None:
    """Run one section's ``body`` so that whatever it raises ends up in the report."""
    section = run.sections[key]
    if run.stopped:
        section.status = "not run"
        section.problems.append(f"not run: {run.stopped}")
        return
    section.status = "running"
    save()  # a killed run's report then names the section it died in
    start = time.perf_counter()
    try:
        body(section)
        if section.status == "running":
            section.status = "failed" if section.problems else "ok"
    except (BudgetExceeded, KeyboardInterrupt) as exc:
        reason = str(exc) or "interrupted (Ctrl-C)"
        section.status = "stopped"
        section.problems.append(reason)
        run.stopped = reason
    except (Exception, SystemExit) as exc:  # SystemExit: a command's argument error
        section.status = "failed"
        section.problems.append(f"raised {type(exc).__name__}: {_one_line(exc)}")
        section.body += ["", "```", traceback.format_exc().rstrip(), "```"]
    finally:
        section.seconds = time.perf_counter() - start
        save()


def tests_section(
    working: dict[str, Any], emulated: bool, clock: Clock, args: argparse.Namespace
) -> Callable[[Section], None]:
    """Section 1: one pytest run per working library (:mod:`benchmarks.gpu_tests`)."""

    def body(section: Section) -> None:
        libraries = {label: label for label in working}
        if emulated and "cupy" in libraries:
            libraries["cupy"] = "cupy-emulated"
        with _workdir(args.logs) as workdir:
            inventory, runs = gpu_tests.run_all(
                libraries,
                clock.share(TESTS_SHARE),
                workdir,
                startup=args.test_startup,
                per_case=args.seconds_per_case,
            )
        if inventory.problem:
            section.problems.append(inventory.problem)
        if inventory.collect_errors:
            files = ", ".join(inventory.collect_errors)
            section.problems.append(
                f"{len(inventory.collect_errors)} test file(s) failed to collect ({files}); "
                "GPU cases in them did not run"
            )
        section.body += render_test_runs(runs, emulated)
        section.problems += [f"{r.label}: {p}" for r in runs for p in r.problems]

    return body


def sync_section(working: dict[str, Any], clock: Clock, spin: float) -> Callable[[Section], None]:
    """Section 2: every training option on every working library, watched."""

    def body(section: Section) -> None:
        checks, left_out = sync_checks(working, spin, clock.share(SYNC_SHARE))
        section.body += render_sync_checks(checks)
        bad = [c for c in checks if c.verdict != "ok"]
        if bad:
            names = ", ".join(f"{c.option} on {c.backend} ({c.verdict})" for c in bad)
            section.problems.append(f"{len(bad)} of {len(checks)} runs not ok: {names}")
        if left_out:
            section.problems.append(
                f"stopped at its share of the budget; {left_out} option × library runs not made"
            )

    return body


def benchmark_section(
    working: dict[str, Any], args: argparse.Namespace, emulated: bool
) -> Callable[[Section], None]:
    """Section 3: epoch times of the GPU implementations of the working libraries.

    On the emulated CuPy there is nothing worth timing (and its op counter opens an
    emulation of its own), so the stand-in times portnet-numpy against torch on the
    CPU: the same command, report and ratios.
    """

    def body(section: Section) -> None:
        names = [name for label in working for name in BENCHMARK_IMPLEMENTATIONS[label]]
        device = "cuda"
        if emulated:
            names = [n for n in names if n != "portnet-cupy"] + ["portnet-numpy", "torch"]
            device = "all"
            section.body.append(
                "Stand-in run: `portnet-numpy` and `torch` on the CPU instead of `portnet-cupy`."
            )
        with tempfile.TemporaryDirectory() as tmp:
            dataset, report = run_epoch_benchmark(
                Path(tmp), args.repeats, args.train_size, names, device
            )
        if "torch-cuda" in working:
            section.body += ["", _conv_precision_note(), ""]
        section.body.append(f"Dataset: {dataset}. The full report of `benchmarks.epoch_time`:")
        section.body += ["", re.sub(r"(?m)^#", "###", report)]

    return body


def _conv_precision_note() -> str:
    facts = gpu_precision.torch_precision(sys.modules["torch"])
    mode = "TF32" if facts.conv_tf32 else "float32"
    return (
        f"Native `torch-cuda` runs its convolutions in cuDNN with {mode} "
        f"(`torch.backends.cudnn.allow_tf32` {facts.conv_tf32}); portnet's convolutions "
        "are float32 matrix products on every backend, so the `cnn` ratio carries that "
        "difference."
    )


def run_epoch_benchmark(
    out: Path,
    repeats: int,
    train_size: int | None,
    implementations: list[str],
    device: str = "cuda",
) -> tuple[str, str]:
    """``epoch_time --device cuda`` for mlp-s3 and cnn; returns (dataset, Markdown report)."""
    dataset = _local_dataset()
    args = ["--device", device, "--workload", "mlp-s3,cnn", "--batch-size", "128"]
    args += ["--repeats", str(repeats), "--dataset", dataset, "--out", str(out)]
    args += ["--name", "gpu_check_epoch_time", "--implementations", ",".join(implementations)]
    if train_size:
        args += ["--train-size", str(train_size)]
    markdown = out / "gpu_check_epoch_time.md"
    try:
        epoch_time.main(args)
    except ImportError as exc:
        # The chart comes last and needs matplotlib, which a GPU machine may lack;
        # the times are in the Markdown already.
        if "matplotlib" not in str(exc) or not markdown.exists():
            raise
        return dataset, markdown.read_text() + "\n(No chart: matplotlib is not installed.)\n"
    return dataset, markdown.read_text()


def _local_dataset() -> str:
    """Fashion-MNIST where it is on disk, else the 2,000 images shipped with portnet.

    Never downloads: a GPU machine may have no network, and waiting for a timeout
    would spend the budget.
    """
    from portnet.data import load_dataset

    try:
        load_dataset("fashion_mnist", download=False)
    except Exception:
        return "fashion_mnist_sample"
    return "fashion_mnist"


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    """Where pytest's logs and XML go: ``keep`` (kept), else a temporary folder."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    path = Path(tempfile.mkdtemp(prefix="portnet-gpu-tests-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- the report -------------------------------------------------------------------------


def render_test_runs(runs: list[TestRun], emulated: bool) -> list[str]:
    """Section 1's Markdown: a table of the runs, then each run's failures."""
    out = ["| library | cases | passed | failed | errors | skipped | time | limit | verdict |"]
    out.append("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        verdict = "ok" if not r.problems else "**" + "; ".join(r.problems) + "**"
        expected = "?" if r.expected is None else str(r.expected)
        label = f"{r.label} (`{r.case}` cases)" if r.case != r.label else r.label
        out.append(
            f"| {label} | {expected} | {r.passed} | {r.failed} | {r.errors} | {r.skipped} "
            f"| {r.seconds:.0f} s | {r.limit:.0f} s | {verdict} |"
        )
    if emulated:
        out += ["", "CuPy here is the emulated CuPy: its cases ran on the host, not on a GPU."]
    for r in runs:
        if r.failures:
            out += ["", f"{r.label}, failed cases (from pytest's {r.source}):"]
            out += [f"- `{name}`" for name in r.failures[:40]]
            if len(r.failures) > 40:
                out.append(f"- … and {len(r.failures) - 40} more")
        if r.problems and r.log_tail and not r.failures:
            out += ["", f"{r.label}, last lines of pytest's output:", "", "```"]
            out += r.log_tail + ["```"]
    return out


def render_sync_checks(checks: list[SyncCheck]) -> list[str]:
    """Section 2's Markdown."""
    if not checks:
        return ["No run was made."]
    ok = sum(c.verdict == "ok" for c in checks)
    out = [
        f"{ok} of {len(checks)} option × library runs had no host sync in a training step. "
        "torch-cuda: `set_sync_debug_mode('error')` over the steps, and dispatcher counts per "
        "step; cupy: the host time of each step while a spin kernel was queued before it (a "
        "sync waits for the spin); jax-cuda: `transfer_guard_device_to_host('disallow')`.",
        "",
        "| option | library | verdict | detail |",
        "|---|---|---|---|",
    ]
    out += [f"| {c.option} | {c.backend} | {c.verdict} | {c.detail} |" for c in checks]
    return out


def render_report(run: Run) -> str:
    """The Markdown report of one gpu_check run (complete or not)."""
    problems = run.problems
    verdict = "PASSED" if not problems and not _pending(run) else "FAILED"
    if _pending(run):
        verdict = "INCOMPLETE (the run was still going when this was written)"
    out = ["# portnet GPU check", "", f"**Verdict: {verdict}**" + _problem_count(problems)]
    out += [f"- {p}" for p in problems]
    out.append("")
    if run.emulated:
        out += [
            "**Stand-in run**: CuPy is `portnet.testing.emulated_cupy` (NumPy on the host); "
            "nothing here ran on a GPU.",
            "",
        ]
    if not run.gpus:
        out.append("- GPU: none seen (nvidia-smi, CuPy, torch)")
    for gpu in run.gpus:
        physical = f" (nvidia-smi {gpu['physical_index']})" if "physical_index" in gpu else ""
        runtime = f", CUDA runtime {gpu['cuda_runtime']}" if gpu.get("cuda_runtime") else ""
        out.append(
            f"- GPU {gpu.get('index', '')}{physical}: {gpu.get('name')}, driver "
            f"{gpu.get('driver')}{runtime}"
        )
    out.append(f"- checked: {', '.join(run.working) or 'nothing'}")
    out += [f"- not checked, {label}: {reason}" for label, reason in run.missing.items()]
    out += [f"- {line}" for line in run.setup]
    out += [f"- time: {run.seconds:.0f} s of a {run.budget:.0f} s budget", ""]
    for number, section in enumerate(run.sections.values(), start=1):
        out += [f"## {number}. {section.title} ({section.status}, {section.seconds:.0f} s)", ""]
        if section.problems:
            out += [f"- **{p}**" for p in section.problems] + [""]
        out += section.body + [""]
    return "\n".join(out).rstrip() + "\n"


def _pending(run: Run) -> bool:
    return any(s.status in ("pending", "running") for s in run.sections.values())


def _problem_count(problems: list[str]) -> str:
    if not problems:
        return ""
    return f": {len(problems)} problem{'s' if len(problems) > 1 else ''}"


def _one_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:300]


def _first_sentence(text: str) -> str:
    return text.split(". ")[0].rstrip(".")


def _setup_lines(working: dict[str, Any]) -> list[str]:
    """What each working library uses for float32 products, and JAX's preallocation."""
    lines = []
    for label in working:
        lines.append("precision, " + gpu_precision.describe(label))
        warning = gpu_precision.tolerance_warning(label)
        if warning:
            lines.append(f"**warning**: {warning}")
    if "jax-cuda" in working:
        value = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE", "unset (JAX takes 75 %)")
        lines.append(f"JAX preallocation: XLA_PYTHON_CLIENT_PREALLOCATE={value}")
    return lines


# -- the command ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check",
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog=(
            "Exit code 0: all passed; 1: something failed or did not finish (the report "
            "says what); 2: no GPU library works here. The report is written in every case."
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="the Markdown report (default benchmarks/results/gpu_check.md)",
    )
    parser.add_argument(
        "--budget",
        type=Number(low=1).arg,
        default=480,
        help="seconds the whole check may take, report included (default 480: 8 minutes)",
    )
    parser.add_argument("--skip-tests", action="store_true", help="leave out the GPU tests")
    parser.add_argument("--skip-sync", action="store_true", help="leave out the sync check")
    parser.add_argument("--skip-benchmark", action="store_true", help="leave out epoch times")
    parser.add_argument(
        "--seconds-per-case",
        type=Number(low=0, low_open=True).arg,
        default=0.75,
        help="a library's test limit is its startup plus this per case (default 0.75)",
    )
    parser.add_argument(
        "--test-startup",
        type=Number(low=0).arg,
        default=45,
        help="seconds each library's pytest run gets to start: imports, CUDA context (default 45)",
    )
    parser.add_argument(
        "--logs",
        type=Path,
        help="keep pytest's logs and XML files in this folder (default: a temporary one)",
    )
    parser.add_argument(
        "--spin",
        type=Number(low=0, low_open=True).arg,
        default=0.2,
        help="seconds the CuPy spin kernel keeps the GPU busy before a watched step (default 0.2)",
    )
    parser.add_argument(
        "--repeats",
        type=Number(low=1, integer=True).arg,
        default=3,
        help="timed repeats per implementation (default 3)",
    )
    parser.add_argument(
        "--train-size",
        type=Number(low=1, integer=True).arg,
        default=12000,
        help="train the benchmark on the first N images (default 12000, sized for the budget)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_output_file(args.out, "--out")
    stand_in = os.environ.get(EMULATE_ENV, "")
    if stand_in not in ("", "cupy"):
        print(
            f"error: {EMULATE_ENV}={stand_in!r} is not a stand-in gpu_check knows; set it to "
            "'cupy' (the emulated CuPy) or leave it unset.",
            file=sys.stderr,
        )
        return 2
    if stand_in:
        from portnet.testing import emulated_cupy

        with emulated_cupy():
            return _check(args, emulated=True)
    return _check(args, emulated=False)


def _check(args: argparse.Namespace, emulated: bool) -> int:
    clock = Clock(args.budget)
    run = Run(budget=args.budget, emulated=emulated)
    titles = {
        "tests": "GPU tests, one pytest run per library",
        "sync": "Sync check of every training option",
        "benchmark": "Epoch times on the GPU",
    }
    run.sections = {key: Section(title) for key, title in titles.items()}

    def save() -> None:
        run.seconds = clock.elapsed()
        report = render_report(run)
        atomic_write_bytes(args.out, lambda handle: handle.write(report.encode("utf-8")))

    try:
        with budget_alarm(clock):
            code = _run_sections(args, run, clock, save)
    except (BudgetExceeded, KeyboardInterrupt) as exc:  # outside a section: while loading
        _stop_unfinished(run, str(exc) or "interrupted (Ctrl-C)")
        code = 1
    save()  # the alarm is off now: this write always completes
    print(render_report(run))
    print(f"wrote {args.out}")
    return code


def _stop_unfinished(run: Run, reason: str) -> None:
    """Mark the sections that had not finished when the run was stopped."""
    run.stopped = run.stopped or reason
    for section in run.sections.values():
        if section.status in ("pending", "running"):
            section.problems.append(f"not finished: {reason}")
            section.status = "stopped" if section.status == "running" else "not run"


def _run_sections(args: argparse.Namespace, run: Run, clock: Clock, save: Callable) -> int:
    working, missing = available_gpu_backends()
    run.working, run.missing = list(working), missing
    with contextlib.suppress(Exception):  # the GPU list is information, never a failure
        run.gpus = gpu_info()
    with contextlib.suppress(Exception):
        run.setup = _setup_lines(working)
    if not working:
        reasons = "; ".join(f"{label}: {_first_sentence(r)}" for label, r in missing.items())
        for section in run.sections.values():
            section.status = "not run"
        run.sections["tests"].problems.append("no GPU library works here")
        print(
            "error: benchmarks.gpu_check needs an NVIDIA GPU through CuPy, a CUDA build of "
            f"PyTorch or JAX's CUDA build, and none works here ({reasons}). Check the driver "
            'with `nvidia-smi`, install CuPy for its CUDA version (`pip install "portnet[cuda12]"` '
            'or `"portnet[cuda13]"`) or a CUDA build of PyTorch, and run it again '
            f"(report: {args.out}).",
            file=sys.stderr,
        )
        return 2
    print(f"GPU libraries: {', '.join(working)}; missing: {', '.join(missing) or 'none'}")
    plan = [
        ("tests", args.skip_tests, tests_section(working, run.emulated, clock, args)),
        ("sync", args.skip_sync, sync_section(working, clock, args.spin)),
        ("benchmark", args.skip_benchmark, benchmark_section(working, args, run.emulated)),
    ]
    for key, skip, body in plan:
        if skip:
            run.sections[key].status = "skipped"
            run.sections[key].body.append(f"Not run (--skip-{key}).")
            continue
        run_section(run, key, body, save)
    return 1 if run.problems else 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
