"""Reproductions of the five reference studies S0 … S4 (listed in REPRODUCTION.md).

Run one with ``python -m experiments.reproduce s0`` (``s1`` … ``s4``); ``--quick``
runs a small, CI-sized version of the same study. The studies are listed in
:mod:`experiments.reproduce.registry`, which also resolves their configurations.
Each study module (or package) defines ``DEFAULTS`` (overridable by
``experiments/configs/<study>.yaml`` and flags), optionally ``QUICK``, and
``run(ctx) -> list[Claim]``; :mod:`experiments.reproduce.results` writes the claims
as ``results.json`` and a "paper vs portnet" Markdown table.
"""
