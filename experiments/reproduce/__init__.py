"""Reproductions of the five reference studies S0 … S4 (listed in REPRODUCTION.md).

Run one with ``python -m experiments.reproduce s0`` (``s1`` … ``s4``); ``--quick``
runs a small, CI-sized version of the same study. Each study module defines
``DEFAULTS`` (overridable by ``experiments/configs/<study>.yaml`` and flags) and
``run(ctx) -> list[Claim]``; :mod:`experiments.reproduce.results` writes the
claims as ``results.json`` and a "paper vs portnet" Markdown table.
"""

STUDIES = {
    "s0": "Logistic and softmax regression with PCA and 10-fold CV (Fashion-MNIST)",
    "s1": "MLP with momentum, L1/L2, activations and gradient checks (Fashion-MNIST)",
    "s2": "MLP study on KMNIST: learning rates, regularization, activations, topologies",
    "s3": "The 'Rookie' 784-500-324-10 network and its hyper-parameter grid (Fashion-MNIST)",
    "s4": "Binary and multiclass study with F1, batch-size timing and optimizers (MNIST)",
}
