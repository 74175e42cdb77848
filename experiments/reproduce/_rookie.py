"""The "Rookie" network of study S3 as sweep configurations.

A Rookie setting is a flat dict (:data:`ROOKIE_DEFAULTS`, plus :data:`ROOKIE_EXTRAS`
for the best-setting run). :func:`rookie_config` maps it onto a
:class:`portnet.RunConfig` (as a sweep configuration), plain data that any
machine with portnet installed can train; the S3 grid and S3's best-setting run both go through
:func:`portnet.sweeps.fit_config`, so they share exactly one code path.
"""

from __future__ import annotations

from typing import Any

import portnet as pn
from portnet.config import spec_of
from portnet.sweeps import fit_config

#: What a Rookie setting holds.
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
    "compile": False,  # jax.jit the training step (jax backend only)
    "seed": 0,  # weights and shuffling; None: derived from the configuration's id
    "split_seed": 0,  # the validation split, the same for every configuration
}

#: Options of the best-setting run that the grid leaves at these values.
ROOKIE_EXTRAS: dict[str, Any] = {
    "batch_norm_input": False,  # the paper's per-minibatch "batch normalization" pre-process
    "l2_form": "half",  # "half": penalty λ/2·ΣW² (gradient λW); "full": λ·ΣW² (gradient 2λW)
    "train_on_all": False,  # train on training + validation images (no validation data)
}

_L2_FORMS = {"half": 1.0, "full": 2.0}


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


def rookie_config(setting: dict[str, Any]) -> dict[str, Any]:
    r"""The sweep configuration of a Rookie setting (missing keys take the defaults).

    A ReLU MLP ``784 - hidden... - 10`` with He init and SGD at the step-decayed rate
    :math:`\eta_e = \eta_0\,d^{\lfloor e / k\rfloor}` (decay ``d`` every ``k`` epochs),
    z-scored inputs (training-part statistics). The L2 term on the minibatch-mean loss
    is :math:`\tfrac{\lambda}{2}\sum\lVert W\rVert^2` with ``l2_form="half"`` and
    :math:`\lambda\sum\lVert W\rVert^2` with ``"full"``; ``batch_norm_input`` puts
    :class:`BatchInputNorm` first (a layer of this module: such a configuration runs
    only where ``experiments`` is importable). ``tags`` hold the table's columns.
    """
    s = {**ROOKIE_DEFAULTS, **ROOKIE_EXTRAS, **setting}
    if s["l2_form"] not in _L2_FORMS:
        raise pn.ConfigError(f"l2_form must be 'half' or 'full', got {s['l2_form']!r}")
    hidden = [int(h) for h in s["hidden"]]
    layers = [spec_of(layer) for layer in pn.mlp([784, *hidden, 10], "relu", init="he")]
    if s["batch_norm_input"]:
        layers.insert(0, spec_of(BatchInputNorm()))
    return {
        "model": "layers",
        "layers": layers,
        "optimizer": "sgd",
        "lr": float(s["lr"]),
        "schedule": "step",
        "step_factor": float(s["decay"]),
        "step_every": int(s["decay_every"]),
        "weight_decay": 0.0,
        "label_smoothing": 0.0,
        "l2": _L2_FORMS[s["l2_form"]] * float(s["l2"]),  # the model's penalty is l2/2·ΣW²
        "dataset": s["dataset"],
        "data_dir": s["data_dir"],
        "normalize": "feature",
        "train_size": s["train_size"],
        "val_fraction": None,
        "val_size": None if s["train_on_all"] else int(s["val_size"]),
        "split_seed": int(s["split_seed"]),
        "epochs": int(s["epochs"]),
        "batch_size": int(s["batch_size"]),
        "seed": s["seed"],
        "backend": s["backend"] or "numpy",
        "device": s["device"],
        "compile": bool(s["compile"]),
        "tags": {
            "lr": s["lr"],
            "l2": s["l2"],
            "hidden": hidden,
            "decay": s["decay"],
            "decay_every": int(s["decay_every"]),
        },
    }


def train_rookie(setting: dict[str, Any], verbose: int = 0) -> dict[str, Any]:
    """Train one Rookie setting in this process (see :func:`portnet.sweeps.fit_config`).

    Returns
    -------
    dict
        ``model``, ``history``, ``data`` (:class:`portnet.data.prepare.PreparedData`),
        ``val_accuracy`` (None with ``train_on_all``), ``test_accuracy``, ``test_loss``
        and ``seconds`` (training wall time).
    """
    result = fit_config(rookie_config(setting), verbose=verbose)
    return {
        **result,
        "val_accuracy": result["val"]["accuracy"] if result["val"] else None,
        "test_accuracy": result["test"]["accuracy"],
        "test_loss": result["test"]["loss"],
    }
