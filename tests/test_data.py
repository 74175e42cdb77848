"""Tests of portnet.data: IDX files, the dataset registry, the sample and preprocessing.

No test touches the network: an autouse fixture replaces pooch's download with a
function that fails, and tests that exercise a download install a fake that
copies local files.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from portnet.data import (
    DATASETS,
    DatasetError,
    StandardScaler,
    class_subset,
    kfold_indices,
    load_dataset,
    one_hot,
    one_vs_rest,
    parse_idx,
    read_idx,
    registry,
    scale_images,
    search_path,
    standardize_per_image,
    stratified_split,
    write_idx,
)
from portnet.errors import PortnetError

REPO = Path(__file__).resolve().parents[1]
SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")
N_TRAIN, N_TEST = 30, 20
RAW_NAMES = {
    "X_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "X_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


# --------------------------------------------------------------------------- fixtures


class FakePooch:
    """Stands in for the pooch module; records calls, never opens a socket."""

    def __init__(self, source: Path | None = None, fail_urls: tuple[str, ...] = ()):
        self.source = source
        self.fail_urls = fail_urls
        self.calls: list[dict] = []

    def retrieve(self, url, known_hash, fname, path, progressbar=False):
        self.calls.append({"url": url, "known_hash": known_hash, "fname": fname, "path": path})
        if self.source is None or url.startswith(self.fail_urls):
            raise ConnectionError(f"offline test: no network for {url}")
        data = (self.source / fname).read_bytes()
        algo, expected = known_hash.split(":")
        assert hashlib.new(algo, data).hexdigest() == expected, "fake download hash check"
        Path(path, fname).write_bytes(data)
        return str(Path(path, fname))


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Empty env folders, a fresh checksum cache and a pooch that is always offline."""
    monkeypatch.delenv("PORTNET_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(registry, "_VERIFIED", {})
    fake = FakePooch()
    monkeypatch.setitem(sys.modules, "pooch", fake)
    return fake


def small_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "X_train": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "X_test": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(N_TEST) % 10).astype(np.uint8),
    }


