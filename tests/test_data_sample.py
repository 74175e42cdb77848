"""Tests of the Fashion-MNIST sample embedded in portnet.data, and of the real data set."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import data as data_helpers

from portnet.data import DATASETS, load_dataset

# The autouse fixture of data_helpers: an offline pooch, empty data folders, a fresh checksum cache.
isolated = data_helpers.isolated

REPO = Path(__file__).resolve().parents[1]
SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------- embedded sample


SAMPLE = REPO / "portnet" / "data" / "fashion_mnist_sample.npz"


def test_embedded_sample():
    assert SAMPLE.stat().st_size < 1_000_000
    ds = load_dataset("fashion_mnist_sample")
    assert ds.X_train.shape == (2000, 28, 28) and ds.X_test.shape == (500, 28, 28)
    assert ds.y_train.shape == (2000,) and ds.y_test.shape == (500,)
    for a in (ds.X_train, ds.y_train, ds.X_test, ds.y_test):
        assert a.dtype == np.uint8 and a.flags.c_contiguous
    np.testing.assert_array_equal(np.bincount(ds.y_train, minlength=10), [200] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test, minlength=10), [50] * 10)
    assert ds.class_names == DATASETS["fashion_mnist"].class_names
    assert ds.source.startswith("embedded sample")
    assert 0.2 < ds.X_train.mean() / 255 < 0.4  # real images, not zeros or noise
    with np.load(SAMPLE, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["X_test", "X_train", "y_test", "y_train"]


def test_licence_ships_with_sample():
    text = (REPO / "portnet" / "data" / "FASHION_MNIST_LICENSE.txt").read_text()
    assert "Zalando SE" in text and "MIT" in text and "Permission is hereby granted" in text


@pytest.mark.skipif(not SYSTEM_FASHION.is_dir(), reason=f"{SYSTEM_FASHION} missing")
def test_sample_is_reproducible_from_full_dataset(tmp_path):
    module_path = REPO / "tools" / "make_fashion_sample.py"
    spec = importlib.util.spec_from_file_location("make_fashion_sample", module_path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "sample.npz"
    argv = ["make_fashion_sample", "--data-dir", str(SYSTEM_FASHION), "--out", str(out)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", argv)
        tool.main()
    with np.load(out) as new, np.load(SAMPLE) as shipped:
        for key in ("X_train", "y_train", "X_test", "y_test"):
            np.testing.assert_array_equal(new[key], shipped[key])
    assert out.read_bytes() == SAMPLE.read_bytes()


# --------------------------------------------------------------------------- real data


@pytest.mark.skipif(
    not SYSTEM_FASHION.is_dir(),
    reason=f"{SYSTEM_FASHION} missing (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist():
    ds = load_dataset("fashion_mnist", data_dir=SYSTEM_FASHION, download=False)
    assert ds.X_train.shape == (60000, 28, 28) and ds.X_test.shape == (10000, 28, 28)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    np.testing.assert_array_equal(np.bincount(ds.y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [1000] * 10)
    spec = DATASETS["fashion_mnist"]
    for fspec in spec.files.values():
        blob = (SYSTEM_FASHION / fspec.filename).read_bytes()
        gz_md5 = hashlib.md5(blob).hexdigest()
        content_md5 = hashlib.md5(gzip.decompress(blob)).hexdigest()
        # Published .gz md5 (upstream file) or the Debian re-gzip of the same content.
        assert gz_md5 == fspec.md5 or content_md5 == fspec.content_md5, fspec.filename
        assert content_md5 == fspec.content_md5
    # Also the sample is a subset of the real training set.
    sample = load_dataset("fashion_mnist_sample")
    flat = ds.X_train.reshape(60000, -1)
    first = sample.X_train[0].reshape(-1)
    assert (flat == first).all(axis=1).any()
