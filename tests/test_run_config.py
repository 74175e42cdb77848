"""The run configuration: one record, its rules, and the one way it is built and trained."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import portnet as pn
from portnet.sweeps import fit_config, normalize_config, run_config
from portnet.training.run import build_optimizer
from portnet.training.run_config import DEFAULTS, default_of, field_names

# Two runs that between them set every option to something other than its default:
# an MLP with a named optimizer, and a layers list with an optimizer spec.
MLP_RUN = {
    "backend": "jax",
    "device": "cpu",
    "dtype": "float64",
    "threads": 2,
    "compile": True,
    "dataset": "fashion_mnist_sample",
    "data_dir": "/somewhere",
    "normalize": "image",
    "train_size": 400,
    "test_size": 100,
    "val_fraction": 0.2,
    "split_seed": 3,
    "model": "mlp",
    "hidden": [64, 32],
    "activation": "tanh",
    "dropout": 0.1,
    "batch_norm": False,
    "flip": False,
    "test_time_flip": False,
    "label_smoothing": 0.05,
    "optimizer": "nesterov",
    "lr": 0.01,
    "momentum": 0.8,
    "schedule": "step",
    "step_factor": 0.25,
    "step_every": 3,
    "weight_decay": 0.001,
    "clip_norm": 2.5,
    "l1": 1e-5,
    "l2": 1e-4,
    "batch_size": 64,
    "epochs": 7,
    "patience": 2,
    "seed": None,
}
LAYERS_RUN = {
    "model": "layers",
    "layers": [
        {"class": "Reshape", "config": {"shape": [1, 28, 28]}},
        {"class": "RandomFlip"},
        {"class": "RandomShift", "config": {"max_shift": 1}},
        {"class": "Flatten"},
        {"class": "Dense", "config": {"n_in": 784, "n_out": 10}},
    ],
    "test_time_flip": True,
    "test_time_shift": 1,
    "loss": "mse",
    "label_smoothing": 0.0,
    "optimizer": {"class": "Adam", "config": {"lr": 0.003, "beta1": 0.8}},
    "regularizers": [{"class": "L2", "config": {"lam": 0.001}}],
    "val_fraction": None,
    "val_size": 50,
}


def test_the_two_runs_change_every_option():
    changed = {
        name
        for run in (MLP_RUN, LAYERS_RUN)
        for name, value in run.items()
        if value != default_of(name)
    }
    assert changed == set(field_names())


@pytest.mark.parametrize("values", [MLP_RUN, LAYERS_RUN], ids=["mlp", "layers"])
def test_every_option_survives_json_yaml_and_a_sweep(values):
    yaml = pytest.importorskip("yaml")
    config = pn.RunConfig.from_dict(values)
    for name, value in values.items():
        assert getattr(config, name) == value, name
    through_json = json.loads(json.dumps(config.to_dict()))
    through_yaml = yaml.safe_load(yaml.safe_dump(config.to_dict()))
    sweep = normalize_config({**json.loads(json.dumps(through_json)), "tags": {"a": 1}})
    assert sweep["tags"] == {"a": 1}
    for data in (through_json, through_yaml):
        assert pn.RunConfig.from_dict(data) == config
    assert run_config(sweep) == config
    # Tags, where the data is kept, the device and threads do not change a run's id.
    moved = config.replace(data_dir="/elsewhere", threads=1, device=None)
    assert moved.run_id() == config.run_id() != config.replace(epochs=8).run_id()


def test_a_config_file_reads_into_the_same_run(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "run.yaml"
    path.write_text("hidden: 300,100\nlr: 0.1\nvalidation: 3\n")
    with pytest.raises(pn.ConfigError, match="unknown option.*validation"):
        pn.RunConfig.from_file(path)
    path.write_text("hidden: 300,100\nbatch-size: 32\n")
    assert pn.RunConfig.from_file(path) == DEFAULTS.replace(hidden=[300, 100], batch_size=32)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lr": 0}, r"lr must be in \(0, inf\], got 0"),
        ({"hidden": "3,x"}, "hidden must be whole numbers"),
        ({"model": "cnn"}, "model cnn needs a layers list"),
        ({"layers": LAYERS_RUN["layers"], "model": "mlp"}, "would be ignored"),
        ({"layers": LAYERS_RUN["layers"], "dropout": 0.5}, r"dropout \(0.5\) shape the built"),
        ({"optimizer": {"class": "SGD", "config": {}}, "lr": 0.2}, r"lr \(0.2\) shape an opt"),
        ({"optimizer": "adamw"}, "optimizer must be one of"),
        ({"loss": "mse"}, "label_smoothing smooths the targets"),
        ({"val_size": 100}, "give val_fraction or val_size, not both"),
        ({"flip": False, "test_time_flip": True}, "needs|has none"),
        ({"test_time_shift": 1}, "test_time_shift averages .* has none"),
        ({"test_time_shift": -1}, "test_time_shift must be"),
        ({"dataset": "cifar10"}, "unknown dataset 'cifar10'"),
        ({"layers": [{"class": "Dense", "config": {"n_in": 3}}]}, "layer 1 of the layers list"),
        ({"clip_norm": -1.0}, r"clip_norm must be in \(0, inf\]"),
    ],
)
def test_each_rule_is_refused_with_its_message(values, message):
    with pytest.raises(pn.ConfigError, match=message):
        pn.RunConfig.from_dict(values)


def test_defaults_are_written_once_and_read_by_the_main_job():
    from experiments import fashion

    help_text = fashion.build_parser().format_help()
    for field in dataclasses.fields(pn.RunConfig):
        if field.metadata["flag"]:
            assert f"--{field.name.replace('_', '-')}" in help_text
    config, job = fashion.resolve_config(fashion.build_parser().parse_args([]))
    assert config == DEFAULTS and job == {"out": None, "plots": True}


def small_run(**changes) -> dict:
    values = {
        "dataset": "fashion_mnist_sample",
        "train_size": 300,
        "hidden": [32],
        "epochs": 1,
        "batch_size": 64,
        "backend": "numpy",
    }
    return {**values, **changes}


def test_a_sweep_and_the_main_job_train_the_same_weights(tmp_path):
    """Given one configuration, a sweep worker and ``python -m experiments.fashion`` run
    the same function and end with bit-identical weights after one epoch."""
    from experiments import fashion

    values = small_run(clip_norm=1.0)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(values))
    out = tmp_path / "main"
    assert fashion.main(["--config", str(path), "--out", str(out), "--no-plots"]) == 0
    main_weights = pn.Model.load(out / "model.npz").get_weights()
    swept = fit_config({**values, "tags": {"from": "sweep"}})["model"].get_weights()
    assert len(main_weights) == len(swept)
    for mine, theirs in zip(main_weights, swept, strict=True):
        assert mine.keys() == theirs.keys()
        for key in mine:
            np.testing.assert_array_equal(mine[key], theirs[key])
    # config.json holds the run (and where it ran: the device the backend chose).
    recorded = json.loads((out / "config.json").read_text())
    job_keys = ("out", "plots", "format")
    run = pn.RunConfig.from_dict({k: v for k, v in recorded.items() if k not in job_keys})
    assert run == pn.RunConfig.from_dict({**values, "device": "cpu"})


def test_clip_norm_bounds_the_update_of_every_run():
    """The added option: gradients rescaled to norm at most clip_norm before each step."""
    clipped = build_optimizer(pn.RunConfig(clip_norm=0.5))
    assert clipped.clip_norm == 0.5 and build_optimizer(DEFAULTS).clip_norm is None
    tiny = fit_config(small_run(clip_norm=1e-6, lr=1.0, weight_decay=0.0, seed=4))["model"]
    untrained = pn.prepare_run(pn.RunConfig.from_dict(small_run(seed=4))).model
    for after, before in zip(tiny.get_weights(), untrained.get_weights(), strict=True):
        for key in before:
            if key in ("W", "b"):  # batch-norm statistics move without gradients
                # 5 steps (300 images less 30 held out, batch 64) of at most 1e-6 each
                # (momentum 0.9 lets the velocity grow to 10 steps' worth)
                assert np.max(np.abs(after[key] - before[key])) <= 5 * 10 * 1e-6
