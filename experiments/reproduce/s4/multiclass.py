"""S4's multiclass MLP by optimizer, and the paper's CNN (its Fig. 11)."""

from __future__ import annotations

from typing import Any

import numpy as np

import portnet as pn
from experiments.reproduce.results import Claim
from experiments.reproduce.s4.data import (
    fit,
    frac,
    multiclass_scores,
    num,
)

PAPER_MULTICLASS = {"sgd": 95.85, "rmsprop": 96.63, "adam": 96.92}
PAPER_CNN = 99.37  # test accuracy of the CNN of Fig. 11, SGD, MNIST

#: The default CNN, in portnet's saved-model layer format. Fig. 11 is not in the text;
#: this is the Keras MNIST example network (Conv 32 - Conv 64 - MaxPool - Dropout -
#: Dense 128 - Dropout - Dense 10), an assumption. Reshape turns the flat 784-pixel
#: rows into 1x28x28 images, so the data stays 2-D; the last layer gives logits (the
#: loss applies the softmax).
PAPER_CNN_LAYERS: list[dict[str, Any]] = [
    {"class": "Reshape", "config": {"shape": [1, 28, 28]}},
    {"class": "Conv2D", "config": {"in_channels": 1, "out_channels": 32, "kernel_size": 3}},
    {"class": "ReLU"},
    {"class": "Conv2D", "config": {"in_channels": 32, "out_channels": 64, "kernel_size": 3}},
    {"class": "ReLU"},
    {"class": "MaxPool2D", "config": {"kernel_size": 2}},
    {"class": "Dropout", "config": {"rate": 0.25}},
    {"class": "Flatten"},
    {"class": "Dense", "config": {"n_in": 9216, "n_out": 128}},
    {"class": "ReLU"},
    {"class": "Dropout", "config": {"rate": 0.5}},
    {"class": "Dense", "config": {"n_in": 128, "n_out": 10}},
]


def run_multiclass(ctx, data, claims, md) -> dict[str, Any]:
    config = ctx.config
    k = len(data["class_names"])
    hidden, epochs = int(config["multiclass_hidden"]), int(config["multiclass_epochs"])
    batch = int(config["multiclass_batch_size"])
    runs: dict[str, Any] = {}
    md += [
        f"### Multiclass: 784-{hidden}-{k} ReLU MLP, by optimizer (test set)",
        "",
        "| optimizer | lr | accuracy | macro precision | macro recall | macro F1 | paper acc. |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, lr in config["optimizers"].items():
        model = pn.Model(
            pn.mlp([784, hidden, k], "relu", output="softmax"),
            optimizer=pn.get_optimizer(name, lr=float(lr)),
            backend=ctx.backend,
            seed=int(config["seed"]),
        )
        history = fit(ctx, model, data, "y", epochs, batch, f"multiclass {name}")
        predicted, cm, macro, acc = multiclass_scores(model, data, k)
        runs[name] = {
            "history": history,
            "cm": cm,
            "predicted": predicted,
            "accuracy": acc,
        }
        md.append(
            f"| {name} | {lr:g} | {acc:.4f} | {macro['precision']:.4f} | {macro['recall']:.4f} | "
            f"{macro['f1']:.4f} | {num(frac(PAPER_MULTICLASS.get(name)))} |"
        )
        claims.append(
            Claim(
                f"Multiclass, {hidden} hidden units, {name}: accuracy",
                PAPER_MULTICLASS.get(name),
                100 * acc,
                setting=f"{config['dataset']}, 10 classes; {name} lr {lr:g}, batch {batch}, "
                f"{epochs} epochs (paper: MNIST)",
                seconds=sum(history.history["seconds"]),
            )
        )
    md.append("")
    return runs


def _layers_summary(layers: list[dict[str, Any]]) -> str:
    """A short description of a {class, config} layer list, e.g. ``conv3x3-32, maxpool2``."""
    parts = []
    for spec in layers:
        cls, cfg = spec["class"], spec.get("config") or {}
        if cls == "Conv2D":
            k = cfg.get("kernel_size", 3)
            k = f"{k[0]}x{k[1]}" if isinstance(k, list | tuple) else f"{k}x{k}"
            text = f"conv{k}-{cfg['out_channels']}"
            for key, default in (("stride", 1), ("padding", 0)):
                value = cfg.get(key, default)
                if value not in (default, [default, default]):
                    text += f" {key} {value}"
            parts.append(text)
        elif cls in ("MaxPool2D", "AvgPool2D"):
            parts.append(f"{cls[:3].lower()}pool{cfg.get('kernel_size', 2)}")
        elif cls == "Dense":
            parts.append(f"dense-{cfg['n_out']}")
        elif cls == "Dropout":
            parts.append(f"dropout {cfg.get('rate', 0.5):g}")
        elif cls == "BatchNorm":
            parts.append("batchnorm")
        elif cls not in ("Reshape", "Flatten"):
            parts.append(cls.lower())
    return ", ".join(parts)


def run_cnn(ctx, data, claims, md) -> dict[str, Any]:
    """The paper's CNN on the multiclass task: test accuracy vs 99.37 %, curves, confusion."""
    config = ctx.config
    k = len(data["class_names"])
    epochs, batch = int(config["cnn_epochs"]), int(config["cnn_batch_size"])
    name, lr = str(config["cnn_optimizer"]), float(config["cnn_lr"])
    train = data
    n_train = config["cnn_train_size"]
    if n_train is not None and int(n_train) < len(data["y"]):
        keep = np.sort(
            np.random.default_rng(int(config["seed"])).permutation(len(data["y"]))[: int(n_train)]
        )
        train = {**data, "X": data["X"][keep], "y": data["y"][keep]}
    layers = [dict(spec) for spec in config["cnn_layers"]]
    model = pn.Model(
        pn.Sequential(layers),
        optimizer=pn.get_optimizer(name, lr=lr),
        backend=ctx.backend,
        seed=int(config["seed"]),
    )
    summary = _layers_summary(layers)
    history = fit(ctx, model, train, "y", epochs, batch, f"CNN ({summary}) {name}")
    predicted, cm, macro, acc = multiclass_scores(model, data, k)
    seconds = sum(history.history["seconds"])
    md += [
        "### CNN on the multiclass task (the paper's Fig. 11; test set)",
        "",
        f"Layers: {summary} (the figure is not in the text: an assumption, `cnn_layers`). "
        f"{name} lr {lr:g}, batch {batch}, {history.epochs_run} epochs on "
        f"{len(train['y'])} training images, {seconds:.1f} s.",
        "",
        "| model | accuracy | macro precision | macro recall | macro F1 | paper acc. |",
        "|---|---|---|---|---|---|",
        f"| CNN | {acc:.4f} | {macro['precision']:.4f} | {macro['recall']:.4f} | "
        f"{macro['f1']:.4f} | {PAPER_CNN / 100:.4f} |",
        "",
    ]
    claims.append(
        Claim(
            "CNN (multiclass): accuracy",
            PAPER_CNN,
            100 * acc,
            setting=f"{config['dataset']}, 10 classes; {summary}; {name} lr {lr:g}, batch "
            f"{batch}, {history.epochs_run} epochs, {len(train['y'])} training images "
            "(paper: Keras CNN of Fig. 11, SGD, MNIST)",
            seconds=seconds,
        )
    )
    return {
        "history": history,
        "cm": cm,
        "predicted": predicted,
        "accuracy": acc,
        "summary": summary,
    }
