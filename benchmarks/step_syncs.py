"""Per-step syncs, uploads and kernels of every training option, on the CPU instruments.

Run ``python -m benchmarks.step_syncs``. Each option of
:mod:`portnet.testing.options` trains, evaluates and predicts on the emulated CuPy
(array-api-compat's CuPy wrappers over NumPy, hidden syncs raising) and on
portnet's torch-cpu backend under PyTorch's dispatcher; the table gives what one
training step costs on each (see :mod:`portnet.testing.audit`). A GPU step waits
for the host at every ``_local_scalar_dense``, ``nonzero`` and ``lift_fresh``;
``tests/test_sync_free.py`` asserts that each is 0 per step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.common import check_output_file, run_cli
from portnet.io.model_file import atomic_write_bytes
from portnet.testing.audit import audit_emulated_cupy, audit_torch
from portnet.testing.options import OPTIONS

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "step_syncs.md"


def table(with_torch: bool = True) -> str:
    """The Markdown table: one row per option."""
    header = "| option | CuPy kernels | CuPy uploads | CuPy downloads |"
    rule = "|---|---|---|---|"
    if with_torch:
        header += " torch ops | torch kernels | `_local_scalar_dense` | `nonzero` | `lift_fresh` |"
        rule += "---|---|---|---|---|"
    lines = [header, rule]
    for option in OPTIONS:
        cupy = audit_emulated_cupy(option).worst_step
        cells = [option.name, cupy["kernels"], cupy["uploads"], cupy["downloads"]]
        if with_torch:
            torch = audit_torch(option).worst_step
            cells += [torch[k] for k in ("ops", "kernels", "_local_scalar_dense", "nonzero")]
            cells.append(torch["lift_fresh"] + torch["lift_fresh_copy"])
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.step_syncs", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="where to write the Markdown table (default benchmarks/results/step_syncs.md)",
    )
    args = parser.parse_args(argv)
    check_output_file(args.out, "--out")
    try:
        import torch  # noqa: F401

        with_torch = True
    except ImportError:
        with_torch = False
    text = (
        "# One training step of every option: syncs, uploads and kernels\n\n"
        "Counts per training step (the largest over 4 measured steps; every step of an "
        "option costs the same). CuPy: the emulated CuPy of `portnet.testing`, where a "
        "hidden sync raises. torch: portnet's torch-cpu backend at PyTorch's dispatcher.\n\n"
        + table(with_torch)
        + ("" if with_torch else "\n\nPyTorch is not installed: no dispatcher counts.")
        + "\n"
    )
    atomic_write_bytes(args.out, lambda handle: handle.write(text.encode("utf-8")))
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
