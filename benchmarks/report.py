"""Writing the results: JSON, a Markdown report and a bar chart, each written atomically."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from portnet.io.model_file import atomic_write_bytes


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` as indented UTF-8 JSON (NaN becomes ``null``)."""
    text = json.dumps(json_safe(document), indent=2) + "\n"
    atomic_write_bytes(path, lambda handle: handle.write(text.encode("utf-8")))


def json_safe(value: Any) -> Any:
    """``value`` with every float NaN replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _groups(results: list[dict[str, Any]]) -> list[tuple[str, int]]:
    seen: dict[tuple[str, int], None] = {}
    for entry in results:
        seen[(entry["workload"], entry["batch_size"])] = None
    return list(seen)


def _unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _time_cell(entry: dict[str, Any]) -> str:
    if entry["status"] != "ok":
        return "skipped"
    return f"{entry['median_s']:.3f} ({entry['min_s']:.3f}–{entry['max_s']:.3f})"


def timing_table(results: list[dict[str, Any]], workload: str) -> str:
    """Markdown table for one workload: one row per implementation, columns per batch size."""
    rows = [e for e in results if e["workload"] == workload]
    sizes = _unique(e["batch_size"] for e in rows)
    names = _unique(e["implementation"] for e in rows)
    header = ["implementation"]
    for bs in sizes:
        header += [f"batch {bs}: median s (min–max)", "× torch", "× gemm-only"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_key = {(e["implementation"], e["batch_size"]): e for e in rows}
    for name in names:
        cells = [f"`{name}`"]
        for bs in sizes:
            entry = by_key.get((name, bs))
            if entry is None:
                cells += ["–", "–", "–"]
                continue
            cells += [
                _time_cell(entry),
                _ratio(entry.get("ratio_to_torch")),
                _ratio(entry.get("ratio_to_gemm_only")),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_table(results: list[dict[str, Any]]) -> str:
    """Markdown table of median process CPU seconds per epoch (all threads)."""
    groups = _groups(results)
    names = _unique(e["implementation"] for e in results if e["status"] == "ok")
    by_key = {(e["implementation"], e["workload"], e["batch_size"]): e for e in results}
    header = ["implementation"] + [f"{w} b{bs}" for w, bs in groups]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in names:
        cells = [f"`{name}`"]
        for w, bs in groups:
            entry = by_key.get((name, w, bs))
            ok = entry is not None and entry["status"] == "ok"
            cells.append(f"{entry['cpu_median_s']:.3f}" if ok else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _op_list(ops: dict[str, int]) -> str:
    return ", ".join(f"{name} ×{count}" for name, count in ops.items())


def ops_section(op_counts: list[dict[str, Any]]) -> str:
    """Markdown for the per-step operation counts (one count per workload and path)."""
    if not op_counts:
        return "No operation counts (no implementation of this run has a counter).\n"
    lines = [
        "| workload | implementation | ops | kernels | of which accuracy count "
        "| host syncs | uploads | counted on |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in op_counts:
        lines.append(
            f"| {c['workload']} | `{c['implementation']}` | {c['total']} | {c['kernels']} | "
            f"{c['metric_ops']} | {c['syncs']} | {c['scalar_uploads']} | {c['counted_on']} |"
        )
    lines.append("")
    lines.append(
        "Each step is counted on its implementation's own path, after one uncounted step. "
        "Torch-based steps are counted at PyTorch's dispatcher (`TorchDispatchMode`); "
        "`portnet-cupy`'s on the emulated CuPy (`portnet.testing.emulated_cupy`: "
        "array-api-compat's CuPy wrappers over NumPy, one kernel per operation that "
        "computes); array-api-strict has no dispatcher, so its portable path is counted on "
        "torch-cpu. *Kernels* leaves out views (`t`, `transpose`, `view`, reshapes, basic "
        "slices) and profiler markers, which launch nothing on a GPU. portnet's step "
        "includes its accuracy count; the native torch step is forward, loss, `zero_grad`, "
        "backward and `optimizer.step` (its accuracy count, done outside the step in the "
        "timed loop, would add the ops in the accuracy column). *Host syncs* are "
        "device-to-host reads (`_local_scalar_dense`, `nonzero`); *uploads* are host data "
        "copied to the device inside the step (`lift_fresh`): on CUDA each is a blocking "
        "copy that `portnet.count_transfers` does not see."
    )
    lines.append("")
    for c in op_counts:
        lines.append(f"- **{c['workload']}, `{c['implementation']}`**: {_op_list(c['ops'])}")
    return "\n".join(lines) + "\n"


def transfers_section(results: list[dict[str, Any]]) -> str:
    """Markdown table of host transfers per epoch for the portnet implementations."""
    rows = [e for e in results if e.get("transfers_per_epoch")]
    if not rows:
        return "No portnet implementation ran.\n"
    lines = [
        "| workload | batch | implementation | to device | to host | total |",
        "|---|---|---|---|---|---|",
    ]
    for e in rows:
        t = e["transfers_per_epoch"]
        lines.append(
            f"| {e['workload']} | {e['batch_size']} | `{e['implementation']}` | "
            f"{t['to_device']} | {t['to_host']} | {t['total']} |"
        )
    return "\n".join(lines) + "\n"


def _machine_lines(machine: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    pools = "; ".join(
        f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads"
        + (f", {p['architecture']}" if p.get("architecture") else "")
        + ")"
        for p in machine["threadpools"]
    )
    env = ", ".join(f"{k}={v}" for k, v in machine["environment"].items() if v is not None)
    torch = machine.get("torch") or {}
    lines = [
        f"- CPU: {machine['cpu_model']}, {machine['cpus_usable']} usable cores "
        f"({', '.join(machine['cpu_flags']) or 'no AVX flags seen'})",
        f"- Python {machine['python']} on {machine['platform']}",
        f"- Versions: {versions}",
        f"- Thread pools (threadpoolctl): {pools}",
        f"- Environment: {env or 'none of the recorded variables set'}",
        *([f"- Kernels: {machine['emulated']}"] if machine.get("emulated") else []),
    ]
    if "freed_memory_retained" in machine:
        lines.append(
            "- malloc: "
            + (
                "freed memory kept for reuse (portnet.retain_freed_memory)"
                if machine["freed_memory_retained"]
                else "the C library's default (freed memory returned to the kernel)"
            )
        )
    if torch:
        lines.append(
            f"- torch: {torch['num_threads']} intra-op / {torch['num_interop_threads']} "
            f"inter-op threads, MKL {torch['mkl']}, oneDNN {torch['mkldnn']}"
        )
    gpus = machine.get("gpus") or []
    for gpu in gpus:
        lines.append(
            f"- GPU {gpu.get('index')}: {gpu.get('name')}, driver {gpu.get('driver')}, "
            f"CUDA runtime {gpu.get('cuda_runtime')} (seen by {gpu.get('source')})"
        )
    if not gpus:
        lines.append("- GPU: none seen (nvidia-smi, torch.cuda and CuPy)")
    sched = machine.get("scheduling") or {}
    if sched:
        lines.append(
            f"- Scheduling: nice {sched.get('nice')}, autogroup {sched.get('autogroup')} "
            f"(autogroups enabled: {sched.get('autogroup_enabled')})"
        )
    load = machine.get("load_average")
    after = machine.get("load_average_after")
    if load:
        lines.append(
            f"- Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load)}"
            + (f"; after: {', '.join(f'{x:.2f}' for x in after)}" if after else "")
        )
    return lines


def markdown_report(document: dict[str, Any]) -> str:
    """The whole Markdown report: settings, timing tables, op counts, transfers, notes."""
    settings, results = document["settings"], document["results"]
    emulated = document["machine"].get("emulated")
    out = [
        "# Epoch time: portnet and the alternatives"
        + (f" ({emulated.split(' (')[0]})" if emulated else ""),
        "",
        *([f"**Emulated:** {emulated}; see the machine record below.", ""] if emulated else []),
        f"Command: `{document['command']}`",
        "",
        f"{settings['dataset']}, {settings['train_size']} training images, float32 inputs in "
        f"[0, 1]; SGD + momentum 0.9, lr 0.01; seconds per epoch over {settings['repeats']} "
        f"interleaved repeats of {settings['epochs']} epoch(s) after one warm-up epoch, "
        "median (min–max). Ratios divide medians from this run. Threads: "
        + (
            "each library's default"
            if settings.get("threads") is None
            else f"every pool limited to {settings['threads']}"
        )
        + ".",
        "",
    ]
    for workload in _unique(e["workload"] for e in results):
        label = next(e["workload_label"] for e in results if e["workload"] == workload)
        out += [f"## {label}", "", timing_table(results, workload), ""]
    out += [
        "## Process CPU seconds per epoch (median)",
        "",
        "All threads of the benchmark process, from `time.process_time`. Less disturbed by "
        "other processes than wall time; with several threads per library it also counts "
        "threads spinning while they wait.",
        "",
        cpu_table(results),
        "",
    ]
    out += ["## Operations per training step", "", ops_section(document["op_counts"])]
    out += ["## Host transfers per epoch", "", transfers_section(results)]
    out += ["## Machine", ""] + _machine_lines(document["machine"]) + [""]
    out += ["## Notes", ""]
    for name, note in document["notes"].items():
        if note:
            out.append(f"- `{name}`: {note}")
    for e in results:
        if e.get("compile_s") is not None:
            out.append(
                f"- `{e['implementation']}` ({e['workload']}, batch {e['batch_size']}) compiled "
                f"its step in {e['compile_s']:.3f} s, once, outside the timed epochs"
            )
    skipped = {e["implementation"]: e["reason"] for e in results if e["status"] != "ok"}
    for name, reason in skipped.items():
        out.append(f"- `{name}` skipped: {reason}")
    return "\n".join(out) + "\n"


def write_markdown(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda handle: handle.write(text.encode("utf-8")))


def write_plot(path: Path, results: list[dict[str, Any]], title: str) -> None:
    """Bar chart: one panel per (workload, batch size), median with min–max error bars."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    groups = _groups(results)
    workloads = _unique(w for w, _ in groups)
    sizes = _unique(bs for _, bs in groups)
    names = _unique(e["implementation"] for e in results if e["status"] == "ok")
    cmap = plt.get_cmap("tab10")
    colours = {name: cmap(i % 10) for i, name in enumerate(names)}
    fig, axes = plt.subplots(
        len(workloads),
        len(sizes),
        figsize=(4.2 * len(sizes) + 1.5, 3.4 * len(workloads) + 0.8),
        squeeze=False,
    )
    for row, workload in enumerate(workloads):
        for col, bs in enumerate(sizes):
            ax = axes[row][col]
            entries = [
                e
                for e in results
                if e["workload"] == workload and e["batch_size"] == bs and e["status"] == "ok"
            ]
            ax.set_title(f"{workload}, batch {bs}")
            ax.set_ylabel("seconds per epoch")
            if not entries:
                ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes)
                continue
            xs = range(len(entries))
            med = [e["median_s"] for e in entries]
            err = [
                [e["median_s"] - e["min_s"] for e in entries],
                [e["max_s"] - e["median_s"] for e in entries],
            ]
            ax.bar(
                xs,
                med,
                yerr=err,
                capsize=3,
                color=[colours[e["implementation"]] for e in entries],
            )
            for x, e in zip(xs, entries, strict=True):
                if e.get("ratio_to_torch") is not None:
                    ax.annotate(
                        f"{e['ratio_to_torch']:.2f}×",
                        (x, e["max_s"]),
                        textcoords="offset points",
                        xytext=(0, 3),
                        ha="center",
                        fontsize=7,
                    )
            ax.set_xticks(list(xs))
            ax.set_xticklabels(
                [e["implementation"] for e in entries], rotation=40, ha="right", fontsize=7
            )
            ax.set_xlabel("implementation (label: median × torch)")
            ax.margins(y=0.15)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[n]) for n in names]
    fig.legend(handles, names, loc="upper right", fontsize=7, title="implementation")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 0.83, 0.96))
    atomic_write_bytes(path, lambda handle: fig.savefig(handle, format="png", dpi=110))
    plt.close(fig)
