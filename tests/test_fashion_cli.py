"""The main job, `python -m experiments.fashion`, end to end on small data."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import portnet as pn
from portnet.errors import BackendError

REPO = Path(__file__).resolve().parents[1]
SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def run(args, env_extra=None, timeout=600):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTNET_")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "experiments.fashion", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_every_flag_reaches_the_run_configuration(tmp_path):
    """Each flag sets its option (over the defaults and a config file), not only --help."""
    from experiments import fashion

    config_file = tmp_path / "base.yaml"
    config_file.write_text("epochs: 7\nlr: 0.3\nl1: 0.001\n")
    flags = {
        "--backend": ("array_api_strict", "backend", "array_api_strict"),
        "--device": ("device1", "device", "device1"),
        "--dtype": ("float64", "dtype", "float64"),
        "--threads": ("3", "threads", 3),
        "--dataset": ("mnist", "dataset", "mnist"),
        "--data-dir": (str(tmp_path), "data_dir", str(tmp_path)),
        "--normalize": ("image", "normalize", "image"),
        "--train-size": ("500", "train_size", 500),
        "--val-fraction": ("0.25", "val_fraction", 0.25),
        "--hidden": ("300,100", "hidden", [300, 100]),
        "--activation": ("tanh", "activation", "tanh"),
        "--dropout": ("0.1", "dropout", 0.1),
        "--optimizer": ("adam", "optimizer", "adam"),
        "--lr": ("0.002", "lr", 0.002),
        "--momentum": ("0.5", "momentum", 0.5),
        "--schedule": ("step", "schedule", "step"),
        "--batch-size": ("64", "batch_size", 64),
        "--epochs": ("3", "epochs", 3),
        "--l2": ("0.0001", "l2", 0.0001),
        "--weight-decay": ("0.01", "weight_decay", 0.01),
        "--label-smoothing": ("0.05", "label_smoothing", 0.05),
        "--patience": ("4", "patience", 4),
        "--seed": ("9", "seed", 9),
        "--out": (str(tmp_path / "run"), "out", str(tmp_path / "run")),
    }
    argv = ["--config", str(config_file), "--no-plots"]
    for flag, (text, _, _) in flags.items():
        argv += [flag, text]
    config, job = fashion.resolve_config(fashion.build_parser().parse_args(argv))
    values = {**config.to_dict(), **job}
    for flag, (_, key, expected) in flags.items():
        assert values[key] == expected, flag
    assert config.l1 == 0.001 and job["plots"] is False  # from the file; --no-plots
    # The on/off options of the MLP, both ways.
    for value in (True, False):
        prefix = "--" if value else "--no-"
        argv = [f"{prefix}batch-norm", f"{prefix}flip", f"{prefix}test-time-flip"]
        config, _ = fashion.resolve_config(fashion.build_parser().parse_args(argv))
        assert config.batch_norm is value and config.flip is value
        assert config.test_time_flip is value
    # Left out, each option keeps its default.
    defaults, _ = fashion.resolve_config(fashion.build_parser().parse_args([]))
    assert defaults == pn.RunConfig()


def test_cupy_without_gpu_exits_2_with_one_paragraph():
    # Checked first: where CuPy works, the command below would train the full main job.
    try:
        pn.get_backend("cupy")
    except BackendError as exc:
        reason = str(exc)
    else:
        pytest.skip("CuPy runs on a GPU here; this test is for machines without one")
    result = run([], env_extra={"PORTNET_BACKEND": "cupy"}, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and reason.split(". ")[0] in result.stderr
    assert result.stderr.strip().count("\n") == 0  # one paragraph


def test_bad_thread_count_exits_2(tmp_path):
    result = run(["--threads", "0"], timeout=120)
    assert result.returncode == 2 and "--threads: must be in [1, inf], got 0" in result.stderr
    config = tmp_path / "threads.yaml"
    config.write_text("threads: -1\n")
    result = run(["--config", str(config)], timeout=120)
    assert result.returncode == 2 and "threads must be in [1, inf], got -1" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_backend_exits_2():
    result = run(["--backend", "mxnet"], timeout=120)
    assert result.returncode == 2 and "Known backends" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = run(
        [
            "--dataset",
            "fashion_mnist_sample",
            "--epochs",
            "3",
            "--hidden",
            "64",
            "--batch-size",
            "64",
            "--out",
            str(out),
            "--seed",
            "1",
        ]
    )
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def test_run_writes_every_output(sample_run):
    out, stdout = sample_run
    for name in (
        "config.json",
        "history.json",
        "metrics.json",
        "model.npz",
        "curves.png",
        "confusion.png",
        "misclassified.png",
        "preprocessing.npz",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    history = json.loads((out / "history.json").read_text())
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "seconds"):
        assert len(history[key]) == 3, key
    assert history["train_loss"][-1] < history["train_loss"][0]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "test_accuracy",
        "test_loss",
        "best_epoch",
        "epochs_run",
        "backend",
        "device",
        "dtype",
        "seconds_total",
    ):
        assert key in metrics, key
    assert 0.5 < metrics["test_accuracy"] <= 1.0  # ten classes: chance is 0.1
    assert np.asarray(metrics["confusion_matrix"]).sum() == 500
    assert "backend numpy" in stdout and "embedded sample" in stdout
    assert f"test accuracy {metrics['test_accuracy']:.4f}" in stdout
    # The model's summary: 784-64-10, its parameters, activations at batch 64.
    # 784x64 weights (no bias before BatchNorm), its gamma and beta (+ 128 running
    # statistics, not trained), then 64x10 + 10.
    assert "parameters: 51,082 (50,954 trainable)" in stdout
    assert "(64, 64)" in stdout and "activations at batch 64" in stdout
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_saved_model_reproduces_accuracy_on_another_backend(sample_run):
    out, _ = sample_run
    recorded = json.loads((out / "metrics.json").read_text())["test_accuracy"]
    result = run(["--evaluate", str(out), "--backend", "array_api_strict", "--device", "device1"])
    assert result.returncode == 0, result.stderr
    assert f"test accuracy {recorded:.4f} (recorded {recorded:.4f})" in result.stdout


def test_config_file_is_read_and_flags_override(tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text(
        "dataset: fashion_mnist_sample\nhidden: 32\nepochs: 5\nbatch_size: 100\n"
        "optimizer: adam\nlr: 0.002\nschedule: constant\nthreads: 1\n"
    )
    out = tmp_path / "run"
    result = run(["--config", str(config), "--epochs", "1", "--out", str(out), "--no-plots"])
    assert result.returncode == 0, result.stderr
    saved = json.loads((out / "config.json").read_text())
    assert saved["hidden"] == [32] and saved["optimizer"] == "adam" and saved["epochs"] == 1
    assert saved["threads"] == 1 and "threads 1" in result.stdout
    assert not (out / "curves.png").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("hiden: 32\n")
    result = run(["--config", str(bad)])
    assert result.returncode == 2 and "hiden" in result.stderr


def test_a_config_files_layer_list_is_the_network_of_any_model(tmp_path):
    """Without model: cnn, a layers: list is still the network (it used to be replaced by
    the default MLP); the saved model has the list's layers and widths."""
    config = tmp_path / "layers.yaml"
    config.write_text(
        "layers:\n"
        "  - {class: Dense, config: {n_in: 784, n_out: 24}}\n"
        "  - {class: Tanh}\n"
        "  - {class: Dense, config: {n_in: 24, n_out: 10}}\n"
    )
    out = tmp_path / "run"
    args = ["--config", str(config), "--dataset", "fashion_mnist_sample", "--train-size", "300"]
    result = run([*args, "--epochs", "1", "--out", str(out), "--no-plots"], timeout=300)
    assert result.returncode == 0, result.stderr
    assert "layer list (3 layers)" in result.stdout
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"] == "layers" and len(saved["layers"]) == 3
    model = pn.Model.load(out / "model.npz")
    weights = model.get_weights()  # one dict per layer; Tanh has none
    assert [tuple(p["W"].shape) if p else None for p in weights] == [(784, 24), None, (24, 10)]


