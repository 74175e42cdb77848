"""The layout the design promises: a façade nobody reaches into, and no import cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import portnet as pn

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("portnet", "backends", "benchmarks", "experiments", "tests")


def python_files():
    for folder in SOURCES:
        yield from sorted((ROOT / folder).rglob("*.py"))


def private_model_names() -> set[str]:
    """Every attribute or method of Model whose name starts with one underscore."""
    tree = ast.parse((ROOT / "portnet" / "model.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "Model":
            for item in ast.walk(node):
                if isinstance(item, ast.FunctionDef):
                    names.add(item.name)
                elif isinstance(item, ast.Attribute) and isinstance(item.value, ast.Name):
                    if item.value.id == "self":
                        names.add(item.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_module_outside_model_py_touches_private_model_attributes():
    names = private_model_names()
    assert {"_checked_shapes", "_prepare_X", "_prepare_y", "_probe"} <= names  # the scan works
    pattern = re.compile(r"(?<!self)\.(" + "|".join(sorted(names)) + r")\b")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in python_files()
        if path != ROOT / "portnet" / "model.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> modules of the same package it imports, at any depth (function-level too)."""
    base = ROOT / ("portnet" if package == "portnet" else package)
    graph: dict[str, set[str]] = {}
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        module = ".".join(parts)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = parts if is_package else parts[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    source = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    targets.add(f"{source}.{alias.name}")
                targets.add(source)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[module] = targets
    known = set(graph)
    return {
        module: {
            t for t in targets if t in known and t != module and not module.startswith(t + ".")
        }
        for module, targets in graph.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_portnet_modules_import_each_other_without_cycles():
    graph = import_graph("portnet")
    assert (
        "portnet.io.model_file" in graph["portnet.model"]
    )  # the graph sees function-level imports too
    assert cycles(graph) == []


def test_experiment_modules_import_each_other_without_cycles():
    assert cycles(import_graph("experiments")) == []


def test_model_state_is_the_public_training_state():
    model = pn.Model([pn.Dense(3, 2)], optimizer=pn.SGD(0.1), backend="numpy", seed=5)
    assert isinstance(model.state, pn.TrainState)
    assert model.state.seed == 5 and model.state.epoch == 0
    assert model.params[0]["W"] is model.state.params[0]["W"]
