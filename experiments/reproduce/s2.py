"""S2: the KMNIST MLP study: learning rates, L2/L1, activations, topologies, gradient check.

Reproduces study S2 (an MLP study on KMNIST): Table 1 (gradient check with
E(w ± ε)), the default model's curves (Figures 1-2), Table 3 (learning rates 0.005 /
0.01 / 0.05, the one with the lowest validation loss meets the test set), Tables 4
and 5 (L2 and L1 at 1e-3 / 1e-6, 110 epochs), Table 6 (sigmoid / tanh / ReLU, up to
200 epochs) and Table 7 (64, 128, 256 and 203x203 hidden units), all with EMA-form
momentum (gamma 0.9), batch 128, and early stopping that restores the best model.

The paper's numbers are for KMNIST. KMNIST cannot be downloaded on an offline
machine, so the default dataset here is Fashion-MNIST (``dataset`` option /
``--dataset kmnist`` on a connected machine); every claim's setting names the
dataset, and on Fashion-MNIST the comparison shows the procedure, not a replication.
"""

from __future__ import annotations

import dataclasses

import portnet as pn
from experiments.reproduce._gradchecks import s2_table1
from experiments.reproduce._s012 import (
    RunResult,
    load_images,
    markdown,
    plot_run,
    train_and_evaluate,
)
from experiments.reproduce.results import Claim

#: The paper's dataset; runs on another one are marked not comparable in the report.
PAPER_DATASET = "kmnist"

DEFAULTS = {
    "dataset": "fashion_mnist",  # the paper: kmnist (needs a network connection here)
    "data_dir": None,
    "seed": 0,
    "train_size": None,
    "test_size": None,
    "val_fraction": 0.2,  # one fold: 80 % train / 20 % validation
    # Table 2: the default model.
    "hidden": [128],
    "activation": "tanh",
    "lr": 0.005,
    "batch_size": 128,
    "epochs": 100,
    "l2": 1e-4,
    "gamma": 0.9,  # EMA momentum: v = gamma v + (1 - gamma) g, w -= lr v
    # Algorithm 2 stops when the validation loss has been above its best for more
    # than 5 epochs in a row, i.e. after 6 such epochs, and keeps the best model.
    "patience": 6,
    "learning_rates": [0.005, 0.01, 0.05],
    "selected_lr": 0.05,  # the paper's choice for Tables 4-7; None: lowest validation loss
    "reg_epochs": 110,
    "l2_values": [1e-3, 1e-6],
    "l1_values": [1e-3, 1e-6],
    "activations": ["sigmoid", "tanh", "relu"],
    "activation_epochs": 200,
    "topologies": [[64], [128], [256], [203, 203]],
    "gradcheck_eps": 1e-2,
}

QUICK = {
    "train_size": 3000,
    "test_size": 1000,
    "epochs": 3,
    "reg_epochs": 3,
    "activation_epochs": 3,
    "learning_rates": [0.01, 0.05],
    "l2_values": [1e-3],
    "l1_values": [1e-6],
    "activations": ["sigmoid", "relu"],
    "topologies": [[64], [32, 32]],
}

# The paper's tables (KMNIST): (train acc, train loss, val acc, val loss, test acc).
PAPER_LR = {
    0.005: (0.965333, 0.143583, 0.927833, 0.253461, None),
    0.05: (0.997146, 0.036258, 0.9345, 0.222675, 0.8546),
    0.01: (0.989542, 0.067687, 0.929833, 0.233185, None),
}
PAPER_L2 = {
    1e-3: (0.9938, 0.0690, 0.9489, 0.1781, 0.8725),
    1e-6: (0.9999, 0.0051, 0.9333, 0.2591, 0.8469),
}
PAPER_L1 = {
    1e-3: (0.9302, 0.2515, 0.9091, 0.3094, 0.8154),
    1e-6: (0.9999, 0.0052, 0.9337, 0.2574, 0.8495),
}
PAPER_ACT = {
    "sigmoid": (0.993438, 0.05249, 0.94058, 0.20047, 0.8587),
    "tanh": (0.998396, 0.02781, 0.93225, 0.22849, 0.8516),
    "relu": (0.997729, 0.01941, 0.94483, 0.20109, 0.8688),
}
PAPER_TOPO = {
    "64": (0.98425, 0.085203, 0.915, 0.296058, 0.826),
    "128": (0.99725, 0.034221, 0.932167, 0.239340, 0.8514),
    "256": (0.999542, 0.017683, 0.941833, 0.210170, 0.8626),
    "203x203": (0.998083, 0.025471, 0.938083, 0.228035, 0.8583),
}
COLUMNS = (
    "train accuracy",
    "train loss",
    "validation accuracy",
    "validation loss",
    "test accuracy",
)


