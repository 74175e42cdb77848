"""One sweep configuration: checked, identified, trained and written (what a worker runs)."""

from __future__ import annotations

import copy
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

from ..config import check_number
from ..errors import ConfigError, PortnetError

#: Every key of a configuration and its default; ``layers`` and ``optimizer`` are required.
DEFAULTS: dict[str, Any] = {
    "layers": None,  # [{"class": ..., "config": {...}}, ...]
    "optimizer": None,  # {"class": ..., "config": {...}}; "lr" may be a schedule spec
    "loss": "softmax_cross_entropy",
    "l1": 0.0,
    "l2": 0.0,
    "regularizers": [],  # [{"class": "L2", "config": {"lam": ...}}, ...]
    "data": {},  # keys of DATA_DEFAULTS
    "epochs": 1,
    "batch_size": 128,
    "patience": None,
    "seed": None,  # None: derived from the configuration's id
    "backend": "numpy",
    "device": None,
    "dtype": "float32",
    "compile": False,  # train with jax.jit (Model.fit's compile=True); jax backend only
    "tags": {},  # labels for tables; not part of the id
}

#: The ``data`` entry: arguments of :func:`portnet.data.prepare.prepare_data`.
DATA_DEFAULTS: dict[str, Any] = {
    "dataset": "fashion_mnist",
    "data_dir": None,  # where this machine keeps it; not part of the id
    "normalize": "scale",
    "train_size": None,
    "test_size": None,
    "val_fraction": None,
    "val_size": None,
    "seed": 0,  # the subset and the validation split (the same for every configuration)
}

LOG_NAME = "sweep-log.jsonl"


class SweepError(PortnetError, RuntimeError):
    """Some configurations failed; the others' results are saved."""


# -- configurations -------------------------------------------------------------------


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration with every default filled in, checked; raises ConfigError.

    The layers, optimizer and regularizers are built once to check their classes
    and numbers (no parameters are allocated), the backend name must be known and
    the data set registered. Two configurations that train the same way normalise
    to the same dict, and so get the same id.
    """
    from .. import Sequential, get_loss
    from ..backends import known_backends
    from ..data import available_datasets
    from ..data.prepare import NORMALIZATIONS
    from ..optim import optimizer_from_spec
    from ..regularizers import regularizer_from_spec

    if not isinstance(config, Mapping):
        raise ConfigError(f"a sweep configuration must be a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in a sweep configuration; "
            f"known: {', '.join(DEFAULTS)}"
        )
    cfg = {**copy.deepcopy(DEFAULTS), **copy.deepcopy(dict(config))}
    for key in ("layers", "optimizer"):
        if cfg[key] is None:
            raise ConfigError(f"a sweep configuration needs {key!r}")
    if not isinstance(cfg["layers"], list) or not cfg["layers"]:
        raise ConfigError("layers must be a non-empty list of {'class', 'config'} specs")
    try:
        Sequential(cfg["layers"])
        optimizer_from_spec(cfg["optimizer"])
        for spec in cfg["regularizers"]:
            regularizer_from_spec(spec)
        get_loss(cfg["loss"])
    except (TypeError, KeyError) as exc:  # a spec of the wrong shape
        raise ConfigError(f"a sweep configuration does not build: {exc!r}") from None
    cfg["l1"] = check_number("l1", cfg["l1"], low=0)
    cfg["l2"] = check_number("l2", cfg["l2"], low=0)
    cfg["epochs"] = check_number("epochs", cfg["epochs"], low=1, integer=True)
    cfg["batch_size"] = check_number("batch_size", cfg["batch_size"], low=1, integer=True)
    for key in ("patience", "seed"):
        if cfg[key] is not None:
            cfg[key] = check_number(key, cfg[key], low=0, integer=True)
    backend = str(cfg["backend"]).strip().lower()
    if backend not in known_backends():
        raise ConfigError(
            f"unknown backend {cfg['backend']!r}; known backends: {', '.join(known_backends())}"
        )
    cfg["backend"] = backend
    if not isinstance(cfg["compile"], bool):
        raise ConfigError(f"compile must be true or false, got {cfg['compile']!r}")
    if cfg["compile"] and backend != "jax":
        raise ConfigError(
            f"compile: true compiles the training step with jax.jit and needs backend jax; "
            f"this configuration's backend is {backend}. Drop compile or use backend jax."
        )
    if cfg["dtype"] not in ("float32", "float64"):
        raise ConfigError(f"dtype must be float32 or float64, got {cfg['dtype']!r}")
    data = cfg["data"]
    if not isinstance(data, Mapping) or set(data) - set(DATA_DEFAULTS):
        raise ConfigError(f"data must be a mapping with keys among {', '.join(DATA_DEFAULTS)}")
    data = cfg["data"] = {**DATA_DEFAULTS, **data}
    data["dataset"] = str(data["dataset"]).strip().lower().replace("-", "_")
    if data["dataset"] not in available_datasets():
        raise ConfigError(
            f"unknown data set {data['dataset']!r}; known: {', '.join(available_datasets())}"
        )
    if data["normalize"] not in NORMALIZATIONS:
        raise ConfigError(f"data.normalize must be one of {', '.join(NORMALIZATIONS)}")
    if not isinstance(cfg["tags"], Mapping):
        raise ConfigError("tags must be a mapping of label: value")
    try:
        json.dumps(cfg, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"a sweep configuration must be plain JSON data: {exc}") from None
    return cfg


def config_id(config: Mapping[str, Any]) -> str:
    """A stable 12-hex-digit id: SHA-256 of the normalised configuration's sorted JSON.

    ``tags`` and ``data.data_dir`` (labels, and where a machine keeps the data) are
    left out, and ``compile`` when false (so ids from before it existed still hold).
    The same configuration gets the same id in any process on any machine.
    """
    cfg = normalize_config(config)
    cfg.pop("tags")
    if not cfg["compile"]:
        cfg.pop("compile")
    cfg["data"].pop("data_dir")
    text = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def config_seed(config: Mapping[str, Any]) -> int:
    """The configuration's ``seed``, or one derived from its id (fits in 31 bits).

    The derived seed is that of the uncompiled configuration: compiling the same
    run starts from the same weights and data order.
    """
    cfg = normalize_config(config)
    if cfg["seed"] is not None:
        return int(cfg["seed"])
    return int(config_id({**cfg, "compile": False}), 16) % (2**31 - 1)


def expand_grid(base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of ``grid``'s values on top of ``base`` (in a deterministic order)."""
    keys = list(grid)
    return [
        {**copy.deepcopy(dict(base)), **dict(zip(keys, values, strict=True))}
        for values in itertools.product(*(grid[k] for k in keys))
    ]


