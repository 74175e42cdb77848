"""Where a training step's time goes: forward and backprop of every layer, timed apart.

    python -m benchmarks.layer_time --workload cnn --backend numpy --batch-size 128

Runs the workload's network in training mode on one backend, as the Trainer does
(the first layer gets no input gradient, in-place updates where the backend allows
them), on random images, and prints a Markdown table: median milliseconds per step
of each layer's forward and backprop and their share of the step. The backend is
synchronized before every clock read, so on a GPU the times are per layer too.
Speed is measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

import portnet as pn
from experiments.common import check_output_file, run_cli
from portnet.config import Number
from portnet.errors import ConfigError

from .isa import add_emulation_argument, restart_emulating
from .isa import label as isa_label
from .machine import cpu_model
from .workloads import WORKLOADS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.layer_time",
        description="Time the forward and backprop of every layer of a workload's network "
        "for one training step (median over steps), on one backend.",
    )
    parser.add_argument(
        "--workload", default="cnn", choices=sorted(WORKLOADS), help="network (default cnn)"
    )
    parser.add_argument("--backend", default="numpy", help="portnet backend (default numpy)")
    parser.add_argument("--device", help="device of the backend (default: its own)")
    count = Number(low=1, integer=True).arg
    parser.add_argument("--batch-size", type=count, default=128, help="images per step (128)")
    parser.add_argument(
        "--steps", type=count, default=10, help="timed steps after one warm-up step (10)"
    )
    parser.add_argument("--threads", type=count, help="limit BLAS/OpenMP/torch threads to N")
    parser.add_argument("--out", help="also write the Markdown table to this file")
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave glibc's malloc as it is (returning freed memory to the kernel), to "
        "measure what portnet.retain_freed_memory saves; the experiment commands call it",
    )
    parser.add_argument(
        "--against-torch",
        action="store_true",
        help="also time native torch's own modules for the same layers on the CPU "
        "(nn.Conv2d, nn.BatchNorm2d, ...; autograd, one layer at a time) and add their "
        "columns",
    )
    add_emulation_argument(parser)
    return parser


def time_layers(
    layers: list[pn.Layer], backend, batch_size: int, steps: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Median forward and backprop seconds per step of each layer.

    Parameters
    ----------
    layers : list of Layer
        The network, first layer taking flat 784-pixel rows.
    backend : Backend
    batch_size, steps : int
        Images per step; timed steps (one untimed warm-up step comes first).

    Returns
    -------
    list of dict
        One ``{"index", "layer", "forward_s", "backprop_s"}`` per layer.
    """
    xp = backend.xp
    host = pn.Sequential(layers).init(np.random.default_rng(seed))
    params = [{k: backend.asarray(v, "float32") for k, v in p.items()} for p in host]
    rng = np.random.default_rng(seed + 1)
    x0 = backend.asarray(rng.random((batch_size, 784), dtype=np.float32))
    random = pn.RandomStream(backend, seed + 2)
    forward = [[] for _ in layers]
    backward = [[] for _ in layers]
    for step in range(steps + 1):
        x, backprops = x0, []
        for i, (layer, p) in enumerate(zip(layers, params, strict=True)):
            ctx = pn.Context(
                xp=xp,
                training=True,
                random=random,
                need_input_grad=i > 0,
                check_inputs=False,
                ops=backend.ops,
            )
            backend.synchronize()
            start = time.perf_counter()
            x, back = layer.forward(p, x, ctx)
            backend.synchronize()
            if step:
                forward[i].append(time.perf_counter() - start)
            backprops.append(back)
        dy = backend.asarray(rng.standard_normal(tuple(x.shape), dtype=np.float32))
        for i in range(len(layers) - 1, -1, -1):
            backend.synchronize()
            start = time.perf_counter()
            dy, _ = backprops[i](dy)
            backend.synchronize()
            if step:
                backward[i].append(time.perf_counter() - start)
    return [
        {
            "index": i,
            "layer": _describe(layer),
            "forward_s": statistics.median(forward[i]),
            "backprop_s": statistics.median(backward[i]),
        }
        for i, layer in enumerate(layers)
    ]