def _first_epoch_loss(tmp_path, backend_args, dataset_args):
    out = tmp_path / "-".join(backend_args).replace(":", "")
    result = run(
        [
            *dataset_args,
            "--train-size",
            "2000",
            "--epochs",
            "2",
            "--seed",
            "0",
            "--no-plots",
            "--out",
            str(out),
            *backend_args,
        ]
    )
    assert result.returncode == 0, result.stderr
    return json.loads((out / "history.json").read_text())["train_loss"][0]


def test_numpy_and_strict_device1_agree_on_first_epoch(tmp_path):
    dataset = [] if (SYSTEM_FASHION / FILES[0]).exists() else ["--dataset", "fashion_mnist_sample"]
    numpy_loss = _first_epoch_loss(tmp_path, ["--backend", "numpy"], dataset)
    strict_loss = _first_epoch_loss(
        tmp_path, ["--backend", "array_api_strict", "--device", "device1"], dataset
    )
    assert strict_loss == pytest.approx(numpy_loss, rel=1e-4)


def _copy_of_real_data(folder: Path) -> Path:
    """A data folder linking to the real files, to damage one of them."""
    if not (SYSTEM_FASHION / FILES[0]).exists():
        pytest.skip("needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
    folder.mkdir()
    for name in FILES:
        (folder / name).symlink_to(SYSTEM_FASHION / name)
    return folder


@pytest.mark.parametrize("damage", ["truncated", "flipped-byte", "wrong-magic"])
def test_damaged_data_file_exits_2_naming_file_and_fix(tmp_path, damage):
    folder = _copy_of_real_data(tmp_path / "data")
    target = folder / FILES[2]
    data = (SYSTEM_FASHION / FILES[2]).read_bytes()
    target.unlink()
    target.write_bytes(data)
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[:-100])
    elif damage == "flipped-byte":
        raw = bytearray(gzip.decompress(target.read_bytes()))
        raw[500] ^= 0xFF
        target.write_bytes(gzip.compress(bytes(raw)))
    else:
        raw = bytearray(gzip.decompress(target.read_bytes()))
        raw[2] = 0x42  # not a known IDX dtype code
        target.write_bytes(gzip.compress(bytes(raw)))
    result = run(["--data-dir", str(folder), "--epochs", "1"], timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert FILES[2] in result.stderr
    assert any(
        word in result.stderr
        for word in ("download", "re-download", "delete", "replace", "reinstall")
    )


def test_cnn_model_trains_saves_and_reloads(tmp_path):
    out = tmp_path / "cnn"
    result = run(
        [
            "--model",
            "cnn",
            "--dataset",
            "fashion_mnist_sample",
            "--train-size",
            "400",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--no-plots",
        ]
    )
    assert result.returncode == 0, result.stderr
    assert "CNN" in result.stdout and "test-time flips, test-time shifts of ±1 px" in result.stdout
    assert "Conv2D" in result.stdout and "(128, 32, 28, 28)" in result.stdout  # the summary
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "cnn"
    assert [spec["class"] for spec in config["layers"]].count("Conv2D") == 2
    recorded = json.loads((out / "metrics.json").read_text())["test_accuracy"]
    assert recorded > 0.2  # ten classes: chance is 0.1
    result = run(["--evaluate", str(out), "--backend", "torch"])
    if "torch" in result.stderr and result.returncode == 2:
        pytest.skip("torch is not installed")
    assert result.returncode == 0, result.stderr
    assert f"test accuracy {recorded:.4f} (recorded {recorded:.4f})" in result.stdout


@pytest.mark.parametrize("model_args", [["--hidden", "32"], ["--model", "cnn"]], ids=["mlp", "cnn"])
def test_main_job_runs_on_cupys_own_path(tmp_path, capsys, model_args):
    """`PORTNET_BACKEND=cupy python -m experiments.fashion`, in process on the emulated
    CuPy (array-api-compat's CuPy wrappers, hidden syncs raising): the same metrics as
    NumPy, every output written."""
    pytest.importorskip("yaml")
    from experiments import fashion
    from portnet.testing import emulated_cupy

    args = ["--dataset", "fashion_mnist_sample", "--train-size", "300", "--epochs", "2"]
    args += ["--batch-size", "100", "--seed", "3", *model_args]
    metrics = {}
    for backend in ("numpy", "cupy"):
        out = tmp_path / backend
        if backend == "cupy":
            with emulated_cupy():
                assert fashion.main([*args, "--backend", "cupy", "--out", str(out)]) == 0
        else:
            assert fashion.main([*args, "--backend", "numpy", "--out", str(out)]) == 0
        metrics[backend] = json.loads((out / "metrics.json").read_text())
        assert (out / "misclassified.png").stat().st_size > 0
    assert "backend cupy  device cuda:0" in capsys.readouterr().out
    for key in ("test_accuracy", "test_loss"):
        assert metrics["cupy"][key] == pytest.approx(metrics["numpy"][key], rel=1e-5), key


def test_lr_find_writes_its_curve_and_suggests_a_rate_instead_of_training(tmp_path):
    out = tmp_path / "lr"
    result = run(["--dataset", "fashion_mnist_sample", "--lr-find", "--out", str(out)])
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "lr_find.json").read_text())
    suggested = record["suggested_lr"]
    assert 1e-6 <= suggested <= record["min_loss_lr"] <= 1.0
    assert f"suggested learning rate {suggested:.3g}" in result.stdout
    assert f"--lr {suggested:.3g}" in result.stdout
    assert (out / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "model.npz").exists() and not (out / "history.json").exists()


def resolved(argv):
    """The main job's run configuration for these arguments."""
    from experiments import fashion

    return fashion.resolve_config(fashion.build_parser().parse_args(argv))[0]


def test_test_time_flips_follow_the_training_flips_unless_set():
    assert resolved([]).uses_test_time_flip is True  # the default MLP flips
    assert resolved(["--no-flip"]).uses_test_time_flip is False
    assert resolved(["--model", "cnn"]).uses_test_time_flip is True  # cnn.yaml's RandomFlip
    assert resolved(["--model", "cnn", "--no-test-time-flip"]).uses_test_time_flip is False


def test_the_cnn_predicts_with_test_time_shifts_unless_set():
    assert resolved([]).test_time_shift == 0  # the MLP has no RandomShift
    assert resolved(["--model", "cnn"]).test_time_shift == 1  # cnn.yaml's choice
    assert resolved(["--model", "cnn", "--test-time-shift", "0"]).test_time_shift == 0