def needs_gpu(config: Mapping[str, Any]) -> bool:
    """Whether the configuration runs on a GPU (CuPy, or torch on a CUDA device)."""
    backend = str(config.get("backend", "numpy")).lower()
    device = str(config.get("device") or "")
    return backend == "cupy" or (backend == "torch" and device.startswith("cuda"))


def result_path(out: str | os.PathLike, config: Mapping[str, Any]) -> Path:
    return Path(out) / f"{config_id(config)}.json"


def task_key(config: Mapping[str, Any], out: str | os.PathLike) -> str:
    """The Dask key of a configuration's task: the same for every driver writing to ``out``."""
    where = hashlib.sha256(str(Path(out).absolute()).encode("utf-8")).hexdigest()[:8]
    return f"portnet-sweep-{where}-{config_id(config)}"


# -- one configuration ----------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _prepared(data_json: str):
    from ..data.prepare import prepare_data

    args = json.loads(data_json)
    return prepare_data(args.pop("dataset"), **args)


def prepare_config_data(config: Mapping[str, Any]):
    """The configuration's :class:`~portnet.data.prepare.PreparedData` (cached per process)."""
    return _prepared(json.dumps(normalize_config(config)["data"], sort_keys=True))


def build_model(config: Mapping[str, Any]):
    """The untrained :class:`portnet.Model` of a configuration."""
    from .. import Model, Sequential
    from ..optim import optimizer_from_spec
    from ..regularizers import regularizer_from_spec

    cfg = normalize_config(config)
    return Model(
        Sequential(cfg["layers"]),
        loss=cfg["loss"],
        optimizer=optimizer_from_spec(cfg["optimizer"]),
        l1=cfg["l1"],
        l2=cfg["l2"],
        regularizers=[regularizer_from_spec(s) for s in cfg["regularizers"]],
        backend=cfg["backend"],
        device=cfg["device"],
        dtype=cfg["dtype"],
        seed=config_seed(cfg),
    )


def fit_config(config: Mapping[str, Any], verbose: int = 0) -> dict[str, Any]:
    """Build, train and evaluate one configuration in this process.

    Returns
    -------
    dict
        ``model``, ``history``, ``data`` (PreparedData), ``val`` (``{"loss",
        "accuracy"}`` or None without a validation set), ``test`` and ``seconds``
        (training wall time).
    """
    cfg = normalize_config(config)
    data = prepare_config_data(cfg)
    model = build_model(cfg)
    start = time.perf_counter()
    history = model.fit(
        data.X,
        data.y,
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        validation_data=data.validation,
        patience=cfg["patience"],
        verbose=verbose,
        compile=cfg["compile"],
    )
    seconds = time.perf_counter() - start
    val = model.evaluate(*data.validation) if data.validation is not None else None
    return {
        "model": model,
        "history": history,
        "data": data,
        "val": val,
        "test": model.evaluate(data.X_test, data.y_test),
        "seconds": seconds,
    }


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
    from ..allocator import retain_freed_memory
    from ..io import atomic_write_bytes

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