def time_torch_layers(workload, batch_size: int, steps: int, seed: int = 0) -> list[dict]:
    """Median forward and backward seconds per step of native torch's module for each
    layer of a CNN workload (:func:`benchmarks.impl_torch.build_torch_network`).

    Each module runs on the detached output of the one before, so autograd's backward
    of one module is timed alone; the first module gets no input gradient, as in
    portnet's step. Returns ``{"forward_s", "backprop_s"}`` per layer.
    """
    import torch

    from .impl_torch import build_torch_network

    modules = build_torch_network(workload, seed).train()
    rng = np.random.default_rng(seed + 1)
    x0 = torch.from_numpy(rng.random((batch_size, 784), dtype=np.float32))
    forward = [[] for _ in modules]
    backward = [[] for _ in modules]
    for step in range(steps + 1):
        x, inputs, outputs = x0, [], []
        for i, module in enumerate(modules):
            x = x.detach().requires_grad_(i > 0)
            start = time.perf_counter()
            y = module(x)
            if step:
                forward[i].append(time.perf_counter() - start)
            inputs.append(x)
            outputs.append(y)
            x = y
        dy = torch.from_numpy(rng.standard_normal(tuple(x.shape), dtype=np.float32))
        for i in range(len(modules) - 1, -1, -1):
            start = time.perf_counter()
            if outputs[i].requires_grad:
                outputs[i].backward(dy)
            if step:
                backward[i].append(time.perf_counter() - start)
            dy = inputs[i].grad
    return [
        {"forward_s": statistics.median(f), "backprop_s": statistics.median(b)}
        for f, b in zip(forward, backward, strict=True)
    ]


def _load_average() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "unknown"


def _describe(layer: pn.Layer) -> str:
    config = layer.get_config()
    inner = ", ".join(f"{k}={v}" for k, v in config.items() if k not in ("init", "bias", "std"))
    return f"{type(layer).__name__}({inner})"


def markdown_table(rows: list[dict[str, Any]], title: str) -> str:
    """The rows as a Markdown table, with each layer's share of the step; with
    ``torch_forward_s``/``torch_backprop_s`` in the rows, native torch's columns too."""
    total = sum(r["forward_s"] + r["backprop_s"] for r in rows)
    against_torch = "torch_forward_s" in rows[0]
    head = "| # | layer | forward ms | backprop ms | share of step |"
    rule = "|---|---|---|---|---|"
    if against_torch:
        head += " torch forward ms | torch backward ms | x torch |"
        rule += "---|---|---|"
    lines = [f"## {title}", "", head, rule]
    for r in rows:
        both = r["forward_s"] + r["backprop_s"]
        line = (
            f"| {r['index']} | {r['layer']} | {r['forward_s'] * 1e3:.2f} | "
            f"{r['backprop_s'] * 1e3:.2f} | {100 * both / total:.1f} % |"
        )
        if against_torch:
            theirs = r["torch_forward_s"] + r["torch_backprop_s"]
            line += (
                f" {r['torch_forward_s'] * 1e3:.2f} | {r['torch_backprop_s'] * 1e3:.2f} | "
                f"{both / theirs:.2f} |"
            )
        lines.append(line)
    lines += ["", f"Step total (sum of medians): {total * 1e3:.1f} ms."]
    if against_torch:
        theirs = sum(r["torch_forward_s"] + r["torch_backprop_s"] for r in rows)
        native = f" Native torch, layer by layer: {theirs * 1e3:.1f} ms ({total / theirs:.2f}x)."
        lines[-1] += native
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    restart_emulating(args.emulate_isa, "benchmarks.layer_time", argv)
    if args.out:
        check_output_file(args.out, "--out")
    backend = pn.get_backend(args.backend, args.device)
    workload = WORKLOADS[args.workload]
    if args.against_torch:
        if workload.kind != "cnn":
            raise ConfigError("--against-torch compares the layers of the cnn workload only")
        import torch  # noqa: F401  before limit_threads, which limits loaded libraries only
    restore_threads = pn.limit_threads(args.threads)
    if not args.default_malloc:
        pn.retain_freed_memory()
    load_before = _load_average()
    rows = time_layers(workload.portnet_layers(), backend, args.batch_size, args.steps)
    if args.against_torch:
        native = time_torch_layers(workload, args.batch_size, args.steps)
        for row, theirs in zip(rows, native, strict=True):
            row.update({f"torch_{key}": value for key, value in theirs.items()})
    threads = f"{args.threads} thread(s)" if args.threads else "default threads"
    title = (
        f"{workload.label}: {backend.name} on {backend.device_name}, batch {args.batch_size}, "
        f"median of {args.steps} steps, {threads}" + (f", {isa_label()}" if isa_label() else "")
    )
    # The CPU and how busy it was: a shared machine's timings mean little without them.
    table = markdown_table(rows, title) + (
        f"CPU: {cpu_model()}; load average (1 min) {load_before} before, {_load_average()} after.\n"
    )
    print(table)
    if args.out:
        from portnet.io.model_file import atomic_write_bytes

        payload = table.encode("utf-8")
        atomic_write_bytes(args.out, lambda handle: handle.write(payload))
    restore_threads()
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
