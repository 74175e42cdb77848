"""Checks of arrays on a backend, host copies to compare after a call, tolerances,
and a small learnable classification problem."""

from __future__ import annotations

import numpy as np

import portnet


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
