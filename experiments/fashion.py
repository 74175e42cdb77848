"""The main job: train an MLP on Fashion-MNIST on the backend of your choice.

    python -m experiments.fashion                       # NumPy, the default configuration
    PORTNET_BACKEND=cupy python -m experiments.fashion  # the same on an NVIDIA GPU
    python -m experiments.fashion --backend torch --epochs 5 --hidden 256
    python -m experiments.fashion --evaluate runs/fashion-... --backend array_api_strict
    python -m experiments.fashion --evaluate runs/fashion-... --export-onnx model.onnx

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
    check_output_dir,
    default_out_dir,
    fail,
    parse_int_list,
    positive_int,
    run_cli,
    write_json,
)
from experiments.fashion_config import (
    CNN_CONFIG,
    DEFAULTS,
    RULES,
    make_optimizer,
    resolve_config,
    uses_test_time_flip,
)
from experiments.fashion_runs import CHECKPOINT, evaluate_run, resume_arguments, run_lr_find


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.fashion",
        description="Train a multilayer perceptron or a CNN on Fashion-MNIST (or MNIST / "
        "KMNIST) with portnet, on NumPy, CuPy, PyTorch, JAX or array-api-strict, and write "
        "the results, the model and plots to a run folder.",
        epilog="Precedence: built-in defaults < --config file < flags. Exit code 2 means bad "
        "input (unknown backend, missing data, bad option); the message says what to do.",
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
        help="numpy, torch, cupy, jax or array_api_strict (default: $PORTNET_BACKEND, else numpy)",
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
    g.add_argument(
        "--batch-norm",
        action=argparse.BooleanOptionalAction,
        help="BatchNorm between each hidden Dense layer and its activation "
        f"(default {'on' if DEFAULTS['batch_norm'] else 'off'})",
    )
    g.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        help="mirror half the training images left-right each step (a RandomFlip layer; "
        f"default {'on' if DEFAULTS['flip'] else 'off'})",
    )
    g.add_argument(
        "--test-time-flip",
        action=argparse.BooleanOptionalAction,
        help="predict and evaluate (validation too) with the mean of the class "
        "probabilities for each image and its mirror image; needs a RandomFlip in the "
        "network (default: on exactly when the network has one)",
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
        "--weight-decay",
        type=RULES["weight_decay"].arg,
        help="decoupled weight decay: each step multiplies the weights by 1 - lr * this "
        f"(default {DEFAULTS['weight_decay']:g})",
    )
    g.add_argument(
        "--label-smoothing",
        type=RULES["label_smoothing"].arg,
        metavar="EPS",
        help="train towards (1 - EPS) one-hot + EPS / classes instead of the one-hot labels "
        f"(default {DEFAULTS['label_smoothing']:g})",
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
    g.add_argument(
        "--compile",
        action="store_const",
        const=True,
        help="compile the training step with jax.jit (needs --backend jax)",
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
    g.add_argument(
        "--export-onnx",
        metavar="FILE",
        help="with --evaluate: also write the run's model to FILE as ONNX (its inference "
        "graph, batch size free, output: class probabilities) and check it with onnxruntime "
        'on the test images; needs pip install "portnet[onnx]"',
    )
    g.add_argument(
        "--lr-find",
        action="store_true",
        help="instead of training: run a learning-rate range test with this model and "
        "optimizer (100 steps, rates 1e-6 to 1), write lr_find.png and lr_find.json to "
        "--out, and print the suggested --lr",
    )
    return p


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
    if args.export_onnx and not args.evaluate:
        fail("--export-onnx FILE exports a finished run: give it with --evaluate RUN_DIR.")
    if args.evaluate:
        backend = pn.get_backend(args.backend, args.device)
        evaluate_run(Path(args.evaluate), backend, onnx_file=args.export_onnx)
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
    pn.retain_freed_memory()  # no page faults on each step's fresh arrays
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
        layers = pn.mlp(
            sizes,
            config["activation"],
            dropout=config["dropout"],
            batch_norm=config["batch_norm"],
            flip=(1, *dataset.X_train.shape[1:]) if config["flip"] else None,
        )
        description = f"{'-'.join(map(str, sizes))} MLP"
        summary = (
            f"{'-'.join(map(str, sizes))} {config['activation']}, dropout {config['dropout']}"
            + (", batch norm" if config["batch_norm"] else "")
            + (", random flips" if config["flip"] else "")
        )
    model = pn.Model(
        layers,
        loss=pn.SoftmaxCrossEntropy(label_smoothing=config["label_smoothing"]),
        optimizer=make_optimizer(config),
        l1=config["l1"],
        l2=config["l2"],
        backend=backend,
        dtype=config["dtype"],
        seed=config["seed"],
        test_time_flip=uses_test_time_flip(config),
    )
    if config["layers"] is not None:
        check_layers_fit(model, layers, *train, dataset.n_classes, args.config or CNN_CONFIG)
    print(
        f"model    {summary}, {model.optimizer!r}, batch {config['batch_size']}, "
        f"{config['epochs']} epochs"
        + (f", label smoothing {config['label_smoothing']:g}" if config["label_smoothing"] else "")
        + (", test-time flips" if model.test_time_flip else "")
    )
    print(model.summary(config["batch_size"]))
    if args.lr_find:
        run_lr_find(model, train, config, out)
        return 0
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
        compile=config["compile"],
        verbose=1,
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


def _save_stats(path: Path, stats: dict) -> None:
    from portnet.io import atomic_write_bytes

    atomic_write_bytes(path, lambda handle: np.savez(handle, **stats))


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
