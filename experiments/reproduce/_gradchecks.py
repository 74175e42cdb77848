"""The gradient-check tables of studies S1 (its Table 3) and S2 (its Table 1).

Both compare backprop with central differences (:func:`portnet.gradient_check`) for
the kinds of weight each paper lists, record the rows in ``gradient_check.json`` and
return a Markdown table beside the paper's own.
"""

from __future__ import annotations

import numpy as np

import portnet as pn
from experiments.reproduce._s012 import markdown, record
from experiments.reproduce.results import Claim

# Table 3 of the paper: (label, index, backprop, numerical, abs difference).
S1_PAPER_GRADCHECK = [
    ("Output bias weight", "784, 79", 1.831570e-13, -2.775558e-13, 4.607127e-13),
    ("Hidden bias weight", "128, 1", 0.001381, 0.001381, 2.291352e-08),
    ("Hidden → output weight 1", "304, 81", 7.494840e-06, 3.170658e-06, 4.324181e-06),
    ("Hidden → output weight 2", "181, 40", -4.270080e-14, -3.365363e-14, 9.047170e-15),
    ("Input → hidden weight 1", "44, 7", -5.081859e-07, -5.081944e-07, 8.461761e-12),
    ("Input → hidden weight 2", "47, 2", -7.732324e-09, -7.732463e-09, 1.382703e-13),
]
# Table 1: (E(w+eps), E(w-eps), approximated gradient, backprop gradient, abs error).
S2_PAPER_GRADCHECK = {
    "Hidden weight 1": (2.915601, 2.915669, -0.003394, -0.003394, 4.689468e-10),
    "Hidden weight 2": (1.568530, 1.568079, 0.02255498, 0.02255499, 6.128687e-9),
    "Output weight 1": (4.945193, 4.944855, 0.0168997, 0.0168995, 2.532141e-7),
    "Output weight 2": (2.789656, 2.788244, 0.0706445, 0.0706437, 7.989562e-7),
    "Hidden bias": (2.789018, 2.788877, 0.0070264, 0.0070262, 1.803573e-7),
    "Output bias": (1.052991, 1.052658, 0.016604, 0.016603, 2.630992e-7),
}


def s1_table3(ctx, model, X, y) -> tuple[str, list[Claim]]:
    """Table 3: backprop vs central differences for the paper's six kinds of weight."""
    cfg = ctx.config
    rng = np.random.default_rng(cfg["seed"] + 3)
    hidden, n_in = cfg["hidden"], X.shape[1]
    # Dense layers are at positions 0 (input -> hidden) and 2 (hidden -> output).
    kinds = [
        ("Output bias weight", (2, "b", (int(rng.integers(10)),))),
        ("Hidden bias weight", (0, "b", (int(rng.integers(hidden)),))),
        ("Hidden → output weight 1", (2, "W", (int(rng.integers(hidden)), int(rng.integers(10))))),
        ("Hidden → output weight 2", (2, "W", (int(rng.integers(hidden)), int(rng.integers(10))))),
        ("Input → hidden weight 1", (0, "W", (int(rng.integers(n_in)), int(rng.integers(hidden))))),
        ("Input → hidden weight 2", (0, "W", (int(rng.integers(n_in)), int(rng.integers(hidden))))),
    ]
    n = int(cfg["gradcheck_samples"])
    rows = pn.gradient_check(
        model, X[:n], y[:n], entries=[entry for _, entry in kinds], eps=cfg["gradcheck_eps"]
    )
    record(
        ctx,
        "gradient_check.json",
        "rows",
        [r.to_dict() for r in rows],
    )
    table_rows, claims = [], []
    for (label, _), row, paper in zip(kinds, rows, S1_PAPER_GRADCHECK, strict=True):
        table_rows.append(
            (
                label,
                ", ".join(map(str, row.index)),
                f"{row.backprop:.6e}",
                f"{row.numerical:.6e}",
                f"{row.abs_diff:.3e}",
                f"{row.rel_error:.2e}",
                f"{paper[4]:.3e}",
            )
        )
        claims.append(
            Claim(
                f"Gradient check |backprop − numerical|, {label.lower()}",
                paper[4],
                row.abs_diff,
                "",
                f"trained tanh MLP, float64, eps {cfg['gradcheck_eps']:g}, loss of {n} "
                f"training pattern(s); backprop {row.backprop:.4e}, numerical "
                f"{row.numerical:.4e}, relative error {row.rel_error:.1e}",
            )
        )
    text = markdown(
        [
            "weight",
            "index",
            "backprop",
            "numerical",
            "abs. difference",
            "rel. error",
            "paper abs. difference",
        ],
        table_rows,
        "Table 3: gradient check on the trained 784-128-10 tanh MLP (portnet)",
    )
    text += markdown(
        ["weight", "index", "backprop", "numerical", "abs. difference"],
        [(a, b, f"{c:.6e}", f"{d:.6e}", f"{e:.6e}") for a, b, c, d, e in S1_PAPER_GRADCHECK],
        "Table 3 as printed in the paper (its indices count the bias as an extra input)",
    )
    return text, claims


