"""Dataset registry: where MNIST-like datasets live, how to fetch them, how to trust them.

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
import importlib.util
import os
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from portnet.data.idx import GZIP_MAGIC, DatasetError, decompress, parse_idx

__all__ = [
    "DATASETS",
    "SAMPLE_DATASETS",
    "Dataset",
    "DatasetSpec",
    "FileSpec",
    "available_datasets",
    "load_dataset",
    "search_path",
]

SPLITS = ("X_train", "y_train", "X_test", "y_test")


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset release.

    Attributes
    ----------
    filename : str
        Name of the published file, e.g. ``train-images-idx3-ubyte.gz``. The same
        name without ``.gz`` is accepted for an uncompressed copy.
    md5 : str
        Published md5 of the ``.gz`` file (what the download is checked against).
    content_md5 : str or None
        md5 of the decompressed content, when a source for it is known. It lets a
        re-compressed archive (Debian's) or a gunzipped copy be verified too.
    shape : tuple of int
        Shape the IDX header must declare.
    """

    filename: str
    md5: str
    content_md5: str | None
    shape: tuple[int, ...]

    @property
    def raw_filename(self) -> str:
        return self.filename.removesuffix(".gz")


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: names, classes, download mirrors, files and folders."""

    name: str
    title: str
    class_names: tuple[str, ...]
    urls: tuple[str, ...]
    files: dict[str, FileSpec]
    system_dirs: tuple[str, ...] = ()
    apt_package: str | None = None
    homepage: str = ""

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset, as NumPy arrays on the host.

    Attributes
    ----------
    X_train, X_test : numpy.ndarray
        uint8 images, shape ``(N, 28, 28)``.
    y_train, y_test : numpy.ndarray
        uint8 labels in ``[0, n_classes)``, shape ``(N,)``.
    class_names : tuple of str
        Name of each class, indexed by label.
    name : str
        Registry name, e.g. ``"fashion_mnist"``.
    source : str
        The folder the files were read from, or ``"embedded sample (...)"``.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    name: str
    source: str
    # Per-file verification method, e.g. "md5 of .gz"; useful in logs and tests.
    verified: dict[str, str] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def _files(md5s: dict[str, str], content_md5s: dict[str, str | None]) -> dict[str, FileSpec]:
    names = {
        "X_train": ("train-images-idx3-ubyte.gz", (60000, 28, 28)),
        "y_train": ("train-labels-idx1-ubyte.gz", (60000,)),
        "X_test": ("t10k-images-idx3-ubyte.gz", (10000, 28, 28)),
        "y_test": ("t10k-labels-idx1-ubyte.gz", (10000,)),
    }
    return {
        key: FileSpec(filename, md5s[key], content_md5s[key], shape)
        for key, (filename, shape) in names.items()
    }


DATASETS: dict[str, DatasetSpec] = {
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        title="Fashion-MNIST",
        # Label order from the Fashion-MNIST README ("Labels" table).
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        # The S3 website endpoint is the official link in the README (http only);
        # the GitHub copy in the same repository is the https fallback.
        urls=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        files=_files(
            # Source: README.md of github.com/zalandoresearch/fashion-mnist, "Get the
            # Data" table (the same values are in torchvision datasets/mnist.py).
            md5s={
                "X_train": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "y_train": "25c81989df183df01b3e8a0aad5dffbe",
                "X_test": "bef4ecab320f06d8554ea6380940ec79",
                "y_test": "bb300cfdad3c16e7a12a480ee83cd310",
            },
            # md5 of the decompressed files, as listed in several public loaders
            # (e.g. a torchvision-based FashionMNIST loader's `raw_data` table).
            # Checked here: Debian's dataset-fashion-mnist re-gzips the files (its
            # .gz md5s differ from the README's) and decompresses to exactly these.
            content_md5s={
                "X_train": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                "y_train": "9018921c3c673c538a1fc5bad174d6f9",
                "X_test": "8181f5470baa50b63fa0f6fddb340f0a",
                "y_test": "15d484375f8d13e6eb1aabb0c3f46965",
            },
        ),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        apt_package="dataset-fashion-mnist",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST",
        class_names=tuple(str(d) for d in range(10)),
        # yann.lecun.com often refuses downloads now; torchvision lists the PyTorch
        # S3 mirror first for the same reason.
        urls=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        files=_files(
            # Source: torchvision/datasets/mnist.py, MNIST.resources.
            md5s={
                "X_train": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "y_train": "d53e105ee54ea40749a09fcbcd1e9432",
                "X_test": "9fb629c4189551a2d022fa330f9573f3",
                "y_test": "ec29112dd5afa0611ce80d1b7f02629c",
            },
            # md5 of the decompressed files, as listed (with the decompressed size
            # 47040016 for the training images) in public MNIST loaders; not checked
            # on this machine, which has no MNIST copy.
            content_md5s={
                "X_train": "6bbc9ace898e44ae57da46a324031adb",
                "y_train": "a25bea736e30d166cdddb491f175f624",
                "X_test": "2646ac647ad5339dbf082846283269ea",
                "y_test": "27ae3e4e09519cfbb04c329615203637",
            },
        ),
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "kmnist": DatasetSpec(
        name="kmnist",
        title="Kuzushiji-MNIST",
        # Romanised hiragana, label order of kmnist_classmap.csv (rois-codh/kmnist).
        class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        urls=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        files=_files(
            # Source: torchvision/datasets/mnist.py, KMNIST.resources.
            md5s={
                "X_train": "bdb82020997e1d708af4cf47b453dcf7",
                "y_train": "e144d726b3acfaa3e44228e80efcd344",
                "X_test": "5c965bf0a639b31b8f53240b1b52f4d7",
                "y_test": "7320c461ea6c1c855c0b718fb2a4b134",
            },
            # No published md5 of the decompressed files: an uncompressed copy is
            # validated by its IDX header and expected shape only.
            content_md5s=dict.fromkeys(SPLITS),
        ),
        homepage="https://github.com/rois-codh/kmnist",
    ),
}

#: Datasets shipped inside the package: name -> (npz file next to this module, parent).
SAMPLE_DATASETS: dict[str, tuple[str, str]] = {
    "fashion_mnist_sample": ("fashion_mnist_sample.npz", "fashion_mnist"),
}


def available_datasets() -> tuple[str, ...]:
    """Names accepted by :func:`load_dataset`."""
    return (*DATASETS, *SAMPLE_DATASETS)


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    if key not in DATASETS and key not in SAMPLE_DATASETS:
        known = ", ".join(available_datasets())
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {known}.")
    return key


def _cache_root() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "portnet"


def _search_path(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> list[tuple[Path, str]]:
    """Folders to look in, in order, each with a short note of why it is there."""
    folders: list[tuple[Path, str]] = []
    if data_dir is not None:
        # Absolute, so messages and Dataset.source say exactly which folder was used.
        folders.append((Path(data_dir).expanduser().absolute(), "data_dir / --data-dir"))
    env = os.environ.get("PORTNET_DATA_DIR")
    if env:
        folders.append((Path(env).expanduser().absolute() / spec.name, "$PORTNET_DATA_DIR/<name>"))
    folders.append((_cache_root() / spec.name, "user cache, $XDG_CACHE_HOME/portnet/<name>"))
    for system_dir in spec.system_dirs:
        note = f"package {spec.apt_package}" if spec.apt_package else "system folder"
        folders.append((Path(system_dir), note))
    return folders


def search_path(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders :func:`load_dataset` searches for ``name``, in order.

    Parameters
    ----------
    name : str
        A registered IDX dataset, e.g. ``"fashion_mnist"``.
    data_dir : str or path-like, optional
        An explicit folder, searched first.

    Returns
    -------
    list of pathlib.Path
    """
    key = _canonical_name(name)
    if key not in DATASETS:
        raise DatasetError(f"dataset {key!r} is shipped with portnet; it has no search path.")
    return [folder for folder, _ in _search_path(DATASETS[key], data_dir)]


