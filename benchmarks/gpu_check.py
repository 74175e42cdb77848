"""One command for a machine with an NVIDIA GPU: portnet's GPU tests, a sync check of
every training option, and epoch times against native PyTorch on the same GPU.

Run ``python -m benchmarks.gpu_check`` (``--help`` for the flags). It needs CuPy
(``pip install "portnet[cuda12]"``) or a CUDA build of PyTorch, and checks each one
that works:

1. **tests**: ``python -m pytest -m gpu``, every test case marked ``gpu`` (the
   ``cupy`` and ``torch-cuda`` cases of the backend matrix and of the
   cross-backend agreement tests);
2. **sync check**: every option of :mod:`portnet.testing.options` trains,
   evaluates and predicts on the GPU, and each training step after the first of
   an epoch is watched:

   - torch-cuda: ``torch.cuda.set_sync_debug_mode("error")`` is on during those
     steps, so a synchronizing CUDA call raises, and PyTorch's dispatcher counts
     ``_local_scalar_dense``, ``nonzero`` and ``lift_fresh`` per step;
   - CuPy: before each watched step, a kernel that spins for a fixed time is
     queued; a step that returns to the host before the spin ends queued its
     work without waiting, and a step that takes longer than the spin waited for
     the GPU somewhere (a sync);

3. **epoch times** of the ``mlp-s3`` and ``cnn`` workloads for ``portnet-cupy``,
   ``portnet-torch-cuda``, ``portnet-jax-cuda``, ``portnet-jax-jit-cuda`` (with its
   compile time apart) and native ``torch-cuda``, as ratios to native PyTorch on
   the same GPU (``python -m benchmarks.epoch_time --device cuda``).

It writes one Markdown report (default ``benchmarks/results/gpu_check.md``). On a
machine without a GPU it exits with code 2 and says what is missing.

The sync check (section 2) is :mod:`benchmarks.gpu_sync_check`; this module runs
the tests and the epoch times, and writes the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import portnet as pn
from experiments.common import Number, check_output_file, run_cli
from portnet.errors import BackendError
from portnet.io import atomic_write_bytes

from . import epoch_time

# The sync check's names stay reachable as gpu_check.<name> (redundant aliases re-export them).
from .gpu_sync_check import CupySpin as CupySpin
from .gpu_sync_check import SyncCheck, sync_checks
from .gpu_sync_check import _fit_watched as _fit_watched
from .gpu_sync_check import _WatchSteps as _WatchSteps
from .gpu_sync_check import check_cupy as check_cupy
from .gpu_sync_check import check_torch as check_torch
from .machine import gpu_info

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu_check.md"
GPU_BACKENDS = {"cupy": ("cupy", "cuda:0"), "torch-cuda": ("torch", "cuda")}


def available_gpu_backends() -> tuple[dict[str, Any], dict[str, str]]:
    """``(working, missing)``: the GPU backends that load here, and why the others do not."""
    working, missing = {}, {}
    for label, (name, device) in GPU_BACKENDS.items():
        try:
            working[label] = pn.get_backend(name, device)
        except BackendError as exc:
            missing[label] = str(exc)
    return working, missing


# -- 1. the gpu tests -----------------------------------------------------------------


@dataclasses.dataclass
class TestRun:
    """Outcome of ``pytest -m gpu``: counts, the failures' ids and the time it took."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: int = 0
    seconds: float = 0.0
    failures: list[str] = dataclasses.field(default_factory=list)
    timed_out: bool = False


