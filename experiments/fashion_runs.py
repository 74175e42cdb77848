"""Run folders of the main job: evaluate a finished run elsewhere, resume a killed one.

A run folder (``--out``) holds ``config.json`` from the start, ``checkpoint.npz``
after every epoch until the run completes, and the results at the end.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import portnet as pn
from experiments.common import fail, write_json

#: Written after every epoch and deleted when the run completes.
CHECKPOINT = "checkpoint.npz"


def _read_run_file(run_dir: Path, name: str):
    """A JSON file or the .npz statistics of a run folder; exits 2 if missing or damaged."""
    import json

    path = run_dir / name
    if not path.is_file():
        fail(f"{run_dir} has no {name}: give a folder that a finished training run wrote (--out).")
    try:
        if name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"{path} cannot be read ({exc}); it is damaged: train the run again.")
    if not isinstance(value, dict):
        fail(f"{path} does not hold a mapping; it is damaged: train the run again.")
    return value


def evaluate_run(run_dir: Path, backend: pn.Backend, onnx_file: str | None = None) -> None:
    """Load a run's model onto ``backend`` and print its test accuracy and the one recorded;
    with ``onnx_file``, also export the model there (:func:`export_run_onnx`)."""
    from portnet.data import load_dataset
    from portnet.data.prepare import normalize_images

    if not run_dir.is_dir():
        fail(f"--evaluate {run_dir} is not a folder: give the folder a training run wrote (--out).")
    if not (run_dir / "model.npz").is_file():
        fail(f"{run_dir} has no model.npz: give the folder a training run wrote (--out).")
    if onnx_file is not None:
        from portnet.io.onnx_export import check_installed

        check_installed()  # before the evaluation, which can take a while
    config = _read_run_file(run_dir, "config.json")
    recorded = _read_run_file(run_dir, "metrics.json")
    stats = _read_run_file(run_dir, "preprocessing.npz")
    missing = [k for k in ("dataset", "normalize") if k not in config]
    missing += [k for k in ("backend", "test_accuracy", "test_loss") if k not in recorded]
    if missing:
        fail(
            f"{run_dir}: config.json or metrics.json lacks {', '.join(missing)}; "
            "train the run again."
        )
    dataset = load_dataset(config["dataset"], data_dir=config.get("data_dir"))
    X_test = normalize_images(dataset.X_test, config["normalize"], stats)
    model = pn.Model.load(run_dir / "model.npz", backend=backend)
    result = model.evaluate(X_test, dataset.y_test.astype(np.int64))
    print(f"model    {run_dir / 'model.npz'} (trained on {recorded['backend']})")
    print(f"backend  {backend.name}  device {backend.device_name}  dtype {model.dtype_name}")
    print(
        f"test accuracy {result['accuracy']:.4f} (recorded {recorded['test_accuracy']:.4f})  "
        f"test loss {result['loss']:.4f} (recorded {recorded['test_loss']:.4f})"
    )
    if onnx_file is not None:
        export_run_onnx(model, Path(onnx_file), X_test, dataset.y_test)


def export_run_onnx(model: pn.Model, path: Path, X_test, y_test, n_compare: int = 1000) -> None:
    """``--export-onnx``: write the model as ONNX (atomically), say where and how big, and
    run the file with onnxruntime: its test accuracy, and how far its probabilities are
    from portnet's on the first ``n_compare`` test images."""
    from portnet.io.onnx_export import run_onnx

    written = model.export_onnx(path)  # an ImportError names the extra; run_cli reports it
    size = written.stat().st_size
    print(
        f"onnx     {written} ({size:,} bytes, {size / 2**20:.2f} MiB): input x (N, {model.n_in}) "
        f"{model.dtype_name}, output probabilities (N, {model.n_out}), N any batch size"
    )
    probabilities = run_onnx(written, X_test)
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == y_test))
    n = min(n_compare, len(X_test))
    reference = model.backend.to_numpy(model.predict_proba(X_test[:n]))
    difference = float(np.max(np.abs(probabilities[:n] - reference)))
    print(
        f"onnxruntime test accuracy {accuracy:.4f}; max |p_onnx - p_portnet| {difference:.1e} "
        f"over {n:,} test images"
    )


def resume_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The arguments of the run in ``args.resume``: its config.json, plus where it runs now."""
    run_dir = Path(args.resume)
    if not (run_dir / "config.json").is_file():
        fail(f"--resume {run_dir}: no config.json there; give the folder of a run (its --out).")
    if (run_dir / "metrics.json").is_file():
        fail(f"--resume {run_dir}: that run has finished (metrics.json exists); nothing to resume.")
    if not (run_dir / CHECKPOINT).is_file():
        fail(
            f"--resume {run_dir}: no {CHECKPOINT} there, so the run stopped before its first "
            "epoch ended; start it again with the same settings."
        )
    from experiments.fashion_config import RUN_FOLDER_FORMAT

    if _read_run_file(run_dir, "config.json").get("format") != RUN_FOLDER_FORMAT:
        fail(
            f"--resume {run_dir}: that run was written by an older portnet, whose run "
            "configuration this version does not read back exactly, so it cannot be resumed; "
            "start it again (its config.json holds the settings)."
        )
    argv = ["--config", str(run_dir / "config.json"), "--out", str(run_dir)]
    for flag, value in (
        ("--backend", args.backend),
        ("--device", args.device),
        ("--threads", args.threads),
    ):
        if value is not None:
            argv += [flag, str(value)]
    resumed = parser.parse_args(argv)
    resumed.resume = str(run_dir)
    return resumed


def run_lr_find(model: pn.Model, train: tuple, config: pn.RunConfig, plots: bool, out: Path):
    """``--lr-find``: the learning-rate range test on the training data, instead of training.

    Writes ``lr_find.png`` and ``lr_find.json`` to ``out`` and prints the suggestion.
    """
    print(f"lr-find  100 steps of batch {config.batch_size}, rates 1e-6 to 1 ...")
    result = pn.lr_find(model, *train, batch_size=config.batch_size, seed=config.run_seed())
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "lr_find.json", result.to_dict())
    figure = ""
    if plots:
        name = type(model.optimizer).__name__
        result.plot(out / "lr_find.png", title=f"learning-rate range test ({name})")
        figure = f", plot {out / 'lr_find.png'}"
    print(
        f"suggested learning rate {result.suggested_lr:.3g} (steepest fall of the loss; "
        f"lowest loss at {result.min_loss_lr:.3g}){figure}. Train with --lr "
        f"{result.suggested_lr:.3g}, or a rate between the two."
    )
