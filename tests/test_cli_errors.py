"""Bad input to every command-line tool: exit code 2, one line naming the problem, no traceback.

Each case runs the real command in a subprocess (``python -m ...`` from the repository
root, ``PORTNET_*`` variables unset). The cases are chosen to fail before any training
and almost all before any data is loaded, so the whole table runs in seconds; the
subprocesses run side by side in one module-scoped fixture.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

DENSE_784_10 = "  - {class: Dense, config: {n_in: 784, n_out: 10}}\n"

# Files the cases refer to as {tmp}/NAME; "DIR" makes a folder, bytes are written as is.
FILES: dict[str, str | bytes] = {
    "epochs_str.yaml": 'epochs: "ten"\n',
    "lr_nan.yaml": "lr: .nan\n",
    "l2_negative.yaml": "l2: -0.5\n",
    "hidden_word.yaml": "hidden: [64, wide]\n",
    "plots_str.yaml": "plots: 'yes'\n",
    "dropout_high.json": '{"dropout": 1.0}\n',
    "unknown_option.yaml": "hiden: 32\n",
    "layer_unknown.yaml": "layers:\n" + DENSE_784_10 + "  - {class: Conv3D}\n",
    "layer_negative.yaml": "layers:\n  - {class: Dense, config: {n_in: 784, n_out: -3}}\n",
    "layer_typo.yaml": "layers:\n  - {class: Dense, config: {n_inn: 784, n_out: 10}}\n",
    "layer_not_list.yaml": "layers: 5\n",
    "layer_with_mlp.yaml": "model: mlp\nlayers:\n" + DENSE_784_10,
    "layer_wrong_width.yaml": "dataset: fashion_mnist_sample\nlayers:\n"
    "  - {class: Dense, config: {n_in: 100, n_out: 10}}\n",
    "layers_do_not_chain.yaml": "layers:\n"
    "  - {class: Dense, config: {n_in: 784, n_out: 32}}\n"
    "  - {class: Dense, config: {n_in: 16, n_out: 10}}\n",
    "layer_wrong_classes.yaml": "layers:\n  - {class: Dense, config: {n_in: 784, n_out: 7}}\n",
    "layers_plus_hidden.yaml": "layers:\n" + DENSE_784_10,
    "broken.yaml": "lr: [0.1\n",
    "broken.json": '{"lr": 0.1,\n',
    "a_list.yaml": "- lr\n- 0.1\n",
    "not_text.yaml": b"\xff\xfe\x00lr: 1\n",
    "a_folder.yaml": "DIR",
    "a_file": "not a folder\n",
    "run_without_model": "DIR",
    "run_damaged/model.npz": b"",
    "run_damaged/config.json": "{\n",
    "s1_epochs.yaml": "epochs: -5\n",
    "s1_lr_nan.yaml": "lr: .nan\n",
    "s1_hidden_str.yaml": "hidden: big\n",
    "s1_monitor.yaml": "monitor: val_f1\n",
    "s1_quick_list.yaml": "quick: [epochs, 2]\n",
    "s1_unknown.yaml": "epoch: 3\n",
    "s3_size_zero.yaml": "grid_train_size: 0\n",
}


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    module: str
    args: tuple[str, ...]
    expect: str  # a phrase the last line of stderr must contain

    def command(self, tmp: Path) -> list[str]:
        return [sys.executable, "-m", self.module, *(a.format(tmp=tmp) for a in self.args)]


def _case(id_, module, args, expect):
    return Case(id_, module, tuple(args.split()), expect)


FASHION = "experiments.fashion"
REPRODUCE = "experiments.reproduce"

CASES = [
    # experiments.fashion: flags
    _case("fashion-lr-nan", FASHION, "--lr nan", "--lr: must be finite, got nan"),
    _case("fashion-lr-negative", FASHION, "--lr -0.1", "--lr: must be in (0, inf]"),
    _case("fashion-epochs-0", FASHION, "--epochs 0", "--epochs: must be in [1, inf], got 0"),
    _case("fashion-batch-negative", FASHION, "--batch-size -1", "--batch-size: must be in [1"),
    _case("fashion-l2-negative", FASHION, "--l2 -1", "--l2: must be in [0, inf]"),
    _case("fashion-dropout-1.5", FASHION, "--dropout 1.5", "--dropout: must be in [0, 1)"),
    _case("fashion-momentum-inf", FASHION, "--momentum inf", "--momentum: must be finite"),
    _case("fashion-epochs-fraction", FASHION, "--epochs 2.5", "--epochs: expected a whole"),
    _case("fashion-hidden-word", FASHION, "--hidden 64,wide", "must be whole numbers"),
    _case("fashion-train-size-5", FASHION, "--train-size 5", "--train-size: must be in [20"),
    _case("fashion-seed-negative", FASHION, "--seed -1", "--seed: must be in [0, inf]"),
    _case("fashion-val-fraction-1", FASHION, "--val-fraction 1", "--val-fraction: must be in"),
    _case("fashion-unknown-backend", FASHION, "--backend mxnet", "Known backends"),
    _case("fashion-compile-not-jax", FASHION, "--backend numpy --compile", "needs the jax backend"),
    _case("fashion-unknown-flag", FASHION, "--learning-rate 0.1", "unrecognized arguments"),
    # experiments.fashion: config files
    _case(
        "config-epochs-string",
        FASHION,
        "--config {tmp}/epochs_str.yaml",
        "epochs must be a number, got 'ten' (str)",
    ),
    _case("config-lr-nan", FASHION, "--config {tmp}/lr_nan.yaml", "lr must be finite, got nan"),
    _case("config-l2-negative", FASHION, "--config {tmp}/l2_negative.yaml", "l2 must be in [0"),
    _case(
        "config-hidden-word", FASHION, "--config {tmp}/hidden_word.yaml", "must be whole numbers"
    ),
    _case("config-plots-string", FASHION, "--config {tmp}/plots_str.yaml", "plots must be true or"),
    _case(
        "config-json-dropout-1", FASHION, "--config {tmp}/dropout_high.json", "dropout must be in"
    ),
    _case("config-unknown-option", FASHION, "--config {tmp}/unknown_option.yaml", "unknown option"),
    _case("config-missing", FASHION, "--config {tmp}/nope.yaml", "does not exist"),
    _case("config-is-folder", FASHION, "--config {tmp}/a_folder.yaml", "is a folder"),
    _case("config-bad-yaml", FASHION, "--config {tmp}/broken.yaml", "is not valid YAML"),
    _case("config-bad-json", FASHION, "--config {tmp}/broken.json", "is not valid JSON"),
    _case("config-not-mapping", FASHION, "--config {tmp}/a_list.yaml", "must hold a mapping"),
    _case("config-not-utf8", FASHION, "--config {tmp}/not_text.yaml", "is not UTF-8 text"),
    # experiments.fashion: layer lists
    _case(
        "layers-unknown-class",
        FASHION,
        "--config {tmp}/layer_unknown.yaml",
        "layer 2 of the layers list: unknown layer class 'Conv3D'",
    ),
    _case(
        "layers-negative-width",
        FASHION,
        "--config {tmp}/layer_negative.yaml",
        "Dense widths must be positive",
    ),
    _case(
        "layers-unknown-argument",
        FASHION,
        "--config {tmp}/layer_typo.yaml",
        "unexpected keyword argument 'n_inn'",
    ),
    _case(
        "layers-not-a-list", FASHION, "--config {tmp}/layer_not_list.yaml", "layers must be a list"
    ),
    _case(
        "layers-with-model-mlp",
        FASHION,
        "--config {tmp}/layer_with_mlp.yaml",
        "a layers list is given too, which would be ignored",
    ),
    _case(
        "layers-plus-hidden-flag",
        FASHION,
        "--config {tmp}/layers_plus_hidden.yaml --hidden 32",
        "so they would be ignored",
    ),
    _case(
        "test-time-flip-without-flip",
        FASHION,
        "--test-time-flip --no-flip",
        "this run's network has none: turn on flip",
    ),
    _case(
        "cnn-plus-mlp-batch-norm",
        FASHION,
        "--model cnn --no-batch-norm",
        "so they would be ignored",
    ),
    _case(
        "layers-do-not-chain",
        FASHION,
        "--config {tmp}/layers_do_not_chain.yaml --dataset fashion_mnist_sample --no-plots "
        "--out {tmp}/never",
        "layer 2 (Dense) takes 16 inputs but layer 1 (Dense) gives 32: make them equal",
    ),
    _case(
        "layers-wrong-class-count",
        FASHION,
        "--config {tmp}/layer_wrong_classes.yaml --dataset fashion_mnist_sample --no-plots "
        "--out {tmp}/never",
        "ends in 7 outputs but the data has 10 classes",
    ),
    _case(
        "layers-wrong-input-width",
        FASHION,
        "--config {tmp}/layer_wrong_width.yaml --no-plots --out {tmp}/never",
        "but the data has 784 features per sample",
    ),
    # experiments.fashion: paths
    _case("fashion-out-is-file", FASHION, "--out {tmp}/a_file", "is a file, not a folder"),
    _case("fashion-out-under-file", FASHION, "--out {tmp}/a_file/run", "a_file is a file, not a"),
    _case("fashion-out-read-only", FASHION, "--out /proc/portnet-run", "cannot write in /proc"),
    _case("fashion-data-dir-missing", FASHION, "--data-dir {tmp}/nope", "is not a folder"),
    _case(
        "evaluate-missing-folder", FASHION, "--evaluate {tmp}/no_run", "--evaluate {tmp}/no_run is"
    ),
    _case("evaluate-no-model", FASHION, "--evaluate {tmp}/run_without_model", "has no model.npz"),
    _case(
        "evaluate-damaged-config", FASHION, "--evaluate {tmp}/run_damaged", "config.json cannot be"
    ),
    # experiments.reproduce
    _case("reproduce-unknown-study", REPRODUCE, "s9", "invalid choice: 's9'"),
    _case("reproduce-config-missing", REPRODUCE, "s1 --config {tmp}/nope.yaml", "does not exist"),
    _case(
        "reproduce-epochs-negative",
        REPRODUCE,
        "s1 --config {tmp}/s1_epochs.yaml",
        "epochs must be at least 1, got -5",
    ),
    _case("reproduce-lr-nan", REPRODUCE, "s1 --config {tmp}/s1_lr_nan.yaml", "lr must be finite"),
    _case(
        "reproduce-wrong-type",
        REPRODUCE,
        "s1 --config {tmp}/s1_hidden_str.yaml",
        "hidden must be a whole number like its default 128, got 'big' (str)",
    ),
    _case(
        "reproduce-bad-choice",
        REPRODUCE,
        "s1 --config {tmp}/s1_monitor.yaml",
        "monitor must be one of val_loss, val_accuracy",
    ),
    _case(
        "reproduce-quick-not-mapping",
        REPRODUCE,
        "s1 --config {tmp}/s1_quick_list.yaml",
        "quick: block",
    ),
    _case(
        "reproduce-unknown-option", REPRODUCE, "s1 --config {tmp}/s1_unknown.yaml", "unknown option"
    ),
    _case(
        "reproduce-size-zero",
        REPRODUCE,
        "s3 --config {tmp}/s3_size_zero.yaml",
        "grid_train_size must be at least 1",
    ),
    _case("reproduce-seed-negative", REPRODUCE, "s2 --seed -1", "--seed: must be in [0"),
    _case("reproduce-quick-save-results", REPRODUCE, "s1 --quick --save-results", "for full runs"),
    _case("reproduce-unknown-dataset", REPRODUCE, "s2 --dataset cifar", "unknown dataset 'cifar'"),
    _case("reproduce-out-is-file", REPRODUCE, "s1 --out {tmp}/a_file", "is a file, not a folder"),
    _case("reproduce-unknown-backend", REPRODUCE, "s0 --quick --backend mxnet", "Known backends"),
    _case(
        "reproduce-compile-not-jax",
        REPRODUCE,
        "s1 --quick --backend numpy --compile",
        "--compile compiles the training steps with jax.jit and needs --backend jax",
    ),
    # benchmarks
    _case("epoch-time-epochs-0", "benchmarks.epoch_time", "--epochs 0", "--epochs: must be in [1"),
    _case(
        "epoch-time-batch-word",
        "benchmarks.epoch_time",
        "--batch-size 12x",
        "--batch-size takes integers",
    ),
    _case("epoch-time-seed-negative", "benchmarks.epoch_time", "--seed -2", "--seed: must be in"),
    _case(
        "epoch-time-out-is-file", "benchmarks.epoch_time", "--out {tmp}/a_file", "is a file, not"
    ),
    _case("epoch-time-json-is-folder", "benchmarks.epoch_time", "--json {tmp}", "is a folder"),
    _case("epoch-time-unknown-workload", "benchmarks.epoch_time", "--workload nope", "unknown"),
    _case(
        "epoch-time-unknown-dataset",
        "benchmarks.epoch_time",
        "--quick --dataset nope --implementations portnet-numpy --out {tmp}/bench",
        "unknown dataset 'nope'",
    ),
    _case("layer-time-steps-0", "benchmarks.layer_time", "--steps 0", "--steps: must be in [1"),
    _case("layer-time-unknown-backend", "benchmarks.layer_time", "--backend mx", "Known backends"),
    _case("layer-time-out-is-folder", "benchmarks.layer_time", "--out {tmp}", "is a folder"),
    _case("gpu-check-spin-nan", "benchmarks.gpu_check", "--spin nan", "--spin: must be finite"),
    _case("gpu-check-repeats-0", "benchmarks.gpu_check", "--repeats 0", "--repeats: must be in"),
    _case("gpu-check-out-is-folder", "benchmarks.gpu_check", "--out {tmp}", "is a folder"),
    _case(
        "step-syncs-out-under-file",
        "benchmarks.step_syncs",
        "--out {tmp}/a_file/table.md",
        "a_file is a file, not a folder",
    ),
]


def _make_files(tmp: Path) -> None:
    for name, content in FILES.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content == "DIR":
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def _run(case: Case, tmp: Path) -> subprocess.CompletedProcess | str:
    """The finished process, or why it did not finish (a command that starts training
    instead of refusing its input runs into the timeout: that case then fails alone)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTNET_")}
    try:
        return subprocess.run(
            case.command(tmp), cwd=REPO, capture_output=True, text=True, env=env, timeout=90
        )
    except subprocess.TimeoutExpired:
        return f"still running after 90 s: {' '.join(case.command(tmp))}"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every case's process, run a few at a time (each is one short Python start-up)."""
    tmp = tmp_path_factory.mktemp("cli")
    _make_files(tmp)
    workers = max(2, min(8, (os.cpu_count() or 2) * 2))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {case.id: pool.submit(_run, case, tmp) for case in CASES}
        done = {key: future.result() for key, future in futures.items()}
    return tmp, done


def test_the_table_is_large_and_covers_every_cli():
    assert len({case.id for case in CASES}) == len(CASES)
    assert len(CASES) >= 25
    modules = {case.module for case in CASES}
    assert {FASHION, REPRODUCE, "benchmarks.epoch_time", "benchmarks.layer_time"} <= modules
    assert {"benchmarks.gpu_check", "benchmarks.step_syncs"} <= modules


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_exits_2_with_one_line_and_no_traceback(results, case):
    tmp, done = results
    proc = done[case.id]
    if isinstance(proc, str):
        pytest.fail(proc)
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output[-3000:]
    assert proc.returncode == 2, output[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert lines, "nothing on stderr"
    # The message is the last line of stderr (argparse puts its usage above it).
    assert "error: " in lines[-1], proc.stderr
    assert case.expect.format(tmp=tmp) in lines[-1], proc.stderr
    if lines[0].startswith("error: "):  # ours, not argparse's: exactly one paragraph
        assert len(lines) == 1, proc.stderr
    assert not (tmp / "never").exists()  # failed before writing any output
