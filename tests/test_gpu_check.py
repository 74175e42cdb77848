"""benchmarks.gpu_check: what can be checked without a GPU.

The command itself needs a GPU (it runs there, and its report goes into the issue
note). Here it runs on stand-ins: the emulated CuPy as the GPU library
(``PORTNET_GPU_CHECK_EMULATE=cupy``), fake pytest programs that crash, collect
nothing, skip everything, fail or hang (``PORTNET_GPU_CHECK_PYTEST``), a section
that raises, a budget that runs out, SIGTERM, and a fake ``nvidia-smi``. In every
failing case the report must be written and the exit code must be non-zero.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.gpu_fakes import FAKE_GPUS, write_fake_nvidia_smi, write_fake_pytest

import portnet as pn
from benchmarks import gpu_check, gpu_tests
from benchmarks.machine import gpu_info
from portnet.testing.options import option

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """gpu_check on the emulated CuPy with a fake pytest; returns a runner.

    ``run(mode, *flags)`` runs ``main`` in this process and returns
    ``(exit code, report text)``; the sync check and the epoch times are skipped
    unless ``flags`` bring them back (a test that wants them monkeypatches them).
    """
    monkeypatch.setenv(gpu_check.EMULATE_ENV, "cupy")
    monkeypatch.setenv(gpu_tests.PYTEST_ENV, write_fake_pytest(tmp_path / "bin"))
    out = tmp_path / "report" / "gpu_check.md"

    def run(mode, *flags, skip=("--skip-sync", "--skip-benchmark")):
        monkeypatch.setenv("FAKE_PYTEST_MODE", mode)
        code = gpu_check.main(["--out", str(out), "--budget", "60", *skip, *flags])
        return code, out.read_text()

    return run


# -- must-show 1: every failure leaves a report and a non-zero exit code ---------------


def test_a_passing_run_reports_passed_and_exits_0(stand_in):
    code, report = stand_in("pass")
    assert code == 0
    assert "**Verdict: PASSED**" in report
    assert "| cupy (`cupy-emulated` cases) | 3 | 3 | 0 | 0 | 0 |" in report
    assert "**Stand-in run**" in report and "- checked: cupy" in report


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("crash", "pytest exited with code 3 (internal error)"),
        ("nothing", "pytest exited with code 5 (no tests collected)"),
        ("empty", "the collection pass found no test case of cupy-emulated"),
        ("skip", "every case was skipped (cupy: CuPy is not installed)"),
        ("fail", "1 failed, 0 errors"),
    ],
)
def test_a_failing_pytest_run_is_reported_and_exits_1(stand_in, mode, reason):
    code, report = stand_in(mode)
    assert code == 1
    assert "**Verdict: FAILED**" in report
    assert f"- tests: cupy: {reason}" in report


def test_a_crash_shows_pytests_last_lines(stand_in):
    code, report = stand_in("crash")
    assert code == 1
    assert "cupy, last lines of pytest's output:" in report
    assert "INTERNALERROR> RuntimeError: CUDA driver initialization failed" in report
    # The collection pass crashed too: the run still went on, with a default limit.
    assert "the collection pass wrote no case count (exit 3" in report


def test_a_failed_case_is_named_with_its_message(stand_in):
    _, report = stand_in("fail")
    assert "- `tests.test_fake::test_1[cupy-emulated]: AssertionError: 1e-3 off`" in report


def test_a_run_stopped_at_its_limit_keeps_the_cases_it_finished(stand_in, monkeypatch):
    monkeypatch.setattr(gpu_tests, "INTERRUPT_GRACE", 3.0)
    start = time.perf_counter()
    code, report = stand_in("hang", "--test-startup", "0", "--seconds-per-case", "0.1")
    assert code == 1
    assert time.perf_counter() - start < 30
    # pytest wrote no XML (the fake dies on SIGINT): the -v log gave the finished case.
    assert "stopped at its limit of 2 s after 1 of 3 cases" in report
    assert "| cupy (`cupy-emulated` cases) | 3 | 1 | 0 | 0 | 0 |" in report


def test_a_section_that_raises_is_reported_and_the_next_one_runs(stand_in, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the spin kernel failed to compile")

    monkeypatch.setattr(gpu_check, "sync_checks", broken)
    code, report = stand_in("pass", skip=("--skip-benchmark",))
    assert code == 1
    assert "- sync: raised RuntimeError: the spin kernel failed to compile" in report
    assert "## 2. Sync check of every training option (failed" in report
    assert "Traceback (most recent call last):" in report  # the section's traceback
    assert "## 1. GPU tests, one pytest run per library (ok" in report
    assert "## 3. Epoch times on the GPU (skipped" in report


def test_a_budget_that_runs_out_stops_the_section_and_skips_the_rest(
    stand_in, monkeypatch, tmp_path
):
    def slow(*args, **kwargs):
        time.sleep(60)

    monkeypatch.setattr(gpu_check, "sync_checks", slow)
    monkeypatch.setenv("FAKE_PYTEST_MODE", "pass")
    out = tmp_path / "gpu_check.md"
    start = time.perf_counter()
    code = gpu_check.main(["--out", str(out), "--budget", "3"])
    seconds = time.perf_counter() - start
    report = out.read_text()
    assert code == 1 and seconds < 5
    assert "## 2. Sync check of every training option (stopped" in report
    assert "- sync: stopped by the 3 s budget" in report
    assert "- benchmark: not run: stopped by the 3 s budget" in report
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.default_int_handler, None)


def test_sigterm_stops_the_run_and_the_report_is_written(tmp_path):
    out = tmp_path / "gpu_check.md"
    env = {
        **os.environ,
        gpu_check.EMULATE_ENV: "cupy",
        gpu_tests.PYTEST_ENV: write_fake_pytest(tmp_path / "bin"),
        "FAKE_PYTEST_MODE": "hang",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out", str(out), "--skip-benchmark"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    # The report names the running section as soon as it starts: then stop the run.
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and "(running" in out.read_text():
            break
        time.sleep(0.2)
    time.sleep(1.0)  # inside the fake pytest's run, or its collection pass
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, output
    report = out.read_text()
    assert "- tests: stopped by SIGTERM" in report
    assert "- sync: not run: stopped by SIGTERM" in report


def test_without_a_gpu_it_exits_2_with_one_paragraph_and_a_report(tmp_path):
    working, missing = gpu_check.available_gpu_backends()
    if working:
        pytest.skip(f"a GPU backend works here ({', '.join(working)})")
    out = tmp_path / "gpu_check.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out", str(out)],
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
    report = out.read_text()
    assert "**Verdict: FAILED**" in report and "- checked: nothing" in report
    for label in ("cupy", "torch-cuda", "jax-cuda"):
        assert f"- not checked, {label}: " in report


# -- the pieces -------------------------------------------------------------------------


def test_junit_xml_is_read_with_each_outcome(tmp_path):
    xml = tmp_path / "run.xml"
    xml.write_text(
        '<?xml version="1.0"?><testsuites><testsuite>'
        '<testcase classname="tests.test_x" name="test_a[cupy]"/>'
        '<testcase classname="tests.test_x" name="test_b[cupy]">'
        '<failure message="assert 1 == 2">long text</failure></testcase>'
        '<testcase classname="tests.test_x" name="test_c[cupy]">'
        '<error message="fixture broke"/></testcase>'
        '<testcase classname="tests.test_x" name="test_d[cupy]">'
        '<skipped message="only on float64"/></testcase>'
        "</testsuite></testsuites>"
    )
    run = gpu_tests.TestRun(label="cupy")
    assert gpu_tests._read_junit(run, xml)
    assert (run.passed, run.failed, run.errors, run.skipped) == (1, 1, 1, 1)
    assert run.failures == [
        "tests.test_x::test_b[cupy]: assert 1 == 2",
        "tests.test_x::test_c[cupy] (error): fixture broke",
    ]
    assert run.skip_reasons == ["only on float64"]
    xml.write_text('<?xml version="1.0"?><testsuites><testsuite><testcase')  # cut short
    assert not gpu_tests._read_junit(gpu_tests.TestRun(label="cupy"), xml)


def test_the_verbose_log_is_read_when_there_is_no_xml(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(
        "tests/test_x.py::test_a[cupy] PASSED [ 10%]\n"
        "tests/test_x.py::test_b[cupy] FAILED [ 20%]\n"
        "tests/test_x.py::test_c[cupy] PASSED [ 30%]\n"
        "tests/test_x.py::test_c[cupy] ERROR [ 30%]\n"  # its teardown failed
        "tests/test_x.py::test_d[cupy] SKIPPED (float64) [ 40%]\n"
        "KeyboardInterrupt\n"
    )
    run = gpu_tests.TestRun(label="cupy")
    gpu_tests._read_log(run, log)
    assert (run.passed, run.failed, run.errors, run.skipped) == (1, 1, 1, 1)
    assert run.source == "log"


@pytest.mark.parametrize(
    ("fields", "problems"),
    [
        ({"returncode": 0, "passed": 5}, []),
        ({"returncode": 0, "passed": 5, "expected": 5}, []),
        ({"returncode": 0, "passed": 4, "expected": 5}, ["only 4 of 5 cases reported"]),
        ({"returncode": 1, "passed": 4, "failed": 1}, ["1 failed, 0 errors"]),
        (
            {"returncode": 1, "passed": 5},
            ["pytest reported failures that neither its XML nor its log names"],
        ),
        ({"returncode": 4}, ["pytest exited with code 4 (usage error)", "no test case ran"]),
        ({"returncode": -9, "passed": 2}, ["pytest exited with code -9 (killed by a signal)"]),
        ({"returncode": 0, "skipped": 3}, ["every case was skipped (no reason recorded)"]),
    ],
)
def test_judge_names_every_reason_to_fail(fields, problems):
    found = gpu_tests.judge(gpu_tests.TestRun(label="cupy", **fields))
    assert [p.split("; the library")[0] for p in found] == problems


def test_plugin_runs_one_librarys_cases_and_counts_them(tmp_path):
    """The pytest plugin on a real pytest: the inventory and a run of one library."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu(case): test\n")
    (tmp_path / "test_cases.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('case', [\n"
        "    pytest.param('cupy', marks=pytest.mark.gpu('cupy')),\n"
        "    pytest.param('jax', marks=pytest.mark.gpu('jax-cuda')),\n"
        "    'cupy-emulated', 'numpy'])\n"
        "def test_one(case):\n"
        "    assert case != 'jax'\n"
    )
    files = [str(tmp_path / "test_cases.py")]
    inventory_args = ["--collect-only", "-q", "-p", gpu_tests.PLUGIN]
    inventory_args += [f"--portnet-gpu-inventory={tmp_path / 'inv.json'}", *files]
    gpu_tests.run_pytest(inventory_args, 60, tmp_path / "inv.log")
    import json

    data = json.loads((tmp_path / "inv.json").read_text())
    assert data["cases"] == {"cupy": 1, "jax-cuda": 1, "cupy-emulated": 1}
    run = gpu_tests.run_library("cupy", "cupy", files, 60, tmp_path, expected=1)
    assert (run.passed, run.failed, run.returncode, run.problems) == (1, 0, 0, [])
    run = gpu_tests.run_library("jax-cuda", "jax-cuda", files, 60, tmp_path, expected=1)
    assert (run.passed, run.failed, run.returncode) == (0, 1, 1)


