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
import sys
import time
from pathlib import Path

import numpy as np

import portnet as pn
from experiments.common import (
    THREADS_HELP,
    apply_normalization,
    default_out_dir,
    fail,
    load_config_file,
    merge_config,
    parse_int_list,
    positive_int,
    prepare_images,
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
        type=int,
        metavar="N",
        help="use only the first N training images (before the validation split)",
    )
    g.add_argument(
        "--val-fraction",
        type=float,
        help="share of the training images held out, "
        f"stratified, for validation and early stopping (default {DEFAULTS['val_fraction']})",
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        choices=["mlp", "cnn"],
        help="mlp (--hidden, --activation, --dropout) or cnn (the layer list of "
        f"experiments/configs/cnn.yaml, or of --config's 'layers'; default {DEFAULTS['model']})",
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
        type=float,
        help=f"dropout rate after each hidden layer (default {DEFAULTS['dropout']})",
    )
    g = p.add_argument_group("training")
    g.add_argument(
        "--optimizer",
        choices=["sgd", "momentum", "nesterov", "rmsprop", "adam"],
        help=f"default {DEFAULTS['optimizer']}",
    )
    g.add_argument("--lr", type=float, help=f"initial learning rate (default {DEFAULTS['lr']})")
    g.add_argument(
        "--momentum",
        type=float,
        help=f"momentum gamma for momentum/nesterov (default {DEFAULTS['momentum']})",
    )
    g.add_argument(
        "--schedule",
        choices=["constant", "cosine", "step"],
        help="learning-rate schedule over the epochs; step halves it every "
        f"quarter of the run (default {DEFAULTS['schedule']})",
    )
    g.add_argument("--batch-size", type=int, help=f"default {DEFAULTS['batch_size']}")
    g.add_argument("--epochs", type=int, help=f"default {DEFAULTS['epochs']}")
    g.add_argument("--l1", type=float, help="L1 penalty on the weights (default 0)")
    g.add_argument("--l2", type=float, help="L2 penalty on the weights (default 0)")
    g.add_argument("--weight-decay", type=float, help="decoupled weight decay (default 0)")
    g.add_argument(
        "--patience",
        type=int,
        help="early stopping: stop after this many epochs "
        "without a lower validation loss and keep the best weights (default: off)",
    )
    g.add_argument(
        "--seed",
        type=int,
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
    from portnet.data import load_dataset, stratified_split

    dataset = load_dataset(config["dataset"], data_dir=config["data_dir"])
    X_train, y_train = dataset.X_train, dataset.y_train.astype(np.int64)
    if config["train_size"]:
        if config["train_size"] < 20:
            fail("--train-size must be at least 20 images.")
        X_train, y_train = X_train[: config["train_size"]], y_train[: config["train_size"]]
    X_train, X_test, stats = prepare_images(X_train, dataset.X_test, config["normalize"])
    train_idx, val_idx = stratified_split(y_train, config["val_fraction"], seed=config["seed"])
    return (
        dataset,
        (X_train[train_idx], y_train[train_idx]),
        (X_train[val_idx], y_train[val_idx]),
        (X_test, dataset.y_test.astype(np.int64)),
        stats,
    )


def evaluate_run(run_dir: Path, backend: pn.Backend) -> None:
    """Load a run's model onto ``backend`` and print its test accuracy and the one recorded."""
    import json

    from portnet.data import load_dataset

    if not (run_dir / "model.npz").is_file():
        fail(f"{run_dir} has no model.npz: give the folder a training run wrote (--out).")
    config = json.loads((run_dir / "config.json").read_text())
    recorded = json.loads((run_dir / "metrics.json").read_text())
    with np.load(run_dir / "preprocessing.npz", allow_pickle=False) as data:
        stats = {key: data[key] for key in data.files}
    dataset = load_dataset(config["dataset"], data_dir=config["data_dir"])
    X_test = apply_normalization(dataset.X_test, config["normalize"], stats)
    model = pn.Model.load(run_dir / "model.npz", backend=backend)
    result = model.evaluate(X_test, dataset.y_test.astype(np.int64))
    print(f"model    {run_dir / 'model.npz'} (trained on {recorded['backend']})")
    print(f"backend  {backend.name}  device {backend.device_name}  dtype {model.dtype_name}")
    print(
        f"test accuracy {result['accuracy']:.4f} (recorded {recorded['test_accuracy']:.4f})  "
        f"test loss {result['loss']:.4f} (recorded {recorded['test_loss']:.4f})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    file_config = load_config_file(args.config) if args.config else {}
    if args.evaluate:
        evaluate_run(Path(args.evaluate), pn.get_backend(args.backend, args.device))
        return 0
    if (args.model or file_config.get("model")) == "cnn" and "layers" not in file_config:
        # --model cnn alone: the measured CNN configuration, under the file and the flags.
        file_config = {**load_config_file(CNN_CONFIG), **file_config}
    config = merge_config(DEFAULTS, file_config, args)
    if isinstance(config["hidden"], str | int):
        config["hidden"] = parse_int_list(str(config["hidden"]))
    threads = config["threads"]
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        fail(f"threads must be a whole number of at least 1, got {threads!r}")
    backend = pn.get_backend(config["backend"], config["device"])
    pn.limit_threads(threads)  # after the backend import: threadpoolctl sees its BLAS
    out = Path(config["out"]) if config["out"] else default_out_dir("fashion")
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
    if config["model"] == "cnn":
        # Layers as saved models describe them ({class, config}); the first, Reshape,
        # turns the flat 784-pixel rows into 1x28x28 images, so data stays 2-D.
        layers = pn.Sequential(config["layers"])
        description = f"CNN ({len(layers.layers)} layers)"
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


def _save_stats(path: Path, stats: dict) -> None:
    from portnet.io import atomic_write_bytes

    atomic_write_bytes(path, lambda handle: np.savez(handle, **stats))


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
