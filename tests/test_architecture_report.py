"""tools/architecture_report.py counts what its rules say, on small made-up checkouts.

Each test writes a few modules into ``tmp_path`` and checks one figure, with a case
that must count and one that must not, so a rule that stops matching fails here.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import architecture_report as report  # noqa: E402


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def function(name: str, lines: int) -> str:
    """A function of exactly ``lines`` lines, ``def`` included."""
    return f"def {name}():\n" + "    x = 0\n" * (lines - 1)


def nested(outer: str, inner: str) -> str:
    """``inner`` (a function's source) inside ``def outer():``, or inside a class."""
    return f"{outer}:\n    " + inner.replace("\n", "\n    ")


def test_modules_are_counted_per_folder_with_the_largest(tmp_path):
    write(
        tmp_path,
        {
            "portnet/__init__.py": "",
            "portnet/big.py": "a = 1\n" * 7,
            "portnet/layers/__init__.py": "",
            "portnet/layers/dense.py": "a = 1\n" * 3,
            "portnet/layers/__pycache__/dense.py": "a = 1\n" * 50,
            "backends/numpy_backend.py": "a = 1\n",
            "tests/test_x.py": "a = 1\n" * 99,
        },
    )
    folders = {f.folder: f for f in report.module_counts(tmp_path)}
    assert set(folders) == {"portnet", "portnet/layers", "backends"}
    assert (folders["portnet"].modules, folders["portnet"].largest) == (2, "portnet/big.py")
    assert folders["portnet"].largest_lines == 7
    assert (folders["portnet/layers"].modules, folders["portnet/layers"].largest_lines) == (2, 3)


def test_functions_are_measured_from_def_to_end_outside_the_reproduce_studies(tmp_path):
    write(
        tmp_path,
        {
            "portnet/a.py": function("long", 81)
            + "\n\n"
            + nested("class C", function("method", 5)),
            "benchmarks/b.py": function("just_80", 80),
            "experiments/c.py": nested("def outer()", function("inner", 90)),
            "experiments/reproduce/s0.py": function("study", 200),
            "tests/test_t.py": function("test_long", 300),
        },
    )
    functions = report.all_functions(tmp_path)
    lengths = {f.name: f.lines for f in functions}
    assert "study" not in lengths and "test_long" not in lengths
    assert lengths["long"] == 81 and lengths["just_80"] == 80 and lengths["C.method"] == 5
    assert lengths["outer.inner"] == 90 and lengths["outer"] == 91
    assert [f.name for f in functions[:2]] == ["outer", "outer.inner"]
    assert report.measure(tmp_path).functions_over_80 == 3  # long, outer, outer.inner


def test_run_defaults_count_modules_and_keep_the_studies_apart(tmp_path):
    write(
        tmp_path,
        {
            "portnet/sweeps/task.py": "DEFAULTS = {}\nDATA_DEFAULTS: dict = {}\nOTHER = {}\n",
            "portnet/run.py": """
                from dataclasses import dataclass
                import dataclasses

                @dataclass(frozen=True)
                class RunConfig:
                    epochs: int = 1

                @dataclasses.dataclass
                class DataConfig:
                    name: str  # no default: not a place that writes defaults

                class PlainConfig:
                    epochs: int = 1

                def f():
                    DEFAULTS = {}  # not module level
            """,
            "experiments/fashion_config.py": "DEFAULTS = dict(epochs=3)\n",
            "experiments/reproduce/s0.py": "DEFAULTS = {}\n",
            "experiments/reproduce/_rookie.py": "ROOKIE_DEFAULTS = {}\n",
            "tests/test_x.py": "DEFAULTS = {}\n",
        },
    )
    found = report.run_defaults(tmp_path)
    places = {d["module"]: d["names"] for d in found["places"]}
    assert places == {
        "portnet/sweeps/task.py": ["DEFAULTS", "DATA_DEFAULTS"],
        "portnet/run.py": ["RunConfig"],
        "experiments/fashion_config.py": ["DEFAULTS"],
    }
    assert [d["module"] for d in found["reproduce"]] == [
        "experiments/reproduce/_rookie.py",
        "experiments/reproduce/s0.py",
    ]


@pytest.mark.parametrize(
    "source, reason",
    [
        ("import array_api_compat\narray_api_compat.is_torch_namespace(xp)", "is_torch_namespace"),
        ("from array_api_compat import is_cupy_array\nis_cupy_array(x)", "is_cupy_array"),
        ("from .sync_free import family\nfamily(xp)", "family"),
        ("ok = backend.name != 'jax'", "jax"),
        ("ok = xp.__name__ in ('cupy', 'torch')", "cupy/torch"),
        ("u = UPDATES[ctx.inplace]", "UPDATES"),
        ("def f():\n    import torch", "imports torch"),
        ("from jax import numpy", "imports jax"),
        ("import sys\nt = sys.modules.get('torch')", "fetches torch"),
    ],
)
def test_each_kind_of_library_branch_counts(tmp_path, source, reason):
    write(tmp_path, {"portnet/m.py": source})
    [found] = report.library_branches(tmp_path)["library"]
    assert found["module"] == "portnet/m.py"
    assert any(reason in why for why in found["reasons"]), found["reasons"]


def test_library_branches_leave_out_neutral_code_testing_and_count_backends_apart(tmp_path):
    write(
        tmp_path,
        {
            "portnet/neutral.py": """
                import numpy as np
                import array_api_compat
                xp = array_api_compat.array_namespace(x)
                ok = spec.name == "fashion_mnist" and self.name == other.name
                writable = array_api_compat.is_writeable_array(x)
                updates = Updates()[0]
            """,
            "portnet/testing/fake.py": "import torch\n",
            "backends/torch_backend.py": "def load():\n    import torch\n",
        },
    )
    found = report.library_branches(tmp_path)
    assert found["library"] == []
    assert [b["module"] for b in found["backends"]] == ["backends/torch_backend.py"]


TRAINING_LOOPS = """
class Trainer:
    def run_epoch(self, state, X, y, order, batch_size):
        for b in range(-(-len(order) // batch_size)):
            idx = order[b * batch_size : (b + 1) * batch_size]
            state, loss = self.train_step(state, X[idx], y[idx])
        return state

    def evaluate(self, params, X, batch_size):
        total = 0
        for start in range(0, len(X), batch_size):
            loss = self.evaluate_batch(params, X[start : start + batch_size])
            total = total + loss
        return total

    def outputs(self, params, X, batch_size):
        return [self.forward(params, X[i : i + batch_size]) for i in range(0, len(X), batch_size)]


def compiled_epoch(params, slots, X, order, n_full, batch_size):
    for b in range(n_full):
        params, slots = step(params, slots, X, order[b * batch_size : (b + 1) * batch_size])
    if n_full * batch_size < len(order):
        idx = order[n_full * batch_size :]
        params, slots = step(params, slots, X, idx)
    return params


def run_batches(step, X, order, batch_size):
    total = 0
    for b in range(-(-len(order) // batch_size)):  # the state lives in step's closure
        loss = step(order[b * batch_size : (b + 1) * batch_size])
        total = total + loss
    return total


def lr_find(state, batches):
    with context():
        for xb, yb in batches:
            state, loss = train_step(state, xb, yb)
    return state


def not_training(state, layers, batch_size):
    for layer in layers:
        state = layer.update(state)
    for kind in (Dense, BatchNorm):
        state = kind(state)
    for start in range(0, len(state), batch_size):
        steps = count_steps(state[start : start + batch_size])
    return state
"""


def test_training_batch_loops_are_found_and_evaluation_loops_kept_apart(tmp_path):
    write(
        tmp_path,
        {
            "portnet/core.py": TRAINING_LOOPS,
            "portnet/testing/audit.py": TRAINING_LOOPS,
        },
    )
    found = report.minibatch_loops(tmp_path)
    training = [(lp["function"], lp["kind"]) for lp in found["training"]]
    assert sorted(training) == [
        ("Trainer.run_epoch", "for"),
        ("compiled_epoch", "for"),
        ("compiled_epoch", "if"),
        ("lr_find", "for"),
        ("run_batches", "for"),
    ]
    evaluation = [(lp["function"], lp["kind"]) for lp in found["evaluation"]]
    assert sorted(evaluation) == [
        ("Trainer.evaluate", "for"),
        ("Trainer.outputs", "comprehension"),
        ("not_training", "for"),  # batches, but count_steps is no step
    ]


def test_the_command_prints_markdown_json_and_a_before_column(tmp_path, capsys):
    before = write(tmp_path / "before", {"portnet/a.py": "import torch\n", "backends/b.py": ""})
    after = write(tmp_path / "after", {"portnet/a.py": "", "portnet/b.py": ""})
    assert report.main(["--root", str(after), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["modules in portnet/ (top level)"] == 2
    assert summary["library modules branching on the array library"] == 0
    assert report.main(["--root", str(after), "--before", str(before)]) == 0
    out = capsys.readouterr().out
    assert "| Measure | Before | After |" in out
    assert "| library modules branching on the array library | 1 | 0 |" in out
    with pytest.raises(SystemExit):
        report.main(["--root", str(tmp_path / "nowhere")])
    assert "has no portnet/ folder" in capsys.readouterr().err
