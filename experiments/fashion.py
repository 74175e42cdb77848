"""The main job: train an MLP on Fashion-MNIST on the backend of your choice.

    python -m experiments.fashion                       # NumPy, the default configuration
    PORTNET_BACKEND=cupy python -m experiments.fashion  # the same on an NVIDIA GPU
    python -m experiments.fashion --backend torch --epochs 5 --hidden 256
    python -m experiments.fashion --evaluate runs/fashion-... --backend array_api_strict

Writes config.json, history.json, metrics.json, model.npz, preprocessing.npz,
curves.png, confusion.png and misclassified.png to --out.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

import portnet as pn
from experiments.common import (
    THREADS_HELP,
    Choice,
    Kind,
    Number,
    check_options,
    check_output_dir,
    default_out_dir,
    fail,
    load_config_file,
    merge_config,
    parse_int_list,
    positive_int,
    run_cli,
    write_json,
)

CNN_CONFIG = Path(__file__).parent / "configs" / "cnn.yaml"

# Chosen from measurement on a 2-core CPU (see README, "The main job"): the widest
# MLP that finishes in well under five minutes here, with dropout against
# over-fitting and a cosine-annealed momentum SGD.
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
    "optimizer": "momentum",
    "lr": 0.05,
    "momentum": 0.9,
    "schedule": "cosine",
    "batch_size": 128,
    "epochs": 40,
    "l1": 0.0,
    "l2": 0.0,
    "weight_decay": 0.0,
    "patience": None,
    "val_fraction": 0.1,
    "seed": 0,
    "train_size": None,
    "out": None,
    "plots": True,
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
    "optimizer": Choice(("sgd", "momentum", "nesterov", "rmsprop", "adam")),
    "lr": Number(low=0, low_open=True),
    "momentum": Number(low=0, high=1, high_open=True),
    "schedule": Choice(("constant", "cosine", "step")),
    "batch_size": Number(low=1, integer=True),
    "epochs": Number(low=1, integer=True),
    "l1": Number(low=0),
    "l2": Number(low=0),
    "weight_decay": Number(low=0),
    "patience": Number(low=1, integer=True, optional=True),
    "val_fraction": Number(low=0, high=1, low_open=True, high_open=True),
    "seed": Number(low=0, integer=True),
    "train_size": Number(low=20, integer=True, optional=True),
    "out": Kind((str,), optional=True),
    "plots": Kind((bool,)),
}

# Options that only shape the built-in MLP: a layer list would leave them unused.
MLP_OPTIONS = ("hidden", "activation", "dropout")


#: Written after every epoch and deleted when the run completes.
CHECKPOINT = "checkpoint.npz"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.fashion",
        description="Train a multilayer perceptron on Fashion-MNIST (or MNIST / KMNIST) with "
        "portnet, on NumPy, CuPy, PyTorch or array-api-strict, and write the "
        "results, the model and plots to a run folder.",
        epilog="Precedence: built-in defaults < --config file < flags. Exit code 2 means bad "
        "input (unknown backend, missing data, bad option); the message says what to do.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add(
        "--config",
        metavar="FILE",
        help="YAML or JSON file of options (keys as the flags, "
        "with underscores); flags given on the command line override it",
    )
    g = p.add_argument_group("where it runs")
    g.add_argument(
        "--backend",
        help="numpy, torch, cupy or array_api_strict (default: $PORTNET_BACKEND, else numpy)",
    )
    g.add_argument(
        "--device",
        help="device of the backend: cpu, cuda:0, mps, device1, no_float64 "
        "(default: $PORTNET_DEVICE, else the backend's default)",
    )
    g.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        help=f"floating-point type (default {DEFAULTS['dtype']})",
    )
    g.add_argument("--threads", type=positive_int, metavar="N", help=THREADS_HELP)
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        help="fashion_mnist, mnist, kmnist or fashion_mnist_sample "
        f"(the small embedded sample; default {DEFAULTS['dataset']})",
    )
    g.add_argument("--data-dir", help="folder holding the four IDX .gz files; searched first")
    g.add_argument(
        "--normalize",
        choices=["scale", "feature", "image"],
        help="scale pixels to [0,1]; then z-score per pixel with training statistics "
        "(feature) or per image (image, as study S1); default "
        f"{DEFAULTS['normalize']}",
    )
    g.add_argument(
        "--train-size",
        type=RULES["train_size"].arg,
        metavar="N",
        help="use N training images, a stratified random subset (before the validation split)",
    )
    g.add_argument(
        "--val-fraction",
        type=RULES["val_fraction"].arg,
        help="share of the training images held out, "
        f"stratified, for validation and early stopping (default {DEFAULTS['val_fraction']})",
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        choices=["mlp", "cnn"],
        help="mlp (--hidden, --activation, --dropout) or cnn (the layer list of "
        f"experiments/configs/cnn.yaml, or of --config's 'layers'; default {DEFAULTS['model']}). "
        "A config file's 'layers' list, when given, is the network for any model",
    )
    g.add_argument(
        "--hidden",
        type=parse_int_list,
        metavar="W1,W2,...",
        help="hidden layer widths, e.g. 500,324; 'none' for softmax regression "
        f"(default {','.join(map(str, DEFAULTS['hidden']))})",
    )
    g.add_argument(
        "--activation",
        choices=["relu", "leaky_relu", "tanh", "sigmoid"],
        help=f"hidden activation (default {DEFAULTS['activation']})",
    )
    g.add_argument(
        "--dropout",
        type=RULES["dropout"].arg,
        help=f"dropout rate after each hidden layer (default {DEFAULTS['dropout']})",
    )
    g = p.add_argument_group("training")
    g.add_argument(
        "--optimizer",
        choices=["sgd", "momentum", "nesterov", "rmsprop", "adam"],
        help=f"default {DEFAULTS['optimizer']}",
    )
    g.add_argument(
        "--lr", type=RULES["lr"].arg, help=f"initial learning rate (default {DEFAULTS['lr']})"
    )
    g.add_argument(
        "--momentum",
        type=RULES["momentum"].arg,
        help=f"momentum gamma for momentum/nesterov (default {DEFAULTS['momentum']})",
    )
    g.add_argument(
        "--schedule",
        choices=["constant", "cosine", "step"],
        help="learning-rate schedule over the epochs; step halves it every "
        f"quarter of the run (default {DEFAULTS['schedule']})",
    )
    g.add_argument(
        "--batch-size", type=RULES["batch_size"].arg, help=f"default {DEFAULTS['batch_size']}"
    )
    g.add_argument("--epochs", type=RULES["epochs"].arg, help=f"default {DEFAULTS['epochs']}")
    g.add_argument("--l1", type=RULES["l1"].arg, help="L1 penalty on the weights (default 0)")
    g.add_argument("--l2", type=RULES["l2"].arg, help="L2 penalty on the weights (default 0)")
    g.add_argument(
        "--weight-decay", type=RULES["weight_decay"].arg, help="decoupled weight decay (default 0)"
    )
    g.add_argument(
        "--patience",
        type=RULES["patience"].arg,
        help="early stopping: stop after this many epochs "
        "without a lower validation loss and keep the best weights (default: off)",
    )
    g.add_argument(
        "--seed",
        type=RULES["seed"].arg,
        help=f"seeds initialisation, split, shuffling and dropout (default {DEFAULTS['seed']})",
    )
    g = p.add_argument_group("output")
    g.add_argument("--out", help="run folder (default runs/fashion-<timestamp>)")
    g.add_argument(
        "--no-plots",
        dest="plots",
        action="store_const",
        const=False,
        help="skip the PNG figures (no matplotlib needed)",
    )
    g.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run that was killed or stopped, from the checkpoint it wrote after "
        "its last finished epoch (RUN_DIR/checkpoint.npz); RUN_DIR/config.json fixes every "
        "setting, only --backend, --device and --threads may change. The result equals an "
        "uninterrupted run's",
    )
    g.add_argument(
        "--evaluate",
        metavar="RUN_DIR",
        help="instead of training: load RUN_DIR/model.npz onto --backend/--device "
        "and report its test accuracy",
    )
    return p


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


def load_data(config: dict):
    from portnet.data.prepare import prepare_data

    data = prepare_data(
        config["dataset"],
        data_dir=config["data_dir"],
        normalize=config["normalize"],
        train_size=config["train_size"],
        val_fraction=config["val_fraction"],
        seed=config["seed"],
    )
    return (
        data.dataset,
        (data.X, data.y),
        (data.X_val, data.y_val),
        (data.X_test, data.y_test),
        data.stats,
    )


def _read_run_file(run_dir: Path, name: str):
    """A JSON file or the .npz statistics of a run folder; exits 2 if missing or damaged."""
    import json

    path = run_dir / name
    if not path.is_file():
        fail(f"{run_dir} has no {name}: give a folder that a finished training run wrote (--out).")
    try:
        if name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"{path} cannot be read ({exc}); it is damaged: train the run again.")
    if not isinstance(value, dict):
        fail(f"{path} does not hold a mapping; it is damaged: train the run again.")
    return value


def evaluate_run(run_dir: Path, backend: pn.Backend) -> None:
    """Load a run's model onto ``backend`` and print its test accuracy and the one recorded."""
    from portnet.data import load_dataset
    from portnet.data.prepare import normalize_images

    if not run_dir.is_dir():
        fail(f"--evaluate {run_dir} is not a folder: give the folder a training run wrote (--out).")
    if not (run_dir / "model.npz").is_file():
        fail(f"{run_dir} has no model.npz: give the folder a training run wrote (--out).")
    config = _read_run_file(run_dir, "config.json")
    recorded = _read_run_file(run_dir, "metrics.json")
    stats = _read_run_file(run_dir, "preprocessing.npz")
    missing = [k for k in ("dataset", "normalize") if k not in config]
    missing += [k for k in ("backend", "test_accuracy", "test_loss") if k not in recorded]
    if missing:
        fail(
            f"{run_dir}: config.json or metrics.json lacks {', '.join(missing)}; "
            "train the run again."
        )
    dataset = load_dataset(config["dataset"], data_dir=config.get("data_dir"))
    X_test = normalize_images(dataset.X_test, config["normalize"], stats)
    model = pn.Model.load(run_dir / "model.npz", backend=backend)
    result = model.evaluate(X_test, dataset.y_test.astype(np.int64))
    print(f"model    {run_dir / 'model.npz'} (trained on {recorded['backend']})")
    print(f"backend  {backend.name}  device {backend.device_name}  dtype {model.dtype_name}")
    print(
        f"test accuracy {result['accuracy']:.4f} (recorded {recorded['test_accuracy']:.4f})  "
        f"test loss {result['loss']:.4f} (recorded {recorded['test_loss']:.4f})"
    )


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
    if config["plots"] and importlib.util.find_spec("matplotlib") is None:
        fail('the plots need matplotlib: pip install "portnet[plots]", or pass --no-plots.')
    if config["data_dir"] is not None and not Path(config["data_dir"]).is_dir():
        fail(f"--data-dir {config['data_dir']} is not a folder; give the folder of the IDX files.")
    return config


