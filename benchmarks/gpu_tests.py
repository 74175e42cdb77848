"""Section 1 of :mod:`benchmarks.gpu_check`: the GPU test cases, one pytest run per library.

A collection pass first counts each library's cases (:func:`take_inventory`); then
each library gets its own pytest run (:func:`run_library`) over the files that hold
its cases, with a time limit sized from its case count, ``--junitxml`` and a ``-v``
log on disk. A run that reaches its limit is interrupted (SIGINT, so pytest still
writes its XML), then killed; the cases it finished are read from the XML or, if
pytest never wrote it, from the log.

A run counts as failed, with the reason, when pytest exits with anything but 0,
when it ran no case, when every case was skipped (the library works, so a skip
means the tests' own check disagrees), when a case failed, or when it reported
fewer cases than the collection pass found.

``PORTNET_GPU_CHECK_PYTEST`` replaces the pytest command (``python -m pytest``),
so the tests of gpu_check itself can stand a crashing, hanging or empty pytest in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "benchmarks.gpu_pytest_plugin"
PYTEST_ENV = "PORTNET_GPU_CHECK_PYTEST"
#: pytest's exit codes other than 0 and 1, and what they mean.
EXIT_MEANINGS = {
    2: "interrupted, or errors while collecting",
    3: "internal error",
    4: "usage error",
    5: "no tests collected",
}
#: Seconds a run gets to write its XML after SIGINT before it is killed.
INTERRUPT_GRACE = 15.0


def pytest_command() -> list[str]:
    """``python -m pytest``, or the stand-in named by ``$PORTNET_GPU_CHECK_PYTEST``."""
    override = os.environ.get(PYTEST_ENV)
    return shlex.split(override) if override else [sys.executable, "-m", "pytest"]


@dataclasses.dataclass
class Inventory:
    """What the collection pass found: cases and files per GPU case, broken files."""

    cases: dict[str, int] = dataclasses.field(default_factory=dict)
    files: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    collect_errors: list[str] = dataclasses.field(default_factory=list)
    problem: str | None = None
    seconds: float = 0.0


@dataclasses.dataclass
class TestRun:
    """One library's pytest run: counts, failures, and why it failed (``problems``)."""

    label: str
    case: str = ""
    expected: int | None = None
    limit: float = 0.0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    returncode: int | None = None
    timed_out: bool = False
    source: str = "none"
    failures: list[str] = dataclasses.field(default_factory=list)
    skip_reasons: list[str] = dataclasses.field(default_factory=list)
    log_tail: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def reported(self) -> int:
        return self.passed + self.failed + self.errors + self.skipped


# -- running pytest ---------------------------------------------------------------------


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def run_pytest(args: list[str], limit: float, log: Path) -> tuple[int | None, bool, float]:
    """Run pytest with ``args`` for at most ``limit`` seconds, its output into ``log``.

    Returns ``(returncode, timed_out, seconds)``. At the limit the run gets SIGINT
    (pytest then writes its summary and XML) and, after :data:`INTERRUPT_GRACE`
    seconds, SIGKILL. Its whole process group is killed on the way out, whatever
    interrupts this function (gpu_check's own budget included).
    """
    start = time.perf_counter()
    timed_out = False
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*pytest_command(), *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: nothing it starts survives it
        )
        try:
            proc.wait(timeout=max(limit, 0.1))
        except subprocess.TimeoutExpired:
            timed_out = True
            _signal_group(proc, signal.SIGINT)
            try:
                proc.wait(timeout=INTERRUPT_GRACE)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        finally:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
    return proc.returncode, timed_out, time.perf_counter() - start


def take_inventory(cases: list[str], limit: float, workdir: Path) -> Inventory:
    """Count each GPU case's test cases with one collection pass (nothing runs)."""
    path = workdir / "inventory.json"
    path.unlink(missing_ok=True)
    args = ["--collect-only", "-q", "-p", PLUGIN, f"--portnet-gpu-inventory={path}"]
    args += ["-p", "no:cacheprovider", "--color=no"]
    log = workdir / "inventory.log"
    returncode, timed_out, seconds = run_pytest(args, limit, log)
    if not path.exists():
        why = f"stopped at its limit of {limit:.0f} s" if timed_out else f"exit {returncode}"
        tail = " | ".join(_tail(log, 3))
        problem = f"the collection pass wrote no case count ({why}; last lines: {tail})"
        return Inventory(problem=problem, seconds=seconds)
    data = json.loads(path.read_text())
    return Inventory(
        cases={case: int(data["cases"].get(case, 0)) for case in cases},
        files={case: list(data["files"].get(case, [])) for case in cases},
        collect_errors=list(data.get("collect_errors", [])),
        seconds=seconds,
    )


def run_library(
    label: str, case: str, files: list[str], limit: float, workdir: Path, expected: int | None
) -> TestRun:
    """Run one GPU case's tests (``files``: where they are; empty: the whole suite)."""
    xml = workdir / f"{label}.xml"
    log = workdir / f"{label}.log"
    xml.unlink(missing_ok=True)
    args = [*files, "-p", PLUGIN, f"--portnet-gpu-case={case}", "-v", "-rfEs", "--color=no"]
    args += ["-p", "no:cacheprovider", f"--junitxml={xml}"]
    run = TestRun(label=label, case=case, expected=expected, limit=limit)
    run.returncode, run.timed_out, run.seconds = run_pytest(args, limit, log)
    if not _read_junit(run, xml):
        _read_log(run, log)
    run.log_tail = _tail(log, 25)
    run.problems = judge(run)
    return run


