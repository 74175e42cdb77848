"""ONNX export: the inference forward recorded on ndonnx arrays, run by onnxruntime.

An MLP and the CNN of experiments/configs/cnn.yaml, each trained briefly on NumPy and
on torch, exported once per module; onnxruntime must give portnet's probabilities
at batch sizes the export never saw.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import portnet as pn
from portnet.data import load_dataset, scale_images
from portnet.errors import BackendError, ConfigError
from portnet.layers import Context

REPO = Path(__file__).resolve().parents[1]
# Operators that draw random numbers: none may survive into an inference graph.
RANDOM_OPS = {
    "Bernoulli",
    "Dropout",
    "Multinomial",
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
}
BATCHES = (1, 37)  # the export fixes no batch size; neither is a training batch size


@pytest.fixture(scope="module")
def onnx_export():
    pytest.importorskip("ndonnx", reason='the onnx extra: pip install "portnet[onnx]"')
    pytest.importorskip("onnxruntime", reason='the onnx extra: pip install "portnet[onnx]"')
    from portnet.io import onnx_export

    return onnx_export


@pytest.fixture(scope="module")
def sample():
    data = load_dataset("fashion_mnist_sample")
    X, y = scale_images(data.X_train[:256]), data.y_train[:256].astype(np.int64)
    return X, y, scale_images(data.X_test[:100])


def cnn_layers():
    yaml = pytest.importorskip("yaml")
    spec = yaml.safe_load((REPO / "experiments" / "configs" / "cnn.yaml").read_text())
    return pn.Sequential(spec["layers"])


_TRAINED: dict[tuple[str, str, str], pn.Model] = {}


def train(backend_name, architecture, sample, dtype="float32"):
    """A model trained for one epoch on 256 sample images, made once per module."""
    key = (backend_name, architecture, dtype)
    if key in _TRAINED:
        return _TRAINED[key]
    try:
        backend = pn.get_backend(backend_name)
    except BackendError as exc:
        pytest.skip(f"{backend_name}: {str(exc).split('. ')[0]}")
    layers = (
        cnn_layers()
        if architecture == "cnn"
        else [pn.Dense(784, 64), pn.ReLU(), pn.Dropout(0.2), pn.Dense(64, 10)]
    )
    model = pn.Model(layers, optimizer="adam", lr=1e-3, backend=backend, dtype=dtype)
    X, y, _ = sample
    model.fit(X, y, epochs=1, batch_size=64)  # moves BatchNorm's running statistics too
    _TRAINED[key] = model
    return model


@pytest.fixture(
    scope="module",
    params=["numpy-mlp", "numpy-cnn", "torch-mlp", "torch-cnn"],
)
def exported(request, onnx_export, sample):
    """A briefly trained model and its ONNX model, made once per module."""
    model = train(*request.param.split("-"), sample)
    return model, onnx_export.to_onnx(model)


def op_types(graph):
    """Every operator of a graph, those of its subgraphs (If branches) included."""
    found = set()
    for node in graph.node:
        found.add(node.op_type)
        for attribute in node.attribute:
            subgraphs = list(attribute.graphs) + ([attribute.g] if attribute.HasField("g") else [])
            for subgraph in subgraphs:
                found |= op_types(subgraph)
    return found


def test_onnxruntime_gives_portnets_probabilities_at_any_batch_size(exported, onnx_export, sample):
    model, proto = exported
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "x" and out.name == "probabilities"
    in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert in_dims == ["N", 784] and out_dims == ["N", 10]
    X_test = sample[2]
    for n in BATCHES:
        got = onnx_export.run_onnx(proto, X_test[:n])
        want = model.backend.to_numpy(model.predict_proba(X_test[:n]))
        assert got.dtype == np.float32 and got.shape == (n, 10)
        assert np.max(np.abs(got - want)) <= 1e-5
        np.testing.assert_array_equal(
            np.argmax(got, axis=1), model.backend.to_numpy(model.predict(X_test[:n]))
        )


def test_graph_has_no_random_operator(exported):
    model, proto = exported
    kinds = {type(layer).__name__ for layer in model.network.layers}
    ops = op_types(proto.graph)
    assert "Dropout" in kinds  # the layers are in the model, so the test means something
    assert RANDOM_OPS.isdisjoint(ops) and not any("Random" in op for op in ops)
    if "Conv2D" in kinds:
        assert "RandomFlip" in kinds
        # Convolution is recorded as portnet computes it: shifted slices and one matrix
        # product (im2col), not an ONNX Conv node.
        assert {"Slice", "MatMul"} <= ops and "Conv" not in ops


def test_logits_and_float64(onnx_export, sample):
    model = train("numpy", "mlp", sample, dtype="float64")
    X_test = sample[2][:37]
    probabilities = onnx_export.run_onnx(onnx_export.to_onnx(model), X_test)
    assert probabilities.dtype == np.float64
    np.testing.assert_allclose(probabilities, model.predict_proba(X_test), rtol=0, atol=1e-12)
    logits = onnx_export.run_onnx(onnx_export.to_onnx(model, output="logits"), X_test)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(
        shifted / shifted.sum(axis=1, keepdims=True), probabilities, atol=1e-12
    )
    with pytest.raises(ConfigError, match="output must be one of probabilities, logits"):
        onnx_export.to_onnx(model, output="labels")


def test_image_input_needs_input_shape(onnx_export):
    layers = [pn.Conv2D(1, 2, 3), pn.BatchNorm(2), pn.ReLU(), pn.Flatten()]
    with pytest.raises(ConfigError, match="give input_shape"):  # no layer declares a width
        onnx_export.to_onnx(pn.Model(layers, loss="mse", backend="numpy"))
    model = pn.Model([*layers, pn.Dense(72, 3)], backend="numpy")
    X = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    got = onnx_export.run_onnx(onnx_export.to_onnx(model, input_shape=(1, 8, 8)), X)
    # The model's predict takes flat rows; its network's inference forward takes images.
    xp = model.backend.xp
    logits, _ = model.trainer.network.forward(model.state.params, X, Context(xp=xp))
    assert np.max(np.abs(got - model.loss.probabilities(xp, logits))) <= 1e-5


def test_export_onnx_writes_the_file_atomically(onnx_export, sample, tmp_path):
    model = train("numpy", "mlp", sample)
    path = model.export_onnx(tmp_path / "models" / "mlp.onnx")
    assert path == tmp_path / "models" / "mlp.onnx"
    assert [p.name for p in path.parent.iterdir()] == ["mlp.onnx"]  # no temporary left
    X_test = sample[2][:37]
    got = onnx_export.run_onnx(path, X_test)
    assert np.max(np.abs(got - model.predict_proba(X_test))) <= 1e-5


def test_without_the_extra_export_says_what_to_install(monkeypatch, tmp_path):
    model = pn.Model(pn.mlp([4, 3]), backend="numpy")
    monkeypatch.setitem(sys.modules, "ndonnx", None)  # `import ndonnx` now fails
    with pytest.raises(ImportError, match=r'pip install "portnet\[onnx\]"') as info:
        model.export_onnx(tmp_path / "m.onnx")
    assert "ndonnx" in str(info.value)
    assert not (tmp_path / "m.onnx").exists()


def test_cli_evaluate_export_onnx(onnx_export, tmp_path, capsys):
    from experiments import fashion

    run_dir = tmp_path / "run"
    args = ["--dataset", "fashion_mnist_sample", "--epochs", "1", "--hidden", "32"]
    args += ["--batch-size", "64", "--no-plots", "--out", str(run_dir)]
    assert fashion.main(args) == 0
    capsys.readouterr()
    onnx_file = tmp_path / "exported" / "model.onnx"
    assert fashion.main(["--evaluate", str(run_dir), "--export-onnx", str(onnx_file)]) == 0
    out = capsys.readouterr().out
    size = onnx_file.stat().st_size
    assert f"onnx     {onnx_file} ({size:,} bytes" in out
    assert "onnxruntime test accuracy" in out and "max |p_onnx - p_portnet|" in out
    from portnet.data.prepare import normalize_images

    config = json.loads((run_dir / "config.json").read_text())
    stats = dict(np.load(run_dir / "preprocessing.npz"))
    X_test = normalize_images(
        load_dataset(config["dataset"]).X_test[:37], config["normalize"], stats
    )
    model = pn.Model.load(run_dir / "model.npz")
    got = onnx_export.run_onnx(onnx_file, X_test)
    assert np.max(np.abs(got - model.predict_proba(X_test))) <= 1e-5


def test_cli_export_onnx_needs_evaluate(capsys):
    from experiments import fashion

    with pytest.raises(SystemExit) as info:
        fashion.main(["--export-onnx", "model.onnx"])
    assert info.value.code == 2
    assert "--evaluate RUN_DIR" in capsys.readouterr().err


def test_winograd_convolutions_export(onnx_export):
    """Winograd's layers (one chosen by "auto", one odd-sized) record and run in ONNX."""
    layers = [pn.Conv2D(1, 32, 3, padding=1), pn.ReLU(), pn.Conv2D(32, 4, 3, padding=1)]
    layers += [pn.BatchNorm(4), pn.ReLU(), pn.Conv2D(4, 3, 3, algorithm="winograd")]
    assert layers[2].uses_winograd and layers[5].uses_winograd
    model = pn.Model([*layers, pn.Flatten(), pn.Dense(3 * 5 * 5, 3)], backend="numpy")
    X = np.random.default_rng(0).random((5, 1, 7, 7), dtype=np.float32)
    got = onnx_export.run_onnx(onnx_export.to_onnx(model, input_shape=(1, 7, 7)), X)
    xp = model.backend.xp
    logits, _ = model.trainer.network.forward(model.state.params, X, Context(xp=xp))
    assert np.max(np.abs(got - model.loss.probabilities(xp, logits))) <= 1e-5
