"""Shared by the portnet.data tests: a fake pooch, the offline fixture, a small release.

``isolated`` is an autouse fixture: a test module that binds it at module level
(``isolated = helpers.data.isolated``) runs every one of its tests offline, with empty
data folders and a fresh checksum cache.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

from portnet.data import DATASETS, registry, write_idx

N_TRAIN, N_TEST = 30, 20
RAW_NAMES = {
    "X_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "X_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


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


def flip_byte(blob: bytes, at: float = 0.5) -> bytes:
    i = int(len(blob) * at)
    return blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1 :]
