"""benchmarks/gpu_session.sh, the one script for a GPU machine, run on stand-ins.

A fake ``nvidia-smi`` goes first on ``PATH``; gpu_check runs on the emulated CuPy
with a fake pytest, or is replaced by a fake gpu_check (``PORTNET_GPU_SESSION_CHECK``)
that passes, fails, overruns the budget or writes a report when stopped. Whatever
happens, the script must leave ``gpu_session.md`` and exit with gpu_check's verdict.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from helpers.gpu_fakes import FAKE_GPUS, write_fake_nvidia_smi, write_fake_pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_session.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or sys.platform == "win32", reason="needs bash"
)

_FAKE_CHECK = """
import os, signal, sys, time
args = sys.argv[1:]
out = args[args.index("--out") + 1]
def report(text):
    with open(out, "w") as handle:
        handle.write("# portnet GPU check\\n\\n" + text + "\\n")
def stopped(signum, frame):
    report("**Verdict: FAILED**\\n- tests: stopped by SIGTERM")
    sys.exit(1)
signal.signal(signal.SIGTERM, stopped)
print("fake gpu_check started with", " ".join(args), flush=True)
if os.environ.get("FAKE_CHECK_SLEEP"):
    time.sleep(float(os.environ["FAKE_CHECK_SLEEP"]))
code = int(os.environ.get("FAKE_CHECK_EXIT", "0"))
report("**Verdict: PASSED**" if code == 0 else "**Verdict: FAILED**")
sys.exit(code)
"""


def _session_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    write_fake_nvidia_smi(bin_dir)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for key in ("PORTNET_GPU_REPORT_DIR", "PORTNET_WHEELS", "PORTNET_GPU_BUDGET", "PYTHON"):
        env.pop(key, None)
    env["PYTHON"] = sys.executable
    env.update(extra)
    return env


def _fake_check(tmp_path: Path) -> str:
    script = tmp_path / "fake_gpu_check.py"
    script.write_text(_FAKE_CHECK)
    return f"{sys.executable} {script}"


def _run(env, *args, timeout=120):
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_session_runs_gpu_check_and_writes_one_report(tmp_path):
    """End to end on stand-ins: the real gpu_check, the emulated CuPy, a fake pytest."""
    env = _session_env(
        tmp_path,
        PORTNET_GPU_CHECK_EMULATE="cupy",
        PORTNET_GPU_CHECK_PYTEST=write_fake_pytest(tmp_path / "bin"),
        FAKE_PYTEST_MODE="pass",
    )
    out = tmp_path / "report"
    proc = _run(env, str(out), "--budget", "90", "--", "--skip-sync", "--skip-benchmark")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["gpu_session.log", "gpu_session.md", "logs"]
    report = (out / "gpu_session.md").read_text()
    assert report.startswith("# portnet GPU session\n\n**gpu_check passed (exit 0)**")
    assert f"- python: Python {sys.version.split()[0]}" in report
    assert f"- GPU (nvidia-smi): 0, {FAKE_GPUS[0][2]}, 580.65.06" in report
    assert "- driver 580.65.06: CUDA 13 wheels" in report
    assert "- portnet: already installed from this checkout" in report
    assert "- XLA_PYTHON_CLIENT_PREALLOCATE=false" in report
    # gpu_check's own report follows, one heading level down, with the stand-in named.
    assert "## portnet GPU check\n\n**Verdict: PASSED**" in report
    assert "**Stand-in run**" in report and "--skip-sync --skip-benchmark" in report
    assert "| cupy (`cupy-emulated` cases) | 3 | 3 |" in report
    assert (out / "logs" / "cupy.xml").exists()
    log = (out / "gpu_session.log").read_text()
    assert "$ " + sys.executable + " -m pip list" in log  # pip list is recorded first


def test_a_failing_check_fails_the_session(tmp_path):
    env = _session_env(
        tmp_path,
        PORTNET_GPU_SESSION_CHECK=_fake_check(tmp_path),
        FAKE_CHECK_EXIT="1",
        PORTNET_GPU_REPORT_DIR=str(tmp_path / "from-env"),
    )
    proc = _run(env, "--budget", "60")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = (tmp_path / "from-env" / "gpu_session.md").read_text()
    assert "**gpu_check FAILED (exit 1): see its report below**" in report
    assert "## portnet GPU check\n\n**Verdict: FAILED**" in report
    # gpu_check got the budget left (less the margin), a report path and the logs folder.
    assert "--budget " in report and "--logs " in report


def test_a_check_that_overruns_the_budget_is_killed_and_reported(tmp_path):
    # A gpu_check that dies on SIGTERM without a report: the session reports anyway.
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text("import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n")
    env = _session_env(tmp_path, PORTNET_GPU_SESSION_CHECK=f"{sys.executable} {sleeper}")
    start = time.perf_counter()
    proc = _run(env, str(tmp_path / "out"), "--budget", "6")
    assert proc.returncode == 124, proc.stdout + proc.stderr
    assert time.perf_counter() - start < 15
    report = (tmp_path / "out" / "gpu_session.md").read_text()
    assert "did not finish within the session's budget and was killed (exit 124)" in report
    assert "## gpu_check wrote no report" in report and "sleeping" in report


def test_sigterm_to_the_session_keeps_gpu_checks_report(tmp_path):
    env = _session_env(
        tmp_path, PORTNET_GPU_SESSION_CHECK=_fake_check(tmp_path), FAKE_CHECK_SLEEP="60"
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), str(out), "--budget", "120"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    log = out / "gpu_session.log"
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and "gpu_check, budget" in log.read_text():
            break
        time.sleep(0.1)
    time.sleep(1.0)  # the fake gpu_check is running
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    report = (out / "gpu_session.md").read_text()
    assert "**the session was stopped by SIGTERM**" in report
    assert "- tests: stopped by SIGTERM" in report  # gpu_check's report, written on TERM


def _wheel(folder: Path, name: str, version: str, module: str | None) -> Path:
    """A minimal valid wheel (a module, or metadata only)."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    if module:
        files[f"{module}/__init__.py"] = "VALUE = 42\n"
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name_in_zip, text in files.items():
            archive.writestr(name_in_zip, text)
    return path


