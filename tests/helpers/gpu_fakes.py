"""Stand-ins for a GPU machine's programs, for the tests of gpu_check and gpu_session.sh.

- :func:`write_fake_nvidia_smi`: an ``nvidia-smi`` that answers ``--query-gpu`` for
  two made-up GPUs (and prints a banner without arguments);
- :func:`write_fake_pytest`: a ``pytest`` whose behaviour ``$FAKE_PYTEST_MODE``
  chooses: ``pass``, ``fail``, ``skip`` (every case skipped), ``crash`` (internal
  error, exit 3), ``nothing`` (collects nothing, exit 5), ``empty`` (its collection
  pass counts no GPU case), ``hang`` (one case passes, then it sleeps).

Each writes a Python script and returns the command that runs it, as the string
``$PORTNET_GPU_CHECK_PYTEST`` takes or a path to put on ``PATH``.
"""

from __future__ import annotations

import shlex
import stat
import sys
import textwrap
from pathlib import Path

FAKE_GPUS = [
    ("0", "GPU-aaaaaaaa-1111-2222-3333-444444444444", "NVIDIA H100 80GB HBM3 (fake)"),
    ("1", "GPU-bbbbbbbb-5555-6666-7777-888888888888", "NVIDIA A100-SXM4-40GB (fake)"),
]
FAKE_DRIVER = "580.65.06"

_NVIDIA_SMI = """
import sys
GPUS = {gpus!r}
DRIVER = {driver!r}
values = lambda g: {{"index": g[0], "uuid": g[1], "name": g[2], "driver_version": DRIVER,
                     "memory.total": "81559 MiB"}}
query = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--query-gpu=")]
if query:
    for gpu in GPUS:
        print(", ".join(values(gpu)[field] for field in query[0].split(",")))
else:
    print(f"| NVIDIA-SMI {{DRIVER}}   Driver Version: {{DRIVER}}   CUDA Version: 13.0 |")
    for gpu in GPUS:
        print(f"|   {{gpu[0]}}  {{gpu[2]}} |")
"""

_PYTEST = """
import json, os, sys, time
mode = os.environ.get("FAKE_PYTEST_MODE", "pass")
args = sys.argv[1:]
def option(name):
    return next((a.split("=", 1)[1] for a in args if a.startswith(name + "=")), None)
inventory, case, junit = (option(n) for n in
                          ("--portnet-gpu-inventory", "--portnet-gpu-case", "--junitxml"))
if mode == "crash":
    sys.stderr.write("INTERNALERROR> RuntimeError: CUDA driver initialization failed\\n")
    sys.exit(3)
if inventory:
    count = 0 if mode == "empty" else 3
    kinds = ("cupy", "torch-cuda", "jax-cuda", "cupy-emulated")
    data = {{"cases": {{k: count for k in kinds}},
            "files": {{k: ["tests/test_fake.py"] for k in kinds}}, "collect_errors": []}}
    with open(inventory, "w") as handle:
        json.dump(data, handle)
    sys.exit(5)
if mode == "nothing":
    print("collected 0 items / no tests ran")
    sys.exit(5)
if mode == "hang":
    print(f"tests/test_fake.py::test_a[{{case}}] PASSED", flush=True)
    time.sleep(120)
    sys.exit(0)
outcomes = {{"pass": ["pass"] * 3, "skip": ["skip"] * 3, "fail": ["pass", "fail", "pass"]}}[mode]
body = {{"pass": "", "fail": '<failure message="AssertionError: 1e-3 off"/>',
        "skip": '<skipped message="cupy: CuPy is not installed"/>'}}
cases = "".join(
    f'<testcase classname="tests.test_fake" name="test_{{i}}[{{case}}]">{{body[o]}}</testcase>'
    for i, o in enumerate(outcomes))
for i, o in enumerate(outcomes):
    word = {{"pass": "PASSED", "fail": "FAILED", "skip": "SKIPPED"}}[o]
    print(f"tests/test_fake.py::test_{{i}}[{{case}}] {{word}}")
with open(junit, "w") as handle:
    handle.write(f'<?xml version="1.0"?><testsuites><testsuite>{{cases}}</testsuite></testsuites>')
sys.exit(1 if "fail" in outcomes else 0)
"""


def _write(path: Path, source: str) -> Path:
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(source))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def write_fake_nvidia_smi(folder: Path, gpus=FAKE_GPUS, driver: str = FAKE_DRIVER) -> Path:
    """An executable ``folder/nvidia-smi``; put ``folder`` first on ``PATH``."""
    folder.mkdir(parents=True, exist_ok=True)
    return _write(folder / "nvidia-smi", _NVIDIA_SMI.format(gpus=list(gpus), driver=driver))


def write_fake_pytest(folder: Path) -> str:
    """A fake pytest; returns the command for ``$PORTNET_GPU_CHECK_PYTEST``."""
    folder.mkdir(parents=True, exist_ok=True)
    script = _write(folder / "fake_pytest.py", _PYTEST.format())
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