def test_report_names_every_section_and_every_failure():
    run = gpu_check.Run(budget=480, working=["cupy", "torch-cuda", "jax-cuda"], seconds=300)
    run.gpus = [{"index": 0, "name": "NVIDIA H200", "driver": "570", "cuda_runtime": "12.8"}]
    run.sections = {
        "tests": gpu_check.Section("GPU tests", status="failed", problems=["cupy: 1 failed"]),
        "sync": gpu_check.Section("Sync check", status="ok"),
        "benchmark": gpu_check.Section("Epoch times", status="running"),
    }
    run.sections["tests"].body = gpu_check.render_test_runs(
        [gpu_tests.TestRun("cupy", "cupy", 11, 100, 10, 1, failures=["tests/x.py::t[cupy]"])],
        emulated=False,
    )
    run.sections["sync"].body = gpu_check.render_sync_checks(
        [
            gpu_check.SyncCheck("l1", "cupy", "sync", "host time 210 ms"),
            gpu_check.SyncCheck("adam", "jax-cuda", "ok", "4 steps"),
        ]
    )
    report = gpu_check.render_report(run)
    assert "**Verdict: INCOMPLETE" in report  # a section was still running
    assert "- tests: cupy: 1 failed" in report
    assert "NVIDIA H200" in report and "- checked: cupy, torch-cuda, jax-cuda" in report
    assert "| cupy | 11 | 10 | 1 | 0 | 0 |" in report and "- `tests/x.py::t[cupy]`" in report
    assert "1 of 2 option × library runs had no host sync" in report
    assert "| l1 | cupy | sync |" in report
    assert "## 3. Epoch times (running, 0 s)" in report


