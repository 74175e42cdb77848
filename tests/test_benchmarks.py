"""The epoch-time benchmark runs end to end in its --quick mode and writes well-formed results.

Only the shape of the output is checked, never speed: speed is measured by the
benchmarks themselves (benchmarks/README.md, "Reading the numbers").
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMPLEMENTATIONS = {
    "portnet-numpy",
    "portnet-torch",
    "portnet-array_api_strict",
    "portnet-cupy",
    "portnet-torch-cuda",
    "portnet-jax",
    "portnet-jax-jit",
    "portnet-jax-cuda",
    "portnet-jax-jit-cuda",
    "torch",
    "torch-cuda",
    "sklearn",
    "numpy-naive-f64",
    "numpy-careful",
    "gemm-only",
}

ENTRY_KEYS = {
    "workload",
    "batch_size",
    "implementation",
    "status",
    "reason",
    "median_s",
    "min_s",
    "max_s",
    "times_s",
    "ratio_to_torch",
    "transfers_per_epoch",
    "ops_per_step",
    "op_list",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """Run ``python -m benchmarks.epoch_time --quick`` once; return its JSON and output dir."""
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("bench")
    json_path = out / "quick.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.epoch_time", "--quick", "--json", str(json_path)]
        + ["--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(json_path.read_text()), out, proc.stdout


@pytest.fixture(scope="module")
def quick_cnn_run(tmp_path_factory):
    """``--quick --workload cnn`` on 256 images (two steps of 128): JSON and stdout."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("yaml")
    out = tmp_path_factory.mktemp("bench_cnn")
    json_path = out / "cnn.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.epoch_time", "--quick", "--workload", "cnn"]
        + ["--train-size", "256", "--json", str(json_path), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(json_path.read_text()), proc.stdout


def test_json_has_machine_and_one_entry_per_implementation(quick_run):
    document, _, _ = quick_run
    assert {"machine", "results", "settings", "op_counts"} <= set(document)
    machine = document["machine"]
    for key in ("cpu_model", "python", "versions", "threadpools", "environment"):
        assert key in machine
    assert {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"} <= set(machine["environment"])
    names = [e["implementation"] for e in document["results"]]
    assert sorted(names) == sorted(IMPLEMENTATIONS), "one entry per implementation"
    for entry in document["results"]:
        assert ENTRY_KEYS <= set(entry), entry["implementation"]
        assert entry["workload"] == "mlp-s3"
        assert entry["status"] in ("ok", "skipped")


def test_ok_entries_have_positive_times_and_skipped_ones_a_reason(quick_run):
    document, _, _ = quick_run
    results = {e["implementation"]: e for e in document["results"]}
    # These need only NumPy and portnet's own dependencies: they must run everywhere.
    for name in ("portnet-numpy", "numpy-naive-f64", "numpy-careful", "gemm-only"):
        assert results[name]["status"] == "ok", results[name]["reason"]
    for entry in results.values():
        if entry["status"] == "ok":
            assert entry["min_s"] > 0
            assert entry["min_s"] <= entry["median_s"] <= entry["max_s"]
            assert len(entry["times_s"]) == document["settings"]["repeats"]
        else:
            assert entry["reason"], entry["implementation"]
            assert entry["median_s"] is None
    if results["torch"]["status"] == "ok":
        assert results["torch"]["ratio_to_torch"] == pytest.approx(1.0)
        for entry in results.values():
            if entry["status"] == "ok":
                assert entry["ratio_to_torch"] > 0


def test_portnet_transfers_and_op_counts(quick_run):
    document, _, _ = quick_run
    portnet = [
        e
        for e in document["results"]
        if e["implementation"].startswith("portnet-") and e["status"] == "ok"
    ]
    assert portnet, "no portnet implementation ran"
    for entry in portnet:
        transfers = entry["transfers_per_epoch"]
        assert transfers["total"] <= 2, (entry["implementation"], transfers)
    # The emulated CuPy counts portnet-cupy's own step, with no GPU and no torch.
    results = {e["implementation"]: e for e in document["results"]}
    counts = {c["implementation"]: c for c in document["op_counts"]}
    cupy = counts["portnet-cupy"]
    assert "emulated CuPy" in cupy["counted_on"] and "matmul" in cupy["ops"]
    assert cupy["syncs"] == 0 and cupy["scalar_uploads"] == 0
    assert results["portnet-cupy"]["ops_per_step"] == cupy["total"]
    if not any(e["implementation"] == "portnet-torch" for e in portnet):
        pytest.skip("the other op counts need PyTorch")
    for name in ("portnet-torch", "portnet-array_api_strict", "torch"):
        entry = results[name]
        assert entry["op_list"] and sum(entry["op_list"].values()) == entry["ops_per_step"]
        assert "mm" in entry["op_list"] or "addmm" in entry["op_list"], name
        assert counts[name]["syncs"] == 0 and counts[name]["scalar_uploads"] == 0, name
    assert "portable" in counts["portnet-array_api_strict"]["counted_on"]
    assert results["portnet-numpy"]["op_list"] is None  # NumPy has no dispatcher to count at


def test_markdown_and_plot_are_written(quick_run):
    _, out, stdout = quick_run
    markdown = (out / "quick.md").read_text()
    assert "| `portnet-numpy` |" in markdown
    assert "Operations per training step" in markdown
    assert "Host transfers per epoch" in markdown
    assert (out / "quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The table is printed at the end, after one progress line per measurement.
    assert "repeat 1/1 portnet-numpy" in stdout
    assert "| `gemm-only` |" in stdout


def test_cnn_workload_entries(quick_cnn_run):
    document, stdout = quick_cnn_run
    assert document["settings"]["workloads"] == ["cnn"]
    results = {e["implementation"]: e for e in document["results"]}
    assert sorted(results) == sorted(IMPLEMENTATIONS), "one entry per implementation"
    for entry in results.values():
        assert ENTRY_KEYS <= set(entry), entry["implementation"]
        assert entry["workload"] == "cnn" and entry["n_train"] == 256
        assert "conv3x3" in entry["workload_label"]
    # Dense-only implementations are listed, skipped, with the reason.
    for name in ("sklearn", "numpy-naive-f64", "numpy-careful"):
        assert results[name]["status"] == "skipped"
        assert "conv" in results[name]["reason"].lower() or "CNN" in results[name]["reason"]
        assert results[name]["median_s"] is None
    for name in ("portnet-numpy", "gemm-only"):
        assert results[name]["status"] == "ok", results[name]["reason"]
    for entry in results.values():
        if entry["status"] == "ok":
            assert 0 < entry["min_s"] <= entry["median_s"] <= entry["max_s"]
            assert entry["ratio_to_gemm_only"] > 0
    assert math.isfinite(results["portnet-numpy"]["final_loss"])
    # Transfers: the permutation and the end-of-epoch read; array-api-strict has no
    # random numbers, so each random layer (dropout, flip, shift) draws on the host: one
    # upload per step each.
    import portnet as pn
    from benchmarks.workloads import WORKLOADS

    steps = results["portnet-numpy"]["steps_per_epoch"]
    random_layers = sum(
        isinstance(layer, pn.Dropout | pn.RandomFlip | pn.RandomShift)
        for layer in WORKLOADS["cnn"].portnet_layers()
    )
    for name, entry in results.items():
        if name.startswith("portnet-") and entry["status"] == "ok":
            host_draws = random_layers * steps if name == "portnet-array_api_strict" else 0
            limit = 2 + host_draws
            assert entry["transfers_per_epoch"]["total"] <= limit, (name, entry)
    if results["torch"]["status"] != "ok":
        pytest.skip("native torch and the op counts need PyTorch")
    assert results["torch"]["ratio_to_torch"] == pytest.approx(1.0)
    assert math.isfinite(results["torch"]["final_loss"])
    assert "| `torch` |" in stdout
    for name in ("portnet-cupy", "portnet-torch", "torch"):
        entry = results[name]
        assert entry["ops_per_step"] > 0
        assert sum(entry["op_list"].values()) == entry["ops_per_step"]
    assert "convolution" in results["torch"]["op_list"]
    assert "native_batch_norm" in results["torch"]["op_list"]
    assert "mm" in results["portnet-torch"]["op_list"]
    # im2col by shifted slices stacked on CuPy's own path, with no gather left
    assert "stack" in results["portnet-cupy"]["op_list"]
    assert "take" not in results["portnet-cupy"]["op_list"]
    counted = {c["implementation"] for c in document["op_counts"]}
    assert {"portnet-torch", "portnet-array_api_strict", "portnet-cupy", "torch"} <= counted


def test_cnn_torch_network_starts_from_portnet_weights():
    """Native torch and portnet compute the same logits from the shared initial weights."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("yaml")
    import numpy as np

    import portnet as pn
    from benchmarks.implementations import build_portnet_model, build_torch_network
    from benchmarks.workloads import WORKLOADS

    workload = WORKLOADS["cnn"]
    X = np.random.default_rng(1).random((6, 784), dtype=np.float32)
    model = build_portnet_model(workload, pn.get_backend("numpy"), seed=3)
    net = build_torch_network(workload, seed=3).eval()  # eval: running stats, no dropout
    with torch.no_grad():
        expected = net(torch.from_numpy(X)).numpy()
    logits = model.trainer.network.forward(
        model.params, model.backend.asarray(X), pn.Context(xp=model.backend.xp, training=False)
    )[0]
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-4)


def test_cnn_gemm_floor_products():
    """The CNN floor's per-sample products: two im2col convolutions, then two dense layers."""
    pytest.importorskip("yaml")
    from benchmarks.workloads import WORKLOADS

    shapes = WORKLOADS["cnn"].product_shapes()
    assert [s.kind for s in shapes] == ["conv", "conv", "dense", "dense"]
    assert (shapes[0].rows, shapes[0].k) == (28 * 28, 9)  # 3x3 "same" on 1x28x28
    assert shapes[2].k == shapes[1].n * 7 * 7  # two 2x2 poolings before Flatten


def test_bad_flags_exit_with_usage_error():
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.epoch_time", "--workload", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown workload" in proc.stderr


def test_layer_time_times_every_layer_of_the_cnn(tmp_path):
    out = tmp_path / "layers.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.layer_time",
            "--workload",
            "cnn",
            "--batch-size",
            "4",
            "--steps",
            "1",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    from benchmarks.workloads import WORKLOADS

    layers = WORKLOADS["cnn"].portnet_layers()
    table = out.read_text()
    assert table.strip() == proc.stdout.strip()  # the file holds what was printed
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(layers)  # header + one per layer
    for i, (row, layer) in enumerate(zip(rows[1:], layers, strict=True)):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == str(i) and cells[1].startswith(type(layer).__name__)
        assert float(cells[2]) >= 0 and float(cells[3]) >= 0
    shares = [float(r.strip("|").split("|")[4].strip(" %")) for r in rows[1:]]
    assert sum(shares) == pytest.approx(100, abs=0.5)


@pytest.mark.parametrize("workload_name", ["mlp-s3", "mlp-s1"])
def test_careful_numpy_trains_exactly_as_portnet(workload_name):
    """The hand-tuned reference does the same maths: equal weights and loss after an epoch."""
    import numpy as np

    import portnet as pn
    from benchmarks.careful_numpy import CarefulMLP
    from benchmarks.implementations import LR, MOMENTUM, build_portnet_model
    from benchmarks.workloads import WORKLOADS

    workload = WORKLOADS[workload_name]
    rng = np.random.default_rng(5)
    X = rng.random((100, 784), dtype=np.float32)
    y = rng.integers(0, 10, size=100)
    order = rng.permutation(100)

    careful = CarefulMLP(workload.initial_weights(2), workload.activation)
    careful_loss = careful.train_epoch(X, y, order, 32, LR, MOMENTUM)

    model = build_portnet_model(workload, pn.get_backend("numpy"), seed=2)
    state, loss_sum, _ = model.trainer.run_epoch(
        model.state,
        X,
        y,
        batch_size=32,
        lr=LR,
        order=order,
        random=None,
    )
    assert careful_loss == pytest.approx(float(loss_sum) / 100, rel=1e-5)
    dense = [p for p in state.params if "W" in p]
    initial = workload.initial_weights(2)
    assert len(dense) == len(careful.W) == len(initial)
    for p, W, b, (W0, _) in zip(dense, careful.W, careful.b, initial, strict=True):
        assert np.abs(W - W0).max() > 1e-4, "the epoch must move the weights"
        np.testing.assert_allclose(W, p["W"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(b, p["b"], rtol=1e-4, atol=1e-6)


def test_jitted_jax_reports_its_compile_time_apart(quick_run):
    """portnet-jax-jit trains the same maths as portnet-jax, and its one-time compile
    cost is recorded beside (not inside) its epoch times."""
    pytest.importorskip("jax")
    data, out, stdout = quick_run
    entries = {e["implementation"]: e for e in data["results"] if e["workload"] == "mlp-s3"}
    jit, eager = entries["portnet-jax-jit"], entries["portnet-jax"]
    assert jit["status"] == eager["status"] == "ok"
    assert jit["compile_s"] > 0 and "compile_s" not in eager
    assert jit["final_loss"] == pytest.approx(eager["final_loss"], rel=1e-4)
    assert "compiled its step in" in (out / "quick.md").read_text()


def test_native_torch_shift_moves_each_image_within_the_limit():
    """The native torch twin of RandomShift: every output image is its input moved by
    some (a, b) with |a|, |b| <= max_shift, zeros filling in; the moves differ across
    the batch; in eval mode it is the identity."""
    torch = pytest.importorskip("torch")
    import numpy as np

    from benchmarks.impl_torch import _torch_random_shift

    shift = _torch_random_shift(1).train()
    x = torch.arange(1, 2 * 3 * 5 * 6 + 1, dtype=torch.float32).reshape(2, 3, 5, 6)
    x = x.repeat(20, 1, 1, 1)  # 40 images: the chance that all draw one move is tiny
    y = shift(x).numpy()
    xn = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)))
    moves = set()
    for n in range(len(y)):
        found = [
            (a, b)
            for a in (-1, 0, 1)
            for b in (-1, 0, 1)
            if np.array_equal(y[n], xn[n, :, 1 + a : 6 + a, 1 + b : 7 + b])
        ]
        assert found, f"image {n} is not a shift of its input by at most one pixel"
        moves.update(found)
    assert len(moves) > 1
    assert torch.equal(shift.eval()(x), x)


def test_layer_time_against_torch_adds_native_columns():
    """Native torch's modules are timed layer by layer beside portnet's, and the ratio
    column is portnet's forward + backprop over torch's."""
    pytest.importorskip("torch")
    from benchmarks.layer_time import markdown_table, time_torch_layers
    from benchmarks.workloads import WORKLOADS

    workload = WORKLOADS["cnn"]
    native = time_torch_layers(workload, batch_size=4, steps=1)
    assert len(native) == len(workload.portnet_layers())
    # Every layer but the shape-only ones does work in its forward pass.
    assert all(r["forward_s"] > 0 and r["backprop_s"] >= 0 for r in native)
    rows = [
        {"index": i, "layer": "L", "forward_s": 2e-3, "backprop_s": 1e-3}
        | {f"torch_{k}": v for k, v in r.items()}
        for i, r in enumerate(native)
    ]
    table = markdown_table(rows, "t")
    cells = [line.strip("|").split("|") for line in table.splitlines() if line.startswith("| 3 ")]
    ratio = 3e-3 / (native[3]["forward_s"] + native[3]["backprop_s"])
    assert float(cells[0][7]) == pytest.approx(ratio, rel=0.01, abs=0.006)
    assert "Native torch, layer by layer" in table


def test_layer_time_against_torch_needs_the_cnn():
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.layer_time", "--workload", "mlp-s3", "--against-torch"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "cnn workload only" in proc.stderr
