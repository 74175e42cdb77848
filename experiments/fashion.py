"""The main job: train an MLP on Fashion-MNIST on the backend of your choice.

    python -m experiments.fashion                       # NumPy, the default configuration
    PORTNET_BACKEND=cupy python -m experiments.fashion  # the same on an NVIDIA GPU
    python -m experiments.fashion --backend torch --epochs 5 --hidden 256
    python -m experiments.fashion --evaluate runs/fashion-... --backend array_api_strict
    python -m experiments.fashion --evaluate runs/fashion-... --export-onnx model.onnx

Writes config.json, history.json, metrics.json, model.npz, preprocessing.npz,
curves.png, confusion.png and misclassified.png to --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import portnet as pn
from experiments.common import check_output_dir, default_out_dir, fail, run_cli, write_json
from experiments.fashion_config import RUN_FOLDER_FORMAT, add_run_flags, resolve_config
from experiments.fashion_runs import CHECKPOINT, evaluate_run, resume_arguments, run_lr_find
from portnet.training.run import describe_network


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.fashion",
        description="Train a multilayer perceptron or a CNN on Fashion-MNIST (or MNIST / "
        "KMNIST) with portnet, on NumPy, CuPy, PyTorch, JAX or array-api-strict, and write "
        "the results, the model and plots to a run folder.",
        epilog="Precedence: built-in defaults < --config file < flags. Exit code 2 means bad "
        "input (unknown backend, missing data, bad option); the message says what to do.",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="YAML or JSON file of options (keys as the flags, with underscores; a "
        "'layers' list of {class, config} entries is the network); flags override it",
    )
    add_run_flags(p)
    g = p.add_argument_group("output")
    g.add_argument("--out", help="run folder (default runs/fashion-<timestamp>)")
    g.add_argument(
        "--no-plots",
        dest="plots",
        action="store_const",
        const=False,
        help="skip the PNG figures (no matplotlib needed)",
    )
    g.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run that was killed or stopped, from the checkpoint it wrote after "
        "its last finished epoch (RUN_DIR/checkpoint.npz); RUN_DIR/config.json fixes every "
        "setting, only --backend, --device and --threads may change. The result equals an "
        "uninterrupted run's (for a CNN on NumPy with the same --threads: other thread "
        "counts shard its batches otherwise, which changes the last bits)",
    )
    g.add_argument(
        "--evaluate",
        metavar="RUN_DIR",
        help="instead of training: load RUN_DIR/model.npz onto --backend/--device "
        "and report its test accuracy",
    )
    g.add_argument(
        "--export-onnx",
        metavar="FILE",
        help="with --evaluate: also write the run's model to FILE as ONNX (its inference "
        "graph, batch size free, output: class probabilities) and check it with onnxruntime "
        'on the test images; needs pip install "portnet[onnx]"',
    )
    g.add_argument(
        "--lr-find",
        action="store_true",
        help="instead of training: run a learning-rate range test with this model and "
        "optimizer (100 steps, rates 1e-6 to 1), write lr_find.png and lr_find.json to "
        "--out, and print the suggested --lr",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.export_onnx and not args.evaluate:
        fail("--export-onnx FILE exports a finished run: give it with --evaluate RUN_DIR.")
    if args.evaluate:
        backend = pn.get_backend(args.backend, args.device)
        evaluate_run(Path(args.evaluate), backend, onnx_file=args.export_onnx)
        return 0
    resuming = args.resume is not None
    if resuming:
        args = resume_arguments(parser, args)
    config, job = resolve_config(args)
    out = Path(job["out"]) if job["out"] else default_out_dir("fashion")
    check_output_dir(out, "--out")
    started = time.perf_counter()
    run = start_run(config)
    if args.lr_find:
        run_lr_find(run.model, (run.data.X, run.data.y), config, job["plots"], out)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / "config.json",
        {**run.config.to_dict(), **job, "out": str(out), "format": RUN_FOLDER_FORMAT},
    )
    # After every epoch, atomically: a killed run loses at most the epoch in progress.
    history = run.fit(verbose=1, checkpoint=out / CHECKPOINT, resume=resuming)
    write_results(run, history, out, job["plots"], started)
    return 0


def start_run(config: pn.RunConfig) -> pn.PreparedRun:
    """Set up the machine, prepare the run and say what it is."""
    backend = pn.get_backend(config.backend, config.device)
    pn.limit_threads(config.threads)  # after the backend import: threadpoolctl sees its BLAS
    pn.retain_freed_memory()  # no page faults on each step's fresh arrays
    # The run folder records where it ran, not "the default backend".
    config = config.replace(backend=backend.name, device=backend.device_name)
    print(
        f"portnet {pn.__version__}  backend {backend.name}  device {backend.device_name}  "
        f"dtype {config.dtype}" + (f"  threads {config.threads}" if config.threads else "")
    )
    run = pn.prepare_run(config)
    data = run.data
    print(
        f"data     {data.dataset.name} from {data.dataset.source}: {len(data.X)} train, "
        f"{0 if data.X_val is None else len(data.X_val)} validation, {len(data.X_test)} "
        f"test images ({config.normalize} normalisation)"
    )
    print(
        f"model    {describe_model(config, data)}, {run.model.optimizer!r}, batch "
        f"{config.batch_size}, {config.epochs} epochs"
        + (f", label smoothing {config.label_smoothing:g}" if config.label_smoothing else "")
        + (", test-time flips" if run.model.test_time_flip else "")
        + (f", test-time shifts of ±{config.test_time_shift} px" if config.test_time_shift else "")
    )
    print(run.model.summary(config.batch_size))
    return run


def describe_model(config: pn.RunConfig, data) -> str:
    network = describe_network(config, data.X.shape[1], data.dataset.n_classes)
    if config.layers is not None:
        return network
    return (
        f"{network.removesuffix(' MLP')} {config.activation}, dropout {config.dropout}"
        + (", batch norm" if config.batch_norm else "")
        + (", random flips" if config.flip else "")
    )


def write_results(run: pn.PreparedRun, history, out: Path, plots: bool, started: float) -> None:
    """Test metrics, history, model, preprocessing statistics and plots, into ``out``."""
    model, data, backend = run.model, run.data, run.model.backend
    test_result = model.evaluate(data.X_test, data.y_test)
    predictions = model.predict(data.X_test)
    n_classes = data.dataset.n_classes
    cm = backend.to_numpy(pn.confusion_matrix(backend.asarray(data.y_test), predictions, n_classes))
    seconds_total = time.perf_counter() - started
    metrics = {
        "test_accuracy": test_result["accuracy"],
        "test_loss": test_result["loss"],
        "best_epoch": history.best_epoch,
        "epochs_run": history.epochs_run,
        "stop_reason": history.stop_reason,
        "backend": backend.name,
        "device": backend.device_name,
        "dtype": run.config.dtype,
        "seconds_total": seconds_total,
        "seconds_training": float(sum(history.history["seconds"])),
        "dataset": data.dataset.name,
        "data_source": data.dataset.source,
        "confusion_matrix": cm.tolist(),
    }
    write_json(out / "history.json", history.history)
    write_json(out / "metrics.json", metrics)
    model.save(out / "model.npz")
    _save_stats(out / "preprocessing.npz", data.stats)
    (out / CHECKPOINT).unlink(missing_ok=True)  # the run is complete: model.npz holds it all
    if plots:
        _plot(run, history, cm, backend.to_numpy(predictions), test_result, out)
    print(
        f"test accuracy {test_result['accuracy']:.4f}  test loss {test_result['loss']:.4f}  "
        f"({history.epochs_run} epochs, best {history.best_epoch}, {seconds_total:.1f} s)"
    )
    print(f"results  {out}/")


def _plot(run, history, cm, labels, test_result, out: Path) -> None:
    from portnet.io import plots

    data = run.data
    network = describe_network(run.config, data.X.shape[1], data.dataset.n_classes)
    plots.plot_curves(
        history.history,
        out / "curves.png",
        best_epoch=history.best_epoch,
        title=f"{network} on {data.dataset.name} "
        f"({run.model.backend.name}) — test accuracy {test_result['accuracy']:.2%}",
    )
    plots.plot_confusion(cm, data.dataset.class_names, out / "confusion.png")
    plots.plot_misclassified(
        data.dataset.X_test[data.test_rows],
        data.y_test,
        labels,
        data.dataset.class_names,
        out / "misclassified.png",
    )


def _save_stats(path: Path, stats: dict) -> None:
    from portnet.io.model_file import atomic_write_bytes

    atomic_write_bytes(path, lambda handle: np.savez(handle, **stats))


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
