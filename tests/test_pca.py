"""PCA on every backend case against a float64 NumPy SVD oracle."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.arrays import assert_on_backend

from portnet.errors import InputError
from portnet.tools import decomposition
from portnet.tools.decomposition import PCA

N, D = 240, 12
# Well-separated standard deviations, so every axis is determined (no near-ties).
SCALES = np.array([10.0, 8.0, 6.0, 5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.6, 0.3])


def _data(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.normal(size=(D, D)))
    return rng.normal(size=(N, D)) * SCALES @ rotation + rng.normal(size=D) * 5


def _oracle(X: np.ndarray, k: int):
    """float64 SVD of the centred data, with the same sign rule (largest |entry| positive)."""
    X = X.astype(np.float64)
    mean = X.mean(axis=0)
    _, s, vt = np.linalg.svd(X - mean, full_matrices=False)
    signs = np.where(vt.max(axis=1) >= -vt.min(axis=1), 1.0, -1.0)
    vt = vt * signs[:, None]
    variance = s**2 / (len(X) - 1)
    total = ((X - mean) ** 2).sum() / (len(X) - 1)
    return vt[:k], variance[:k], variance[:k] / total, mean


def _tol(dtype: str) -> dict:
    return {"rtol": 2e-3, "atol": 2e-3} if dtype == "float32" else {"rtol": 1e-9, "atol": 1e-9}


def _check_fit(backend, dtype: str, method: str, k: int) -> None:
    host = _data()
    X = backend.asarray(host, dtype)
    before = backend.to_numpy(X).copy()
    pca = PCA(k, method=method).fit(X)
    Z = pca.transform(X)
    back = pca.inverse_transform(Z)
    for array, shape in (
        (pca.components_, (k, D)),
        (pca.explained_variance_, (k,)),
        (pca.explained_variance_ratio_, (k,)),
        (pca.mean_, (D,)),
        (Z, (N, k)),
        (back, (N, D)),
    ):
        assert_on_backend(array, backend, dtype, shape)
    comps, variance, ratio, mean = _oracle(host.astype(dtype), k)
    tol = _tol(dtype)
    np.testing.assert_allclose(backend.to_numpy(pca.components_), comps, **tol)
    np.testing.assert_allclose(
        backend.to_numpy(pca.explained_variance_), variance, rtol=tol["rtol"]
    )
    np.testing.assert_allclose(backend.to_numpy(pca.explained_variance_ratio_), ratio, **tol)
    np.testing.assert_allclose(backend.to_numpy(pca.mean_), mean, rtol=tol["rtol"], atol=1e-4)
    np.testing.assert_allclose(
        backend.to_numpy(Z), (host - mean) @ comps.T, rtol=tol["rtol"], atol=100 * tol["atol"]
    )
    np.testing.assert_array_equal(backend.to_numpy(X), before)  # input untouched


@pytest.mark.parametrize("method", ["covariance", "svd"])
def test_pca_float32_matches_svd_oracle(backend, method):
    _check_fit(backend, "float32", method, k=5)


@pytest.mark.parametrize("method", ["covariance", "svd"])
def test_pca_float64_matches_svd_oracle(backend64, method):
    _check_fit(backend64, "float64", method, k=7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_all_components_reconstruct_the_input(backend64, dtype):
    host = _data(1)
    X = backend64.asarray(host, dtype)
    pca = PCA().fit(X)
    assert pca.n_components_ == D
    back = backend64.to_numpy(pca.inverse_transform(pca.transform(X)))
    scale = 1e-3 if dtype == "float32" else 1e-9
    np.testing.assert_allclose(back, host, atol=scale * np.abs(host).max())
    ratio = backend64.to_numpy(pca.explained_variance_ratio_)
    np.testing.assert_allclose(ratio.sum(), 1.0, rtol=scale)
    assert np.all(np.diff(backend64.to_numpy(pca.explained_variance_)) <= 0)


def test_signs_are_deterministic_under_data_negation(numpy_backend):
    """Negating the data flips every axis of an SVD; the sign rule must undo that."""
    X = _data(2)
    a = PCA(4).fit(numpy_backend.asarray(X, "float64")).components_
    b = PCA(4).fit(numpy_backend.asarray(-X, "float64")).components_
    np.testing.assert_allclose(a, b, atol=1e-10)
    assert np.all(a.max(axis=1) >= -a.min(axis=1))


class _NoLinalg:
    """A namespace exactly like another one, minus the optional linalg extension."""

    def __init__(self, xp):
        self._xp = xp

    def __getattr__(self, name):
        if name == "linalg":
            raise AttributeError(name)
        return getattr(self._xp, name)


def test_host_detour_without_linalg(numpy_backend, monkeypatch):
    import array_api_compat

    real = array_api_compat.array_namespace
    stripped = []  # the namespaces handed to PCA: the detour must really have been taken

    def without_linalg(*arrays):
        stripped.append(_NoLinalg(real(*arrays)))
        return stripped[-1]

    monkeypatch.setattr(decomposition.array_api_compat, "array_namespace", without_linalg)
    X = _data(3)
    pca = PCA(3).fit(numpy_backend.asarray(X, "float32"))
    assert stripped, "PCA did not take its namespace from array_api_compat"
    comps, variance, _, _ = _oracle(X.astype(np.float32), 3)
    assert pca.components_.dtype == np.float32
    np.testing.assert_allclose(pca.components_, comps, atol=2e-3)
    np.testing.assert_allclose(pca.explained_variance_, variance, rtol=2e-3)


def test_bad_input_gives_clear_errors(numpy_backend):
    X = numpy_backend.asarray(_data(), "float32")
    with pytest.raises(InputError, match="n_components=13 is larger"):
        PCA(13).fit(X)
    nan = _data()
    nan[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        PCA(2).fit(numpy_backend.asarray(nan, "float32"))
    with pytest.raises(InputError, match="2-d"):
        PCA(2).fit(numpy_backend.asarray(np.ones(5), "float32"))
    with pytest.raises(InputError, match="floating"):
        PCA(2).fit(numpy_backend.asarray(np.ones((5, 3), dtype=np.int64)))
    with pytest.raises(InputError, match=">= 1"):
        PCA(0)
    with pytest.raises(InputError, match="not fitted"):
        PCA(2).transform(X)
    fitted = PCA(2).fit(X)
    with pytest.raises(InputError, match="shape"):
        fitted.transform(X[:, :5])
    with pytest.raises(InputError, match="shape"):
        fitted.inverse_transform(X)
