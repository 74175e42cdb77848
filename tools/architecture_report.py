"""Measure a checkout's layout: the figures of issue #24's before/after table.

::

    python tools/architecture_report.py                      # this checkout, Markdown
    python tools/architecture_report.py --root /tmp/before   # another checkout
    python tools/architecture_report.py --before /tmp/before # before/after, side by side
    python tools/architecture_report.py --json

Every figure comes from reading the source with :mod:`ast`; nothing is imported.
The rules, so that a count can be checked by hand:

Modules per folder
    ``.py`` files directly in each folder of ``portnet/`` (the top level and every
    subpackage, each on its own) and in ``backends/``; the largest by line count.

Largest functions
    Every ``def`` (methods and nested functions too) in ``portnet/``, ``backends/``,
    ``benchmarks/`` and ``experiments/`` outside ``experiments/reproduce``. Its
    length is ``end_lineno - lineno + 1``: from ``def`` to its last line, docstring
    included, decorators not.

Places that define run defaults
    A module-level assignment to ``DEFAULTS`` or to a name ending in ``_DEFAULTS``,
    or a dataclass whose name ends in ``Config`` or ``Configuration`` with at least
    one field that has a default. The headline counts modules, in ``portnet/``,
    ``experiments/`` and ``benchmarks/``; the reproduce studies' own defaults
    (``experiments/reproduce``) are counted apart, since each study's settings are
    its own. Command-line ``default=`` arguments are not counted.

Library modules that branch on the array library
    A module of ``portnet/`` outside ``portnet/testing`` (``backends/`` is counted
    apart) counts when it does one of:

    - calls ``is_<library>_namespace`` or ``is_<library>_array`` (array-api-compat);
    - calls ``family(...)``;
    - compares anything to a library's name (``"numpy"``, ``"cupy"``, ``"torch"``,
      ``"jax"``, ``"array_api_strict"``), as in
      ``backend.name != "jax"`` or ``kind in ("cupy", "torch")``;
    - indexes ``UPDATES[...]``;
    - imports such a library other than NumPy, which every module may use for host
      arrays (``import torch``, ``from jax import ...``), or fetches it by name
      (``import_module("torch")``, ``sys.modules.get("torch")``).

Minibatch loops
    A ``for``/``while`` loop, or an ``if`` block (the compiled path's eager last
    batch), in ``portnet/`` outside ``portnet/testing`` whose own statements (not
    those of a nested loop, ``if`` or function) both

    - take a batch: slice with a computed bound (``order[start:stop]``,
      ``idx[i * b : (i + 1) * b]``), or iterate over an expression naming a
      batch (``range(n_batches)``, ``batches(order)``); and
    - train: call a step (a function named ``step`` or ``..._step``, as in
      ``step(batch)`` or ``self.train_step(...)``), or carry a state through a call
      (``params, slots = compiled(params, slots, ...)``: an assignment whose
      targets include a name passed to the call).

    Loops that take batches without training (evaluation, prediction, and
    comprehensions over ``range(0, n, batch_size)``) are counted apart.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

LIBRARIES = frozenset({"numpy", "cupy", "torch", "jax", "array_api_strict"})
IMPORTED_LIBRARIES = LIBRARIES - {"numpy"}
FUNCTION_FOLDERS = ("portnet", "backends", "benchmarks", "experiments")
EXCLUDED_FROM_FUNCTIONS = ("experiments/reproduce",)
DEFAULTS_FOLDERS = ("portnet", "experiments", "benchmarks")
REPRODUCE = "experiments/reproduce"
TESTING = "portnet/testing"
LONG_FUNCTION = 80
_IS_LIBRARY = re.compile(rf"is_({'|'.join(sorted(LIBRARIES))})_(namespace|array)$")


# -- reading a checkout -------------------------------------------------------------
def python_files(root: Path, folder: str) -> list[Path]:
    """Every ``.py`` file under ``root/folder``, sorted, caches and build trees skipped."""
    base = root / folder
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*.py") if not {"__pycache__", "build"} & set(p.parts))


def relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def under(rel: str, prefix: str) -> bool:
    return rel == prefix or rel.startswith(prefix + "/")


# -- modules per folder -------------------------------------------------------------
@dataclass
class Folder:
    folder: str
    modules: int
    largest: str
    largest_lines: int


def module_counts(root: Path) -> list[Folder]:
    """Modules directly in each folder of ``portnet/`` and in ``backends/``."""
    by_folder: dict[str, list[tuple[int, str]]] = {}
    for top in ("portnet", "backends"):
        for path in python_files(root, top):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            folder = relative(root, path.parent)
            by_folder.setdefault(folder, []).append((lines, relative(root, path)))
    rows = []
    for folder, modules in sorted(by_folder.items()):
        lines, name = max(modules)
        rows.append(Folder(folder, len(modules), name, lines))
    return rows


# -- functions ----------------------------------------------------------------------
@dataclass
class Function:
    name: str
    path: str
    line: int
    lines: int


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.AST]]:
    """Every function with its qualified name (``Class.method``, ``outer.inner``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")
        else:
            yield from _functions(node, prefix)


def all_functions(root: Path) -> list[Function]:
    """Every function of :data:`FUNCTION_FOLDERS`, longest first."""
    found = []
    for folder in FUNCTION_FOLDERS:
        for path in python_files(root, folder):
            rel = relative(root, path)
            if any(under(rel, skip) for skip in EXCLUDED_FROM_FUNCTIONS):
                continue
            for name, node in _functions(parse(path)):
                found.append(Function(name, rel, node.lineno, node.end_lineno - node.lineno + 1))
    return sorted(found, key=lambda f: (-f.lines, f.path, f.line))


# -- run defaults -------------------------------------------------------------------
def _is_defaults_name(name: str) -> bool:
    return name == "DEFAULTS" or name.endswith("_DEFAULTS")


def _is_dataclass(node: ast.ClassDef) -> bool:
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "dataclass":
            return True
    return False


def defaults_in(tree: ast.Module) -> list[str]:
    """The names in one module that define run defaults (rule in the module docstring)."""
    names = []
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = [t for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target] if node.value is not None else []
        names += [t.id for t in targets if _is_defaults_name(t.id)]
        if (
            isinstance(node, ast.ClassDef)
            and node.name.endswith(("Config", "Configuration"))
            and _is_dataclass(node)
            and any(isinstance(s, ast.AnnAssign) and s.value is not None for s in node.body)
        ):
            names.append(node.name)
    return names


def run_defaults(root: Path) -> dict:
    """Where run defaults are written: ``{"places": [...], "reproduce": [...]}``."""
    places, reproduce = [], []
    for folder in DEFAULTS_FOLDERS:
        for path in python_files(root, folder):
            rel = relative(root, path)
            names = defaults_in(parse(path))
            if names:
                entry = {"module": rel, "names": names}
                (reproduce if under(rel, REPRODUCE) else places).append(entry)
    return {"places": places, "reproduce": reproduce}


# -- branches on the array library -----------------------------------------------------
def _callee(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _library_constants(node: ast.AST) -> set[str]:
    """Library names written as a string, alone or in a tuple / list / set."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return {
        i.value
        for i in items
        if isinstance(i, ast.Constant) and isinstance(i.value, str) and i.value in LIBRARIES
    }


def _import_roots(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module.split(".")[0]]
    return []


def branch_reasons(tree: ast.Module) -> list[str]:
    """Why a module counts as branching on the array library (empty: it does not)."""
    reasons = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _callee(node)
            if _IS_LIBRARY.match(name):
                reasons.add(f"calls {name}")
            elif name == "family":
                reasons.add("calls family()")
            elif name in ("import_module", "get", "__import__") and any(
                _library_constants(a) & IMPORTED_LIBRARIES for a in node.args[:1]
            ):
                reasons.add(f"fetches {sorted(_library_constants(node.args[0]))[0]}")
        elif isinstance(node, ast.Compare):
            named = set().union(*map(_library_constants, [node.left, *node.comparators]))
            if named:
                reasons.add("compares to " + "/".join(sorted(named)))
        elif isinstance(node, ast.Subscript):
            value = node.value
            name = value.attr if isinstance(value, ast.Attribute) else getattr(value, "id", "")
            if name == "UPDATES":
                reasons.add("indexes UPDATES")
            elif name == "modules" and _library_constants(node.slice) & IMPORTED_LIBRARIES:
                reasons.add("fetches " + sorted(_library_constants(node.slice))[0])
        for lib in _import_roots(node):
            if lib in IMPORTED_LIBRARIES:
                reasons.add(f"imports {lib}")
    return sorted(reasons)


def library_branches(root: Path) -> dict:
    """Modules that branch on the array library: ``{"library": [...], "backends": [...]}``."""
    found: dict[str, list] = {"library": [], "backends": []}
    for folder, key in (("portnet", "library"), ("backends", "backends")):
        for path in python_files(root, folder):
            rel = relative(root, path)
            if under(rel, TESTING):
                continue
            reasons = branch_reasons(parse(path))
            if reasons:
                found[key].append({"module": rel, "reasons": reasons})
    return found


# -- minibatch loops ----------------------------------------------------------------
_BLOCKS = (ast.For, ast.AsyncFor, ast.While, ast.If)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp)


def _own_nodes(block: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a loop's or ``if``'s own statements, not those of a nested block."""
    stack = [*block.body, *block.orelse]
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _BLOCKS + _SCOPES):
            stack.extend(ast.iter_child_nodes(node))


def _computed_slice(node: ast.AST) -> bool:
    if not isinstance(node, ast.Subscript):
        return False
    parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    return any(
        isinstance(p, ast.Slice)
        and any(b is not None and not isinstance(b, ast.Constant) for b in (p.lower, p.upper))
        for p in parts
    )


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _target_names(target: ast.AST) -> set[str]:
    if isinstance(target, (ast.Tuple, ast.List)):
        return set().union(*map(_target_names, target.elts))
    return {target.id} if isinstance(target, ast.Name) else set()


def _carries_state(node: ast.AST) -> bool:
    """``a, ... = f(a, ...)``: a name goes into a call and comes back rebound."""
    if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
        return False
    call = node.value
    passed = {a.id for a in call.args if isinstance(a, ast.Name)}
    passed |= {k.value.id for k in call.keywords if isinstance(k.value, ast.Name)}
    targets = set().union(*map(_target_names, node.targets))
    return bool(targets & passed)


_BATCH_WORD = re.compile(r"(?:^|_)batch(?:es)?(?:_|$)")  # n_batches, batch_size; not BatchNorm


_STEP_WORD = re.compile(r"(?:^|_)step(?:_|$)")  # step, train_step, step_fn; not steps


def _trains(node: ast.AST) -> bool:
    """A call of a step, or an assignment that carries a state through a call."""
    return _carries_state(node) or (
        isinstance(node, ast.Call) and bool(_STEP_WORD.search(_callee(node)))
    )


def _names_a_batch(node: ast.AST) -> bool:
    return any(_BATCH_WORD.search(name) for name in _names(node))


@dataclass
class Loop:
    path: str
    line: int
    function: str
    kind: str


def batch_loops(tree: ast.Module, path: str) -> dict[str, list[Loop]]:
    """The training and the evaluation batch loops of one module."""
    found: dict[str, list[Loop]] = {"training": [], "evaluation": []}
    for function, scope in [("<module>", tree), *_functions(tree)]:
        for node in ast.walk(scope):
            if isinstance(node, _SCOPES) and node is not scope:
                continue
            if isinstance(node, _COMPREHENSIONS):
                if any(_names_a_batch(g.iter) for g in node.generators) and any(
                    _computed_slice(n) for n in ast.walk(node.elt)
                ):
                    found["evaluation"].append(Loop(path, node.lineno, function, "comprehension"))
                continue
            if not isinstance(node, _BLOCKS):
                continue
            own = list(_own_nodes(node))
            iterates = isinstance(node, (ast.For, ast.AsyncFor)) and _names_a_batch(node.iter)
            batch = iterates or any(_computed_slice(n) for n in own)
            kind = type(node).__name__.lower().replace("async", "")
            if batch and any(_trains(n) for n in own):
                found["training"].append(Loop(path, node.lineno, function, kind))
            elif iterates and kind != "if" and any(_computed_slice(n) for n in own):
                found["evaluation"].append(Loop(path, node.lineno, function, kind))
    return found


def minibatch_loops(root: Path) -> dict[str, list[dict]]:
    """Batch loops of ``portnet/`` outside ``portnet/testing`` (rule in the docstring)."""
    found: dict[str, list[dict]] = {"training": [], "evaluation": []}
    for path in python_files(root, "portnet"):
        rel = relative(root, path)
        if under(rel, TESTING):
            continue
        tree = parse(path)
        # _functions walks nested scopes too; a loop is reported in its innermost one.
        seen: set[tuple[str, int]] = set()
        for key, loops in batch_loops(tree, rel).items():
            for loop in sorted(loops, key=lambda lp: lp.function == "<module>"):
                if (key, loop.line) not in seen:
                    seen.add((key, loop.line))
                    found[key].append(asdict(loop))
    return found


# -- the report ---------------------------------------------------------------------
@dataclass
class Report:
    root: str
    folders: list[Folder] = field(default_factory=list)
    largest_functions: list[Function] = field(default_factory=list)
    functions_over_80: int = 0
    run_defaults: dict = field(default_factory=dict)
    library_branches: dict = field(default_factory=dict)
    minibatch_loops: dict = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        """The headline figures, one number each."""
        return {
            "modules in portnet/ (top level)": next(
                (f.modules for f in self.folders if f.folder == "portnet"), 0
            ),
            "largest module (lines)": max((f.largest_lines for f in self.folders), default=0),
            f"functions over {LONG_FUNCTION} lines": self.functions_over_80,
            "places defining run defaults": len(self.run_defaults["places"]),
            "  the reproduce studies' own": len(self.run_defaults["reproduce"]),
            "library modules branching on the array library": len(self.library_branches["library"]),
            "  backends/ modules branching": len(self.library_branches["backends"]),
            "minibatch training loops": len(self.minibatch_loops["training"]),
            "  evaluation / prediction batch loops": len(self.minibatch_loops["evaluation"]),
        }


def measure(root: Path) -> Report:
    """Every figure of the report for the checkout at ``root``."""
    functions = all_functions(root)
    return Report(
        root=str(root),
        folders=module_counts(root),
        largest_functions=functions[:10],
        functions_over_80=sum(f.lines > LONG_FUNCTION for f in functions),
        run_defaults=run_defaults(root),
        library_branches=library_branches(root),
        minibatch_loops=minibatch_loops(root),
    )


def to_json(report: Report) -> dict:
    return {**asdict(report), "summary": report.summary()}


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _details(report: Report) -> list[str]:
    defaults = report.run_defaults
    branches = report.library_branches
    loops = report.minibatch_loops
    return [
        _table(
            ["Folder", "Modules", "Largest module", "Lines"],
            [[f.folder, f.modules, f.largest, f.largest_lines] for f in report.folders],
        ),
        _table(
            ["Function", "Module", "Lines"],
            [[f.name, f"{f.path}:{f.line}", f.lines] for f in report.largest_functions],
        ),
        _table(
            ["Run defaults in", "Names"],
            [[d["module"], ", ".join(d["names"])] for d in defaults["places"]]
            + [
                [d["module"] + " (reproduce)", ", ".join(d["names"])] for d in defaults["reproduce"]
            ],
        ),
        _table(
            ["Branches on the array library", "Why"],
            [[b["module"], "; ".join(b["reasons"])] for b in branches["library"]]
            + [[b["module"], "; ".join(b["reasons"])] for b in branches["backends"]],
        ),
        _table(
            ["Batch loop", "Where", "Kind"],
            [[lp["function"], f"{lp['path']}:{lp['line']}", "training"] for lp in loops["training"]]
            + [
                [lp["function"], f"{lp['path']}:{lp['line']}", "evaluation"]
                for lp in loops["evaluation"]
            ],
        ),
    ]


def markdown(report: Report, before: Report | None = None) -> str:
    """The summary table (with a "before" column when given), then the details."""
    now = report.summary()
    if before is None:
        summary = _table(["Measure", "Value"], [[k, v] for k, v in now.items()])
    else:
        then = before.summary()
        summary = _table(["Measure", "Before", "After"], [[k, then[k], now[k]] for k in now])
    parts = [f"Checkout: {report.root}", summary, *_details(report)]
    if before is not None:
        parts += [f"Before: {before.root}", *_details(before)]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parent.parent
    parser.add_argument("--root", type=Path, default=here, help="the checkout to measure")
    parser.add_argument("--before", type=Path, help="a checkout to show beside it")
    parser.add_argument("--json", action="store_true", help="print JSON, not Markdown")
    args = parser.parse_args(argv)
    for root in filter(None, (args.root, args.before)):
        if not (root / "portnet").is_dir():
            parser.error(f"{root} has no portnet/ folder: pass a checkout with --root")
    report = measure(args.root)
    before = measure(args.before) if args.before else None
    if args.json:
        out = (
            to_json(report)
            if before is None
            else {"after": to_json(report), "before": to_json(before)}
        )
        print(json.dumps(out, indent=2))
    else:
        print(markdown(report, before), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