@dataclasses.dataclass(frozen=True)
class Spec:
    """Everything that defines one training run (used to reuse identical runs)."""

    hidden: tuple[int, ...]
    activation: str
    lr: float
    l1: float
    l2: float
    epochs: int
    patience: int | None


def _never_stops(old: Spec, spec: Spec, result: RunResult) -> bool:
    """Whether a run without early stopping equals ``spec``'s run with it: same settings,
    and its validation losses never give ``spec.patience`` epochs in a row without a new
    best (so early stopping would not have fired, nor restored anything)."""
    if old.patience is not None or dataclasses.replace(old, patience=spec.patience) != spec:
        return False
    best, bad = float("inf"), 0
    for value in result.history.history["val_loss"]:
        best, bad = (value, 0) if value < best else (best, bad + 1)
        if bad >= spec.patience:
            return False
    return True


class Runner:
    """Trains runs by spec, reusing a finished run when a later table asks for the same one.

    A run that stopped early before ``epochs`` would have stopped at the same epoch
    under a higher cap (training is deterministic), so it is reused for that cap too.
    """

    def __init__(self, ctx, data):
        self.ctx, self.data, self.done = ctx, data, {}

    def __call__(self, name: str, spec: Spec) -> RunResult:
        for old, result in self.done.items():
            same = dataclasses.replace(old, epochs=spec.epochs) == spec
            stopped_early = result.history.stop_reason == "early_stopping"
            if (
                old == spec
                or (same and stopped_early and result.epochs < spec.epochs)
                or _never_stops(old, spec, result)
            ):
                self.ctx.log(f"{name}: same run as {result.name} (reused)")
                return result
        cfg = self.ctx.config
        result = train_and_evaluate(
            self.ctx,
            name,
            pn.mlp([784, *spec.hidden, 10], spec.activation),
            pn.Momentum(spec.lr, gamma=cfg["gamma"], form="ema"),
            self.data,
            epochs=spec.epochs,
            batch_size=cfg["batch_size"],
            patience=spec.patience,
            l1=spec.l1,
            l2=spec.l2,
            seed=cfg["seed"],
        )
        self.done[spec] = result
        return result


def _row_values(result: RunResult) -> tuple[float, ...]:
    return (
        result.train["accuracy"],
        result.train["loss"],
        result.val["accuracy"],
        result.val["loss"],
        result.test["accuracy"],
    )


def _table(ctx, title: str, label: str, rows, claims: list[Claim], setting: str) -> str:
    """A paper-vs-portnet table for one experiment, and one claim per reported number."""
    dataset = ctx.config["dataset"]
    lines = []
    for key, result, paper in rows:
        ours = _row_values(result)
        paper = paper or (None,) * 5
        cells = [key]
        for column, p, o in zip(COLUMNS, paper, ours, strict=True):
            is_acc = "accuracy" in column
            scale = 100.0 if is_acc else 1.0
            cells.append(f"{scale * o:.2f}" if is_acc else f"{o:.4f}")
            cells.append("—" if p is None else (f"{scale * p:.2f}" if is_acc else f"{p:.4f}"))
            claims.append(
                Claim(
                    f"{title}: {label} {key}, {column}",
                    None if p is None else scale * p,
                    scale * o,
                    "%" if is_acc else "",
                    f"{setting}; on {dataset} (the paper's numbers are for KMNIST); "
                    f"{result.describe()}",
                    seconds=result.seconds,
                )
            )
        cells.append(result.epochs)
        lines.append(cells)
    headers = [label]
    for column in COLUMNS:
        headers += [f"{column} (portnet)", "(paper)"]
    return markdown(
        headers + ["epochs"], lines, f"{title} — portnet on {dataset} vs paper (KMNIST)"
    )


