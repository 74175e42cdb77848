"""Finding a dataset's files on disk and downloading the missing ones.

The search order of :func:`search_path` (``data_dir``, ``$PORTNET_DATA_DIR/<name>``,
the user cache, system folders), the check of which files a folder holds, the
download of missing files with pooch from the registered mirrors, and the error
that lists every folder searched and how to get the data when none has them.
:func:`search_path` is also importable from :mod:`portnet.data`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from portnet.data.catalog import DATASETS, DatasetSpec, _canonical_name
from portnet.data.idx import DatasetError


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
