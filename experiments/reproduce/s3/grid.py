"""Study S3's hyper-parameter grid (its Table 1) as a sweep, and its top-k table (Table 2).

The grid's configurations are :mod:`portnet.sweeps` configurations (plain data, see
:func:`experiments.reproduce._rookie.rookie_config`), so they run on any machine with
portnet installed: here, in worker processes, or on a Dask cluster
(``python -m experiments.sweep``). Each gets its own seed, derived from its id.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.reproduce._rookie import ROOKIE_DEFAULTS, rookie_config
from experiments.reproduce.results import Claim
from portnet.sweeps import config_id, expand_grid, load_results, run_sweep, top_k

PAPER_TEST = 89.84

#: The paper's Table 1: the values searched.
TABLE1 = {
    "lr": [0.5, 0.4, 0.3, 0.2, 0.1, 0.05],
    "l2": [1e-3, 1e-4, 1e-5],
    "hidden": [[500, 324], [500, 256], [400, 324], [400, 256]],
    "decay": [0.8, 0.5, 0.3],
}

#: The paper's Table 2 (its top 10): lr, λ, hidden 1, hidden 2, decay, test accuracy %.
TABLE2 = [
    (0.2, 1e-3, 500, 324, 0.5, 89.84),
    (0.3, 1e-3, 400, 324, 0.2, 89.81),
    (0.1, 1e-3, 500, 324, 0.5, 89.79),
    (0.3, 1e-3, 400, 256, 0.2, 89.78),
    (0.4, 1e-3, 400, 324, 0.2, 89.78),
    (0.2, 1e-3, 400, 256, 0.2, 89.75),
    (0.3, 1e-3, 400, 256, 0.5, 89.74),
    (0.2, 1e-3, 500, 324, 0.2, 89.70),
    (0.2, 1e-3, 500, 256, 0.2, 89.70),
    (0.3, 1e-3, 500, 324, 0.2, 89.68),
]

#: Columns of the top-k table: (tag, header), as the paper's Table 2.
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("lr", "Learning rate"),
    ("l2", "λ"),
    ("hidden", "Hidden layer 1"),
    ("hidden", "Hidden layer 2"),
    ("decay", "LR decay"),
)


def grid_configs(config: dict[str, Any], full: bool = False) -> list[dict[str, Any]]:
    """The sweep configurations: Table 1 in full, or the reduced ``grid_*`` lists.

    ``config`` is an S3 configuration (its ``grid_*`` options, data and backend).
    Each configuration's seed is derived from its id, so every configuration has its
    own, reproducible seed.
    """
    base = {k: config.get(k, ROOKIE_DEFAULTS[k]) for k in ROOKIE_DEFAULTS}
    base.update(
        seed=None,
        epochs=int(config["grid_epochs"]),
        decay_every=int(config["grid_decay_every"]),
        train_size=config["grid_train_size"],
        backend=config.get("backend") or "numpy",
        device=config.get("device"),
        compile=bool(config.get("compile", False)),
    )
    grid = TABLE1 if full else {k: config[f"grid_{k}"] for k in ("lr", "l2", "hidden", "decay")}
    return [rookie_config(setting) for setting in expand_grid(base, grid)]


def top_k_markdown(
    records: Sequence[Mapping[str, Any]], k: int = 10, key: str = "test_accuracy"
) -> str:
    """The top-k table of sweep records as Markdown, in the layout of the paper's Table 2."""
    headers = [h for _, h in TABLE_COLUMNS] + ["Val. accuracy", "Test accuracy ↑", "epochs", "id"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in top_k(records, k, key):
        tags = r.get("tags") or {}
        hidden = list(tags.get("hidden", [])) + ["—", "—"]
        val = r.get("val_accuracy")
        cells = [
            f"{tags.get('lr', '—')}",
            f"{tags['l2']:g}" if "l2" in tags else "—",
            str(hidden[0]),
            str(hidden[1]),
            f"{tags.get('decay', '—')}",
            "—" if val is None else f"{100 * val:.2f} %",
            f"{100 * r[key]:.2f} %",
            str(r["config"]["epochs"]),
            f"`{r['id']}`",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paper_table2() -> str:
    lines = [
        "| Learning rate | λ | Hidden layer 1 | Hidden layer 2 | LR decay | Test accuracy ↑ |",
        "|---|---|---|---|---|---|",
    ]
    for lr, lam, h1, h2, decay, acc in TABLE2:
        lines.append(f"| {lr} | {lam:g} | {h1} | {h2} | {decay} | {acc:.2f} % |")
    return "\n".join(lines) + "\n"


def run_grid(ctx, config: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, int], float]:
    """Run the grid as a sweep (skipping finished configurations); its records and counts."""
    configs = grid_configs(config, full=config["grid"] == "full")
    grid_dir = Path(config["grid_dir"]) if config["grid_dir"] else ctx.out / "grid"
    ctx.log(f"grid ({config['grid']}): {len(configs)} configurations in {grid_dir}/")
    start = time.perf_counter()
    counts = run_sweep(
        configs,
        grid_dir,
        workers=int(config["grid_workers"]),
        scheduler=config["grid_scheduler"],
        dask_workers=config["grid_dask_workers"],
    )
    seconds = time.perf_counter() - start
    wanted = {config_id(c) for c in configs}
    records = [r for r in load_results(grid_dir) if r["id"] in wanted]
    return records, counts, seconds


def grid_section(ctx, config: dict[str, Any]) -> tuple[list[Claim], list[str]]:
    records, counts, _ = run_grid(ctx, config)
    # Compute time of the configurations, whether trained now or reused from result files.
    seconds = sum(r.get("seconds", 0.0) for r in records)
    if not records:
        return [], ["### Grid", "", "No grid results.", ""]
    table = top_k_markdown(records, int(config["top_k"]))
    k = min(int(config["top_k"]), len(records))
    print(f"\nTop {k} of {len(records)} grid configurations (Table 2):\n\n{table}", flush=True)
    best = top_k(records, 1)[0]
    best_cfg = _setting(best)
    words = (
        f"{config['grid']} grid of {len(records)} configurations, {best_cfg['epochs']} epochs "
        f"each (decay every {best_cfg['decay_every']}); best: lr {best_cfg['lr']}, "
        f"λ {best_cfg['l2']:g}, {'-'.join(map(str, best_cfg['hidden']))}, decay {best_cfg['decay']}"
    )
    claims = [
        Claim(
            "Test accuracy, best configuration of the grid",
            PAPER_TEST,
            100 * best["test_accuracy"],
            setting=words,
            seconds=seconds,
        )
    ]
    # The paper's Table 2 rows that the grid also ran: the same setting, side by side.
    for r in sorted(records, key=lambda r: r["id"]):
        c = _setting(r)
        key = (c["lr"], c["l2"], *c["hidden"][:2], c["decay"])
        for lr, lam, h1, h2, decay, acc in TABLE2:
            if key == (lr, lam, h1, h2, decay):
                claims.append(
                    Claim(
                        f"Grid: lr {lr}, λ {lam:g}, {h1}-{h2}, decay {decay}",
                        acc,
                        100 * r["test_accuracy"],
                        setting=f"{c['epochs']} epochs, decay every {c['decay_every']} "
                        "(paper: 500 epochs)",
                        seconds=r.get("seconds"),
                    )
                )
    md = [
        f"### Grid: top {k} of {len(records)} configurations (the paper's Table 2)",
        "",
        f"{config['grid'].capitalize()} grid, {best_cfg['epochs']} epochs per configuration, "
        f"learning rate decayed every {best_cfg['decay_every']} epochs, seeds derived from each "
        f"configuration's id. This run: {counts['ran']} configurations trained, "
        f"{counts['skipped']} reused from earlier result files, {seconds:.0f} s.",
        "",
        table,
    ]
    return claims, md


def _setting(record: Mapping[str, Any]) -> dict[str, Any]:
    """A grid record's Rookie setting: its tags and its epoch count."""
    return {**record["tags"], "epochs": record["config"]["epochs"]}
