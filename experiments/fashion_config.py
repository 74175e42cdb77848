"""The main job's configuration: defaults, the rules every value must meet, the network.

Defaults < config file < flags; every value is checked (:func:`resolve_config`), and
a config file's ``layers:`` list is the network for any model (:func:`build_layers`),
so nothing given is silently ignored. A problem exits with code 2 and one line.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import portnet as pn
from experiments.common import (
    Choice,
    Kind,
    Number,
    check_options,
    fail,
    load_config_file,
    merge_config,
    parse_int_list,
)
from portnet.layers import layer_classes

CNN_CONFIG = Path(__file__).parent / "configs" / "cnn.yaml"

# Chosen on validation data from runs on a 2-core CPU (docs/mlp.md): an MLP that
# finishes in under five minutes there at 0.91 test accuracy, regularised by dropout,
# BatchNorm, random flips, weight decay and label smoothing, predicting with test-time
# flips, trained by cosine-annealed momentum SGD.
DEFAULTS = {
    "backend": None,
    "device": None,
    "dtype": "float32",
    "threads": None,
    "dataset": "fashion_mnist",
    "data_dir": None,
    "normalize": "feature",
    "model": "mlp",
    "layers": None,
    "hidden": [1024, 512],
    "activation": "relu",
    "dropout": 0.3,
    "batch_norm": True,
    "flip": True,
    "test_time_flip": None,
    "optimizer": "momentum",
    "lr": 0.05,
    "momentum": 0.9,
    "schedule": "cosine",
    "batch_size": 128,
    "epochs": 80,
    "l1": 0.0,
    "l2": 0.0,
    "weight_decay": 5e-4,
    "label_smoothing": 0.1,
    "patience": None,
    "val_fraction": 0.1,
    "seed": 0,
    "train_size": None,
    "out": None,
    "plots": True,
    "compile": False,
}

# What each option accepts; flags and config-file values are checked against the same
# rules before any data is loaded. ``hidden`` is checked by parse_int_list, ``layers``
# by build_layers.
RULES = {
    "backend": Kind((str,), optional=True),
    "device": Kind((str,), optional=True),
    "dtype": Choice(("float32", "float64")),
    "threads": Number(low=1, integer=True, optional=True),
    "dataset": Kind((str,)),
    "data_dir": Kind((str,), optional=True),
    "normalize": Choice(("scale", "feature", "image")),
    "model": Choice(("mlp", "cnn", "layers")),
    "layers": Kind((list,), optional=True),
    "activation": Choice(("relu", "leaky_relu", "tanh", "sigmoid")),
    "dropout": Number(low=0, high=1, high_open=True),
    "batch_norm": Kind((bool,)),
    "flip": Kind((bool,)),
    "test_time_flip": Kind((bool,), optional=True),
    "optimizer": Choice(("sgd", "momentum", "nesterov", "rmsprop", "adam")),
    "lr": Number(low=0, low_open=True),
    "momentum": Number(low=0, high=1, high_open=True),
    "schedule": Choice(("constant", "cosine", "step")),
    "batch_size": Number(low=1, integer=True),
    "epochs": Number(low=1, integer=True),
    "l1": Number(low=0),
    "l2": Number(low=0),
    "weight_decay": Number(low=0),
    "label_smoothing": Number(low=0, high=1, high_open=True),
    "patience": Number(low=1, integer=True, optional=True),
    "val_fraction": Number(low=0, high=1, low_open=True, high_open=True),
    "seed": Number(low=0, integer=True),
    "train_size": Number(low=20, integer=True, optional=True),
    "out": Kind((str,), optional=True),
    "plots": Kind((bool,)),
    "compile": Kind((bool,)),
}

# Options that only shape the built-in MLP: a layer list would leave them unused.
MLP_OPTIONS = ("hidden", "activation", "dropout", "batch_norm", "flip")


def make_optimizer(config: dict) -> pn.Optimizer:
    lr, epochs = float(config["lr"]), int(config["epochs"])
    schedule = {
        "constant": pn.Constant(lr),
        "cosine": pn.CosineDecay(lr, epochs),
        "step": pn.StepDecay(lr, factor=0.5, every=max(1, epochs // 4)),
    }[config["schedule"]]
    kwargs = {"weight_decay": float(config["weight_decay"])}
    name = config["optimizer"]
    if name in ("momentum", "nesterov"):
        kwargs["gamma"] = float(config["momentum"])
    return pn.get_optimizer(name, lr=schedule, **kwargs)


def resolve_config(args: argparse.Namespace) -> dict:
    """Defaults < config file < flags, every value checked; exits 2 naming any bad one.

    A ``layers:`` list in the config file is the network, whatever the model: with it,
    ``model`` is ``cnn`` (if asked for) or ``layers``; ``model: mlp`` or MLP options
    (--hidden, --activation, --dropout) that differ from the defaults are refused, since
    they would be ignored. ``--model cnn`` without a list takes experiments/configs/cnn.yaml.
    """
    file_config = load_config_file(args.config) if args.config else {}
    where = f"config file {args.config}"
    check_options(file_config, RULES, where)
    if "hidden" in file_config:
        try:
            file_config["hidden"] = parse_int_list(file_config["hidden"])
        except argparse.ArgumentTypeError as exc:
            fail(f"{where}: hidden: {exc}. Fix the value and run again.")
    model = args.model or file_config.get("model")
    if file_config.get("layers") is not None:
        if model == "mlp":
            source = "--model mlp" if args.model else f"model: mlp in {args.config}"
            fail(
                f"{source} builds the MLP of --hidden, but {args.config} also gives a layers: "
                "list, which would be ignored. Remove one of them: without model: mlp the "
                "list is the network."
            )
        model = model or "layers"
    elif model == "layers":
        fail(f"model: layers needs a layers: list in the config file ({where} has none).")
    elif model == "cnn":
        # --model cnn alone: the measured CNN configuration, under the file and the flags.
        file_config = {**load_config_file(CNN_CONFIG), **file_config}
    if model is not None:
        file_config["model"] = model
    config = merge_config(DEFAULTS, file_config, args)
    if config["layers"] is not None:
        unused = [key for key in MLP_OPTIONS if config[key] != DEFAULTS[key]]
        if unused:
            flags = ", ".join(f"{key} ({config[key]!r})" for key in unused)
            fail(
                f"{flags} shape the built-in MLP, but this run's network is the layers: list "
                f"of {args.config or CNN_CONFIG}, so they would be ignored. Remove them, or "
                "change the list (e.g. its Dense widths or a Dropout layer's rate)."
            )
        build_layers(config["layers"], where if args.config else str(CNN_CONFIG))
    if config["test_time_flip"] and not mirrors_training_images(config):
        fail(
            "--test-time-flip averages the predictions for each image and its mirror image, "
            "made by the network's RandomFlip, but this run's network has none: add --flip "
            "(MLP) or a RandomFlip layer after the Reshape (layers list), or drop "
            "--test-time-flip."
        )
    if config["compile"] and config["backend"] not in (None, "jax"):
        fail(
            f"--compile compiles the training step with jax.jit and needs --backend jax; "
            f"this run's backend is {config['backend']}. Drop --compile or use --backend jax."
        )
    if config["plots"] and importlib.util.find_spec("matplotlib") is None:
        fail('the plots need matplotlib: pip install "portnet[plots]", or pass --no-plots.')
    if config["data_dir"] is not None and not Path(config["data_dir"]).is_dir():
        fail(f"--data-dir {config['data_dir']} is not a folder; give the folder of the IDX files.")
    return config


def build_layers(specs, where: str) -> pn.Sequential:
    """The network of a ``layers:`` list; exits 2 naming the entry that is wrong and why."""
    if not isinstance(specs, list) or not specs:
        fail(
            f"{where}: layers must be a non-empty list of {{class: Name, config: {{...}}}} "
            f"entries, got {specs!r}."
        )
    known = layer_classes()
    for number, spec in enumerate(specs, 1):
        head = f"{where}: layer {number} of the layers list"
        if not isinstance(spec, dict) or not isinstance(spec.get("class"), str):
            fail(f"{head} must be {{class: Name, config: {{...}}}}, got {spec!r}.")
        extra = sorted(set(spec) - {"class", "config"})
        if extra:
            fail(
                f"{head} ({spec['class']}) has unknown key(s) {', '.join(extra)}; "
                "a layer takes only class and config."
            )
        if spec["class"] not in known:
            fail(
                f"{head}: unknown layer class {spec['class']!r}; known layers: "
                f"{', '.join(sorted(known))}."
            )
        config = spec.get("config")
        if config is not None and not isinstance(config, dict):
            fail(f"{head} ({spec['class']}): config must be a mapping, got {config!r}.")
        try:
            pn.Sequential([spec])
        except (pn.PortnetError, TypeError, ValueError) as exc:
            fail(f"{head} ({spec['class']}): {exc}. Fix the layer's config and run again.")
    return pn.Sequential(specs)


def mirrors_training_images(config: dict) -> bool:
    """Whether the run's network has a RandomFlip: ``--flip`` for the MLP, or a
    RandomFlip entry in the layers list."""
    if config["layers"] is None:
        return bool(config["flip"])
    return any(spec.get("class") == "RandomFlip" for spec in config["layers"])


def uses_test_time_flip(config: dict) -> bool:
    """``test_time_flip`` as given, or (left unset) on exactly when the network mirrors
    its training images."""
    if config["test_time_flip"] is None:
        return mirrors_training_images(config)
    return bool(config["test_time_flip"])
