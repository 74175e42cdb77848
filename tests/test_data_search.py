"""Tests of where portnet.data looks for a dataset, and of the download when it is missing.

No test touches the network: the autouse fixture ``isolated`` (data_helpers) replaces
pooch's download with a function that fails, and tests that exercise a download
install a fake that copies local files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import data as data_helpers
from helpers.data import flip_byte, patch_spec, write_release

from portnet.data import DATASETS, DatasetError, load_dataset, search_path

# The autouse fixture of data_helpers: an offline pooch, empty data folders, a fresh checksum cache.
isolated = data_helpers.isolated


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