def run(ctx) -> list[Claim]:
    cfg = ctx.config
    # "z-score normalization to the samples": each image by its own mean and std.
    p = load_images(ctx, "image", cfg["val_fraction"])
    data = (p.X, p.y, p.X_val, p.y_val, p.X_test, p.y_test)
    runner = Runner(ctx, data)
    hidden, act, patience = tuple(cfg["hidden"]), cfg["activation"], int(cfg["patience"])
    claims: list[Claim] = []
    md: list[str] = []

    text, grad_claims = s2_table1(ctx, data[0], data[1], list(hidden), act)
    md.append(text)
    claims += grad_claims

    # Table 2 / Figures 1-2: the default model, 100 epochs, no early stopping.
    default = runner(
        "default model", Spec(hidden, act, cfg["lr"], 0.0, cfg["l2"], cfg["epochs"], None)
    )
    plot_run(ctx, default, "default.png", "Figures 1-2: default model (no early stopping)")
    claims.append(
        Claim(
            "Default model (Table 2) test accuracy",
            None,
            100 * default.test["accuracy"],
            "%",
            f"lr {cfg['lr']:g}, {cfg['epochs']} epochs, no early stopping, on "
            f"{cfg['dataset']}; the paper (KMNIST) reports no number for it",
            seconds=default.seconds,
        )
    )
    base = (
        f"784-{'-'.join(map(str, hidden))}-10 {act}, EMA momentum {cfg['gamma']:g}, "
        f"batch {cfg['batch_size']}, L2 {cfg['l2']:g}, early stopping {patience} with "
        "best-model restore"
    )

    # Table 3: learning rates; the lowest validation loss picks the model for later tables.
    lr_runs = []
    for lr in cfg["learning_rates"]:
        result = runner(
            f"lr {lr:g}", Spec(hidden, act, float(lr), 0.0, cfg["l2"], cfg["epochs"], patience)
        )
        plot_run(ctx, result, f"lr_{lr:g}.png", f"Figures 3-8: learning rate {lr:g}")
        lr_runs.append((f"{lr:g}", result, PAPER_LR.get(float(lr))))
    lowest = float(min(lr_runs, key=lambda r: r[1].val["loss"])[0])
    # Tables 4-7 start from "the best model of part (c)": the paper's 0.05 by default
    # (comparable settings, and 3-4x fewer epochs than the small rates need), or the
    # rate with the lowest validation loss here when `selected_lr` is null.
    best_lr = float(cfg["selected_lr"]) if cfg["selected_lr"] is not None else lowest
    ctx.log(f"lowest validation loss at lr {lowest:g}; tables 4-7 use lr {best_lr:g}")
    md.append(_table(ctx, "Table 3", "learning rate", lr_runs, claims, base))
    md.append(
        f"Lowest validation loss here: learning rate **{lowest:g}** (the paper's: 0.05, whose "
        f"test accuracy, 85.46 %, is the one it reports). Tables 4-7 use **{best_lr:g}** "
        "(option `selected_lr`; null picks the lowest validation loss).\n\n"
    )

    # Tables 4 and 5: L2 and L1 instead of the default L2, 110 epochs.
    for kind, paper_table, title in (("l2", PAPER_L2, "Table 4"), ("l1", PAPER_L1, "Table 5")):
        rows = []
        for lam in cfg[f"{kind}_values"]:
            lam = float(lam)
            spec = Spec(
                hidden,
                act,
                best_lr,
                lam if kind == "l1" else 0.0,
                lam if kind == "l2" else 0.0,
                cfg["reg_epochs"],
                patience,
            )
            result = runner(f"{kind.upper()} {lam:g}", spec)
            plot_run(
                ctx, result, f"{kind}_{lam:g}.png", f"{kind.upper()} regularization λ = {lam:g}"
            )
            rows.append((f"{lam:g}", result, paper_table.get(lam)))
        setting = (
            base.replace(f"L2 {cfg['l2']:g}", f"{kind.upper()} only")
            + f", lr {best_lr:g}, {cfg['reg_epochs']} epochs max"
        )
        md.append(_table(ctx, title, f"{kind.upper()} λ", rows, claims, setting))

    # Table 6: activations, up to 200 epochs.
    rows = []
    for activation in cfg["activations"]:
        result = runner(
            f"{activation}",
            Spec(hidden, activation, best_lr, 0.0, cfg["l2"], cfg["activation_epochs"], patience),
        )
        plot_run(
            ctx, result, f"activation_{activation}.png", f"Figures 17-22: {activation} hidden units"
        )
        rows.append((activation, result, PAPER_ACT.get(activation)))
    md.append(
        _table(
            ctx,
            "Table 6",
            "activation",
            rows,
            claims,
            base.replace(f" {act},", ",") + f", lr {best_lr:g}, "
            f"{cfg['activation_epochs']} epochs max",
        )
    )

    # Table 7: topologies.
    rows = []
    for widths in cfg["topologies"]:
        key = "x".join(map(str, widths))
        result = runner(
            f"hidden {key}",
            Spec(tuple(widths), act, best_lr, 0.0, cfg["l2"], cfg["epochs"], patience),
        )
        plot_run(ctx, result, f"topology_{key}.png", f"Figures 23-30: hidden layers {key}")
        rows.append((key, result, PAPER_TOPO.get(key)))
    md.append(
        _table(
            ctx,
            "Table 7",
            "hidden units",
            rows,
            claims,
            base.replace(f"784-{'-'.join(map(str, hidden))}-10 ", "") + f", lr {best_lr:g}",
        )
    )
    md.append(
        "Figures: `default.png`, `lr_<rate>.png`, `l2_<λ>.png`, `l1_<λ>.png`, "
        "`activation_<name>.png`, `topology_<widths>.png`: loss and accuracy per epoch, "
        "train vs validation; the dotted line marks the epoch whose weights were restored. "
        "Train and validation numbers in the tables are re-evaluated on the restored model.\n"
    )
    ctx.extra_markdown = "\n" + "".join(md)
    return claims
