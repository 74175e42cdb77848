"""The model file: ``.npz`` arrays plus JSON metadata, no pickle, written atomically.

The file holds one array per parameter (``params/<layer>/<name>``), one per
optimizer buffer (``opt/<layer>/<name>/<slot>``) and a description as UTF-8 JSON
in a uint8 array (``__portnet__``): the architecture, the loss, the optimizer
(class, hyper-parameters, schedule), the regularizers, and the training state's
step count, epoch and seed. It loads with ``allow_pickle=False`` and onto any
backend, and a loaded model trains on exactly as the original would.

Version 1 files (weights and architecture only) still load; their optimizer is
then the default Adam with fresh state, as before.

This module knows the file, not the :class:`~portnet.Model` class: it reads and
writes a model through its public attributes, and :meth:`Model.load` builds the
model from :func:`read_model_file`'s record.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..config import spec_of
from ..errors import ConfigError, ModelFileError

FORMAT = "portnet-model"
VERSION = 2
_META_KEY = "__portnet__"


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_write_bytes` left beside ``path``.

    A ``kill -9`` during a write leaves ``path`` whole (the old or the new file) but
    cannot remove the temporary it was writing. Call this where only one writer of
    ``path`` runs, e.g. when a run resumes from its checkpoint.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = [p for p in path.parent.glob(f"{_temporary_prefix(path)}*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def atomic_write_bytes(path: str | os.PathLike, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    A crash or error part-way leaves no half-written file at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
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


@dataclasses.dataclass
class ModelRecord:
    """What a model file holds, on the host.

    Attributes
    ----------
    meta : dict
        The JSON description (see the module docstring).
    weights : list of dict
        The parameters, one dict of NumPy arrays per layer.
    slots : list of dict
        The optimizer buffers: per trainable layer, ``{param: {slot: array}}``;
        empty lists for version 1 files.
    extra : dict
        Any other arrays (a checkpoint's best weights), by their full key.
    """

    meta: dict[str, Any]
    weights: list[dict[str, np.ndarray]]
    slots: list[dict[str, dict[str, np.ndarray]]]
    extra: dict[str, np.ndarray]


def model_arrays(model) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The metadata and arrays :func:`save_model` writes, from a model's public state."""
    arrays: dict[str, np.ndarray] = {}
    for i, layer in enumerate(model.get_weights()):
        for key, value in layer.items():
            arrays[f"params/{i}/{key}"] = value
    state = model.state
    for i, layer in enumerate(state.opt_state["slots"]):
        for key, slots in layer.items():
            for name, value in slots.items():
                arrays[f"opt/{i}/{key}/{name}"] = model.backend.to_numpy(value)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        **model.get_config(),
        "optimizer": spec_of(model.optimizer),
        "regularizers": [spec_of(reg) for reg in model.regularizers],
        "backend": model.backend.name,
        "state": {"epoch": state.epoch, "seed": state.seed, "t": int(state.opt_state["t"])},
        # Version 1 readers looked here.
        "epochs_trained": state.epoch,
    }
    return meta, arrays


def write_model_file(
    path: str | os.PathLike, meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> None:
    """Write ``meta`` and ``arrays`` as a model file, atomically."""
    arrays = dict(arrays)
    arrays[_META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    atomic_write_bytes(path, lambda handle: np.savez(handle, **arrays))


def save_model(model, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` (see the module docstring for the format)."""
    write_model_file(path, *model_arrays(model))


def read_model_file(path: str | os.PathLike) -> ModelRecord:
    """Read and validate a model file (or a checkpoint) into a :class:`ModelRecord`."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"No model file at {path}: check the path (models are saved as .npz).")
    try:
        # Our own handle: np.load leaks the one it opens when the zip is truncated.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
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
    if (
        not isinstance(meta, dict)
        or meta.get("format") != FORMAT
        or not isinstance(meta.get("version"), int)
        or meta["version"] > VERSION
    ):
        raise ModelFileError(
            f"{path}: unsupported model format {_get(meta, 'format')!r} "
            f"version {_get(meta, 'version')!r}; upgrade portnet."
        )
    try:
        n_layers = len(meta["network"]["layers"])
        weights: list[dict[str, np.ndarray]] = [{} for _ in range(n_layers)]
        slots: list[dict[str, dict[str, np.ndarray]]] = [{} for _ in range(n_layers)]
        extra: dict[str, np.ndarray] = {}
        for key, value in contents.items():
            parts = key.split("/")
            if parts[0] == "params" and len(parts) == 3:
                weights[int(parts[1])][parts[2]] = value
            elif parts[0] == "opt" and len(parts) == 4:
                slots[int(parts[1])].setdefault(parts[2], {})[parts[3]] = value
            else:
                extra[key] = value
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelFileError(f"{path}: the model file's layout is corrupt ({exc!r}).") from None
    return ModelRecord(meta, weights, slots, extra)


def _get(meta: Any, key: str) -> Any:
    return meta.get(key) if isinstance(meta, dict) else None


def restore_training_state(model, record: ModelRecord, path: str | os.PathLike) -> None:
    """Put a file's optimizer buffers, step count, epoch and seed into ``model.state``.

    ``model`` must have the file's weights already (see :meth:`Model.load`). Files
    without optimizer state (version 1) keep the fresh state.
    """
    saved = record.meta.get("state")
    if saved is None:
        model.state = model.state.replace(epoch=int(record.meta.get("epochs_trained", 0)))
        return
    state = model.state
    backend, dtype = model.backend, model.dtype
    slots = []
    for i, layer in enumerate(state.opt_state["slots"]):
        restored = {}
        for key, names in layer.items():
            try:
                restored[key] = {
                    name: backend.asarray(np.array(record.slots[i][key][name]), dtype)
                    for name in names
                }
            except (KeyError, IndexError):
                raise ModelFileError(
                    f"{path}: the optimizer state does not fit the model "
                    f"(no buffer for layer {i} {key}); save the model again."
                ) from None
        slots.append(restored)
    model.state = state.replace(
        opt_state={**state.opt_state, "t": int(saved["t"]), "slots": slots},
        epoch=int(saved["epoch"]),
        seed=int(saved["seed"]),
    )


def load_model(model_class, path, backend=None, device=None, dtype=None):
    """:meth:`portnet.Model.load`: a ``model_class`` instance from a saved model file."""
    from ..layers.base import Sequential
    from ..training.losses import loss_from_spec
    from ..training.optim import optimizer_from_spec
    from ..training.regularizers import regularizer_from_spec

    record = read_model_file(path)
    meta = record.meta
    try:
        optimizer = optimizer_from_spec(meta["optimizer"]) if "state" in meta else "adam"
        regularizers = [regularizer_from_spec(r) for r in meta.get("regularizers", [])]
        model = model_class(
            Sequential(meta["network"]["layers"]),
            loss=loss_from_spec(meta["loss"]),
            optimizer=optimizer,
            regularizers=regularizers,
            backend=backend,
            device=device,
            dtype=dtype or meta["dtype"],
            seed=meta.get("seed", 0),
            test_time_flip=meta.get("test_time_flip", False),
            test_time_shift=meta.get("test_time_shift", 0),
        )
        model.set_weights(record.weights)
    except (ConfigError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: the file does not describe a valid model ({exc}).") from None
    with model.backend.device_scope():
        restore_training_state(model, record, path)
    return model
