"""A pytest plugin for :mod:`benchmarks.gpu_check`: one GPU library's cases, or a count.

Loaded with ``-p benchmarks.gpu_pytest_plugin``; without its options it changes
nothing.

- ``--portnet-gpu-case=cupy`` keeps only the cases marked ``gpu("cupy")`` (likewise
  ``torch-cuda``, ``jax-cuda``); ``--portnet-gpu-case=cupy-emulated`` keeps the cases
  of the emulated CuPy (their parametrize id), gpu_check's stand-in without a GPU.
- ``--portnet-gpu-inventory=FILE`` writes, as JSON, how many cases each of those
  kinds has, which test files hold them, and which files failed to collect; then
  it deselects everything, so the collection pass prints next to nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

EMULATED = "cupy-emulated"
_collect_errors: list[str] = []


def case_of(item) -> str | None:
    """The GPU case a test item belongs to (its ``gpu`` marker's argument), or None."""
    marker = item.get_closest_marker("gpu")
    if marker is not None and marker.args:
        return str(marker.args[0])
    callspec = getattr(item, "callspec", None)
    if callspec is not None and EMULATED in callspec.id:
        return EMULATED
    return None


def pytest_addoption(parser):
    group = parser.getgroup("portnet-gpu", "benchmarks.gpu_check")
    group.addoption(
        "--portnet-gpu-case",
        metavar="CASE",
        help="keep only the test cases of one GPU case (cupy, torch-cuda, jax-cuda, cupy-emulated)",
    )
    group.addoption(
        "--portnet-gpu-inventory",
        metavar="FILE",
        help="write the number of cases of each GPU case as JSON, then run none",
    )


def pytest_configure(config):
    _collect_errors.clear()


def pytest_collectreport(report):
    if report.failed:
        _collect_errors.append(report.nodeid or "<session>")


def pytest_collection_modifyitems(config, items):
    inventory = config.getoption("portnet_gpu_inventory")
    case = config.getoption("portnet_gpu_case")
    if inventory:
        _write_inventory(Path(inventory), items)
        keep = []
    elif case:
        keep = [item for item in items if case_of(item) == case]
    else:
        return
    kept = {id(item) for item in keep}
    dropped = [item for item in items if id(item) not in kept]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep


def _write_inventory(path: Path, items) -> None:
    cases: Counter[str] = Counter()
    files: dict[str, set[str]] = defaultdict(set)
    for item in items:
        case = case_of(item)
        if case is not None:
            cases[case] += 1
            files[case].add(item.nodeid.split("::")[0])
    data = {
        "cases": dict(cases),
        "files": {case: sorted(paths) for case, paths in files.items()},
        "collect_errors": list(_collect_errors),
    }
    # Temporary file, then rename: gpu_check never reads half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from whoever collects the logs
    os.replace(tmp, path)
