"""Save/load and checkpoints keep everything training needs: resuming is exact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.arrays import synthetic_classification

import portnet as pn
from portnet.errors import ModelFileError

ROOT = Path(__file__).resolve().parents[1]

# The three must-show recipes: plain SGD, momentum with L2, Adam with a cosine
# schedule and dropout (whose masks follow from the state's seed and epoch).
RECIPES = {
    "sgd": lambda: dict(
        layers=[pn.Dense(20, 16), pn.Tanh(), pn.Dense(16, 10)], optimizer=pn.SGD(0.1)
    ),
    "momentum-l2": lambda: dict(
        layers=[pn.Dense(20, 16), pn.ReLU(), pn.Dense(16, 10)],
        optimizer=pn.Momentum(0.05, gamma=0.9),
        l2=1e-3,
    ),
    "adam-cosine-dropout": lambda: dict(
        layers=[pn.Dense(20, 32), pn.ReLU(), pn.Dropout(0.3), pn.Dense(32, 10)],
        optimizer=pn.Adam(pn.CosineDecay(1e-2, epochs=8)),
    ),
}


def build(recipe: str, backend="numpy") -> pn.Model:
    return pn.Model(backend=backend, seed=11, **RECIPES[recipe]())


def max_relative_difference(a: list[dict], b: list[dict]) -> float:
    worst = 0.0
    for la, lb in zip(a, b, strict=True):
        assert set(la) == set(lb)
        for key in la:
            scale = max(np.abs(la[key]).max(), 1e-12)
            worst = max(worst, float(np.abs(la[key] - lb[key]).max() / scale))
    return worst


@pytest.fixture(scope="module")
def data():
    return synthetic_classification(n=240)


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_loaded_model_trains_on_exactly_as_the_original(recipe, data, tmp_path):
    X, y = data
    original = build(recipe)
    original.fit(X, y, epochs=5, batch_size=32, verbose=0)
    path = tmp_path / "model.npz"
    original.save(path)
    loaded = pn.Model.load(path)
    assert repr(loaded.optimizer) == repr(original.optimizer)
    assert [repr(r) for r in loaded.regularizers] == [repr(r) for r in original.regularizers]
    assert loaded.epochs_trained == 5 and loaded.state.seed == original.state.seed
    for model in (original, loaded):
        model.fit(X, y, epochs=3, batch_size=32, verbose=0)
    assert max_relative_difference(original.get_weights(), loaded.get_weights()) <= 1e-6


@pytest.mark.parametrize("recipe", ["sgd", "momentum-l2", "adam-cosine-dropout"])
def test_loaded_model_continues_on_another_backend(recipe, data, tmp_path, backend):
    """Saved on NumPy, continued on every backend: the same weights as NumPy continuing.

    Dropout masks come from each backend's own generator, so with dropout only the
    NumPy continuation can be exact; there the other backends must still train on.
    """
    X, y = data
    original = build(recipe)
    original.fit(X, y, epochs=5, batch_size=32, verbose=0)
    path = tmp_path / "model.npz"
    original.save(path)
    loaded = pn.Model.load(path, backend=backend)
    assert loaded.backend == backend
    slots = loaded.optimizer_state["slots"]
    expected = original.optimizer_state["slots"]
    for layer, ref in zip(slots, expected, strict=True):
        for key in ref:
            for name in ref[key]:
                np.testing.assert_allclose(
                    backend.to_numpy(layer[key][name]),
                    original.backend.to_numpy(ref[key][name]),
                    rtol=1e-6,
                )
    before = loaded.get_weights()
    original.fit(X, y, epochs=3, batch_size=32, verbose=0)
    loaded.fit(X, y, epochs=3, batch_size=32, verbose=0)
    if recipe == "adam-cosine-dropout" and backend.name != "numpy":
        assert max_relative_difference(before, loaded.get_weights()) > 1e-3
    else:
        assert max_relative_difference(original.get_weights(), loaded.get_weights()) <= 1e-5


def test_version_1_files_still_load(data, tmp_path):
    """A file of the first format (weights and architecture only) loads with its weights."""
    X, y = data
    model = build("sgd")
    model.fit(X, y, epochs=1, verbose=0)
    arrays = {
        f"params/{i}/{k}": v
        for i, layer in enumerate(model.get_weights())
        for k, v in layer.items()
    }
    meta = {
        "format": "portnet-model",
        "version": 1,
        **model.get_config(),
        "optimizer": "SGD(lr=0.1)",
        "backend": "numpy",
        "epochs_trained": 1,
    }
    arrays["__portnet__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = tmp_path / "v1.npz"
    np.savez(path, **arrays)
    loaded = pn.Model.load(path)
    assert loaded.epochs_trained == 1
    assert type(loaded.optimizer).__name__ == "Adam"  # version 1 did not record it
    np.testing.assert_allclose(
        loaded.backend.to_numpy(loaded.predict_proba(X)),
        model.backend.to_numpy(model.predict_proba(X)),
        rtol=1e-6,
    )


def test_checkpoint_resume_equals_an_uninterrupted_run(data, tmp_path):
    """A run stopped after 3 of 6 epochs and resumed ends exactly where one run ends."""
    X, y = data
    fit = dict(epochs=6, batch_size=32, verbose=0, validation_split=0.2, patience=10)
    straight = build("adam-cosine-dropout")
    history = straight.fit(X, y, **fit)

    class StopAfter(pn.Callback):
        def on_epoch_end(self, model, epoch, logs):
            model.stop_training = epoch == 2

    path = tmp_path / "run" / "checkpoint.npz"
    first = build("adam-cosine-dropout")
    first.fit(X, y, checkpoint=path, callbacks=[StopAfter()], **fit)
    assert path.is_file() and pn.Model.load(path).epochs_trained == 3
    resumed = build("adam-cosine-dropout")
    resumed_history = resumed.fit(X, y, checkpoint=path, resume=True, **fit)
    assert resumed_history.epochs_run == history.epochs_run == 6
    np.testing.assert_allclose(
        resumed_history.history["val_loss"], history.history["val_loss"], rtol=1e-6
    )
    assert max_relative_difference(straight.get_weights(), resumed.get_weights()) <= 1e-6
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.npz"]


def test_resume_refuses_another_architecture_and_a_plain_model_file(data, tmp_path):
    X, y = data
    path = tmp_path / "checkpoint.npz"
    build("sgd").fit(X, y, epochs=1, verbose=0, checkpoint=path)
    with pytest.raises(ModelFileError, match="different architecture"):
        build("momentum-l2").fit(X, y, epochs=2, verbose=0, checkpoint=path, resume=True)
    plain = tmp_path / "model.npz"
    build("sgd").save(plain)
    with pytest.raises(ModelFileError, match="not a checkpoint"):
        build("sgd").fit(X, y, epochs=2, verbose=0, checkpoint=plain, resume=True)


# One step per epoch, so most of each epoch is spent writing the checkpoint: the
# kills below land inside writes as well as between them.
KILLED_RUN = textwrap.dedent(
    """
    import sys
    import portnet as pn
    from helpers.arrays import synthetic_classification

    class Announce(pn.Callback):
        def on_epoch_end(self, model, epoch, logs):
            print(epoch + 1, flush=True)

    def build():
        return pn.Model([pn.Dense(20, 64), pn.ReLU(), pn.Dropout(0.2), pn.Dense(64, 10)],
                        optimizer=pn.Adam(1e-3), backend="numpy", seed=3)

    X, y = synthetic_classification(n=500)
    FIT = dict(epochs=60, batch_size=500, verbose=0)
    if __name__ == "__main__":
        build().fit(X, y, checkpoint=sys.argv[1], callbacks=[Announce()], **FIT)
    """
)


@pytest.mark.skipif(os.name != "posix", reason="kill -9 is POSIX")
@pytest.mark.parametrize("delay", [0.0, 0.002, 0.005])
def test_kill_9_then_resume_ends_as_an_uninterrupted_run(tmp_path, delay):
    """kill -9 mid-run, at several points: the checkpoint is whole, resuming cleans up
    the writer's temporary file and ends with the uninterrupted run's weights."""
    path = tmp_path / "checkpoint.npz"
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    with proc.stdout:
        try:
            for _ in range(5):
                assert proc.stdout.readline().strip()
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    survivors = {p.name for p in tmp_path.iterdir()} - {"run.py"}
    assert "checkpoint.npz" in survivors
    assert all(name.endswith(".tmp") for name in survivors - {"checkpoint.npz"})
    done = pn.Model.load(path).epochs_trained
    assert 5 <= done < 60

    run = {"__name__": "killed_run"}
    exec(compile(KILLED_RUN, str(script), "exec"), run)
    resumed = run["build"]()
    resumed.fit(run["X"], run["y"], checkpoint=path, resume=True, **run["FIT"])
    straight = run["build"]()
    straight.fit(run["X"], run["y"], **run["FIT"])
    assert resumed.epochs_trained == straight.epochs_trained == 60
    assert max_relative_difference(straight.get_weights(), resumed.get_weights()) <= 1e-6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz", "run.py"]


def fashion(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.fashion", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PORTNET_BACKEND"},
    )


@pytest.mark.skipif(os.name != "posix", reason="kill -9 is POSIX")
def test_fashion_cli_killed_then_resumed_matches_an_uninterrupted_run(tmp_path):
    args = [
        "--dataset",
        "fashion_mnist_sample",
        "--epochs",
        "4",
        "--no-plots",
        "--batch-size",
        "32",
    ]
    straight = fashion(*args, "--out", str(tmp_path / "straight"))
    killed = fashion(*args, "--out", str(tmp_path / "killed"))
    with killed.stdout:
        for line in killed.stdout:
            if line.startswith("epoch   2/4"):
                break
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert {p.name for p in (tmp_path / "killed").iterdir()} <= {
        "config.json",
        "checkpoint.npz",
        *(p.name for p in (tmp_path / "killed").glob(".checkpoint.npz.*.tmp")),
    }
    assert pn.Model.load(tmp_path / "killed" / "checkpoint.npz").epochs_trained >= 2
    resumed = fashion("--resume", str(tmp_path / "killed"))
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "epoch   1/4" not in output and "epoch   4/4" in output
    straight.communicate(timeout=300)
    assert straight.returncode == 0
    metrics = [
        json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("straight", "killed")
    ]
    assert metrics[0]["test_accuracy"] == metrics[1]["test_accuracy"]
    assert metrics[0]["test_loss"] == pytest.approx(metrics[1]["test_loss"], rel=1e-6)
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == sorted(
        p.name for p in (tmp_path / "straight").iterdir()
    )
    again = fashion("--resume", str(tmp_path / "killed"))
    message = again.communicate(timeout=60)[0]
    assert again.returncode == 2 and "has finished" in message and "Traceback" not in message


def test_fashion_cli_refuses_to_resume_a_run_folder_of_an_older_layout(tmp_path):
    """A run folder written before the run configuration (no ``format`` in its
    config.json) is not resumed: its settings are not read back exactly."""
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"epochs": 4, "hidden": [32], "plots": False}))
    (old / "checkpoint.npz").write_bytes(b"an old checkpoint")
    resumed = fashion("--resume", str(old))
    message = resumed.communicate(timeout=60)[0]
    assert resumed.returncode == 2 and "Traceback" not in message
    assert "written by an older portnet" in message and "start it again" in message
