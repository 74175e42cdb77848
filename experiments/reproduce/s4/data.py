"""S4's data (binary labels), models, training and scores, shared by its tables."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

import portnet as pn

#: The class that plays MNIST's "0" in the one-vs-rest task, per dataset.
POSITIVE_CLASS = {"mnist": 0, "kmnist": 0, "fashion_mnist": 1, "fashion_mnist_sample": 1}


def load_data(config: dict[str, Any]) -> dict[str, Any]:
    """Images scaled to [0, 1], a stratified 80/20 train/validation split, binary labels.

    Through :func:`portnet.data.prepare.prepare_data`: ``train_size`` keeps a
    stratified random subset before the split.
    """
    from portnet.data.prepare import prepare_data

    prepared = prepare_data(
        config["dataset"],
        data_dir=config["data_dir"],
        normalize="scale",
        train_size=config["train_size"],
        val_fraction=config["val_fraction"],
        seed=config["seed"],
    )
    ds = prepared.dataset
    positive = config["positive_class"]
    if positive is None:
        positive = POSITIVE_CLASS.get(config["dataset"], 0)
    names = prepared.class_names
    data = {
        "X": prepared.X,
        "y": prepared.y,
        "X_val": prepared.X_val,
        "y_val": prepared.y_val,
        "X_test": prepared.X_test,
        "y_test": prepared.y_test,
        "images_test": ds.X_test,
        "images_train": ds.X_train,
        "labels_train": ds.y_train,
        "class_names": names,
        "positive": int(positive),
        "binary_names": [f"not {names[positive]}", names[positive]],
        "source": prepared.source,
    }
    for split in ("", "_val", "_test"):
        data[f"b{split}"] = (data[f"y{split}"] == positive).astype(np.int64)
    return data


def binary_model(ctx, hidden: int | None, activation: str, lr: float, backend=None) -> pn.Model:
    """A single sigmoid neuron (``hidden=None``) or one hidden layer, trained with SGD + BCE."""
    init = "he" if activation == "relu" else "glorot"
    if hidden is None:
        layers = [pn.Dense(784, 1, init="glorot"), pn.Sigmoid()]
    else:
        layers = pn.mlp([784, hidden, 1], activation, output="sigmoid", init=init)
    return pn.Model(
        layers,
        loss="sigmoid_binary_cross_entropy",
        optimizer=pn.SGD(lr),
        backend=backend or ctx.backend,
        seed=int(ctx.config["seed"]),
    )


def batch_of(size, n: int) -> int:
    return n if size in (None, "all") else int(size)


def label_of(size) -> str:
    return "all" if size in (None, "all") else str(size)


def binary_scores(model: pn.Model, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (positive class) and the 2x2 confusion matrix."""
    backend = model.backend
    predicted = model.predict(X)
    truth = backend.asarray(y.astype(np.int64))
    cm = pn.confusion_matrix(truth, predicted, 2)
    scores = pn.precision_recall_f1(cm, average="binary", positive=1)
    acc = pn.accuracy(truth, predicted)
    return {
        "accuracy": float(backend.to_numpy(acc)),
        **{k: float(backend.to_numpy(v)) for k, v in scores.items()},
        "cm": backend.to_numpy(cm),
        "predicted": backend.to_numpy(predicted),
    }


def fit(ctx, model, data, labels: str, epochs: int, batch_size: int, what: str) -> pn.History:
    start = time.perf_counter()
    history = model.fit(
        data["X"],
        data[labels],
        epochs=epochs,
        batch_size=batch_size,
        validation_data=(data["X_val"], data[f"{labels}_val"]),
        verbose=0,
        compile=ctx.compile,
    )
    ctx.log(
        f"{what}: {history.epochs_run} epochs in {time.perf_counter() - start:.1f} s, "
        f"val accuracy {history.history['val_accuracy'][-1]:.4f}"
    )
    return history


def multiclass_scores(model, data, k: int):
    """Test predictions and confusion matrix (host arrays), macro P/R/F1 and accuracy."""
    backend = model.backend
    predicted = model.predict(data["X_test"])
    truth = backend.asarray(data["y_test"])
    cm = pn.confusion_matrix(truth, predicted, k)
    macro = {
        key: float(backend.to_numpy(v))
        for key, v in pn.precision_recall_f1(cm, average="macro").items()
    }
    acc = float(backend.to_numpy(pn.accuracy(truth, predicted)))
    return backend.to_numpy(predicted), backend.to_numpy(cm), macro, acc


def num(value, fmt: str = ".4f") -> str:
    return "—" if value is None else format(value, fmt)


def pct(value):
    return None if value is None else 100 * value


def frac(value):
    return None if value is None else value / 100