def _find_files(folder: Path, spec: DatasetSpec) -> tuple[dict[str, Path], list[str]]:
    """Return the files present in ``folder`` (by split) and the names missing."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, fspec in spec.files.items():
        # Prefer the .gz: its published md5 is the strongest check available.
        for candidate in (folder / fspec.filename, folder / fspec.raw_filename):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            missing.append(fspec.filename)
    return found, missing


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


def _download(spec: DatasetSpec, folder: Path, missing: Sequence[str]) -> None:
    """Fetch the missing files into ``folder`` with pooch, checked against their md5."""
    # Lazy import: pooch is optional (extra "data") and only needed to download.
    # Imported before mkdir so a missing pooch leaves no empty folder behind.
    import pooch

    # pooch's bar needs tqdm; a bar in a log file is noise, so only on a terminal.
    progressbar = sys.stdout.isatty() and importlib.util.find_spec("tqdm") is not None
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _retrieve_all(pooch, spec, folder, missing, progressbar)
    except BaseException:
        # Offline: leave no empty folder behind that the user did not ask for.
        if created and not any(folder.iterdir()):
            folder.rmdir()
        raise


def _retrieve_all(
    pooch, spec: DatasetSpec, folder: Path, missing: Sequence[str], progressbar: bool
) -> None:
    by_name = {f.filename: f for f in spec.files.values()}
    for filename in missing:
        errors = []
        for base in spec.urls:
            try:
                # pooch downloads to a temporary file, checks the hash, then renames
                # it into place, so an interrupted download never leaves a bad file.
                pooch.retrieve(
                    url=base + filename,
                    known_hash=f"md5:{by_name[filename].md5}",
                    fname=filename,
                    path=folder,
                    progressbar=progressbar,
                )
                break
            except Exception as exc:  # any failure: try the next mirror
                errors.append(f"{base}{filename}: {type(exc).__name__}: {exc}")
        else:
            raise OSError("; ".join(errors))


def _not_found(
    spec: DatasetSpec,
    report: list[str],
    download_note: str,
    target: Path,
) -> DatasetError:
    names = ", ".join(f.filename for f in spec.files.values())
    how = [
        f"on a machine with internet access, download {names} from {spec.urls[0]} and "
        f"copy the 4 files into one of the folders above, e.g. {target}",
    ]
    if spec.apt_package:
        how.append(f"or install the Debian/Ubuntu package: sudo apt-get install {spec.apt_package}")
    how.append(
        "or pass data_dir=FOLDER (--data-dir FOLDER on the command line) for a folder "
        "that holds them"
    )
    if spec.name == "fashion_mnist":
        how.append(
            "or, for an offline demo, use the dataset 'fashion_mnist_sample' "
            "(2,000 + 500 images shipped with portnet)"
        )
    how = [f"  - {line}" for line in how]
    return DatasetError(
        f"{spec.title} ({spec.name}) was not found and could not be downloaded.\n"
        f"Looked for {names} (or the same names without .gz) in:\n"
        + "\n".join(report)
        + f"\n{download_note}\nHow to get the data:\n"
        + "\n".join(how)
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
        if not folder.is_dir():
            state = "no such folder"
        elif found:
            state = f"has {len(found)} of 4 files, missing {', '.join(missing)}"
        else:
            state = "none of the files"
        report.append(f"  - {folder} ({why}): {state}")

    # Downloads go where the user pointed (data_dir, $PORTNET_DATA_DIR) or else to
    # the user cache; never into a system folder.
    system = {Path(d) for d in spec.system_dirs}
    target = next(f for f, _ in folders if f not in system)
    if not download:
        note = "Download was not attempted (download=False)."
    else:
        _, missing = _find_files(target, spec)
        try:
            _download(spec, target, missing)
        except ImportError as exc:
            note = (
                f"Download was not attempted: pooch is not installed or cannot be "
                f"imported ({exc}); pip install pooch."
            )
        except Exception as exc:  # offline, refused, bad hash...
            note = f"Download into {target} failed: {exc}"
        else:
            found, missing = _find_files(target, spec)
            if not missing:
                return _load_folder(target, found, spec)
            note = f"Download into {target} left files missing: {', '.join(missing)}"
    raise _not_found(spec, report, note, target)