def s2_table1(ctx, X, y, hidden: list[int], activation: str) -> tuple[str, list[Claim]]:
    """Table 1 on the untrained default network and one training pattern, in float64."""
    cfg = ctx.config
    eps = float(cfg["gradcheck_eps"])
    layers = pn.mlp([784, *hidden, 10], activation)
    # Data loss only, as the paper's E^n: a float64 copy without the L2 penalty.
    model = pn.Model(
        layers, optimizer="sgd", backend=ctx.backend, dtype="float64", seed=cfg["seed"]
    )
    weights = model.get_weights()
    rng = np.random.default_rng(cfg["seed"] + 5)
    last = len(hidden) * 2  # index of the output Dense layer
    n_hidden = hidden[0]
    # Input pixels that differ from the image's background, so the two input weights
    # checked do not share one input value (and so one gradient up to the unit's delta).
    pixels = rng.permutation(np.flatnonzero(X[0] != X[0].min()))
    entries = {
        "Hidden weight 1": (0, "W", (int(pixels[0]), int(rng.integers(n_hidden)))),
        "Hidden weight 2": (0, "W", (int(pixels[1]), int(rng.integers(n_hidden)))),
        "Output weight 1": (last, "W", (int(rng.integers(hidden[-1])), int(rng.integers(10)))),
        "Output weight 2": (last, "W", (int(rng.integers(hidden[-1])), int(rng.integers(10)))),
        "Hidden bias": (0, "b", (int(rng.integers(n_hidden)),)),
        "Output bias": (last, "b", (int(rng.integers(10)),)),
    }
    x1, y1 = X[:1], y[:1]
    rows = pn.gradient_check(model, x1, y1, entries=list(entries.values()), eps=eps)
    record(
        ctx,
        "gradient_check.json",
        "rows",
        [r.to_dict() for r in rows],
    )

    def loss_with(layer, key, index, delta):
        changed = [{k: np.array(v, dtype=np.float64) for k, v in w.items()} for w in weights]
        changed[layer][key][index] += delta
        model.set_weights(changed)
        return model.evaluate(x1, y1)["loss"]

    lines, claims = [], []
    for (label, (layer, key, index)), row in zip(entries.items(), rows, strict=True):
        plus, minus = loss_with(layer, key, index, eps), loss_with(layer, key, index, -eps)
        paper = S2_PAPER_GRADCHECK[label]
        lines.append(
            (
                label,
                ", ".join(map(str, index)),
                f"{plus:.6f}",
                f"{minus:.6f}",
                f"{row.numerical:.7g}",
                f"{row.backprop:.7g}",
                f"{row.abs_diff:.3e}",
                f"{paper[4]:.3e}",
            )
        )
        claims.append(
            Claim(
                f"Table 1 gradient check |approx − backprop|, {label.lower()}",
                paper[4],
                row.abs_diff,
                "",
                f"untrained 784-{'-'.join(map(str, hidden))}-10 {activation}, float64, "
                f"eps {eps:g}, one {cfg['dataset']} training pattern; E(w+eps) {plus:.6f}, "
                f"E(w-eps) {minus:.6f}, "
                f"approx {row.numerical:.6g}, backprop {row.backprop:.6g}",
            )
        )
    model.set_weights(weights)
    text = markdown(
        [
            "weight",
            "index",
            "E(w+ε)",
            "E(w−ε)",
            "approximated gradient",
            "backprop gradient",
            "abs. error",
            "paper abs. error",
        ],
        lines,
        f"Table 1: gradient check, ε = {eps:g} (portnet; the paper's errors beside)",
    )
    text += markdown(
        ["weight", "E(w+ε)", "E(w−ε)", "approximated", "backprop", "abs. error"],
        [(k, *(f"{v:.7g}" for v in vals)) for k, vals in S2_PAPER_GRADCHECK.items()],
        "Table 1 as printed in the paper (KMNIST)",
    )
    return text, claims
