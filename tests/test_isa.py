"""Timing as an AVX2 machine on an AVX-512 one: only ever downwards, always labelled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import isa
from portnet.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_the_avx2_settings_cap_every_library():
    env = isa.emulation_environment("avx2", {"avx2", "fma", "avx512f"})
    assert env == {
        "OPENBLAS_CORETYPE": "Haswell",
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        isa.MARKER: "avx2",
    }


@pytest.mark.parametrize("flags", [set(), {"avx", "sse4_2"}, {"avx2"}], ids=str)
def test_a_cpu_without_the_instructions_is_refused(flags):
    with pytest.raises(ConfigError, match="only ever limits downwards"):
        isa.emulation_environment("avx2", flags)


def test_an_unknown_instruction_set_is_refused():
    with pytest.raises(ConfigError, match="unknown instruction set 'avx10'"):
        isa.emulation_environment("avx10", {"avx2", "fma"})


def test_no_restart_without_emulation_or_when_already_emulating(monkeypatch):
    monkeypatch.setattr(os, "execve", lambda *args: pytest.fail("restarted"))
    monkeypatch.delenv(isa.MARKER, raising=False)
    isa.restart_emulating(None, "benchmarks.epoch_time", [])
    assert isa.label() == ""
    monkeypatch.setenv(isa.MARKER, "avx2")
    isa.restart_emulating("avx2", "benchmarks.epoch_time", [])
    assert isa.label().startswith("emulated AVX2 (OPENBLAS_CORETYPE=Haswell")


def test_the_restart_sets_the_variables_and_keeps_the_arguments(monkeypatch):
    calls = []
    monkeypatch.delenv(isa.MARKER, raising=False)
    monkeypatch.setattr(isa, "cpu_flags", lambda: {"avx2", "fma"})
    monkeypatch.setattr(os, "execve", lambda *args: calls.append(args))
    isa.restart_emulating("avx2", "benchmarks.layer_time", ["--steps", "2"])
    ((executable, argv, env),) = calls
    assert argv == [sys.executable, "-m", "benchmarks.layer_time", "--steps", "2"]
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env[isa.MARKER] == "avx2"


@pytest.mark.skipif(not {"avx2", "fma"} <= isa.cpu_flags(), reason="this CPU has no AVX2")
def test_epoch_time_emulating_avx2_runs_haswell_kernels_and_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", isa.MARKER)}
    args = ["--quick", "--emulate-isa", "avx2", "--implementations", "portnet-numpy"]
    subprocess.run(
        [sys.executable, "-m", "benchmarks.epoch_time", *args, "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    machine = json.loads((tmp_path / "epoch_time_quick.json").read_text())["machine"]
    assert machine["emulated"].startswith("emulated AVX2")
    assert machine["environment"]["OPENBLAS_CORETYPE"] == "Haswell"
    openblas = [p for p in machine["threadpools"] if p.get("internal_api") == "openblas"]
    assert openblas and all(p["architecture"] == "Haswell" for p in openblas)
    report = (tmp_path / "epoch_time_quick.md").read_text()
    assert report.startswith("# Epoch time: portnet and the alternatives (emulated AVX2)")
