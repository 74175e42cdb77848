"""Saving and loading models: ``.npz`` arrays plus JSON metadata, no pickle, written atomically.

The file holds one array per parameter (``params/<layer>/<name>``) and the
architecture as UTF-8 JSON in a uint8 array (``__portnet__``), so it loads with
``allow_pickle=False`` and onto any backend.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelFileError

FORMAT = "portnet-model"
VERSION = 1
_META_KEY = "__portnet__"


def atomic_write_bytes(path: str | os.PathLike, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    A crash or error part-way leaves no half-written file at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp makes the file private (0600); give it the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` (see module docstring for the format)."""
    arrays: dict[str, np.ndarray] = {}
    for i, layer in enumerate(model.get_weights()):
        for key, value in layer.items():
            arrays[f"params/{i}/{key}"] = value
    meta = {
        "format": FORMAT,
        "version": VERSION,
        **model.get_config(),
        "optimizer": repr(model.optimizer),
        "backend": model.backend.name,
        "epochs_trained": model._epochs_done,
    }
    arrays[_META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    atomic_write_bytes(path, lambda handle: np.savez(handle, **arrays))


def read_model_file(path: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, np.ndarray]]]:
    """Read the metadata and host weights of a saved model, validating the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"No model file at {path}: check the path (models are saved as .npz).")
    try:
        with np.load(path, allow_pickle=False) as data:
            contents = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ModelFileError(
            f"{path} is not a readable portnet model file ({exc}); "
            "it may be truncated or not a .npz: save the model again."
        ) from None
    if _META_KEY not in contents:
        raise ModelFileError(
            f"{path} is a .npz file but not a portnet model (no {_META_KEY} entry)."
        )
    try:
        meta = json.loads(contents.pop(_META_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: the model metadata is corrupt ({exc}).") from None
    if meta.get("format") != FORMAT or meta.get("version", 0) > VERSION:
        raise ModelFileError(
            f"{path}: unsupported model format {meta.get('format')!r} "
            f"version {meta.get('version')!r}; upgrade portnet."
        )
    n_layers = len(meta["network"]["layers"])
    weights: list[dict[str, np.ndarray]] = [{} for _ in range(n_layers)]
    for key, value in contents.items():
        _, index, name = key.split("/")
        weights[int(index)][name] = value
    return meta, weights


def load_model(path, backend=None, device=None, dtype: str | None = None):
    """Load a model saved by :func:`save_model` onto ``backend``/``device``.

    The weights are exactly the saved ones; ``dtype`` defaults to the saved dtype.
    """
    from .layers import Sequential
    from .model import Model

    meta, weights = read_model_file(path)
    network = Sequential(meta["network"]["layers"])
    model = Model(
        network,
        loss=meta["loss"],
        backend=backend,
        device=device,
        dtype=dtype or meta["dtype"],
        seed=meta.get("seed", 0),
    )
    try:
        model.set_weights(weights)
    except ValueError as exc:
        raise ModelFileError(f"{path}: the weights do not fit the architecture ({exc}).") from None
    model._epochs_done = int(meta.get("epochs_trained", 0))
    return model
