"""The backend test matrix (docs/design.md, "Tests as instruments"): every case visible.

Each case is a ``pytest.param`` with an id; cases whose library or device is
missing are skipped with the reason, so ``pytest -ra`` shows them.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import portnet
from portnet.errors import BackendError
from portnet.testing import emulated_cupy

EMULATED = "cupy-emulated"
# What each GPU case needs; checked before a `gpu` test sets anything up.
GPU_CASES = {
    "cupy": ("cupy", "cuda:0"),
    "torch-cuda": ("torch", "cuda"),
    "jax-cuda": ("jax", "cuda"),
}


def gpu_marks(case_id):
    """The `gpu` marker (naming the library it needs) for a GPU case id, else none."""
    return [pytest.mark.gpu(case_id)] if case_id in GPU_CASES else []


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


def assert_on_backend(array, backend, dtype=None, shape=None):
    """Namespace, device, dtype and shape of a result, checked before its values."""
    import array_api_compat

    assert array_api_compat.array_namespace(array) is backend.xp or (
        array_api_compat.array_namespace(array).__name__ == backend.xp.__name__
    ), f"result is in {array_api_compat.array_namespace(array)}, expected {backend.xp}"
    assert str(array_api_compat.device(array)) == str(backend.device), (
        f"result on {array_api_compat.device(array)}, expected {backend.device}"
    )
    if dtype is not None:
        assert array.dtype == backend.dtype(dtype), f"dtype {array.dtype}, expected {dtype}"
    if shape is not None:
        assert tuple(array.shape) == tuple(shape), f"shape {tuple(array.shape)}, expected {shape}"


def assert_gradients_on_backend(dx, grads, backend, x_shape, params_host):
    """``dx`` and one gradient per parameter, each float32 on ``backend`` in its input's shape."""
    assert_on_backend(dx, backend, "float32", x_shape)
    assert set(grads) == set(params_host)
    for key, g in grads.items():
        assert_on_backend(g, backend, "float32", params_host[key].shape)


def host_copies(tree):
    """Host copies of every array of a dict / list / array, to compare after a call."""
    if isinstance(tree, dict):
        return {k: host_copies(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [host_copies(v) for v in tree]
    backend = portnet.backend_of(tree)
    return np.array(backend.to_numpy(tree), copy=True)


def assert_unchanged(before, tree):
    """Fail if ``tree`` no longer equals the :func:`host_copies` taken ``before`` a call."""
    if isinstance(tree, dict):
        assert set(before) == set(tree)
        for k in tree:
            assert_unchanged(before[k], tree[k])
    elif isinstance(tree, list):
        for b, t in zip(before, tree, strict=True):
            assert_unchanged(b, t)
    else:
        np.testing.assert_array_equal(
            portnet.backend_of(tree).to_numpy(tree),
            before,
            err_msg="an input was modified by the call",
        )


def f32(a):
    """Host data rounded to float32 first, so a float64 oracle sees the same numbers."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def tolerance(dtype_name: str) -> dict:
    return (
        {"rtol": 1e-4, "atol": 1e-5} if dtype_name == "float32" else {"rtol": 1e-10, "atol": 1e-12}
    )


def synthetic_classification(n=600, n_features=20, n_classes=10, seed=0):
    """A learnable 10-class problem: labels from a random linear map plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features)).astype(np.float32)
    W = rng.normal(size=(n_features, n_classes))
    y = np.argmax(X @ W + 0.5 * rng.normal(size=(n, n_classes)), axis=1).astype(np.int64)
    return X, y
