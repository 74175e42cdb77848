"""Sweeps (portnet.sweeps, experiments.sweep): configurations as data, ids and Dask keys,
checks before anything starts, local and Dask runs, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import portnet as pn
from portnet.config import spec_of
from portnet.errors import ConfigError
from portnet.sweeps import (
    LOG_NAME,
    SweepError,
    build_model,
    config_id,
    config_seed,
    dask_options,
    expand_grid,
    fit_config,
    load_results,
    needs_gpu,
    normalize_config,
    run_sweep,
    task_key,
    top_k,
    train_config,
)

REPO = Path(__file__).resolve().parents[1]

#: A tiny configuration: 300 images of the sample shipped with portnet, one epoch.
BASE = {
    "layers": [spec_of(layer) for layer in pn.mlp([784, 16, 10], "relu", init="he")],
    "optimizer": spec_of(pn.SGD(pn.StepDecay(0.1, factor=0.5, every=1))),
    "dataset": "fashion_mnist_sample",
    "train_size": 300,
    "val_fraction": None,
    "val_size": 60,
    "epochs": 1,
    "batch_size": 64,
}


def tiny_grid(n_lr: int = 2, epochs: int = 1) -> list[dict]:
    configs = []
    for lr in [0.4, 0.2, 0.1, 0.05][:n_lr]:
        for l2 in (0.0, 1e-3):
            optimizer = spec_of(pn.SGD(pn.StepDecay(lr, factor=0.5, every=1)))
            configs.append(
                {**BASE, "optimizer": optimizer, "l2": l2, "epochs": epochs, "tags": {"lr": lr}}
            )
    return configs


def log_events(out: Path) -> list[dict]:
    path = out / LOG_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def starts_per_id(out: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in log_events(out):
        if event["event"] == "start":
            counts[event["id"]] = counts.get(event["id"], 0) + 1
    return counts


def test_a_configuration_is_plain_data_that_rebuilds_the_same_model():
    config = tiny_grid()[3]
    text = json.dumps(config)  # plain data: no objects, no pickles
    again = json.loads(text)
    assert normalize_config(again) == normalize_config(config)
    assert config_id(again) == config_id(config)
    a, b = build_model(config), build_model(again)
    assert repr(a.optimizer) == repr(b.optimizer) == repr(pn.SGD(pn.StepDecay(0.2, 0.5, 1)))
    assert spec_of(b.optimizer) == config["optimizer"]
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        for key in wa:
            assert (wa[key] == wb[key]).all()
    # The result holds the normalised configuration, which rebuilds the same run.
    first = fit_config(config)
    second = fit_config(normalize_config(again))
    assert first["test"] == second["test"]
    assert 0.1 < first["test"]["accuracy"] <= 1.0  # above chance on 10 classes


def test_ids_seeds_and_dask_keys_are_deterministic(tmp_path):
    config = tiny_grid()[0]
    reordered = dict(reversed(list(config.items())))
    assert config_id(config) == config_id(reordered)
    assert len(config_id(config)) == 12
    # Labels and where a machine keeps the data do not change what is trained.
    relabelled = {**config, "tags": {"other": 1}, "data_dir": "/x"}
    assert config_id(relabelled) == config_id(config)
    # Defaults written out or left out: the same configuration.
    assert config_id({**config, "l1": 0, "dtype": "float32"}) == config_id(config)
    assert config_id({**config, "epochs": 2}) != config_id(config)
    # A compiled run draws other dropout masks, so compile: true is another run.
    assert config_id({**config, "compile": False}) == config_id(config)
    on_jax = {**config, "backend": "jax"}
    assert config_id({**on_jax, "compile": True}) != config_id(on_jax)
    # seed: null derives the seed from the id (of the uncompiled run: the same weights).
    derived, derived_jax = {**config, "seed": None}, {**on_jax, "seed": None}
    assert config_seed({**derived_jax, "compile": True}) == config_seed(derived_jax)
    assert config_seed(derived) == config_seed(dict(reversed(list(derived.items()))))
    assert config_seed(derived) != config_seed({**derived, "epochs": 2})
    assert config_seed({**config, "seed": 7}) == 7 and config_seed(config) == 0
    key = task_key(config, tmp_path / "a")
    assert key == task_key(reordered, tmp_path / "a") == f"{key[:23]}{config_id(config)}"
    assert task_key(config, tmp_path / "b") != key  # another results folder: another task
    # Another process, outside the repository: the same id (hash() is salted per process).
    (tmp_path / "config.json").write_text(json.dumps(config))
    code = "import json; from portnet.sweeps import config_id; "
    code += "print(config_id(json.load(open('config.json'))))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == config_id(config)


def test_dask_options_ask_for_a_gpu_only_on_gpu_backends(tmp_path):
    cpu = dask_options(tiny_grid()[0], str(tmp_path), 3)
    assert cpu["resources"] is None and cpu["retries"] == 3
    assert cpu["key"] == task_key(tiny_grid()[0], tmp_path)
    for backend, device in (
        ("cupy", None),
        ("cupy", "cuda:1"),
        ("torch", "cuda:0"),
        ("jax", "cuda"),
    ):
        gpu = {**tiny_grid()[0], "backend": backend, "device": device}
        assert needs_gpu(gpu)
        assert dask_options(gpu, str(tmp_path), 2)["resources"] == {"GPU": 1}
    assert not needs_gpu({"backend": "torch", "device": "cpu"})
    assert not needs_gpu({"backend": "jax"}) and not needs_gpu({})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"backend": "mxnet"}, "Unknown backend 'mxnet'"),
        ({"epochs": 0}, "epochs must be in"),
        ({"l2": float("nan")}, "l2 must be finite"),
        ({"layers": [{"class": "Conv3D"}]}, "unknown layer class"),
        ({"optimizer": {"class": "SGD", "config": {"lr": -1}}}, "learning rate must be"),
        ({"dataset": "cifar"}, "unknown dataset 'cifar'"),
        ({"normalise": "x"}, "unknown option"),
        ({"layer": []}, "unknown option"),
        ({"compile": "yes", "backend": "jax"}, "compile must be true or false, got 'yes'"),
    ],
)
def test_a_bad_configuration_is_refused_before_anything_runs(tmp_path, change, message):
    configs = [*tiny_grid(), {**BASE, **change}]
    with pytest.raises(ConfigError, match=message) as caught:
        run_sweep(configs, tmp_path / "out")
    assert "sweep configuration 5" in str(caught.value)
    assert not (tmp_path / "out").exists()  # nothing was created, nothing started


def test_a_compile_on_a_backend_that_cannot_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match="needs the jax backend"):
        run_sweep([*tiny_grid(), {**BASE, "compile": True, "backend": "numpy"}], tmp_path / "o")
    assert not list((tmp_path / "o").glob("*.json"))


def _cli(args: list[str], cwd=REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTNET_")}
    return subprocess.run(
        [sys.executable, "-m", "experiments.sweep", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_bad_sweep_arguments_exit_2_before_any_configuration_starts(tmp_path):
    (tmp_path / "a_file").write_text("not a folder\n")
    cases = {
        "unknown backend": (["--quick", "--backend", "mxnet"], "Unknown backend 'mxnet'"),
        "out is a file": (["--quick", "--out", str(tmp_path / "a_file")], "is a file"),
        "out under a file": (
            ["--quick", "--out", str(tmp_path / "a_file" / "sub")],
            "cannot write the sweep's results",
        ),
        "unreachable scheduler": (
            ["--quick", "--scheduler", "tcp://127.0.0.1:9", "--timeout", "1"],
            "cannot reach the Dask scheduler",
        ),
        "unknown dataset": (["--quick", "--dataset", "cifar"], "unknown dataset"),
        "epochs zero": (["--quick", "--epochs", "0"], "--epochs"),
        "compile off jax": (["--quick", "--compile"], "needs the jax backend"),
    }
    procs = {}
    for name, (args, _) in cases.items():
        out = ["--out", str(tmp_path / name.replace(" ", "_"))] if "--out" not in args else []
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "experiments.sweep", *out, *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, (_, expect) in cases.items():
        stdout, stderr = procs[name].communicate(timeout=120)
        assert procs[name].returncode == 2, (name, stdout, stderr)
        assert "Traceback" not in stderr, (name, stderr)
        last = stderr.strip().splitlines()[-1]
        assert "error:" in last and expect in last, (name, stderr)
        assert "sweep: " not in stdout, (name, stdout)  # no configuration was started
    for folder in tmp_path.iterdir():
        if folder.is_dir():
            assert not list(folder.rglob("*.json")) and not (folder / LOG_NAME).exists()


def test_run_sweep_runs_the_given_task_and_skips_finished_ones(tmp_path):
    configs = tiny_grid()
    calls = []

    def task(config, out):
        calls.append(config_id(config))
        return train_config(config, out)

    counts = run_sweep(configs, tmp_path, task=task, progress=lambda record: None)
    assert counts == {"total": 4, "skipped": 0, "ran": 4}
    assert sorted(calls) == sorted(config_id(c) for c in configs)
    records = load_results(tmp_path)
    assert sorted(r["id"] for r in records) == sorted(calls)
    for r in records:
        assert r["seed"] == config_seed(r["config"])
        assert r["tags"]["lr"] in (0.4, 0.2) and 0.1 < r["test_accuracy"] <= 1.0
    # Resume: a removed result runs again, the others are left alone.
    removed = tmp_path / f"{calls[1]}.json"
    removed.unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.json")}
    calls.clear()
    again = run_sweep([*configs, configs[0]], tmp_path, task=task, progress=lambda r: None)
    assert again == {"total": 4, "skipped": 3, "ran": 1}
    assert calls == [removed.stem]
    for name, mtime in kept.items():
        assert (tmp_path / name).stat().st_mtime_ns == mtime, f"{name} was re-run"
    assert starts_per_id(tmp_path)[removed.stem] == 2
    best = top_k(records, 1)[0]
    assert best["test_accuracy"] == max(r["test_accuracy"] for r in records)


def failing_task(config, out):
    """A task for a pool worker: configurations tagged ``fail`` raise."""
    if config["tags"].get("fail"):
        raise RuntimeError("this configuration fails on purpose")
    return train_config(config, out)


def test_a_failing_configuration_does_not_stop_the_others(tmp_path):
    good = tiny_grid()[:2]
    bad = {**good[0], "epochs": 2, "tags": {"fail": True}}
    with pytest.raises(SweepError, match="1 configuration"):
        run_sweep([bad, *good], tmp_path, task=failing_task, workers=2)
    assert sorted(r["id"] for r in load_results(tmp_path)) == sorted(config_id(c) for c in good)


def test_killed_sweep_resumes_without_rerunning_finished(tmp_path):
    configs = tiny_grid(n_lr=4, epochs=1)
    # Two quick configurations first, then six slower ones (the pool runs them in
    # order), so the kill after two results lands half-way even on an idle machine.
    for config in configs[2:]:
        config["epochs"] = 40
    (tmp_path / "configs.json").write_text(json.dumps(configs))
    results = tmp_path / "results"
    driver = textwrap.dedent(
        f"""
        import json
        from portnet.sweeps import run_sweep
        configs = json.load(open({str(tmp_path / "configs.json")!r}))
        run_sweep(configs, {str(results)!r}, workers=2)
        """
    )
    proc = subprocess.Popen(  # from outside the repository: only the installed package
        [sys.executable, "-c", driver],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill reaches the workers too
    )
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
    counts = run_sweep(configs, results, workers=2, progress=lambda r: None)
    assert counts == {"total": 8, "skipped": len(finished), "ran": 8 - len(finished)}
    after = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert len(after) == 8 and len(load_results(results)) == 8
    for name, mtime in finished.items():
        assert after[name] == mtime, f"{name} was re-run after the resume"


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip(
        "distributed", reason='dask not installed: pip install "portnet[dask]"'
    )
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=":0", processes=True
    ) as local:
        yield local.scheduler_address


def test_dask_sweep_completes_every_result_once_and_two_drivers_share_the_work(cluster, tmp_path):
    configs = tiny_grid(n_lr=3, epochs=3)
    counts = {}

    def driver(name):
        counts[name] = run_sweep(configs, tmp_path, scheduler=cluster, progress=lambda r: None)

    threads = [threading.Thread(target=driver, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert set(counts) == {"a", "b"}
    records = load_results(tmp_path)
    assert sorted(r["id"] for r in records) == sorted(config_id(c) for c in configs)
    assert {r["pid"] for r in records}.isdisjoint({os.getpid()})  # on the workers
    # Two drivers, one scheduler: each configuration was trained exactly once.
    assert starts_per_id(tmp_path) == {config_id(c): 1 for c in configs}
    again = run_sweep(configs, tmp_path, scheduler=cluster)
    assert again == {"total": 6, "skipped": 6, "ran": 0}


def test_dask_refuses_gpu_configurations_without_gpu_workers(cluster, tmp_path):
    gpu = {**tiny_grid()[0], "backend": "cupy"}
    with pytest.raises(ConfigError, match='--resources "GPU=1"'):
        run_sweep([tiny_grid()[1], gpu], tmp_path, scheduler=cluster)
    assert not log_events(tmp_path) and not load_results(tmp_path)


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
    assert not log_events(tmp_path)


def test_cli_runs_s3s_grid_then_summarises(tmp_path):
    done = _cli(["--quick", "--epochs", "1", "--out", str(tmp_path)])
    assert done.returncode == 0, done.stderr
    assert "sweep: ran 2, skipped 0 of 2" in done.stdout
    records = load_results(tmp_path)
    assert len(records) == 2 and {r["config"]["epochs"] for r in records} == {1}
    summary = _cli(["--out", str(tmp_path), "--summarize", "--top", "1"])
    assert summary.returncode == 0, summary.stderr
    assert "Top 1 of 2" in summary.stdout and "| Learning rate | λ |" in summary.stdout
    best = top_k(records, 1)[0]
    assert f"`{best['id']}`" in summary.stdout


def test_a_compiled_configuration_trains_as_the_eager_one(monkeypatch):
    pytest.importorskip("jax")
    import portnet.training.compiled

    compiled_epochs = []

    def counting(*args, **kwargs):
        compiled_epochs.append(1)
        return train_epoch_compiled(*args, **kwargs)

    train_epoch_compiled = portnet.training.compiled.train_epoch_compiled
    monkeypatch.setattr(portnet.training.compiled, "train_epoch_compiled", counting)
    config = {**BASE, "backend": "jax", "epochs": 2}
    eager = fit_config(config)
    assert compiled_epochs == []
    jitted = fit_config({**config, "compile": True})
    assert compiled_epochs == [1, 1]
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose(
            jitted["history"].history[key], eager["history"].history[key], rtol=1e-4
        )


def test_expand_grid_is_every_combination_in_order():
    grid = expand_grid({"a": 0, "b": [1]}, {"x": [1, 2], "y": ["p", "q", "r"]})
    assert len(grid) == 6
    assert [(g["x"], g["y"]) for g in grid[:3]] == [(1, "p"), (1, "q"), (1, "r")]
    grid[0]["b"].append(2)
    assert grid[1]["b"] == [1]  # each combination has its own copy of the base


def test_the_wheel_ships_what_a_worker_runs():
    """A Dask worker needs only the installed package: portnet.sweeps must be in the wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = config["tool"]["setuptools"]["packages"]
    assert {"portnet", "portnet.data", "portnet.sweeps"} <= set(packages)
    assert "dask[distributed]>=2024.1" in config["project"]["optional-dependencies"]["dask"]


def test_probe_worker_reports_what_a_worker_cannot_do(tmp_path):
    from portnet.sweeps import probe_worker
    from portnet.sweeps.runner import data_specs

    good = normalize_config(tiny_grid()[0])
    bad = normalize_config({**BASE, "val_size": 300})
    found = probe_worker(str(tmp_path), [("numpy", None)], data_specs([good, good]))
    assert found == {"portnet": pn.__version__, "write": None, "backends": {}, "data": {}}
    found = probe_worker(
        str(tmp_path / "missing"), [("numpy", None), ("numpy", "cuda:7")], data_specs([good, bad])
    )
    assert found["write"] and set(found["backends"]) == {"numpy cuda:7"}
    assert "val_size=300" in found["data"]["fashion_mnist_sample"]