def _read_junit(run: TestRun, xml: Path) -> bool:
    """Fill ``run``'s counts from pytest's XML; False when there is none to read."""
    try:
        cases = ET.parse(xml).getroot().iter("testcase")
    except (OSError, ET.ParseError):  # never written (killed), or cut short
        return False
    for case in cases:
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = {child.tag: child for child in case if child.tag in _OUTCOMES}
        if "error" in outcome:
            run.errors += 1
            run.failures.append(f"{name} (error): {_first_line(outcome['error'])}")
        elif "failure" in outcome:
            run.failed += 1
            run.failures.append(f"{name}: {_first_line(outcome['failure'])}")
        elif "skipped" in outcome:
            run.skipped += 1
            reason = _first_line(outcome["skipped"])
            if reason not in run.skip_reasons:
                run.skip_reasons.append(reason)
        else:
            run.passed += 1
    run.source = "junit"
    return True


_OUTCOMES = ("failure", "error", "skipped")
_VERBOSE_LINE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")


def _read_log(run: TestRun, log: Path) -> None:
    """Fill ``run``'s counts from pytest's ``-v`` lines (when no XML was written)."""
    outcomes: dict[str, str] = {}
    for line in _lines(log):
        match = _VERBOSE_LINE.match(line)
        if match:  # a teardown ERROR after PASSED replaces it
            outcomes[match.group(1)] = match.group(2)
    for node, outcome in outcomes.items():
        if outcome in ("PASSED", "XPASS"):
            run.passed += 1
        elif outcome in ("SKIPPED", "XFAIL"):
            run.skipped += 1
        elif outcome == "FAILED":
            run.failed += 1
            run.failures.append(node)
        else:
            run.errors += 1
            run.failures.append(f"{node} (error)")
    run.source = "log" if outcomes else "none"


def judge(run: TestRun) -> list[str]:
    """Why ``run`` counts as a failure; empty when it passed."""
    problems = []
    expected = f" of {run.expected}" if run.expected is not None else ""
    if run.timed_out:
        problems.append(
            f"stopped at its limit of {run.limit:.0f} s after {run.reported}{expected} cases"
        )
    elif run.returncode not in (0, 1):
        meaning = EXIT_MEANINGS.get(run.returncode or 0, "killed by a signal")
        problems.append(f"pytest exited with code {run.returncode} ({meaning})")
    if run.reported == 0:
        problems.append("no test case ran")
    elif run.passed == 0 and run.failed == 0 and run.errors == 0:
        reason = run.skip_reasons[0] if run.skip_reasons else "no reason recorded"
        problems.append(
            f"every case was skipped ({reason}); the library works here, so the tests' "
            "own check of it disagrees"
        )
    if run.failed or run.errors:
        problems.append(f"{run.failed} failed, {run.errors} errors")
    elif run.returncode == 1:
        problems.append("pytest reported failures that neither its XML nor its log names")
    if run.expected is not None and 0 < run.reported < run.expected and not run.timed_out:
        problems.append(f"only {run.reported} of {run.expected} cases reported")
    return problems


def run_all(
    libraries: dict[str, str],
    deadline: float,
    workdir: Path,
    *,
    startup: float,
    per_case: float,
    say: Callable[[str], None] = print,
) -> tuple[Inventory, list[TestRun]]:
    """The collection pass, then one run per library, all before ``deadline``.

    ``libraries`` maps a label (``cupy``) to the test case it runs (``cupy`` or, on
    the stand-in, ``cupy-emulated``). Each run's limit is ``startup + per_case * n``
    for its ``n`` cases, capped at its share (by case count) of the time left.
    """
    left = deadline - time.perf_counter()
    inventory = take_inventory(list(libraries.values()), min(120.0, 0.25 * left), workdir)
    if inventory.problem:
        say(f"[tests] {inventory.problem}")
    else:
        say(f"[tests] cases: {inventory.cases} ({inventory.seconds:.0f} s to collect)")
    runs = []
    labels = list(libraries)
    for position, label in enumerate(labels):
        case = libraries[label]
        count = inventory.cases.get(case) if not inventory.problem else None
        sized = startup + per_case * (count if count is not None else 200)
        pending = [inventory.cases.get(libraries[lab], 200) or 1 for lab in labels[position:]]
        share = (deadline - time.perf_counter()) * pending[0] / sum(pending)
        limit = max(2.0, min(sized, share))
        say(f"[tests] {label}: {count if count is not None else '?'} cases, limit {limit:.0f} s")
        files = inventory.files.get(case, []) if not inventory.problem else []
        if count == 0:  # nothing to run; a pytest run would only say so after collecting
            run = TestRun(label=label, case=case, expected=0)
            run.problems = [f"the collection pass found no test case of {case}"]
        else:
            run = run_library(label, case, files, limit, workdir, count)
        verdict = "ok" if not run.problems else "; ".join(run.problems)
        say(
            f"[tests] {label}: {run.passed} passed, {run.failed} failed, {run.errors} errors, "
            f"{run.skipped} skipped in {run.seconds:.0f} s: {verdict}"
        )
        runs.append(run)
    return inventory, runs


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def _tail(path: Path, n: int) -> list[str]:
    return [line for line in _lines(path) if line.strip()][-n:]


def _first_line(element: ET.Element) -> str:
    text = element.get("message") or (element.text or "").strip() or element.tag
    return text.splitlines()[0][:300] if text else element.tag
