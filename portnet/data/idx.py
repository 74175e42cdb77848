"""Read and write IDX files, the format of MNIST, Fashion-MNIST and KMNIST.

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then
the array in C order, big-endian. The magic number is two zero bytes, a dtype
code and the number of dimensions. The format is described on Yann LeCun's MNIST
page (http://yann.lecun.com/exdb/mnist/); the released files are gzipped.

Everything here runs on the host with NumPy: data are read once, validated, and
only then handed to a backend.
"""

from __future__ import annotations

import gzip
import os
import secrets
import zlib
from pathlib import Path

import numpy as np

from portnet.errors import InputError, PortnetError

__all__ = ["DatasetError", "IDX_DTYPES", "decompress", "parse_idx", "read_idx", "write_idx"]

GZIP_MAGIC = b"\x1f\x8b"

#: IDX dtype code -> NumPy dtype as stored in the file (multi-byte types are big-endian).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_REFETCH = "delete it and download or copy it again"


class DatasetError(PortnetError):
    """A dataset file is missing, damaged, or not what the registry expects.

    The message always names the file or folders involved and says how to fix it,
    so command-line tools can print it as is and exit with code 2.
    """


def decompress(blob: bytes, name: str | os.PathLike = "<bytes>") -> bytes:
    """``blob`` gunzipped if it starts with the gzip magic, else as is.

    ``name`` is for error messages. Raises :class:`DatasetError` when the gzip
    stream is truncated or corrupt.
    """
    # Detect by content, not by suffix: people gunzip files and keep the name, or
    # the other way round, and a raw IDX file always starts with two zero bytes.
    if blob[:2] != GZIP_MAGIC:
        return blob
    try:
        return gzip.decompress(blob)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetError(
            f"{name}: the gzip stream is truncated or corrupt ({exc}). The file was "
            f"probably cut short by an interrupted download or copy: {_REFETCH}."
        ) from exc


def parse_idx(buffer: bytes, name: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decode the bytes of an uncompressed IDX file.

    Parameters
    ----------
    buffer : bytes
        The uncompressed IDX content.
    name : str or path-like
        Used in error messages only.

    Returns
    -------
    numpy.ndarray
        A writable array in native byte order with the shape given by the header.

    Raises
    ------
    DatasetError
        If the magic number, dtype code or dimensions are invalid, or the payload is
        not exactly ``prod(dims) * itemsize`` bytes long.
    """
    if len(buffer) < 4:
        raise DatasetError(
            f"{name}: too short to be an IDX file ({len(buffer)} bytes); {_REFETCH}."
        )
    zero0, zero1, code, ndim = buffer[:4]
    if zero0 != 0 or zero1 != 0:
        raise DatasetError(
            f"{name}: wrong magic number 0x{buffer[:4].hex()} (an IDX file starts with two "
            f"zero bytes); this is not an IDX file or it is damaged: {_REFETCH}."
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DatasetError(
            f"{name}: unknown IDX dtype code 0x{code:02X} (known: {known}); "
            f"the file is damaged or not an IDX file: {_REFETCH}."
        )
    if ndim == 0:
        raise DatasetError(f"{name}: IDX header declares 0 dimensions; {_REFETCH}.")
    header_len = 4 + 4 * ndim
    if len(buffer) < header_len:
        raise DatasetError(
            f"{name}: truncated IDX header ({len(buffer)} bytes, need {header_len} for "
            f"{ndim} dimensions); {_REFETCH}."
        )
    dims = tuple(int(d) for d in np.frombuffer(buffer, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    # Python ints: prod of large uint32 dims must not overflow.
    expected = dtype.itemsize
    for d in dims:
        expected *= d
    actual = len(buffer) - header_len
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise DatasetError(
            f"{name}: {what}: the header says {'x'.join(map(str, dims))} of {dtype.name} "
            f"= {expected} payload bytes, the file has {actual}; {_REFETCH}."
        )
    array = np.frombuffer(buffer, dtype=dtype, offset=header_len).reshape(dims)
    # astype copies, which also makes the result writable (frombuffer on bytes is not).
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzipped or not (told by its first bytes, not its suffix).

    Returns the array in native byte order. Raises :class:`DatasetError` when the
    file cannot be read or its content is damaged (see :func:`parse_idx`).
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the file ({exc.strerror or exc}).") from exc
    return parse_idx(decompress(blob, path), path)


def _dtype_code(dtype: np.dtype) -> int:
    for code, idx_dtype in IDX_DTYPES.items():
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    known = ", ".join(d.newbyteorder("=").name for d in IDX_DTYPES.values())
    raise InputError(f"IDX cannot store dtype {dtype}; supported: {known}")


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write an array as an IDX file, atomically.

    Parameters
    ----------
    path : str or path-like
        Destination. Its folder must exist.
    array : array_like
        At least 1-d, of dtype uint8, int8, int16, int32, float32 or float64.
    compress : bool, optional
        Gzip the file. Default: when ``path`` ends with ``.gz``.

    Returns
    -------
    pathlib.Path
        The path written.

    Notes
    -----
    A temporary file renamed over ``path`` means readers never see a half-written
    file; gzip's ``mtime=0`` makes the same array give the same bytes.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.ndim == 0 or array.ndim > 255:
        raise InputError(f"IDX stores arrays with 1 to 255 dimensions, got {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise InputError(f"IDX dimensions must fit in uint32, got shape {array.shape}")
    code = _dtype_code(array.dtype)
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    data = header + payload
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        data = gzip.compress(data, mtime=0)

    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask decide permissions, as a plain open() would
    # (tempfile.mkstemp would leave the final file readable by its owner only).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
