"""Tests of portnet.data's dataset registry: its entries, loading a release, checksums.

No test touches the network: the autouse fixture ``isolated`` (data_helpers) replaces
pooch's download with a function that fails.
"""

from __future__ import annotations

import gzip
import hashlib
import os

import numpy as np
import pytest
from helpers import data as data_helpers
from helpers.data import N_TEST, RAW_NAMES, flip_byte, patch_spec, small_arrays, write_release

from portnet.data import DATASETS, DatasetError, load_dataset, registry, write_idx

# The autouse fixture of data_helpers: an offline pooch, empty data folders, a fresh checksum cache.
isolated = data_helpers.isolated


# --------------------------------------------------------------------------- registry


def test_registry_entries_are_complete():
    for name, spec in DATASETS.items():
        assert spec.name == name
        assert len(spec.class_names) == 10
        assert spec.urls and all(u.endswith("/") for u in spec.urls)
        assert set(spec.files) == set(RAW_NAMES)
        for key, f in spec.files.items():
            assert f.raw_filename == RAW_NAMES[key]
            assert len(f.md5) == 32 and int(f.md5, 16) >= 0
            assert f.shape[0] == (60000 if key.endswith("train") else 10000)
    fashion = DATASETS["fashion_mnist"]
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    assert fashion.files["X_train"].md5 == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"


def test_unknown_dataset_lists_known_names():
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10")
    for name in ("fashion_mnist", "mnist", "kmnist", "fashion_mnist_sample"):
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["mnist", "kmnist", "fashion_mnist"])
@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_loads_small_release(monkeypatch, tmp_path, name, compress):
    spec = patch_spec(monkeypatch, name)
    write_release(tmp_path / "d", compress=compress)
    ds = load_dataset(name, data_dir=tmp_path / "d", download=False)
    expected = small_arrays()
    for key in RAW_NAMES:
        got = getattr(ds, key)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, expected[key])
    assert ds.class_names == spec.class_names and ds.n_classes == 10
    assert ds.name == name and ds.source == str(tmp_path / "d")
    method = "published" if compress else "uncompressed file"
    assert all(method in m for m in ds.verified.values()), ds.verified


def test_kmnist_class_names():
    assert DATASETS["kmnist"].class_names[:3] == ("o", "ki", "su")
    assert DATASETS["mnist"].class_names == tuple("0123456789")


def test_recompressed_archive_is_verified_by_content(monkeypatch, tmp_path):
    # Debian re-gzips Fashion-MNIST: the .gz md5 differs, the content is identical.
    patch_spec(monkeypatch, "fashion_mnist")
    paths = write_release(tmp_path / "d")
    for path in paths.values():
        raw = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(raw, compresslevel=1, mtime=12345))
    ds = load_dataset("fashion_mnist", data_dir=tmp_path / "d", download=False)
    assert all("decompressed content" in m for m in ds.verified.values())
    # A valid gzip of a valid IDX file with one changed pixel is refused.
    images = small_arrays()["X_test"]
    images[0, 0, 0] ^= 1
    write_idx(paths["X_test"], images)
    with pytest.raises(DatasetError, match="decompressed content md5") as info:
        load_dataset("fashion_mnist", data_dir=tmp_path / "d", download=False)
    assert str(paths["X_test"]) in str(info.value)


def test_recompressed_archive_without_content_md5_is_refused(monkeypatch, tmp_path):
    patch_spec(monkeypatch, "kmnist", content_md5=False)
    paths = write_release(tmp_path / "d")
    raw = gzip.decompress(paths["y_test"].read_bytes())
    paths["y_test"].write_bytes(gzip.compress(raw, mtime=1))
    with pytest.raises(DatasetError, match="checksum mismatch") as info:
        load_dataset("kmnist", data_dir=tmp_path / "d", download=False)
    assert str(paths["y_test"]) in str(info.value)


def test_uncompressed_without_content_md5_checked_by_shape(monkeypatch, tmp_path):
    patch_spec(monkeypatch, "kmnist", content_md5=False)
    paths = write_release(tmp_path / "d", compress=False)
    ds = load_dataset("kmnist", data_dir=tmp_path / "d", download=False)
    assert all("shape only" in m for m in ds.verified.values())
    # A valid IDX file of the wrong shape is still refused.
    write_idx(paths["X_test"], np.zeros((N_TEST, 28, 27), np.uint8))
    with pytest.raises(DatasetError, match=r"expected .*\(20, 28, 28\)") as info:
        load_dataset("kmnist", data_dir=tmp_path / "d", download=False)
    assert str(paths["X_test"]) in str(info.value)