def test_gpu_info_numbers_gpus_as_cuda_visible_devices_does(tmp_path, monkeypatch):
    write_fake_nvidia_smi(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [(g["index"], g["name"]) for g in gpu_info()] == [
        (0, FAKE_GPUS[0][2]),
        (1, FAKE_GPUS[1][2]),
    ]
    for setting in ("1", "GPU-bbbbbbbb", "1,7"):  # an index, a UUID prefix; CUDA stops at 7
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", setting)
        gpus = gpu_info()
        assert [(g["index"], g.get("physical_index"), g["name"]) for g in gpus] == [
            (0, 1, FAKE_GPUS[1][2])
        ], setting
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_info() == []
    run = gpu_check.Run(budget=60, gpus=[{"index": 0, "physical_index": 1, "name": "A100"}])
    assert "- GPU 0 (nvidia-smi 1): A100" in gpu_check.render_report(run)


def test_watched_steps_are_every_step_after_an_epochs_first():
    events = []
    watch = gpu_check._WatchSteps(lambda: events.append("arm"), lambda: events.append("off"))
    gpu_check._fit_watched(option("dropout"), pn.get_backend("numpy"), watch)
    # 2 epochs of 3 steps: steps 2 and 3 of each epoch are watched, each armed and disarmed.
    assert events == ["arm", "off"] * 4


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


def test_cupy_check_reports_a_hidden_sync_on_the_emulated_cupy():
    import numpy as np

    from benchmarks.gpu_sync_check import EmulatedSpin
    from portnet.testing import emulated_cupy

    with emulated_cupy():
        backend = pn.get_backend("cupy")
        on_device = backend.asarray(np.ones(3, dtype=np.float32))

        class SyncingSpin(EmulatedSpin):  # armed before each watched step: reads the device
            def launch(self):
                float(on_device.sum())

        result = gpu_check.check_cupy(option("sgd-relu"), backend, SyncingSpin())
    assert result.verdict == "sync", result
    assert result.detail.startswith("HostSyncError: hidden device-to-host sync")


def test_jax_check_guards_the_watched_steps_and_restores_the_guard():
    jax = pytest.importorskip("jax")
    backend = pn.get_backend("jax", "cpu")
    seen = []
    real_update = jax.config.update

    def update(name, value):
        if name == "jax_transfer_guard_device_to_host":
            seen.append(value)
        real_update(name, value)

    jax.config.update = update
    try:
        result = gpu_check.check_jax(option("sgd-relu"), backend)
    finally:
        jax.config.update = real_update
    assert (result.verdict, result.backend) == ("ok", "jax-cpu"), result
    assert seen.count("disallow") == 4 and seen[-1] is None  # armed per step, then restored
    assert jax.config.jax_transfer_guard_device_to_host is None


def test_a_jax_transfer_guard_error_counts_as_a_sync():
    from benchmarks.gpu_sync_check import _failure

    try:
        raise RuntimeError("INVALID_ARGUMENT: Disallowed device-to-host transfer: aval=f32[]")
    except RuntimeError as exc:
        check = _failure(option("adam"), "jax-cuda", exc)
    assert check.verdict == "sync"


def test_the_epoch_times_survive_a_missing_matplotlib(tmp_path, monkeypatch):
    """epoch_time draws its chart last; without matplotlib the times are kept."""
    from benchmarks import epoch_time

    def main_without(module):
        def main(args):
            (tmp_path / "gpu_check_epoch_time.md").write_text("# Epoch time\n\n| x | 0.3 |\n")
            raise ModuleNotFoundError(f"No module named '{module}'")

        return main

    monkeypatch.setattr(gpu_check, "_local_dataset", lambda: "fashion_mnist_sample")
    monkeypatch.setattr(epoch_time, "main", main_without("matplotlib"))
    dataset, markdown = gpu_check.run_epoch_benchmark(tmp_path, 1, 64, ["portnet-cupy"])
    assert markdown == "# Epoch time\n\n| x | 0.3 |\n\n(No chart: matplotlib is not installed.)\n"
    monkeypatch.setattr(epoch_time, "main", main_without("cupy_backends"))
    with pytest.raises(ModuleNotFoundError, match="cupy_backends"):
        gpu_check.run_epoch_benchmark(tmp_path, 1, 64, ["portnet-cupy"])
