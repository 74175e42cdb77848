"""benchmarks.gpu_check: what can be checked without a GPU.

The command itself needs a GPU (it runs there, and its report goes into the issue
note); here: its refusal without one, its pieces on the CPU, and its report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import portnet as pn
from benchmarks import gpu_check
from portnet.testing.options import option

ROOT = Path(__file__).resolve().parents[1]


def test_without_a_gpu_it_exits_2_with_one_paragraph():
    working, missing = gpu_check.available_gpu_backends()
    if working:
        pytest.skip(f"a GPU backend works here ({', '.join(working)})")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.strip().count("\n") == 0
    assert "Traceback" not in proc.stderr
    for label in missing:  # names what is missing, and the fix
        assert f"{label}: " in proc.stderr
    assert "nvidia-smi" in proc.stderr and 'pip install "portnet[cuda12]"' in proc.stderr


def test_watched_steps_are_every_step_after_an_epochs_first():
    events = []
    watch = gpu_check._WatchSteps(lambda: events.append("arm"), lambda: events.append("off"))
    gpu_check._fit_watched(option("dropout"), pn.get_backend("numpy"), watch)
    # 2 epochs of 3 steps: steps 2 and 3 of each epoch are watched, each armed and disarmed.
    assert events == ["arm", "off"] * 4


def test_test_summary_is_parsed(monkeypatch):
    output = (
        "....F\nFAILED tests/test_ops.py::test_x[cupy] - AssertionError\n"
        "1 failed, 40 passed, 3 skipped in 12.0s\n"
    )

    def fake_run(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, stdout=output, stderr="")

    monkeypatch.setattr(gpu_check.subprocess, "run", fake_run)
    result = gpu_check.run_gpu_tests(timeout=10)
    assert (result.passed, result.failed, result.skipped) == (40, 1, 3)
    assert result.failures == ["tests/test_ops.py::test_x[cupy]"]


def test_report_names_every_section_and_every_failure():
    tests = gpu_check.TestRun(passed=10, failed=1, failures=["tests/x.py::t[cupy]"])
    checks = [
        gpu_check.SyncCheck("l1", "cupy", "sync", "host time 210 ms"),
        gpu_check.SyncCheck("adam", "torch-cuda", "ok", "per step: nonzero 0"),
    ]
    report = gpu_check.render_report(
        gpus=[{"index": 0, "name": "NVIDIA H200", "driver": "570", "cuda_runtime": "12.8"}],
        working=["cupy", "torch-cuda"],
        missing={},
        tests=tests,
        checks=checks,
        benchmark="# Epoch time\n\n| `portnet-cupy` | 0.3 |",
        dataset="fashion_mnist",
        seconds=300,
    )
    assert "NVIDIA H200" in report and "10 passed, 1 failed" in report
    assert "`tests/x.py::t[cupy]`" in report
    assert "1 of 2 option × backend runs had no host sync" in report
    assert "| l1 | cupy | sync |" in report
    assert "### Epoch time" in report  # the benchmark's headings sit under section 3


def test_torch_check_passes_every_option_on_the_cpu():
    """The torch-cuda check's plumbing, on torch-cpu: its dispatcher counts decide there."""
    pytest.importorskip("torch")
    backend = pn.get_backend("torch", "cpu")
    for name in ("l1", "clip-norm", "sigmoid-bce", "cnn-maxpool"):
        result = gpu_check.check_torch(option(name), backend)
        assert (result.verdict, result.backend) == ("ok", "torch-cpu"), result
        assert "_local_scalar_dense 0, nonzero 0, lift_fresh 0" in result.detail


def test_cupy_check_runs_the_watched_steps_on_the_emulated_cupy():
    from portnet.testing import emulated_cupy

    class QueuedSpin:  # a spin that never delays the host: every step returns at once
        seconds = 10.0

        def launch(self):
            pass

    with emulated_cupy():
        result = gpu_check.check_cupy(option("cnn-maxpool"), pn.get_backend("cupy"), QueuedSpin())
    assert (result.verdict, result.backend) == ("ok", "cupy"), result
    assert result.detail.startswith("4 steps")