def _layer_classes() -> dict[str, type]:
    found, todo = {}, [pn.Layer]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if not sub.__name__.startswith("_"):
                found[sub.__name__] = sub
            todo.append(sub)
    return found


def build_layers(specs, where: str) -> pn.Sequential:
    """The network of a ``layers:`` list; exits 2 naming the entry that is wrong and why."""
    if not isinstance(specs, list) or not specs:
        fail(
            f"{where}: layers must be a non-empty list of {{class: Name, config: {{...}}}} "
            f"entries, got {specs!r}."
        )
    known = _layer_classes()
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


def check_layers_fit(model: pn.Model, layers: pn.Sequential, X, y, n_classes: int, where) -> None:
    """Run a user-given layer list on two training images before training; exit 2 if it
    cannot take them or does not end in one output per class."""
    if layers.n_out is not None and layers.n_out != n_classes:
        fail(
            f"the layers list of {where} ends in {layers.n_out} outputs but the data has "
            f"{n_classes} classes; make the last Dense layer's n_out {n_classes}."
        )
    try:
        model.evaluate(X[:2], y[:2])
    except Exception as exc:  # the user's layers on real data: report any failure
        fail(
            f"the layers list of {where} does not fit the data ({X.shape[1]} features per "
            f"image, {n_classes} classes): {exc}. Fix the list (input shape, widths) and run "
            "again."
        )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.evaluate:
        evaluate_run(Path(args.evaluate), pn.get_backend(args.backend, args.device))
        return 0
    resuming = args.resume is not None
    if resuming:
        args = resume_arguments(parser, args)
    config = resolve_config(args)
    out = Path(config["out"]) if config["out"] else default_out_dir("fashion")
    check_output_dir(out, "--out")
    threads = config["threads"]
    backend = pn.get_backend(config["backend"], config["device"])
    pn.limit_threads(threads)  # after the backend import: threadpoolctl sees its BLAS
    config.update(backend=backend.name, device=backend.device_name, out=str(out))
    print(
        f"portnet {pn.__version__}  backend {backend.name}  device {backend.device_name}  "
        f"dtype {config['dtype']}" + (f"  threads {config['threads']}" if config["threads"] else "")
    )
    started = time.perf_counter()
    dataset, train, val, test, stats = load_data(config)
    print(
        f"data     {dataset.name} from {dataset.source}: {len(train[0])} train, "
        f"{len(val[0])} validation, {len(test[0])} test images "
        f"({config['normalize']} normalisation)"
    )
    if config["layers"] is not None:
        # Layers as saved models describe them ({class, config}); in the CNN the first,
        # Reshape, turns the flat 784-pixel rows into 1x28x28 images, so data stays 2-D.
        layers = pn.Sequential(config["layers"])
        kind = "CNN" if config["model"] == "cnn" else "layer list"
        description = f"{kind} ({len(layers.layers)} layers)"
        summary = description
    else:
        sizes = [train[0].shape[1], *config["hidden"], dataset.n_classes]
        layers = pn.mlp(sizes, config["activation"], dropout=config["dropout"])
        description = f"{'-'.join(map(str, sizes))} MLP"
        summary = f"{'-'.join(map(str, sizes))} {config['activation']}, dropout {config['dropout']}"
    model = pn.Model(
        layers,
        optimizer=make_optimizer(config),
        l1=config["l1"],
        l2=config["l2"],
        backend=backend,
        dtype=config["dtype"],
        seed=config["seed"],
    )
    if config["layers"] is not None:
        check_layers_fit(model, layers, *train, dataset.n_classes, args.config or CNN_CONFIG)
    print(
        f"model    {summary}, {model.optimizer!r}, batch {config['batch_size']}, "
        f"{config['epochs']} epochs"
    )
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", config)
    history = model.fit(
        *train,
        validation_data=val,
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        patience=config["patience"],
        seed=config["seed"],
        # After every epoch, atomically: a killed run loses at most the epoch in progress.
        checkpoint=out / CHECKPOINT,
        resume=resuming,
    )
    test_result = model.evaluate(*test)
    predictions = model.predict(test[0])
    cm = backend.to_numpy(
        pn.confusion_matrix(backend.asarray(test[1]), predictions, dataset.n_classes)
    )
    seconds_total = time.perf_counter() - started
    metrics = {
        "test_accuracy": test_result["accuracy"],
        "test_loss": test_result["loss"],
        "best_epoch": history.best_epoch,
        "epochs_run": history.epochs_run,
        "stop_reason": history.stop_reason,
        "backend": backend.name,
        "device": backend.device_name,
        "dtype": config["dtype"],
        "seconds_total": seconds_total,
        "seconds_training": float(sum(history.history["seconds"])),
        "dataset": dataset.name,
        "data_source": dataset.source,
        "confusion_matrix": cm.tolist(),
    }
    write_json(out / "history.json", history.history)
    write_json(out / "metrics.json", metrics)
    model.save(out / "model.npz")
    _save_stats(out / "preprocessing.npz", stats)
    (out / CHECKPOINT).unlink(missing_ok=True)  # the run is complete: model.npz holds it all
    if config["plots"]:
        from portnet import plots

        plots.plot_curves(
            history.history,
            out / "curves.png",
            best_epoch=history.best_epoch,
            title=f"{description} on {dataset.name} "
            f"({backend.name}) — test accuracy {test_result['accuracy']:.2%}",
        )
        plots.plot_confusion(cm, dataset.class_names, out / "confusion.png")
        labels = backend.to_numpy(predictions)
        plots.plot_misclassified(
            dataset.X_test, test[1], labels, dataset.class_names, out / "misclassified.png"
        )
    print(
        f"test accuracy {test_result['accuracy']:.4f}  test loss {test_result['loss']:.4f}  "
        f"({history.epochs_run} epochs, best {history.best_epoch}, {seconds_total:.1f} s)"
    )
    print(f"results  {out}/")
    return 0


def resume_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The arguments of the run in ``args.resume``: its config.json, plus where it runs now."""
    run_dir = Path(args.resume)
    if not (run_dir / "config.json").is_file():
        fail(f"--resume {run_dir}: no config.json there; give the folder of a run (its --out).")
    if (run_dir / "metrics.json").is_file():
        fail(f"--resume {run_dir}: that run has finished (metrics.json exists); nothing to resume.")
    if not (run_dir / CHECKPOINT).is_file():
        fail(
            f"--resume {run_dir}: no {CHECKPOINT} there, so the run stopped before its first "
            "epoch ended; start it again with the same settings."
        )
    argv = ["--config", str(run_dir / "config.json"), "--out", str(run_dir)]
    for flag, value in (
        ("--backend", args.backend),
        ("--device", args.device),
        ("--threads", args.threads),
    ):
        if value is not None:
            argv += [flag, str(value)]
    resumed = parser.parse_args(argv)
    resumed.resume = str(run_dir)
    return resumed


def _save_stats(path: Path, stats: dict) -> None:
    from portnet.io import atomic_write_bytes

    atomic_write_bytes(path, lambda handle: np.savez(handle, **stats))


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
