"""Tests of portnet.data's IDX files: round trips, the on-disk format, damaged files."""

from __future__ import annotations

import numpy as np
import pytest

from portnet.data import DatasetError, parse_idx, read_idx, write_idx
from portnet.errors import PortnetError

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
