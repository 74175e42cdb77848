r"""Principal component analysis on any Array-API backend.

The fit runs on the device of its input with the standard's ``linalg`` extension;
only a backend without that extension takes an explicit, commented detour through
the host.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from .._array import on_device_of_inputs
from ..backends import backend_of
from ..errors import InputError

_METHODS = ("covariance", "svd")


class PCA:
    r"""Principal component analysis: project centred data onto its top directions of variance.

    Parameters
    ----------
    n_components : int, optional
        Number of components kept, ``1 <= n_components <= n_features`` (all by default).
    method : {"covariance", "svd"}
        How the components are computed (both give the same result up to rounding):

        * ``"covariance"`` (default): eigen-decomposition of the
          :math:`D \times D` covariance :math:`C = X_c^\top X_c / (N-1)` with
          ``xp.linalg.eigh``. For Fashion-MNIST (:math:`N=60000, D=784`) this costs
          one large matrix product (:math:`N D^2`, which BLAS and GPUs do fastest)
          plus an :math:`O(D^3)` eigensolver on a small matrix, several times faster
          than the SVD. Forming :math:`C` squares the condition number, so in
          float32 the *trailing*, tiny-variance components are less accurate; the
          leading ones (the ones anybody keeps) are not affected in practice.
        * ``"svd"``: thin SVD :math:`X_c = U S V^\top` with ``xp.linalg.svd``: more
          accurate for tiny variances, :math:`O(N D^2)` with a larger constant.

    Attributes
    ----------
    components_ : array, shape (n_components, n_features)
        Principal axes (unit rows :math:`v_k`), by decreasing explained variance.
        Signs are deterministic: the entry of largest magnitude of each row is positive.
    explained_variance_ : array, shape (n_components,)
        Variance along each axis, :math:`\lambda_k = s_k^2 / (N - 1)`.
    explained_variance_ratio_ : array, shape (n_components,)
        :math:`\lambda_k / \sum_j \operatorname{Var}(x_j)` (fraction of the total variance).
    mean_ : array, shape (n_features,)
        Per-feature mean :math:`\mu` of the training data.
    n_components_, n_features_in_, n_samples_ : int

    Notes
    -----
    With :math:`X_c = X - \mathbf 1 \mu^\top`:

    .. math:: Z = (X - \mu) V_k^\top, \qquad \hat X = Z V_k + \mu,

    and with all :math:`D` components :math:`\hat X = X` up to rounding.

    Every array keeps the input's namespace, device and floating dtype; the
    namespace is inferred from the input (``array_api_compat.array_namespace``).

    Examples
    --------
    >>> pca = PCA(50).fit(X_train)          # X_train: (N, 784) on any backend
    >>> Z = pca.transform(X_test)
    >>> X_back = pca.inverse_transform(Z)
    """

    def __init__(self, n_components: int | None = None, method: str = "covariance"):
        if n_components is not None and (
            isinstance(n_components, bool) or int(n_components) != n_components
        ):
            raise InputError(f"n_components must be an integer, got {n_components!r}")
        if n_components is not None and n_components < 1:
            raise InputError(f"n_components must be >= 1, got {n_components}")
        if method not in _METHODS:
            raise InputError(f"unknown PCA method {method!r}; choose one of {', '.join(_METHODS)}")
        self.n_components = None if n_components is None else int(n_components)
        self.method = method

    # -- fitting ----------------------------------------------------------------
    @on_device_of_inputs
    def fit(self, X: Any) -> PCA:
        """Fit the principal axes of ``X`` (shape ``(N, D)``, floating dtype).

        The input is not modified. Raises :class:`portnet.InputError` for a
        non-2-d or non-floating input, fewer than two rows, NaN or infinite
        values, or ``n_components`` larger than ``min(N, D)``.
        """
        xp = array_api_compat.array_namespace(X)
        n, d = self._check(xp, X)
        k = d if self.n_components is None else self.n_components
        if k > min(n, d):
            raise InputError(
                f"n_components={k} is larger than min(n_samples, n_features) = "
                f"min({n}, {d}); choose at most {min(n, d)}."
            )
        mean = xp.mean(X, axis=0)
        Xc = X - mean  # a new array: the caller's X is never touched
        # Total variance from the data itself, so the ratio is right when k < D.
        total_var = xp.sum(Xc * Xc) / (n - 1)
        if hasattr(xp, "linalg"):
            variances, axes = self._decompose(xp, Xc, n)
        else:
            # The namespace lacks the optional linalg extension: decompose on the
            # host in float64 through the backend's single host exit, then move the
            # small (k, D) result back to the data's device.
            backend = backend_of(X)
            variances_h, axes_h = self._decompose(
                array_api_compat.numpy, backend.to_numpy(Xc).astype(np.float64), n
            )
            variances = xp.asarray(variances_h, dtype=X.dtype, device=X.device)
            axes = xp.asarray(axes_h, dtype=X.dtype, device=X.device)
        axes = axes[:k, ...]
        variances = variances[:k]
        # Deterministic signs: flip each axis so its largest-magnitude entry is
        # positive (max >= -min means the largest |entry| is already positive).
        positive = xp.max(axes, axis=1) >= -xp.min(axes, axis=1)
        signs = xp.astype(positive, X.dtype) * 2.0 - 1.0
        self.components_ = axes * xp.expand_dims(signs, axis=1)
        self.explained_variance_ = variances
        self.explained_variance_ratio_ = variances / total_var
        self.mean_ = mean
        self.n_components_, self.n_features_in_, self.n_samples_ = k, d, n
        return self

    def _decompose(self, xp, Xc, n: int):
        """All axes (rows, by decreasing variance) and their variances."""
        if self.method == "svd":
            _, s, vt = xp.linalg.svd(Xc, full_matrices=False)
            return (s * s) / (n - 1), vt
        cov = xp.matmul(xp.matrix_transpose(Xc), Xc) / (n - 1)
        # eigh returns ascending eigenvalues; flip to descending. Rounding can make
        # the smallest ones slightly negative: clip them to zero variance.
        eigenvalues, eigenvectors = xp.linalg.eigh(cov)
        eigenvalues = xp.flip(xp.maximum(eigenvalues, 0.0), axis=0)
        return eigenvalues, xp.matrix_transpose(xp.flip(eigenvectors, axis=1))

    @staticmethod
    def _check(xp, X) -> tuple[int, int]:
        if X.ndim != 2:
            raise InputError(f"PCA expects a 2-d (N, D) array, got shape {tuple(X.shape)}")
        if not xp.isdtype(X.dtype, "real floating"):
            raise InputError(
                f"PCA expects floating data, got dtype {X.dtype}; convert it first "
                "(e.g. portnet.data.scale_images for uint8 images)."
            )
        n, d = int(X.shape[0]), int(X.shape[1])
        if n < 2:
            raise InputError(f"PCA needs at least 2 samples, got {n}")
        # One 0-d read per fit (not per step): NaN would silently poison every axis.
        finite = backend_of(X).to_numpy(xp.all(xp.isfinite(X)))
        if not bool(finite):
            raise InputError("X contains NaN or infinite values: clean or impute them first.")
        return n, d

    # -- using the fit ------------------------------------------------------------
    def _fitted(self, X: Any, attribute: str, what: str):
        if not hasattr(self, "components_"):
            raise InputError("this PCA is not fitted yet; call fit(X_train) first")
        width = getattr(self, attribute)
        xp = array_api_compat.array_namespace(X, self.components_)
        if X.ndim != 2 or int(X.shape[1]) != width:
            raise InputError(f"{what} must have shape (N, {width}), got {tuple(X.shape)}")
        return xp

    @on_device_of_inputs
    def transform(self, X: Any) -> Any:
        r"""Project onto the components: :math:`Z = (X - \mu) V_k^\top`, shape ``(N, k)``."""
        xp = self._fitted(X, "n_features_in_", "X")
        return xp.matmul(X - self.mean_, xp.matrix_transpose(self.components_))

    @on_device_of_inputs
    def fit_transform(self, X: Any) -> Any:
        """Fit on ``X`` and return its projection."""
        return self.fit(X).transform(X)

    @on_device_of_inputs
    def inverse_transform(self, Z: Any) -> Any:
        r"""Map projections back to feature space: :math:`\hat X = Z V_k + \mu`."""
        xp = self._fitted(Z, "n_components_", "Z")
        return xp.matmul(Z, self.components_) + self.mean_

    def __repr__(self) -> str:
        return f"PCA(n_components={self.n_components}, method={self.method!r})"
