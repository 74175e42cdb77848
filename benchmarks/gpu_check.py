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
   ``portnet-torch-cuda`` and native ``torch-cuda``, as ratios to native PyTorch
   on the same GPU (``python -m benchmarks.epoch_time --device cuda``).

It writes one Markdown report (default ``benchmarks/results/gpu_check.md``). On a
machine without a GPU it exits with code 2 and says what is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import portnet as pn
from experiments.common import Number, check_output_file, run_cli
from portnet.errors import BackendError
from portnet.io import atomic_write_bytes
from portnet.testing.audit import audit_torch
from portnet.testing.options import OPTIONS, TrainingOption
from portnet.train import Callback

from . import epoch_time
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


# -- 2. the sync check ----------------------------------------------------------------


@dataclasses.dataclass
class SyncCheck:
    """One option on one GPU backend: ``verdict`` is "ok", "sync" or "error"."""

    option: str
    backend: str
    verdict: str
    detail: str


class _WatchSteps(Callback):
    """Calls ``arm()`` after every batch but an epoch's last, and ``disarm()`` at the
    next batch end: exactly the steps after an epoch's first are watched."""

    def __init__(self, arm: Callable[[], None], disarm: Callable[[], None]) -> None:
        self.arm, self.disarm, self.armed = arm, disarm, False

    def on_epoch_begin(self, model, epoch):
        self._stop()

    def on_batch_end(self, model, batch, n_batches):
        self._stop()
        if batch < n_batches - 1:
            self.arm()
            self.armed = True

    def on_epoch_end(self, model, epoch, logs):
        self._stop()

    def on_train_end(self, model, history):
        self._stop()

    def _stop(self):
        if self.armed:
            self.armed = False
            self.disarm()


def _fit_watched(option: TrainingOption, backend: Any, watch: _WatchSteps) -> None:
    """Train, evaluate and predict ``option`` on ``backend`` with ``watch`` on the steps."""
    X, y = option.data()
    model = option.build(backend)
    model.fit(
        X,
        y,
        epochs=2,
        batch_size=12,
        validation_split=0.25,
        verbose=0,
        callbacks=[watch],
        **option.fit_kwargs,
    )
    model.evaluate(X, y)
    backend.to_numpy(model.predict(X))


def _failure(option: TrainingOption, label: str, exc: BaseException) -> SyncCheck:
    where = traceback.extract_tb(exc.__traceback__)[-1]
    detail = f"{type(exc).__name__}: {str(exc).splitlines()[0]} ({where.filename}:{where.lineno})"
    is_sync = "synchroniz" in str(exc).lower()
    return SyncCheck(option.name, label, "sync" if is_sync else "error", detail)


def check_torch(option: TrainingOption, backend: Any) -> SyncCheck:
    """Sync-debug mode "error" during the watched steps (on CUDA), plus the dispatcher's
    per-step counts of the ops that wait for the host."""
    import torch

    def debug_mode(mode: str) -> Callable[[], None]:
        # The mode exists on CUDA builds only; on the CPU the counts below carry the check.
        on_cuda = backend.device.type == "cuda"
        return lambda: torch.cuda.set_sync_debug_mode(mode) if on_cuda else None

    label = f"torch-{backend.device.type}"
    try:
        _fit_watched(option, backend, _WatchSteps(debug_mode("error"), debug_mode("default")))
        audit = audit_torch(option, device=backend.device_name)
    except Exception as exc:
        return _failure(option, label, exc)
    finally:
        debug_mode("default")()
    waits = {k: audit.worst_step[k] for k in ("_local_scalar_dense", "nonzero", "lift_fresh")}
    verdict = "ok" if not any(waits.values()) else "sync"
    detail = ", ".join(f"{k} {v}" for k, v in waits.items())
    return SyncCheck(option.name, label, verdict, f"per step: {detail}")


_SPIN_SOURCE = r"""
extern "C" __global__ void spin(long long cycles) {
    long long start = clock64();
    while (clock64() - start < cycles) { }
}
"""


class CupySpin:
    """A one-thread kernel that keeps the GPU busy for about ``seconds``.

    The number of clock cycles is calibrated by timing the kernel itself (the
    nominal clock rate is not what the GPU runs at, and CUDA 13 drops it from the
    device properties).
    """

    def __init__(self, backend: Any, seconds: float) -> None:
        self.backend = backend
        with backend.device_scope():
            self.kernel = backend.cupy.RawKernel(_SPIN_SOURCE, "spin")
        self.cycles = 10**7
        for _ in range(3):  # rescale until the measured duration is near the target
            self.seconds = self.measure()
            self.cycles = max(1, int(self.cycles * seconds / max(self.seconds, 1e-6)))
        self.seconds = self.measure()

    def launch(self) -> None:
        with self.backend.device_scope():
            self.kernel((1,), (1,), (np.int64(self.cycles),))

    def measure(self) -> float:
        """The spin's real duration (the clock rate is nominal)."""
        self.launch()
        self.backend.synchronize()
        start = time.perf_counter()
        self.launch()
        self.backend.synchronize()
        return time.perf_counter() - start


def check_cupy(option: TrainingOption, backend: Any, spin: CupySpin) -> SyncCheck:
    """Queue a spin before each watched step: the step must return before the spin ends."""
    host_times: list[float] = []
    started: list[float] = []

    def arm():
        backend.synchronize()
        spin.launch()
        started.append(time.perf_counter())

    def disarm():
        host_times.append(time.perf_counter() - started[-1])
        backend.synchronize()

    try:
        _fit_watched(option, backend, _WatchSteps(arm, disarm))
    except Exception as exc:
        return _failure(option, "cupy", exc)
    worst = max(host_times)
    verdict = "ok" if worst < 0.5 * spin.seconds else "sync"
    detail = (
        f"{len(host_times)} steps, host time of the slowest {worst * 1e3:.1f} ms "
        f"while a {spin.seconds * 1e3:.0f} ms spin was queued"
    )
    return SyncCheck(option.name, "cupy", verdict, detail)


def sync_checks(working: dict[str, Any], spin_seconds: float) -> list[SyncCheck]:
    """Every option on every working GPU backend."""
    checks = []
    spin = CupySpin(working["cupy"], spin_seconds) if "cupy" in working else None
    for option in OPTIONS:
        if "torch-cuda" in working:
            checks.append(check_torch(option, working["torch-cuda"]))
        if spin is not None:
            checks.append(check_cupy(option, working["cupy"], spin))
        for check in checks[-len(working) :]:
            print(f"[sync] {check.backend:10s} {check.option:20s} {check.verdict}: {check.detail}")
    return checks


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
