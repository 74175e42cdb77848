"""The backend test matrix (docs/design.md, "Tests as instruments"): every case visible.

Helpers that tests import live in ``tests/helpers/``; this file holds only fixtures
and hooks.

Each case is a ``pytest.param`` with an id; cases whose library or device is
missing are skipped with the reason, so ``pytest -ra`` shows them.
"""

from __future__ import annotations

import functools

import pytest
from helpers.cases import EMULATED, GPU_CASES, gpu_marks

import portnet
from portnet.errors import BackendError
from portnet.testing import emulated_cupy


@functools.cache
def gpu_missing(case_id):
    """Why the GPU case ``case_id`` cannot run here, or None when it can."""
    name, device = GPU_CASES[case_id]
    try:
        portnet.get_backend(name, device)
    except BackendError as exc:
        return f"{case_id}: {str(exc).split('. ')[0]}"
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Skip a `gpu` case before any of its fixtures runs when its GPU is missing."""
    for marker in item.iter_markers("gpu"):
        reason = gpu_missing(marker.args[0]) if marker.args else None
        if reason:
            pytest.skip(reason)


# (id, backend name, device). "cupy-emulated" runs portnet's real cupy adapter on
# portnet.testing.emulated_cupy: array-api-compat's CuPy wrappers over NumPy, with
# hidden host syncs raising. The GPU cases carry the `gpu` marker.
BACKEND_CASES = [
    ("numpy", "numpy", None),
    ("strict", "array_api_strict", "CPU_DEVICE"),
    ("strict-device1", "array_api_strict", "device1"),
    ("strict-nof64", "array_api_strict", "no_float64"),
    ("torch-cpu", "torch", "cpu"),
    ("cupy-emulated", EMULATED, "cuda:0"),
    ("jax", "jax", "cpu"),
    *((case_id, *needs) for case_id, needs in GPU_CASES.items()),
]


def _case(case_id, name, device):
    return pytest.param((name, device), id=case_id, marks=gpu_marks(case_id))


def _load(name, device):
    try:
        return portnet.get_backend(name, device)
    except BackendError as exc:
        pytest.skip(f"{name} on {device}: {str(exc).split('. ')[0]}")


def _backend_for(request):
    name, device = request.param
    if name == EMULATED:
        with emulated_cupy():
            yield portnet.get_backend("cupy", device)
    else:
        yield _load(name, device)


@pytest.fixture(params=[_case(*case) for case in BACKEND_CASES])
def backend(request):
    """Every backend case of the matrix."""
    yield from _backend_for(request)


# Float64 gradient checks are meaningless on a device without float64.
F64_CASES = [case for case in BACKEND_CASES if case[0] != "strict-nof64"]


@pytest.fixture(params=[_case(*case) for case in F64_CASES])
def backend64(request):
    """Every backend case that has float64."""
    yield from _backend_for(request)


@pytest.fixture
def numpy_backend():
    return portnet.get_backend("numpy")
