"""The "Rookie" network of study S3, shared by the S3 reproduction and the sweep runner.

One configuration (a flat dict) fully describes a training run: data, network,
learning-rate schedule, L2 strength, epochs and backend. :func:`train_rookie`
trains it and returns the model, its history and its accuracies, so the sweep
runner and the single best-setting run share exactly the same code path.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np

import portnet as pn

#: What a Rookie configuration holds; the sweep's config id is a hash of these values.
ROOKIE_DEFAULTS: dict[str, Any] = {
    "dataset": "fashion_mnist",
    "data_dir": None,
    "train_size": None,  # None: the whole training set (minus validation)
    "val_size": 5000,  # the paper holds out 5,000 random training images
    "hidden": [500, 324],
    "lr": 0.2,
    "l2": 1e-3,
    "decay": 0.5,
    "decay_every": 15,
    "epochs": 60,
    "batch_size": 512,
    "backend": "numpy",
    "device": None,
    "seed": 0,  # weights and shuffling; the sweep derives it from the config id
    "split_seed": 0,  # the validation split, the same for every configuration
}

#: Options of the best-setting run that the grid leaves at these values (kept out of
#: the sweep's config ids, so earlier grid results stay valid).
ROOKIE_EXTRAS: dict[str, Any] = {
    "batch_norm_input": False,  # the paper's per-minibatch "batch normalization" pre-process
    "l2_form": "half",  # "half": penalty λ/2·ΣW² (gradient λW); "full": λ·ΣW² (gradient 2λW)
    "train_on_all": False,  # train on training + validation images (no validation data)
}


class BatchInputNorm(pn.Layer):
    """Per-minibatch z-score of the inputs, without learnable parameters (a pre-process).

    In training each feature of a minibatch is centred and scaled by that minibatch's
    own mean and standard deviation; in inference it is the identity, since the inputs
    are already z-scored with the training set's statistics.
    """

    def __init__(self, eps: float = 1e-5):
        self.eps = float(eps)

    def forward(self, params, x, ctx):
        xp = ctx.xp
        if not ctx.training:
            return x, lambda dy: (dy, {})
        mean = xp.mean(x, axis=0, keepdims=True)
        centered = x - mean
        inv_std = 1.0 / xp.sqrt(xp.mean(centered * centered, axis=0, keepdims=True) + self.eps)
        # The first layer: nothing upstream needs dx, and the statistics are a pre-process.
        return centered * inv_std, lambda dy: (dy * inv_std, {})

    def get_config(self):
        return {"eps": self.eps}


@functools.lru_cache(maxsize=4)
def load_rookie_data(
    dataset: str, data_dir: str | None, train_size: int | None, val_size: int, seed: int
) -> dict[str, Any]:
    """Load, split and z-score a dataset as the paper does (cached per process).

    The paper draws 5,000 random training images as a validation set and applies a
    z-score normalisation to the whole dataset; the statistics here come from the
    training part only, so no test information leaks into training.

    Returns
    -------
    dict
        ``X``, ``y`` (training), ``X_val``, ``y_val``, ``X_test``, ``y_test`` as
        float32 / int64 host arrays, plus ``class_names`` and ``source``.
    """
    from portnet.data import StandardScaler, load_dataset, scale_images, stratified_split

    ds = load_dataset(dataset, data_dir=data_dir)
    X_all = scale_images(ds.X_train)
    y_all = ds.y_train.astype(np.int64)
    n_val = min(int(val_size), len(y_all) // 5)
    train_idx, val_idx = stratified_split(y_all, n_val / len(y_all), seed=seed)
    if train_size is not None and int(train_size) < len(train_idx):
        # A fixed random subset keeps reduced grids fast without changing the task.
        rng = np.random.default_rng(seed + 1)
        train_idx = np.sort(rng.choice(train_idx, size=int(train_size), replace=False))
    scaler = StandardScaler().fit(X_all[train_idx])
    return {
        "X": scaler.transform(X_all[train_idx]),
        "y": y_all[train_idx],
        "X_val": scaler.transform(X_all[val_idx]),
        "y_val": y_all[val_idx],
        "X_test": scaler.transform(scale_images(ds.X_test)),
        "y_test": ds.y_test.astype(np.int64),
        "class_names": list(ds.class_names),
        "source": str(ds.source),
    }


def build_rookie(config: dict[str, Any], n_in: int, n_classes: int) -> pn.Model:
    r"""The ReLU MLP ``n_in - hidden... - n_classes`` with He init, SGD, step decay and L2.

    The rate is :math:`\eta_e = \eta_0\,d^{\lfloor e / k\rfloor}` (decay ``d`` every
    ``k`` epochs). The L2 term, added to the minibatch-mean loss, is
    :math:`\tfrac{\lambda}{2}\sum\lVert W\rVert^2` (gradient :math:`\lambda W`) with
    ``l2_form="half"`` and :math:`\lambda\sum\lVert W\rVert^2` (gradient :math:`2\lambda W`)
    with ``l2_form="full"``. ``batch_norm_input`` puts :class:`BatchInputNorm` first.
    """
    sizes = [n_in, *[int(h) for h in config["hidden"]], n_classes]
    schedule = pn.StepDecay(config["lr"], factor=config["decay"], every=config["decay_every"])
    forms = {"half": 1.0, "full": 2.0}
    form = config.get("l2_form", "half")
    if form not in forms:
        raise pn.ConfigError(f"l2_form must be 'half' or 'full', got {form!r}")
    layers = pn.mlp(sizes, "relu", init="he")
    if config.get("batch_norm_input"):
        layers = [BatchInputNorm(), *layers]
    return pn.Model(
        layers,
        optimizer=pn.SGD(schedule),
        l2=forms[form] * float(config["l2"]),  # the model's penalty is l2/2·ΣW²
        backend=config.get("backend") or "numpy",
        device=config.get("device"),
        seed=int(config["seed"]),
    )


def train_rookie(config: dict[str, Any], verbose: int = 0) -> dict[str, Any]:
    """Train one Rookie configuration and measure it.

    Parameters
    ----------
    config : dict
        Keys of :data:`ROOKIE_DEFAULTS` (missing ones take those defaults).
    verbose : int
        Passed to :meth:`portnet.Model.fit`.

    Returns
    -------
    dict
        ``model``, ``history`` (:class:`portnet.History`), ``data``, ``val_accuracy``
        (None with ``train_on_all``),
        ``test_accuracy``, ``test_loss`` and ``seconds`` (training wall time).
    """
    config = {**ROOKIE_DEFAULTS, **ROOKIE_EXTRAS, **config}
    data = load_rookie_data(
        config["dataset"],
        config["data_dir"],
        config["train_size"],
        int(config["val_size"]),
        int(config["split_seed"]),
    )
    n_classes = len(data["class_names"])
    model = build_rookie(config, data["X"].shape[1], n_classes)
    X, y, validation = data["X"], data["y"], (data["X_val"], data["y_val"])
    if config["train_on_all"]:
        # The final model: the validation images join the training set (same z-score).
        X = np.concatenate([X, data["X_val"]])
        y = np.concatenate([y, data["y_val"]])
        validation = None
    start = time.perf_counter()
    history = model.fit(
        X,
        y,
        epochs=int(config["epochs"]),
        batch_size=int(config["batch_size"]),
        validation_data=validation,
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    test = model.evaluate(data["X_test"], data["y_test"])
    val = model.evaluate(*validation) if validation is not None else None
    return {
        "model": model,
        "history": history,
        "data": data,
        "val_accuracy": val["accuracy"] if val is not None else None,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "seconds": seconds,
    }