def test_wheels_of_missing_packages_are_installed_without_an_index(tmp_path):
    """A missing package is installed from the wheels folder; CuPy for the other CUDA
    major version is not. pip installs into a folder of the test's (PIP_TARGET), so
    this environment is left as it was."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "portnet-probe", "1.0", "portnet_probe")
    _wheel(wheels, "cupy-cuda12x", "14.0.0", None)  # the driver (580) runs CUDA 13
    _wheel(wheels, "pytest", "0.0.1", None)  # installed here already: left alone
    target = tmp_path / "site"
    env = _session_env(tmp_path, PORTNET_GPU_SESSION_CHECK=_fake_check(tmp_path))
    env.update(PIP_TARGET=str(target), PIP_CONSTRAINT="", PIP_NO_INPUT="1")
    proc = _run(env, str(tmp_path / "out"), "--budget", "60", "--wheels", str(wheels))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = (tmp_path / "out" / "gpu_session.md").read_text()
    assert f"- installed from {wheels} (no index): portnet_probe-1.0-py3-none-any.whl \n" in report
    assert sorted(p.name for p in target.iterdir()) == [
        "portnet_probe",
        "portnet_probe-1.0.dist-info",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "soon"], "error: --budget takes whole seconds, got 'soon'"),
        (["--frobnicate"], "error: unknown option --frobnicate (see --help)"),
    ],
)
def test_a_bad_argument_exits_3_with_one_line(tmp_path, args, message):
    proc = _run(_session_env(tmp_path), *args)
    assert proc.returncode == 3
    assert proc.stderr.strip() == message
