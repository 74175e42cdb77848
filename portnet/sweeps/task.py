"""One sweep configuration: checked, identified, trained and written (what a worker runs)."""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, PortnetError
from ..training.run import prepare_data_of, prepare_run, train_run
from ..training.run_config import RunConfig

#: The options that say which images a run trains and is tested on.
DATA_OPTIONS = (
    "dataset",
    "data_dir",
    "normalize",
    "train_size",
    "test_size",
    "val_fraction",
    "val_size",
    "split_seed",
)

LOG_NAME = "sweep-log.jsonl"


class SweepError(PortnetError, RuntimeError):
    """Some configurations failed; the others' results are saved."""


# -- configurations -------------------------------------------------------------------


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A sweep configuration with every default filled in, checked; raises ConfigError.

    A sweep configuration is a :class:`~portnet.RunConfig` as a mapping, plus
    ``tags`` (labels for tables, not part of the run). Two configurations that
    train the same way normalise to the same dict, and so get the same id.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"a sweep configuration must be a mapping, got {type(config).__name__}")
    values = dict(config)
    tags = values.pop("tags", {})
    if not isinstance(tags, Mapping):
        raise ConfigError("tags must be a mapping of label: value")
    try:
        json.dumps(tags, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"tags must be plain JSON data: {exc}") from None
    return {**RunConfig.from_dict(values).to_dict(), "tags": copy.deepcopy(dict(tags))}


def run_config(config: Mapping[str, Any]) -> RunConfig:
    """The :class:`~portnet.RunConfig` of a sweep configuration (its tags left out)."""
    values = normalize_config(config)
    values.pop("tags")
    return RunConfig.from_dict(values)


def config_id(config: Mapping[str, Any]) -> str:
    """A stable 12-hex-digit id: :meth:`RunConfig.run_id` (tags, data folder, device and
    threads left out); the same in any process on any machine."""
    return run_config(config).run_id()


def config_seed(config: Mapping[str, Any]) -> int:
    """The configuration's ``seed``, or one derived from its id (:meth:`RunConfig.run_seed`)."""
    return run_config(config).run_seed()


def expand_grid(base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of ``grid``'s values on top of ``base`` (in a deterministic order)."""
    keys = list(grid)
    return [
        {**copy.deepcopy(dict(base)), **dict(zip(keys, values, strict=True))}
        for values in itertools.product(*(grid[k] for k in keys))
    ]


def needs_gpu(config: Mapping[str, Any]) -> bool:
    """Whether the configuration runs on a GPU (CuPy, or torch or JAX on a CUDA device)."""
    from ..backends import runs_on_gpu

    return runs_on_gpu(config.get("backend"), config.get("device"))


def result_path(out: str | os.PathLike, config: Mapping[str, Any]) -> Path:
    return Path(out) / f"{config_id(config)}.json"


def task_key(config: Mapping[str, Any], out: str | os.PathLike) -> str:
    """The Dask key of a configuration's task: the same for every driver writing to ``out``."""
    where = hashlib.sha256(str(Path(out).absolute()).encode("utf-8")).hexdigest()[:8]
    return f"portnet-sweep-{where}-{config_id(config)}"


# -- one configuration ----------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _prepared(data_json: str):
    return prepare_data_of(RunConfig.from_dict(json.loads(data_json)))


def data_key(config: Mapping[str, Any]) -> str:
    """The configuration's data options (:data:`DATA_OPTIONS`) as sorted JSON: equal for
    configurations that train and test on the same images."""
    cfg = run_config(config)
    data_only = {name: getattr(cfg, name) for name in DATA_OPTIONS}
    data_only["split_seed"] = cfg.run_seed() if cfg.split_seed is None else cfg.split_seed
    return json.dumps(data_only, sort_keys=True)


def prepare_config_data(config: Mapping[str, Any]):
    """The configuration's :class:`~portnet.data.prepare.PreparedData` (cached per process)."""
    return _prepared(data_key(config))


def build_model(config: Mapping[str, Any]):
    """The untrained :class:`portnet.Model` of a configuration."""
    return prepare_run(run_config(config), prepare_config_data(config)).model


def fit_config(config: Mapping[str, Any], verbose: int = 0) -> dict[str, Any]:
    """Build, train and evaluate one configuration in this process (:func:`portnet.train_run`,
    what the main job runs too).

    Returns
    -------
    dict
        ``model``, ``history``, ``data`` (PreparedData), ``val`` (``{"loss",
        "accuracy"}`` or None without a validation set), ``test`` and ``seconds``
        (training wall time).
    """
    result = train_run(run_config(config), prepare_config_data(config), verbose=verbose)
    return {field.name: getattr(result, field.name) for field in dataclasses.fields(result)}


def _log(out: Path, event: str, run_id: str, **extra: Any) -> None:
    line = {"id": run_id, "event": event, "host": socket.gethostname(), "pid": os.getpid()}
    line.update(time=time.time(), **extra)
    # One short append per event: O_APPEND keeps lines whole on a local file system.
    fd = os.open(out / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def train_config(config: Mapping[str, Any], out: str | os.PathLike) -> dict[str, Any]:
    """Train one configuration and write ``<out>/<id>.json`` atomically; skip it if done.

    This is what a sweep worker runs. Returns the record (the file's content), with
    ``"skipped": True`` when the file already existed.
    """
    from .. import __version__
    from ..io.model_file import atomic_write_bytes
    from ..tools.allocator import retain_freed_memory

    # A sweep worker is a process of ours that only trains: no page faults per step.
    retain_freed_memory()

    out = Path(out)
    cfg = normalize_config(config)
    run_id = config_id(cfg)
    path = out / f"{run_id}.json"
    if path.is_file():
        return {**json.loads(path.read_text(encoding="utf-8")), "skipped": True}
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    _log(out, "start", run_id)
    result = fit_config(cfg)
    model, history = result["model"], result["history"]
    record = {
        "id": run_id,
        "config": cfg,
        "tags": cfg["tags"],
        "seed": config_seed(cfg),
        "val_accuracy": result["val"]["accuracy"] if result["val"] else None,
        "val_loss": result["val"]["loss"] if result["val"] else None,
        "test_accuracy": result["test"]["accuracy"],
        "test_loss": result["test"]["loss"],
        "epochs_run": history.epochs_run,
        "seconds": result["seconds"],
        "history": history.to_dict(),
        "backend": model.backend.name,
        "device": model.backend.device_name,
        "data_source": result["data"].source,
        "portnet": __version__,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": started,
        "finished": time.time(),
    }
    payload = (json.dumps(record, indent=1) + "\n").encode("utf-8")
    atomic_write_bytes(path, lambda handle: handle.write(payload))
    _log(out, "done", run_id)
    return {**record, "skipped": False}


def load_results(out: str | os.PathLike) -> list[dict[str, Any]]:
    """Every result record in ``out`` (temporary files and other JSON files are ignored)."""
    records = []
    for path in sorted(Path(out).glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(record, dict) and record.get("id") == path.stem:
            records.append(record)
    return records


def top_k(
    records: Sequence[Mapping[str, Any]], k: int = 10, key: str = "test_accuracy"
) -> list[Mapping[str, Any]]:
    """The ``k`` best records by ``key``, ties broken by id so the order is stable."""
    return sorted(records, key=lambda r: (-r[key], r["id"]))[:k]