CORRUPTIONS = {
    "truncated": lambda b: b[: len(b) // 2],
    # Not zeros: gzip itself ignores zero padding after the stream (content unchanged).
    "trailing": lambda b: b + b"\x01\x02",
    "magic": lambda b: b"\x01\x02" + b[2:] if b[:2] != b"\x1f\x8b" else b"\x00\x00" + b[2:],
    "flipped": flip_byte,
}


@pytest.mark.parametrize("kind", CORRUPTIONS)
@pytest.mark.parametrize("key", ["X_train", "y_test"])
def test_damaged_gz_fails_checksum_and_names_file(monkeypatch, tmp_path, kind, key):
    patch_spec(monkeypatch, "fashion_mnist")
    paths = write_release(tmp_path / "d")
    expected_md5 = DATASETS["fashion_mnist"].files[key].md5
    paths[key].write_bytes(CORRUPTIONS[kind](paths[key].read_bytes()))
    actual_md5 = hashlib.md5(paths[key].read_bytes()).hexdigest()
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion_mnist", data_dir=tmp_path / "d", download=False)
    message = str(info.value)
    assert str(paths[key]) in message
    if kind == "magic":
        # Without the gzip magic the file is read as raw IDX: its content md5 fails.
        assert "checksum mismatch" in message
    else:
        assert f"expected md5 {expected_md5}" in message and actual_md5 in message
    assert "delete it" in message


@pytest.mark.parametrize(
    "kind, message",
    [
        ("truncated", "truncated"),
        ("trailing", "trailing bytes"),
        ("magic", "wrong magic number"),
        ("flipped", None),
    ],
)
def test_damaged_raw_file_without_md5_is_caught_by_idx_checks(monkeypatch, tmp_path, kind, message):
    patch_spec(monkeypatch, "kmnist", content_md5=False)
    paths = write_release(tmp_path / "d", compress=False)
    target = paths["y_train"]
    blob = target.read_bytes()
    if kind == "flipped":
        # A flipped header byte: the declared length no longer matches the payload.
        target.write_bytes(blob[:7] + bytes([blob[7] ^ 0x40]) + blob[8:])
        message = "truncated|trailing"
    else:
        target.write_bytes(CORRUPTIONS[kind](blob))
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset("kmnist", data_dir=tmp_path / "d", download=False)
    assert str(target) in str(info.value)


def test_damaged_file_in_system_folder_says_reinstall(monkeypatch, tmp_path):
    system = tmp_path / "system"
    patch_spec(monkeypatch, "fashion_mnist", system_dirs=(str(system),))
    paths = write_release(system)
    paths["y_train"].write_bytes(flip_byte(paths["y_train"].read_bytes()))
    with pytest.raises(DatasetError, match="--reinstall dataset-fashion-mnist") as info:
        load_dataset("fashion_mnist", download=False)
    assert str(paths["y_train"]) in str(info.value)


def test_flipped_byte_in_raw_file_with_content_md5(monkeypatch, tmp_path):
    patch_spec(monkeypatch, "mnist")
    paths = write_release(tmp_path / "d", compress=False)
    paths["X_train"].write_bytes(flip_byte(paths["X_train"].read_bytes(), 0.9))
    with pytest.raises(DatasetError, match="checksum mismatch") as info:
        load_dataset("mnist", data_dir=tmp_path / "d", download=False)
    assert str(paths["X_train"]) in str(info.value)
    assert DATASETS["mnist"].files["X_train"].content_md5 in str(info.value)


def test_labels_out_of_range(monkeypatch, tmp_path):
    patch_spec(monkeypatch, "mnist", content_md5=False)
    paths = write_release(tmp_path / "d", compress=False)
    labels = small_arrays()["y_test"].copy()
    labels[3] = 10
    write_idx(paths["y_test"], labels)
    with pytest.raises(DatasetError, match=r"labels outside \[0, 10\)") as info:
        load_dataset("mnist", data_dir=tmp_path / "d", download=False)
    assert str(paths["y_test"]) in str(info.value)


def test_checksum_cache_skips_rehash_until_file_changes(monkeypatch, tmp_path):
    patch_spec(monkeypatch, "mnist")
    paths = write_release(tmp_path / "d")
    calls = []
    real_md5 = hashlib.md5
    monkeypatch.setattr(
        registry.hashlib, "md5", lambda *a, **k: calls.append(1) or real_md5(*a, **k)
    )
    load_dataset("mnist", data_dir=tmp_path / "d", download=False)
    assert len(calls) == 4
    load_dataset("mnist", data_dir=tmp_path / "d", download=False)
    assert len(calls) == 4  # cached: (path, size, mtime) unchanged
    # Same size, new mtime and content: hashed again, and refused.
    target = paths["y_train"]
    target.write_bytes(flip_byte(target.read_bytes()))
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_dataset("mnist", data_dir=tmp_path / "d", download=False)


def test_checksum_cache_does_not_leak_between_datasets(monkeypatch, tmp_path):
    # MNIST and Fashion-MNIST share file names: files verified as one dataset must
    # still be checked against the other's checksums.
    patch_spec(monkeypatch, "mnist")
    write_release(tmp_path / "d")
    load_dataset("mnist", data_dir=tmp_path / "d", download=False)
    with pytest.raises(DatasetError, match="checksum mismatch for Fashion-MNIST"):
        load_dataset("fashion_mnist", data_dir=tmp_path / "d", download=False)
