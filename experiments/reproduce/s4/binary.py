"""S4's Tables I and II: the single sigmoid neuron by batch size, and its timing per backend."""

from __future__ import annotations

import os
import statistics
from typing import Any

import portnet as pn
from experiments.reproduce.results import Claim
from experiments.reproduce.s4.data import (
    batch_of,
    binary_model,
    binary_scores,
    fit,
    label_of,
    num,
)

#: Table II: batch size -> (accuracy, F1, seconds per epoch); None = whole training set.
PAPER_TABLE2 = {
    32: (0.9870, 0.9143, 5.0),
    64: (0.9906, 0.9506, 2.0),
    128: (0.9903, 0.9486, 1.0),
    1024: (0.9893, 0.9466, 0.3),
    None: (0.9916, 0.9573, 0.04),
}


def run_single_neuron(ctx, data, claims, md, task) -> dict[str, Any]:
    config = ctx.config
    n = len(data["y"])
    rows, runs = [], {}
    for size in config["batch_sizes"]:
        model = binary_model(ctx, None, "sigmoid", config["lr"])
        batch = batch_of(size, n)
        history = fit(
            ctx,
            model,
            data,
            "b",
            int(config["binary_epochs"]),
            batch,
            f"single neuron, batch {size}",
        )
        scores = binary_scores(model, data["X_test"], data["b_test"])
        seconds = statistics.median(history.history["seconds"][1:] or history.history["seconds"])
        runs[label_of(size)] = {"history": history, "scores": scores, "model": model}
        rows.append((label_of(size), scores, seconds))
        paper = PAPER_TABLE2.get(None if size in (None, "all") else int(size))
        setting = (
            f"{task}; sigmoid neuron, SGD lr {config['lr']}, batch {batch}, "
            f"{history.epochs_run} epochs"
        )
        claims.append(
            Claim(
                f"Single neuron, batch {size}: accuracy",
                100 * paper[0] if paper else None,
                100 * scores["accuracy"],
                setting=setting,
                seconds=sum(history.history["seconds"]),
            )
        )
        claims.append(
            Claim(
                f"Single neuron, batch {size}: F1",
                paper[1] if paper else None,
                scores["f1"],
                unit="",
                setting=setting,
            )
        )
    best = max(rows, key=lambda r: (r[1]["f1"], r[1]["accuracy"]))[0]
    md += [
        "### Table II: single sigmoid neuron, test set (NumPy, accuracy runs)",
        "",
        f"Binary task: {task}. Seconds per epoch here are from the accuracy runs (niced "
        "process); the per-backend timing table below is the measurement to compare.",
        "",
        "| batch size | accuracy | precision | recall | F1 | s / epoch | paper acc. | paper F1 | "
        "paper s / epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, s, seconds in rows:
        paper = PAPER_TABLE2.get(None if label == "all" else int(label), (None,) * 3)
        md.append(
            f"| {label} | {s['accuracy']:.4f} | {s['precision']:.4f} | {s['recall']:.4f} | "
            f"{s['f1']:.4f} | {seconds:.3f} | {num(paper[0])} | {num(paper[1])} | "
            f"{num(paper[2], '.2g')} |"
        )
    cm = runs[best]["scores"]["cm"]
    md += [
        "",
        f"### Table I: confusion matrix of the single neuron (batch {best}, best F1)",
        "",
        f"| | true {data['binary_names'][1]} | true {data['binary_names'][0]} |",
        "|---|---|---|",
        f"| predicted {data['binary_names'][1]} | {cm[1, 1]} (TP) | {cm[0, 1]} (FP) |",
        f"| predicted {data['binary_names'][0]} | {cm[1, 0]} (FN) | {cm[0, 0]} (TN) |",
        "",
    ]
    return {"runs": runs, "best": best}


def run_timing(ctx, data) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Seconds per epoch of the single neuron per backend and batch size (median after warm-up).

    Timings are taken at normal priority (the study itself may run under ``nice``)
    where the process may raise its priority; the machine is shared, so they are noisy.
    """
    config = ctx.config
    epochs = max(2, int(config["timing_epochs"]))
    available = pn.available_backends()
    old_nice = _raise_priority() if config["timing_unniced"] else None
    table: dict[str, dict[str, float]] = {}
    devices: dict[str, str] = {}
    limits = pn.limit_threads(config["timing_threads"])
    try:
        for name in config["timing_backends"]:
            if not str(available.get(name, "")).startswith("ok"):
                ctx.log(f"timing: backend {name} not available here ({available.get(name)})")
                continue
            device = ctx.backend.device_name if name == ctx.backend.name else None
            backend = pn.get_backend(name, device)
            devices[name] = backend.device_name
            table[name] = {}
            for size in config["batch_sizes"]:
                model = binary_model(ctx, None, "sigmoid", config["lr"], backend=backend)
                history = model.fit(
                    data["X"],
                    data["b"],
                    epochs=epochs,
                    batch_size=batch_of(size, len(data["b"])),
                    verbose=0,
                )
                table[name][label_of(size)] = statistics.median(history.history["seconds"][1:])
            ctx.log(
                f"timing {name}: "
                + ", ".join(f"batch {k} {v:.3f} s/epoch" for k, v in table[name].items())
            )
    finally:
        limits()
        if old_nice is not None:
            os.setpriority(os.PRIO_PROCESS, 0, old_nice)
    return table, devices


def _raise_priority() -> int | None:
    # A study run under `nice` should still time epochs at normal priority; only
    # root may lower niceness, so elsewhere the timings run niced (and say so).
    try:
        old = os.getpriority(os.PRIO_PROCESS, 0)
        if old > 0:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
            return old
    except (OSError, AttributeError):
        return None
    return None


def timing_markdown(table, data, threads=None) -> list[str]:
    if not table:
        return []
    sizes = list(next(iter(table.values())))
    header = "| batch size | " + " | ".join(f"{b} s / epoch" for b in table) + " | paper (Keras) |"
    lines = [
        "### Table II timing: single neuron, seconds per epoch per backend",
        "",
        f"{len(data['y'])} training images per epoch; {_threads_words(threads)}; median of "
        "the epochs after one warm-up epoch, each epoch ending with the loop's one "
        "device-to-host read (so it is synchronised). "
        "Measured at normal priority on a shared 2-core machine while other jobs ran: "
        "timings are noisy, compare ratios rather than absolute values.",
        "",
        header,
        "|---|" + "---|" * (len(table) + 1),
    ]
    for size in sizes:
        paper = PAPER_TABLE2.get(None if size == "all" else int(size), (None,) * 3)[2]
        cells = " | ".join(f"{table[b].get(size, float('nan')):.3f}" for b in table)
        lines.append(f"| {size} | {cells} | {num(paper, '.2g')} |")
    return [*lines, ""]


def _threads_words(threads) -> str:
    if not threads:
        return "BLAS and torch with their default threads"
    return f"BLAS and torch limited to {threads} thread(s) (timing_threads)"
