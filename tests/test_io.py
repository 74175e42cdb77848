"""Saving and loading: no pickle, atomic, and portable across backends."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from helpers.arrays import synthetic_classification

import portnet as pn
from portnet.errors import ModelFileError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    X, y = synthetic_classification(n=300)
    model = pn.Model(
        pn.mlp([20, 16, 10], "tanh", output="softmax"),
        optimizer=pn.Adam(1e-2),
        backend="numpy",
        seed=4,
    )
    model.fit(X, y, epochs=3, verbose=0)
    path = tmp_path_factory.mktemp("model") / "model.npz"
    model.save(path)
    return model, path, X, y


def test_saved_model_loads_on_every_backend(trained, backend):
    model, path, X, y = trained
    loaded = pn.Model.load(path, backend=backend)
    assert loaded.backend == backend
    expected = model.evaluate(X, y)
    got = loaded.evaluate(X, y)
    assert got["accuracy"] == pytest.approx(expected["accuracy"], abs=1 / 300)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    np.testing.assert_allclose(
        backend.to_numpy(loaded.predict_proba(X)),
        model.backend.to_numpy(model.predict_proba(X)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_file_has_no_pickle_and_readable_metadata(trained):
    _, path, _, _ = trained
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(data["__portnet__"].tobytes())
        assert data["params/0/W"].shape == (20, 16)
    assert meta["format"] == "portnet-model"
    assert [layer["class"] for layer in meta["network"]["layers"]] == [
        "Dense",
        "Tanh",
        "Dense",
        "Softmax",
    ]
    assert meta["dtype"] == "float32"


def test_failed_save_leaves_no_partial_file(trained, tmp_path, monkeypatch):
    model, *_ = trained
    target = tmp_path / "model.npz"
    target.write_bytes(b"previous good contents")

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(OSError, match="disk full"):
        model.save(target)
    assert target.read_bytes() == b"previous good contents"
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_corrupt_and_foreign_files_are_named(tmp_path, trained):
    _, path, _, _ = trained
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelFileError, match="truncated.npz"):
        pn.Model.load(truncated)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(ModelFileError, match="not a portnet model"):
        pn.Model.load(foreign)
    with pytest.raises(ModelFileError, match="No model file"):
        pn.Model.load(tmp_path / "missing.npz")
    assert zipfile.is_zipfile(path)
