"""S4's Tables III and IV: one hidden layer, by activation and by width."""

from __future__ import annotations

from typing import Any

from experiments.reproduce.results import Claim
from experiments.reproduce.s4.data import (
    binary_model,
    binary_scores,
    fit,
    num,
    pct,
)

PAPER_TABLE3 = {"sigmoid": (0.9964, 0.9822), "tanh": (0.9970, 0.9838), "relu": (0.9974, 0.9866)}
PAPER_TABLE4 = {16: (0.9972, 0.9857), 64: (0.9974, 0.9866), 1024: (0.9983, 0.9912)}


def run_hidden_layer(ctx, data, claims, md, task) -> dict[str, Any]:
    config = ctx.config
    batch, epochs = int(config["hidden_batch_size"]), int(config["hidden_epochs"])
    runs: dict[str, Any] = {}

    def one(key, units, activation):
        model = binary_model(ctx, units, activation, config["lr"])
        history = fit(ctx, model, data, "b", epochs, batch, f"hidden {units} {activation}")
        runs[key] = {
            "history": history,
            "scores": binary_scores(model, data["X_test"], data["b_test"]),
            "model": model,
        }
        return runs[key]

    table3, table4 = [], []
    for activation in config["activations"]:
        r = one(
            f"{activation}-{config['default_hidden']}", int(config["default_hidden"]), activation
        )
        table3.append((activation, r["scores"]))
    for units in config["hidden_units"]:
        key = f"{config['units_activation']}-{units}"
        r = runs.get(key) or one(key, int(units), config["units_activation"])
        table4.append((units, r["scores"]))
    setting = f"{task}; SGD lr {config['lr']}, batch {batch}, {epochs} epochs"
    md += [
        f"### Table III: one hidden layer of {config['default_hidden']} units, by activation",
        "",
        "| activation | accuracy | precision | recall | F1 | paper acc. | paper F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    _score_rows(
        md, claims, table3, PAPER_TABLE3, str, setting + f", {config['default_hidden']} units"
    )
    md += [
        "",
        f"### Table IV: one hidden {config['units_activation']} layer, by width",
        "",
        "| hidden units | accuracy | precision | recall | F1 | paper acc. | paper F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    _score_rows(
        md,
        claims,
        [(int(u), s) for u, s in table4],
        PAPER_TABLE4,
        lambda units: f"{units} units",
        setting + f", {config['units_activation']}",
    )
    md.append("")
    return runs


def _score_rows(md, claims, rows, paper_table, label, setting: str) -> None:
    """Markdown rows and accuracy / F1 claims for Table III / IV style results."""
    for key, s in rows:
        paper = paper_table.get(key, (None, None))
        md.append(
            f"| {key} | {s['accuracy']:.4f} | {s['precision']:.4f} | {s['recall']:.4f} | "
            f"{s['f1']:.4f} | {num(paper[0])} | {num(paper[1])} |"
        )
        name = f"Hidden layer, {label(key)}"
        claims.append(
            Claim(f"{name}: accuracy", pct(paper[0]), 100 * s["accuracy"], setting=setting)
        )
        claims.append(Claim(f"{name}: F1", paper[1], s["f1"], unit="", setting=setting))
