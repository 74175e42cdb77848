"""Sweeps: a training run as plain data, one function that runs it, and a runner.

A sweep configuration is a :class:`portnet.RunConfig` as JSON-like data, never
code, plus free ``tags`` (labels for tables that do not change the training)::

    {"hidden": [256], "lr": 0.1, "epochs": 5, "batch_size": 512, "l2": 1e-3,
     "backend": "numpy", "tags": {"lr": 0.1}}

Any option of the main job (``python -m experiments.fashion``) works here, under
the same name: missing keys take the main job's defaults. :func:`train_config`
runs it with :func:`portnet.train_run`, the function the main job runs, and
writes ``<out>/<id>.json`` atomically, so a Dask worker needs only ``pip install
"portnet[dask]"`` and the data set, not the code that made the configuration.

:func:`run_sweep` runs many: in this process, in a pool of processes, or as one
Dask task per configuration (key ``portnet-sweep-<out hash>-<id>``, so two drivers
sharing a scheduler never train a configuration twice; ``resources={"GPU": 1}`` for
GPU backends; ``retries``). Everything it can check, it checks before the first
configuration starts: every configuration, the output folder, the scheduler and
what each worker can load and write. Finished configurations (their result file
exists) are skipped, so a killed sweep resumes where it stopped. Each start and
finish is appended to ``<out>/sweep-log.jsonl`` (host, pid, time).
"""

from .runner import Progress, check_output_folder, dask_options, probe_worker, run_sweep
from .task import (
    DATA_OPTIONS,
    LOG_NAME,
    SweepError,
    build_model,
    config_id,
    config_seed,
    expand_grid,
    fit_config,
    load_results,
    needs_gpu,
    normalize_config,
    prepare_config_data,
    result_path,
    run_config,
    task_key,
    top_k,
    train_config,
)

__all__ = [
    "DATA_OPTIONS",
    "LOG_NAME",
    "Progress",
    "SweepError",
    "build_model",
    "check_output_folder",
    "config_id",
    "config_seed",
    "dask_options",
    "expand_grid",
    "fit_config",
    "load_results",
    "needs_gpu",
    "normalize_config",
    "prepare_config_data",
    "probe_worker",
    "result_path",
    "run_config",
    "run_sweep",
    "task_key",
    "top_k",
    "train_config",
]