def run_gpu_tests(timeout: float) -> TestRun:
    """Run every ``gpu`` test case in a subprocess and parse pytest's summary."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rfE", "-p", "no:cacheprovider"]
    try:
        proc = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        output = proc.stdout + proc.stderr
        result = TestRun()
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        result = TestRun(timed_out=True)
    result.seconds = time.perf_counter() - start
    for count, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", output):
        key = "errors" if word.startswith("error") else word
        setattr(result, key, int(count))
    result.failures = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.MULTILINE)
    return result


# -- 2. the sync check: benchmarks/gpu_sync_check.py --------------------------------

# -- 3. epoch times -------------------------------------------------------------------


def run_epoch_benchmark(out: Path, repeats: int, train_size: int | None) -> tuple[str, str]:
    """``epoch_time --device cuda`` for mlp-s3 and cnn; returns (dataset, Markdown report)."""
    from portnet.data import load_dataset

    dataset = "fashion_mnist"
    try:
        load_dataset(dataset)
    except Exception:  # not on this disk and no network to fetch it: the shipped sample
        dataset = "fashion_mnist_sample"
    args = ["--device", "cuda", "--workload", "mlp-s3,cnn", "--batch-size", "128"]
    args += ["--repeats", str(repeats), "--dataset", dataset, "--out", str(out)]
    args += ["--name", "gpu_check_epoch_time"]
    if train_size:
        args += ["--train-size", str(train_size)]
    epoch_time.main(args)
    return dataset, (out / "gpu_check_epoch_time.md").read_text()


# -- the report -----------------------------------------------------------------------


def render_report(
    *,
    gpus: list[dict[str, Any]],
    working: list[str],
    missing: dict[str, str],
    tests: TestRun | None,
    checks: list[SyncCheck],
    benchmark: str | None,
    dataset: str | None,
    seconds: float,
) -> str:
    """The Markdown report of one gpu_check run."""
    out = ["# portnet GPU check", ""]
    for gpu in gpus or [{"name": "none seen"}]:
        out.append(
            f"- GPU {gpu.get('index', '')}: {gpu.get('name')}, driver {gpu.get('driver')}, "
            f"CUDA runtime {gpu.get('cuda_runtime')}"
        )
    out.append(f"- checked: {', '.join(working) or 'nothing'}")
    for label, reason in missing.items():
        out.append(f"- not checked, {label}: {reason}")
    out += [f"- total time: {seconds:.0f} s", ""]
    out += ["## 1. GPU tests (`python -m pytest -m gpu`)", ""]
    if tests is None:
        out.append("Not run (--skip-tests).")
    else:
        out.append(
            f"{tests.passed} passed, {tests.failed} failed, {tests.errors} errors, "
            f"{tests.skipped} skipped in {tests.seconds:.0f} s"
            + (" — **stopped at its time limit**" if tests.timed_out else "")
            + "."
        )
        out += [f"- failed: `{name}`" for name in tests.failures]
    out += ["", "## 2. Sync check of every training option", ""]
    if not checks:
        out.append("Not run (--skip-sync).")
    else:
        bad = [c for c in checks if c.verdict != "ok"]
        out.append(
            f"{len(checks) - len(bad)} of {len(checks)} option × backend runs had no "
            "host sync in a training step. torch-cuda: `set_sync_debug_mode('error')` over "
            "the steps, and dispatcher counts per step; cupy: the host time of each step "
            "while a spin kernel was queued before it (a sync waits for the spin)."
        )
        out += ["", "| option | backend | verdict | detail |", "|---|---|---|---|"]
        out += [f"| {c.option} | {c.backend} | {c.verdict} | {c.detail} |" for c in checks]
    out += ["", "## 3. Epoch times on the GPU", ""]
    if benchmark is None:
        out.append("Not run (--skip-benchmark).")
    else:
        out.append(f"Dataset: {dataset}. The full report of `benchmarks.epoch_time` follows.")
        out += ["", re.sub(r"(?m)^#", "###", benchmark)]
    return "\n".join(out) + "\n"


def _first_sentence(text: str) -> str:
    return text.split(". ")[0].rstrip(".")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check",
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog="Exits 2 with a message where no GPU backend works (CuPy or torch with CUDA).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="the Markdown report (default benchmarks/results/gpu_check.md)",
    )
    parser.add_argument("--skip-tests", action="store_true", help="leave out `pytest -m gpu`")
    parser.add_argument("--skip-sync", action="store_true", help="leave out the sync check")
    parser.add_argument("--skip-benchmark", action="store_true", help="leave out epoch times")
    parser.add_argument(
        "--test-timeout",
        type=Number(low=0, low_open=True).arg,
        default=240,
        help="seconds the gpu tests may take before they are stopped (default 240)",
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
        help="train the benchmark on the first N images (default all)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_output_file(args.out, "--out")
    start = time.perf_counter()
    working, missing = available_gpu_backends()
    if not working:
        reasons = "; ".join(f"{label}: {_first_sentence(r)}" for label, r in missing.items())
        print(
            "error: benchmarks.gpu_check needs an NVIDIA GPU through CuPy or a CUDA build of "
            f"PyTorch, and neither works here ({reasons}). Check the driver with `nvidia-smi`, "
            'install CuPy for its CUDA version (`pip install "portnet[cuda12]"` or '
            '`"portnet[cuda13]"`) or a CUDA build of PyTorch, and run it again.',
            file=sys.stderr,
        )
        return 2
    print(f"GPU backends: {', '.join(working)}; missing: {', '.join(missing) or 'none'}")
    tests = None if args.skip_tests else run_gpu_tests(args.test_timeout)
    if tests is not None:
        print(f"[tests] {tests.passed} passed, {tests.failed} failed, {tests.skipped} skipped")
    checks = [] if args.skip_sync else sync_checks(working, args.spin)
    dataset = benchmark = None
    if not args.skip_benchmark:
        with tempfile.TemporaryDirectory() as tmp:
            dataset, benchmark = run_epoch_benchmark(Path(tmp), args.repeats, args.train_size)
    report = render_report(
        gpus=gpu_info(),
        working=list(working),
        missing=missing,
        tests=tests,
        checks=checks,
        benchmark=benchmark,
        dataset=dataset,
        seconds=time.perf_counter() - start,
    )
    atomic_write_bytes(args.out, lambda handle: handle.write(report.encode("utf-8")))
    print(report)
    print(f"wrote {args.out}")
    failed = (tests is not None and (tests.failed or tests.errors or tests.timed_out)) or any(
        c.verdict != "ok" for c in checks
    )
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
