"""Kill-safe checkpoints: a model file plus the progress of the :meth:`Model.fit` call.

:meth:`Model.fit` with ``checkpoint=PATH`` writes one after every epoch, through
a temporary file and a rename, so ``kill -9`` at any moment leaves either the
previous checkpoint or the new one, never a partial file. ``fit(...,
checkpoint=PATH, resume=True)`` on a model built the same way continues the
interrupted call: same remaining epochs, same shuffling and dropout (they follow
from the state's seed and epoch), same early-stopping bookkeeping, so it ends
where an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np

from .._array import Tree
from ..errors import ModelFileError
from ..training.callbacks import History
from .model_file import model_arrays, read_model_file, restore_training_state, write_model_file

_BEST = "best"


@dataclasses.dataclass
class FitProgress:
    """Where a :meth:`Model.fit` call stands: what a checkpoint needs to resume it exactly.

    Attributes
    ----------
    epochs : int
        Epochs the call was asked for.
    start_epoch : int
        ``TrainState.epoch`` when the call began.
    history : History
        The epochs run so far.
    best_value, best_epoch, bad_epochs :
        Early-stopping bookkeeping (``best_epoch`` counts from 1 within the call).
    best_params : list of dict or None
        The best weights so far (device arrays), restored on early stopping or
        divergence.
    """

    epochs: int
    start_epoch: int
    history: History = dataclasses.field(default_factory=History)
    best_value: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_params: Tree | None = None

    @property
    def epochs_done(self) -> int:
        return self.history.epochs_run

    def to_json(self) -> dict[str, Any]:
        """The JSON part (the best weights are stored as arrays beside it)."""
        return {
            "epochs": self.epochs,
            "start_epoch": self.start_epoch,
            "history": self.history.to_dict(),
            "best_value": None if math.isinf(self.best_value) else self.best_value,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], best_params: Tree | None) -> FitProgress:
        best = data.get("best_value")
        return cls(
            epochs=int(data["epochs"]),
            start_epoch=int(data["start_epoch"]),
            history=History.from_dict(data["history"]),
            best_value=math.inf if best is None else float(best),
            best_epoch=int(data["best_epoch"]),
            bad_epochs=int(data["bad_epochs"]),
            best_params=best_params,
        )


def save_checkpoint(model, path: str | os.PathLike, progress: FitProgress) -> None:
    """Write ``model`` (weights, optimizer, state) and ``progress`` to ``path`` atomically."""
    meta, arrays = model_arrays(model)
    meta["fit"] = progress.to_json()
    for i, layer in enumerate(progress.best_params or []):
        for key, value in layer.items():
            arrays[f"{_BEST}/{i}/{key}"] = model.backend.to_numpy(value)
    write_model_file(path, meta, arrays)


def restore_checkpoint(model, path: str | os.PathLike) -> FitProgress:
    """Load a checkpoint into ``model`` and return the progress of its ``fit`` call.

    Raises
    ------
    ModelFileError
        If the file is not a checkpoint, or was written by a different architecture.
    """
    record = read_model_file(path)
    if "fit" not in record.meta:
        raise ModelFileError(
            f"{path} is a model file, not a checkpoint (no fit progress): load it with "
            "Model.load, or resume from a file written by fit(checkpoint=...)."
        )
    if record.meta["network"] != model.network.get_config():
        raise ModelFileError(
            f"{path} was written by a different architecture than this model's: build the "
            "model as the checkpointed run did (same layers) before resuming."
        )
    model.set_weights(record.weights)
    restore_training_state(model, record, path)
    best: list[dict[str, Any]] = [{} for _ in model.state.params]
    for key, value in record.extra.items():
        kind, index, name = key.split("/")
        if kind == _BEST:
            best[int(index)][name] = model.backend.asarray(np.array(value), model.dtype)
    return FitProgress.from_json(record.meta["fit"], best if any(best) else None)