def write_release(folder: Path, compress: bool = True) -> dict[str, Path]:
    """Write the small arrays as the four IDX files of a release into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, array in small_arrays().items():
        name = RAW_NAMES[key] + (".gz" if compress else "")
        paths[key] = write_idx(folder / name, array)
    return paths


def patch_spec(monkeypatch, name: str, content_md5: bool = True, **changes):
    """Point registry entry ``name`` at the small release: its md5s, shapes, no system dir."""
    spec = DATASETS[name]
    files = {}
    for key, array in small_arrays().items():
        raw = (
            bytes([0, 0, 8, array.ndim])
            + np.asarray(array.shape, ">u4").tobytes()
            + array.tobytes()
        )
        gz = gzip.compress(raw, mtime=0)  # what write_idx produces for .gz
        files[key] = dataclasses.replace(
            spec.files[key],
            md5=hashlib.md5(gz).hexdigest(),
            content_md5=hashlib.md5(raw).hexdigest() if content_md5 else None,
            shape=array.shape,
        )
    changes.setdefault("system_dirs", ())
    new = dataclasses.replace(spec, files=files, **changes)
    monkeypatch.setitem(DATASETS, name, new)
    return new


# --------------------------------------------------------------------------- IDX format


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)])
def test_idx_round_trip(tmp_path, dtype, compress, shape):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    path = write_idx(tmp_path / "a.idx", array, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)  # native byte order
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)
    back[...] = 0  # the result is writable


def test_idx_big_endian_on_disk(tmp_path):
    path = write_idx(tmp_path / "b.idx", np.array([1, 258], dtype=np.int32))
    assert path.read_bytes() == bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 1, 2])


def test_idx_compression_detected_by_magic_not_suffix(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_named_plain = write_idx(tmp_path / "x-idx2-ubyte", array, compress=True)
    plain_named_gz = write_idx(tmp_path / "y-idx2-ubyte.gz", array, compress=False)
    np.testing.assert_array_equal(read_idx(gz_named_plain), array)
    np.testing.assert_array_equal(read_idx(plain_named_gz), array)


def test_write_idx_is_atomic_and_deterministic(tmp_path):
    path = tmp_path / "z.gz"
    write_idx(path, np.zeros(5, np.uint8))
    first = path.read_bytes()
    write_idx(path, np.ones(5, np.uint8))  # overwrite in place
    write_idx(path, np.zeros(5, np.uint8))
    assert path.read_bytes() == first  # gzip mtime=0: same array, same bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z.gz"]  # no temp files left


@pytest.mark.parametrize("bad", [np.zeros(3, np.uint16), np.zeros(3, bool), np.float16(1)])
def test_write_idx_rejects_unsupported(tmp_path, bad):
    with pytest.raises(ValueError, match="IDX"):
        write_idx(tmp_path / "bad", bad)
    assert list(tmp_path.iterdir()) == []


def good_idx_bytes() -> bytes:
    return bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x00", "trailing bytes"),
        (lambda b: b"\x08\x03" + b[2:], "wrong magic number"),
        (lambda b: b[:2] + b"\x0a" + b[3:], "unknown IDX dtype code 0x0A"),
        (lambda b: b[:2] + b"\x08\x00" + b[4:], "0 dimensions"),
        (lambda b: b[:10], "truncated IDX header"),
        (lambda b: b[:3], "too short"),
    ],
    ids=["truncated", "trailing", "magic", "dtype", "ndim0", "header", "tiny"],
)
def test_parse_idx_rejects_damage(tmp_path, mutate, message):
    assert parse_idx(good_idx_bytes()).shape == (2, 3)
    path = tmp_path / "damaged-idx2-ubyte"
    path.write_bytes(mutate(good_idx_bytes()))
    with pytest.raises(DatasetError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert "download or copy it again" in str(info.value)


@pytest.mark.parametrize("keep", [0.5, 0.95], ids=["half", "almost-all"])
def test_truncated_gzip_is_a_clear_error(tmp_path, keep):
    path = write_idx(tmp_path / "t.gz", np.arange(5000, dtype=np.int32))
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * keep)])
    with pytest.raises(DatasetError, match="truncated or corrupt") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, PortnetError)  # CLIs turn it into exit code 2


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="cannot read"):
        read_idx(tmp_path / "nope")


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


def flip_byte(blob: bytes, at: float = 0.5) -> bytes:
    i = int(len(blob) * at)
    return blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1 :]


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


# --------------------------------------------------------------------------- search order


def test_search_order(monkeypatch, tmp_path):
    system = tmp_path / "system"
    patch_spec(monkeypatch, "fashion_mnist", system_dirs=(str(system),))
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    cache = tmp_path / "xdg-cache" / "portnet" / "fashion_mnist"
    monkeypatch.setenv("PORTNET_DATA_DIR", str(env))
    assert search_path("fashion_mnist", explicit) == [
        explicit,
        env / "fashion_mnist",
        cache,
        system,
    ]
    for folder in (explicit, env / "fashion_mnist", cache, system):
        write_release(folder)

    def source(**kwargs):
        return load_dataset("fashion_mnist", download=False, **kwargs).source

    assert source(data_dir=explicit) == str(explicit)  # data_dir beats everything
    assert source() == str(env / "fashion_mnist")  # then $PORTNET_DATA_DIR/<name>
    monkeypatch.delenv("PORTNET_DATA_DIR")
    assert source() == str(cache)  # then $XDG_CACHE_HOME/portnet/<name>
    monkeypatch.delenv("XDG_CACHE_HOME")
    home_cache = tmp_path / "home" / ".cache" / "portnet" / "fashion_mnist"
    assert search_path("fashion_mnist")[0] == home_cache
    assert source() == str(system)  # then system folders
    write_release(home_cache)
    assert source() == str(home_cache)  # ~/.cache is the default cache


def test_incomplete_folder_is_skipped_and_reported(monkeypatch, tmp_path):
    patch_spec(monkeypatch, "mnist")
    partial = tmp_path / "partial"
    paths = write_release(partial)
    paths["X_test"].unlink()
    good = tmp_path / "xdg-cache" / "portnet" / "mnist"
    write_release(good)
    assert load_dataset("mnist", data_dir=partial, download=False).source == str(good)
    good_files = list(good.iterdir())
    for f in good_files:
        f.unlink()
    with pytest.raises(DatasetError, match="has 3 of 4 files, missing t10k-images"):
        load_dataset("mnist", data_dir=partial, download=False)


def test_damaged_file_is_not_skipped_for_a_later_folder(monkeypatch, tmp_path):
    patch_spec(monkeypatch, "mnist")
    first = tmp_path / "first"
    paths = write_release(first)
    write_release(tmp_path / "xdg-cache" / "portnet" / "mnist")
    paths["y_train"].write_bytes(flip_byte(paths["y_train"].read_bytes()))
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_dataset("mnist", data_dir=first, download=False)


# --------------------------------------------------------------------------- not found / download


def test_offline_not_found_lists_every_folder(monkeypatch, tmp_path, isolated):
    system = tmp_path / "no-system-folder"
    patch_spec(
        monkeypatch,
        "fashion_mnist",
        system_dirs=(str(system),),
        apt_package="dataset-fashion-mnist",
    )
    monkeypatch.setenv("PORTNET_DATA_DIR", str(tmp_path / "env"))
    explicit = tmp_path / "explicit"
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion_mnist", data_dir=explicit)
    message = str(info.value)
    for folder in search_path("fashion_mnist", explicit):
        assert str(folder) in message
    assert "ConnectionError" in message and "offline test" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--data-dir" in message and "data_dir=" in message
    assert "fashion_mnist_sample" in message
    assert "train-images-idx3-ubyte.gz" in message
    # Every mirror was tried, all into the explicit folder, with the published md5.
    urls = [c["url"] for c in isolated.calls]
    assert urls[: len(DATASETS["fashion_mnist"].urls)] == [
        u + "train-images-idx3-ubyte.gz" for u in DATASETS["fashion_mnist"].urls
    ]
    assert all(Path(c["path"]) == explicit for c in isolated.calls)
    assert not explicit.exists()  # the folder made for the download is removed again


def test_download_false_and_missing_pooch(monkeypatch, tmp_path, isolated):
    patch_spec(monkeypatch, "kmnist")
    with pytest.raises(DatasetError, match=r"download=False") as info:
        load_dataset("kmnist", download=False)
    assert str(tmp_path / "xdg-cache" / "portnet" / "kmnist") in str(info.value)
    assert "apt-get" not in str(info.value)  # no Debian package for KMNIST
    assert isolated.calls == []
    monkeypatch.setitem(sys.modules, "pooch", None)  # import pooch -> ImportError
    with pytest.raises(DatasetError, match=r"pip install pooch"):
        load_dataset("kmnist")


@pytest.mark.parametrize("explicit", [False, True], ids=["cache", "data_dir"])
def test_download_goes_to_first_user_folder(monkeypatch, tmp_path, isolated, explicit):
    spec = patch_spec(monkeypatch, "mnist")
    mirror = tmp_path / "mirror"
    write_release(mirror)
    isolated.source = mirror
    isolated.fail_urls = (spec.urls[0],)  # first mirror down: the second one is used
    data_dir = tmp_path / "mine" if explicit else None
    ds = load_dataset("mnist", data_dir=data_dir)
    target = data_dir if explicit else tmp_path / "xdg-cache" / "portnet" / "mnist"
    assert ds.source == str(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        f.filename for f in spec.files.values()
    )
    assert {c["known_hash"] for c in isolated.calls} == {
        f"md5:{f.md5}" for f in spec.files.values()
    }
    # Second load: found locally, no download.
    n_calls = len(isolated.calls)
    load_dataset("mnist", data_dir=data_dir)
    assert len(isolated.calls) == n_calls


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


# --------------------------------------------------------------------------- preprocessing


def test_scale_images():
    X = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    out = scale_images(X)
    assert out.dtype == np.float32 and out.shape == (1, 4)
    np.testing.assert_allclose(out, [[0, 1, 0.2, 0.4]], rtol=1e-7)
    assert scale_images(X, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="uint8"):
        scale_images(X.astype(np.float32))
    with pytest.raises(ValueError, match="floating"):
        scale_images(X, dtype=np.int32)


def test_standard_scaler_uses_train_stats_only():
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 2.0, (500, 3)).astype(np.float32)
    train[:, 2] = 7.0  # constant feature: scale guarded to 1
    test = rng.normal(-3.0, 9.0, (100, 3)).astype(np.float32)
    train_copy, test_copy = train.copy(), test.copy()
    scaler = StandardScaler().fit(train)
    np.testing.assert_allclose(scaler.mean_, train.mean(axis=0, dtype=np.float64))
    assert scaler.scale_[2] == 1.0
    z_train = scaler.transform(train)
    z_test = scaler.transform(test)
    assert z_train.dtype == np.float32
    np.testing.assert_allclose(z_train[:, :2].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z_train[:, :2].std(axis=0), 1, atol=1e-5)
    np.testing.assert_array_equal(z_train[:, 2], 0)
    # Test data use the training statistics, so they are NOT centred on their own.
    expected = (test[:, :2] - scaler.mean_[:2]) / scaler.scale_[:2]
    np.testing.assert_allclose(z_test[:, :2], expected, rtol=1e-5)
    assert abs(z_test[:, 0].mean()) > 1
    np.testing.assert_allclose(scaler.inverse_transform(z_test), test, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(train, train_copy)  # inputs unchanged
    np.testing.assert_array_equal(test, test_copy)
    assert StandardScaler().fit_transform(np.arange(6, dtype=np.uint8).reshape(3, 2)).dtype == (
        np.float32
    )
    with pytest.raises(ValueError, match="not fitted"):
        StandardScaler().transform(train)
    with pytest.raises(ValueError, match="features"):
        scaler.transform(train[:, :2])
    with pytest.raises(ValueError, match="2-d"):
        scaler.fit(train[0])


def test_standardize_per_image():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    X[3] = 17  # blank image -> zeros, not NaN
    Z = standardize_per_image(X)
    assert Z.dtype == np.float32 and Z.shape == X.shape
    np.testing.assert_allclose(Z[:3].mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(Z[:3].std(axis=(1, 2)), 1, atol=1e-5)
    np.testing.assert_array_equal(Z[3], 0)
    x0 = X[0].astype(np.float64)
    np.testing.assert_allclose(Z[0], (x0 - x0.mean()) / x0.std(), rtol=1e-5, atol=1e-5)


def test_one_hot():
    out = one_hot(np.array([2, 0, 1], dtype=np.uint8), 3)
    np.testing.assert_array_equal(out, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert out.dtype == np.float32
    assert one_hot(np.array([1]), 2, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        one_hot(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="outside"):
        one_hot(np.array([-1, 0]), 3)
    with pytest.raises(ValueError, match="integer"):
        one_hot(np.array([0.0, 1.0]), 3)


def test_stratified_split_keeps_class_proportions():
    y = np.repeat(np.arange(4), [400, 200, 100, 300]).astype(np.uint8)
    train_idx, val_idx = stratified_split(y, 0.2, seed=1)
    assert len(val_idx) == 200 and len(train_idx) == 800
    assert np.intersect1d(train_idx, val_idx).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(1000))
    np.testing.assert_array_equal(np.bincount(y[val_idx]), [80, 40, 20, 60])
    again = stratified_split(y, 0.2, seed=1)
    np.testing.assert_array_equal(again[1], val_idx)
    assert not np.array_equal(stratified_split(y, 0.2, seed=2)[1], val_idx)
    # Awkward counts: the total is still exact, each class within one of ideal.
    y2 = np.repeat(np.arange(3), [7, 11, 13])
    tr, va = stratified_split(y2, 0.3, seed=0)
    assert len(va) == round(0.3 * 31)
    assert np.all(np.abs(np.bincount(y2[va]) - np.array([7, 11, 13]) * 0.3) < 1)
    for bad in (0, 1, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
            stratified_split(y, bad)
    with pytest.raises(ValueError, match="empty"):
        stratified_split(np.array([0, 1, 0]), 0.01)


@pytest.mark.parametrize("stratified", [False, True])
@pytest.mark.parametrize("n, k", [(10, 2), (103, 5), (7, 7)])
def test_kfold_partitions_every_index_once(n, k, stratified):
    y = (np.arange(n) * 7 % 3) if stratified else None
    folds = list(kfold_indices(n, k, seed=0, y=y))
    assert len(folds) == k
    vals = np.concatenate([v for _, v in folds])
    np.testing.assert_array_equal(np.sort(vals), np.arange(n))  # each exactly once
    sizes = [len(v) for _, v in folds]
    assert max(sizes) - min(sizes) <= 1
    for train_idx, val_idx in folds:
        assert np.intersect1d(train_idx, val_idx).size == 0
        assert len(train_idx) + len(val_idx) == n
    if stratified:
        per_fold = np.array([np.bincount(y[v], minlength=3) for _, v in folds])
        assert np.all(per_fold.max(axis=0) - per_fold.min(axis=0) <= 1)


def test_kfold_validates_eagerly():
    for n, k in [(5, 1), (5, 6), (0, 2)]:
        with pytest.raises(ValueError, match="2 <= k <= n"):
            kfold_indices(n, k)  # raised at the call, not at the first next()
    with pytest.raises(ValueError, match="labels"):
        kfold_indices(5, 2, y=np.zeros(4, dtype=int))
    a = [v for _, v in kfold_indices(20, 4, seed=3)]
    b = [v for _, v in kfold_indices(20, 4, seed=3)]
    for va, vb in zip(a, b, strict=True):
        np.testing.assert_array_equal(va, vb)


def test_class_subset_and_one_vs_rest():
    y = np.array([9, 0, 3, 9, 0, 5], dtype=np.uint8)
    X = np.arange(6 * 2).reshape(6, 2)
    X_sub, y_sub = class_subset(X, y, (0, 9))  # T-shirt/top vs Ankle boot
    np.testing.assert_array_equal(X_sub, X[[0, 1, 3, 4]])
    np.testing.assert_array_equal(y_sub, [1, 0, 1, 0])
    assert y_sub.dtype == np.uint8
    _, y_rev = class_subset(X, y, [9, 0])  # the given order defines the labels
    np.testing.assert_array_equal(y_rev, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="distinct"):
        class_subset(X, y, [0, 0])
    with pytest.raises(ValueError, match="no samples"):
        class_subset(X, y, [0, 7])
    with pytest.raises(ValueError, match="samples"):
        class_subset(X[:5], y, [0, 9])
    np.testing.assert_array_equal(one_vs_rest(y, 9), [1, 0, 0, 1, 0, 0])
    assert one_vs_rest(y, 9, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="integer"):
        one_vs_rest(y.astype(float), 9)
