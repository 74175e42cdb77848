"""Dataset registry: where MNIST-like datasets live, how to fetch them, how to trust them.

This module loads and verifies; the registered datasets themselves are in
:mod:`portnet.data.catalog` and the search path and downloads in
:mod:`portnet.data.fetch`. Import the public names from :mod:`portnet.data`.

:func:`load_dataset` looks for the four IDX files of a dataset in, in order:

1. the ``data_dir`` argument (the folder that holds the files),
2. ``$PORTNET_DATA_DIR/<name>``,
3. ``$XDG_CACHE_HOME/portnet/<name>`` (default ``~/.cache/portnet/<name>``),
4. system folders (``/usr/share/datasets/fashion-mnist`` from Debian's
   ``dataset-fashion-mnist`` package),

and downloads them with pooch when none has them. Every file is checked against
its published checksum before use; a file that fails is reported, never used.

The dataset ``fashion_mnist_sample`` is a stratified subset of Fashion-MNIST
(2,000 training and 500 test images) shipped inside portnet for offline demos and
fast tests. Fashion-MNIST is Copyright (c) 2017 Zalando SE and released under the
MIT licence; see ``FASHION_MNIST_LICENSE.txt`` next to this file.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from portnet.data.catalog import (
    DATASETS,
    SAMPLE_DATASETS,
    SPLITS,
    Dataset,
    DatasetSpec,
    FileSpec,
    _canonical_name,
)
from portnet.data.fetch import _download, _find_files, _not_found, _search_path
from portnet.data.idx import GZIP_MAGIC, DatasetError, decompress, parse_idx

__all__ = ["load_dataset"]


# (resolved path, size, mtime_ns, expected FileSpec) -> how the file was verified.
# Loading the same dataset twice in one process then skips hashing ~30 MB again; a
# changed file has a new size or mtime and is hashed afresh. The FileSpec is part
# of the key because MNIST and Fashion-MNIST files share names: a folder verified
# as one must not pass unchecked as the other.
_VERIFIED: dict[tuple[str, int, int, FileSpec], str] = {}


def _checksum_error(path: Path, spec: DatasetSpec, fspec: FileSpec, detail: str) -> DatasetError:
    if str(path.parent) in spec.system_dirs and spec.apt_package:
        # A system folder is not the user's to edit: the package manager restores it.
        fix = f"reinstall it: sudo apt-get install --reinstall {spec.apt_package}"
    else:
        fix = (
            f"delete it (rm '{path}') and load again to re-download it, or copy a good "
            f"copy of {fspec.filename} into {path.parent}"
        )
    return DatasetError(
        f"{path}: checksum mismatch for {spec.title} file {fspec.filename}: {detail}. "
        f"The file is damaged, incomplete or belongs to another dataset, so it was not "
        f"used. Fix: {fix}."
    )


def _read_verified(path: Path, spec: DatasetSpec, fspec: FileSpec) -> tuple[np.ndarray, str]:
    """Read one IDX file after checking its checksum (or, if none applies, its shape)."""
    try:
        stat = path.stat()
        blob = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the file ({exc.strerror or exc}).") from exc
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, fspec)
    method = _VERIFIED.get(key)
    is_gzip = blob[:2] == GZIP_MAGIC

    if method is not None:
        raw = decompress(blob, path)
    elif is_gzip:
        gz_md5 = hashlib.md5(blob).hexdigest()
        if gz_md5 == fspec.md5:
            method = "md5 of .gz (published)"
            raw = decompress(blob, path)
        else:
            # Not the published archive. It may still hold the published content,
            # re-compressed (Debian re-gzips Fashion-MNIST), so compare the content.
            detail = f"expected md5 {fspec.md5} (published .gz), got {gz_md5}"
            try:
                raw = decompress(blob, path)
            except DatasetError as exc:
                raise _checksum_error(
                    path, spec, fspec, f"{detail}; it does not even decompress ({exc.__cause__})"
                ) from exc
            content_md5 = hashlib.md5(raw).hexdigest()
            if fspec.content_md5 is None:
                raise _checksum_error(path, spec, fspec, detail)
            if content_md5 != fspec.content_md5:
                raise _checksum_error(
                    path,
                    spec,
                    fspec,
                    f"{detail}; decompressed content md5 {content_md5}, "
                    f"expected {fspec.content_md5}",
                )
            method = "md5 of decompressed content (re-compressed archive)"
    else:
        raw = blob
        if fspec.content_md5 is not None:
            content_md5 = hashlib.md5(raw).hexdigest()
            if content_md5 != fspec.content_md5:
                raise _checksum_error(
                    path,
                    spec,
                    fspec,
                    f"expected md5 {fspec.content_md5} (uncompressed file), got {content_md5}",
                )
            method = "md5 of uncompressed file"
        else:
            # The published md5 is of the .gz, which says nothing about an
            # uncompressed copy; the IDX header and expected shape are checked below.
            method = "IDX header and shape only (no published md5 for uncompressed file)"

    array = parse_idx(raw, path)
    if array.shape != fspec.shape or array.dtype != np.uint8:
        raise DatasetError(
            f"{path}: expected {spec.title} {fspec.raw_filename} to hold uint8 "
            f"{fspec.shape}, found {array.dtype} {array.shape}; the file belongs to "
            f"another dataset or is damaged: delete it and download or copy it again."
        )
    _VERIFIED[key] = method
    return array, method


def _check_labels(y: np.ndarray, n_classes: int, where: str) -> None:
    if y.size and int(y.max()) >= n_classes:
        bad = int(np.count_nonzero(y >= n_classes))
        raise DatasetError(
            f"{where}: {bad} labels outside [0, {n_classes}) (max {int(y.max())}); "
            f"the file is damaged or belongs to another dataset: delete it and "
            f"download or copy it again."
        )


def _load_folder(folder: Path, files: dict[str, Path], spec: DatasetSpec) -> Dataset:
    arrays: dict[str, np.ndarray] = {}
    verified: dict[str, str] = {}
    for key, path in files.items():
        arrays[key], verified[path.name] = _read_verified(path, spec, spec.files[key])
    for key in ("y_train", "y_test"):
        _check_labels(arrays[key], spec.n_classes, str(files[key]))
    return Dataset(
        **arrays,
        class_names=spec.class_names,
        name=spec.name,
        source=str(folder),
        verified=verified,
    )


def _load_sample(name: str) -> Dataset:
    filename, parent = SAMPLE_DATASETS[name]
    path = Path(__file__).with_name(filename)
    spec = DATASETS[parent]
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: np.ascontiguousarray(npz[key]) for key in SPLITS}
    except FileNotFoundError as exc:
        raise DatasetError(
            f"{path}: the embedded sample is missing from this portnet installation; "
            f"reinstall portnet, or regenerate it with tools/make_fashion_sample.py."
        ) from exc
    except (RuntimeError, NotImplementedError) as exc:
        # The members are LZMA-compressed (see tools/make_fashion_sample.py); a Python
        # built without the lzma module cannot read them.
        raise DatasetError(
            f"{path}: cannot decompress the embedded sample ({exc}). This Python lacks "
            f"the lzma module; use a Python built with it, or load {parent!r} instead."
        ) from exc
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DatasetError(
            f"{path}: the embedded sample is damaged ({exc}); reinstall portnet, or "
            f"regenerate it with tools/make_fashion_sample.py."
        ) from exc
    for key in SPLITS:
        a = arrays[key]
        images = key.startswith("X")
        if a.dtype != np.uint8 or a.ndim != (3 if images else 1):
            raise DatasetError(f"{path}: {key} has dtype {a.dtype} shape {a.shape}; damaged.")
    for split in ("train", "test"):
        if len(arrays[f"X_{split}"]) != len(arrays[f"y_{split}"]):
            raise DatasetError(f"{path}: X_{split} and y_{split} differ in length; damaged.")
        _check_labels(arrays[f"y_{split}"], spec.n_classes, f"{path} y_{split}")
    return Dataset(
        **arrays,
        class_names=spec.class_names,
        name=name,
        source=f"embedded sample ({path})",
        verified={path.name: "shipped with portnet"},
    )


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> Dataset:
    """Load a registered dataset as NumPy arrays on the host.

    Parameters
    ----------
    name : str
        ``"fashion_mnist"``, ``"mnist"``, ``"kmnist"`` or ``"fashion_mnist_sample"``
        (dashes are accepted for underscores).
    data_dir : str or path-like, optional
        Folder holding the four IDX files (``.gz`` or uncompressed). Searched first,
        and the place downloads go when given.
    download : bool
        Download missing files with pooch when no folder has them.

    Returns
    -------
    Dataset
        ``X_train``/``X_test`` uint8 ``(N, 28, 28)``, ``y_train``/``y_test`` uint8
        labels, ``class_names``, ``name`` and ``source``.

    Raises
    ------
    DatasetError
        Unknown name; data not found and not downloadable (the message lists every
        folder searched and how to get the data); a file failing its checksum, IDX
        validation, expected shape or label range (the message names the file and
        the fix).

    Notes
    -----
    Search order: ``data_dir``, ``$PORTNET_DATA_DIR/<name>``,
    ``$XDG_CACHE_HOME/portnet/<name>`` (default ``~/.cache/portnet/<name>``), system
    folders such as ``/usr/share/datasets/fashion-mnist``, then download. The first
    folder holding all four files is used; a damaged file there is an error, never
    a reason to silently try the next folder. Downloads go to the first folder of
    the search order that is not a system folder.

    Each ``.gz`` file must match its published md5, or decompress to content whose
    md5 matches the known md5 of the uncompressed file (re-compressed archives such
    as Debian's). Uncompressed files are checked against that content md5 when one
    is known, otherwise by IDX header and expected shape only.
    """
    key = _canonical_name(name)
    if key in SAMPLE_DATASETS:
        return _load_sample(key)
    spec = DATASETS[key]
    folders = _search_path(spec, data_dir)
    report = []
    for folder, why in folders:
        found, missing = _find_files(folder, spec)
        if not missing:
            return _load_folder(folder, found, spec)
        report.append(f"  - {folder} ({why}): {_folder_state(folder, found, missing)}")

    # Downloads go where the user pointed (data_dir, $PORTNET_DATA_DIR) or else to
    # the user cache; never into a system folder.
    system = {Path(d) for d in spec.system_dirs}
    target = next(f for f, _ in folders if f not in system)
    if not download:
        note = "Download was not attempted (download=False)."
    else:
        note = _try_download(spec, target)
        if note is None:
            return _load_folder(target, _find_files(target, spec)[0], spec)
    raise _not_found(spec, report, note, target)


def _folder_state(folder: Path, found: dict[str, Path], missing: list[str]) -> str:
    """What a searched folder holds, for the not-found message."""
    if not folder.is_dir():
        return "no such folder"
    if found:
        return f"has {len(found)} of 4 files, missing {', '.join(missing)}"
    return "none of the files"


def _try_download(spec: DatasetSpec, target: Path) -> str | None:
    """Download the missing files into ``target``: None when all four are then
    there, else why not (for the not-found message)."""
    _, missing = _find_files(target, spec)
    try:
        _download(spec, target, missing)
    except ImportError as exc:
        return (
            f"Download was not attempted: pooch is not installed or cannot be "
            f"imported ({exc}); pip install pooch."
        )
    except Exception as exc:  # offline, refused, bad hash...
        return f"Download into {target} failed: {exc}"
    _, missing = _find_files(target, spec)
    if missing:
        return f"Download into {target} left files missing: {', '.join(missing)}"
    return None
