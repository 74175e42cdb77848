"""The resumable sweep runner (experiments.sweep): ids, process pool, kill/resume, Dask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from experiments.sweep import (
    config_id,
    config_seed,
    expand_grid,
    load_results,
    run_sweep,
    top_k,
    top_k_markdown,
)

REPO = Path(__file__).resolve().parents[1]

#: A tiny Rookie configuration: the embedded 2,000-image sample, one small hidden layer.
BASE = {
    "dataset": "fashion_mnist_sample",
    "data_dir": None,
    "train_size": 600,
    "val_size": 200,
    "hidden": [16],
    "l2": 1e-4,
    "decay_every": 1,
    "epochs": 1,
    "batch_size": 64,
    "backend": "numpy",
    "device": None,
    "split_seed": 0,
}


def tiny_grid(n_lr: int = 2, epochs: int = 1) -> list[dict]:
    lrs = [0.4, 0.2, 0.1, 0.05][:n_lr]
    return expand_grid({**BASE, "epochs": epochs}, {"lr": lrs, "decay": [0.5, 0.8]})


def test_config_id_is_stable_and_seed_derived():
    a = {"lr": 0.1, "hidden": [500, 324], "l2": 1e-3}
    b = {"l2": 1e-3, "hidden": [500, 324], "lr": 0.1}
    assert config_id(a) == config_id(b)
    assert len(config_id(a)) == 12
    assert config_id(a) != config_id({**a, "lr": 0.2})
    assert config_seed(a) == config_seed(b) != config_seed({**a, "lr": 0.2})
    # The id must not depend on the process (hash() is salted per process).
    code = (
        "from experiments.sweep import config_id; "
        "print(config_id({'lr': 0.1, 'hidden': [500, 324], 'l2': 1e-3}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == config_id(a)


def test_reduced_grid_runs_with_two_workers_and_skips_finished(tmp_path, capsys):
    configs = tiny_grid()
    counts = run_sweep(configs, tmp_path, workers=2)
    assert counts == {"total": 4, "skipped": 0, "ran": 4}
    records = load_results(tmp_path)
    assert sorted(r["id"] for r in records) == sorted(config_id(c) for c in configs)
    for r in records:
        assert (tmp_path / f"{r['id']}.json").is_file()
        assert r["pid"] != os.getpid(), "configurations must run in worker processes"
        assert r["seed"] == config_seed(r["config"])
        assert 0.1 < r["test_accuracy"] <= 1.0  # above chance on 10 classes
    out = capsys.readouterr().out
    assert "[4/4]" in out and "ETA" in out
    again = run_sweep(configs, tmp_path, workers=2)
    assert again == {"total": 4, "skipped": 4, "ran": 0}
    table = top_k_markdown(records, k=3)
    assert table.count("\n") == 2 + 3  # header, rule, three rows
    best = top_k(records, 1)[0]
    assert best["test_accuracy"] == max(r["test_accuracy"] for r in records)


def test_killed_sweep_resumes_without_rerunning_finished(tmp_path):
    configs = tiny_grid(n_lr=4, epochs=1)
    # Two quick configurations first, then six slower ones (the pool runs them in
    # order), so the kill after two results lands half-way even on an idle machine.
    for config in configs[2:]:
        config["epochs"] = 40
    (tmp_path / "configs.json").write_text(json.dumps(configs))
    driver = textwrap.dedent(
        f"""
        import json
        from experiments.sweep import run_sweep
        configs = json.load(open({str(tmp_path / "configs.json")!r}))
        run_sweep(configs, {str(tmp_path / "results")!r}, workers=2)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", driver],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill reaches the workers too
    )
    results = tmp_path / "results"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and len(list(results.glob("*.json"))) < 2:
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(0.2)
    finished = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert 2 <= len(finished) < len(configs), f"kill was not half-way: {len(finished)} done"
    counts = run_sweep(configs, results, workers=2)
    assert counts == {"total": 8, "skipped": len(finished), "ran": 8 - len(finished)}
    after = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert len(after) == 8
    for name, mtime in finished.items():
        assert after[name] == mtime, f"{name} was re-run after the resume"


def test_dask_local_cluster_gives_the_same_table_as_the_pool(tmp_path):
    pytest.importorskip("distributed", reason='dask not installed: pip install "portnet[dask]"')
    configs = tiny_grid()
    run_sweep(configs, tmp_path / "pool", workers=2)
    counts = run_sweep(configs, tmp_path / "dask", dask_workers=2)
    assert counts["ran"] == 4
    pool = load_results(tmp_path / "pool")
    dask = load_results(tmp_path / "dask")
    assert {r["pid"] for r in dask}.isdisjoint({os.getpid()})
    assert top_k_markdown(pool, 10) == top_k_markdown(dask, 10)


def test_missing_dask_names_the_extra(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name.startswith(("dask", "distributed")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(ImportError, match=r'pip install "portnet\[dask\]"'):
        run_sweep(tiny_grid()[:1], tmp_path, dask_workers=1)


def test_cli_help_and_summary(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--workers", "--scheduler", "--dask-workers", "--grid", "--out"):
        assert flag in out
    run_sweep(tiny_grid()[:2], tmp_path, workers=1)
    summary = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", "--out", str(tmp_path), "--summarize"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Top 2 of 2" in summary and "| Learning rate |" in summary


def test_a_failing_configuration_does_not_stop_the_others(tmp_path):
    good = tiny_grid()[:2]
    bad = {**good[0], "dataset": "no_such_dataset"}
    with pytest.raises(RuntimeError, match="1 configuration"):
        run_sweep([bad, *good], tmp_path, workers=1)
    assert sorted(r["id"] for r in load_results(tmp_path)) == sorted(config_id(c) for c in good)
