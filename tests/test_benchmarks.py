"""The epoch-time benchmark runs end to end in its --quick mode and writes well-formed results.

Only the shape of the output is checked, never speed (DESIGN.md: "Benchmarks,
not timed tests").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMPLEMENTATIONS = {
    "portnet-numpy",
    "portnet-torch",
    "portnet-array_api_strict",
    "portnet-cupy",
    "torch",
    "sklearn",
    "numpy-naive-f64",
    "gemm-only",
}

ENTRY_KEYS = {
    "workload",
    "batch_size",
    "implementation",
    "status",
    "reason",
    "median_s",
    "min_s",
    "max_s",
    "times_s",
    "ratio_to_torch",
    "transfers_per_epoch",
    "ops_per_step",
    "op_list",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Run ``python -m benchmarks.epoch_time --quick`` once; return its JSON and output dir."""
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("bench")
    json_path = out / "quick.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.epoch_time", "--quick", "--json", str(json_path)]
        + ["--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(json_path.read_text()), out, proc.stdout


def test_json_has_machine_and_one_entry_per_implementation(quick_run):
    document, _, _ = quick_run
    assert {"machine", "results", "settings", "op_counts"} <= set(document)
    machine = document["machine"]
    for key in ("cpu_model", "python", "versions", "threadpools", "environment"):
        assert key in machine
    assert {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"} <= set(machine["environment"])
    names = [e["implementation"] for e in document["results"]]
    assert sorted(names) == sorted(IMPLEMENTATIONS), "one entry per implementation"
    for entry in document["results"]:
        assert ENTRY_KEYS <= set(entry), entry["implementation"]
        assert entry["workload"] == "mlp-s3"
        assert entry["status"] in ("ok", "skipped")


def test_ok_entries_have_positive_times_and_skipped_ones_a_reason(quick_run):
    document, _, _ = quick_run
    results = {e["implementation"]: e for e in document["results"]}
    # These need only NumPy and portnet's own dependencies: they must run everywhere.
    for name in ("portnet-numpy", "numpy-naive-f64", "gemm-only"):
        assert results[name]["status"] == "ok", results[name]["reason"]
    for entry in results.values():
        if entry["status"] == "ok":
            assert entry["min_s"] > 0
            assert entry["min_s"] <= entry["median_s"] <= entry["max_s"]
            assert len(entry["times_s"]) == document["settings"]["repeats"]
        else:
            assert entry["reason"], entry["implementation"]
            assert entry["median_s"] is None
    if results["torch"]["status"] == "ok":
        assert results["torch"]["ratio_to_torch"] == pytest.approx(1.0)
        for entry in results.values():
            if entry["status"] == "ok":
                assert entry["ratio_to_torch"] > 0


def test_portnet_transfers_and_op_counts(quick_run):
    document, _, _ = quick_run
    portnet = [
        e
        for e in document["results"]
        if e["implementation"].startswith("portnet-") and e["status"] == "ok"
    ]
    assert portnet, "no portnet implementation ran"
    for entry in portnet:
        transfers = entry["transfers_per_epoch"]
        assert transfers["total"] <= 2, (entry["implementation"], transfers)
    if not any(e["implementation"] == "portnet-torch" for e in portnet):
        pytest.skip("op counts need PyTorch")
    for entry in portnet:
        assert entry["ops_per_step"] > 0
        assert entry["op_list"] and sum(entry["op_list"].values()) == entry["ops_per_step"]
        assert "mm" in entry["op_list"]
    torch_entry = next(e for e in document["results"] if e["implementation"] == "torch")
    assert torch_entry["ops_per_step"] > 0 and torch_entry["op_list"]


def test_markdown_and_plot_are_written(quick_run):
    _, out, stdout = quick_run
    markdown = (out / "quick.md").read_text()
    assert "| `portnet-numpy` |" in markdown
    assert "Operations per training step" in markdown
    assert "Host transfers per epoch" in markdown
    assert (out / "quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The table is printed at the end, after one progress line per measurement.
    assert "repeat 1/1 portnet-numpy" in stdout
    assert "| `gemm-only` |" in stdout


def test_bad_flags_exit_with_usage_error():
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.epoch_time", "--workload", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown workload" in proc.stderr
