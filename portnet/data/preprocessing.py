"""Host-side preprocessing for image datasets: scaling, z-scores, labels and splits.

These run once per dataset on the host with NumPy, before the data move to a
device, so they are free to use NumPy features the Array API standard lacks.
Statistics are always fitted on training data only and then applied to
validation and test data, so no information leaks from the held-out sets.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from numpy.typing import DTypeLike

from ..errors import ConfigError

__all__ = [
    "StandardScaler",
    "class_subset",
    "kfold_indices",
    "one_hot",
    "one_vs_rest",
    "scale_images",
    "standardize_per_image",
    "stratified_split",
]

SeedLike = int | np.random.Generator | None


def _float_dtype(dtype: DTypeLike) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ConfigError(f"dtype must be a floating type, got {dtype}")
    return dtype


def _labels(y: np.ndarray, n_classes: int | None = None, name: str = "y") -> np.ndarray:
    """Validate a 1-d integer label vector (and its range when n_classes is given)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ConfigError(f"{name} must be a 1-d array of labels, got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise ConfigError(f"{name} must hold integer labels, got dtype {y.dtype}")
    if n_classes is not None:
        if n_classes < 1:
            raise ConfigError(f"n_classes must be >= 1, got {n_classes}")
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            bad = y[(y < 0) | (y >= n_classes)]
            raise ConfigError(
                f"{name} has {bad.size} labels outside [0, {n_classes}), e.g. {bad[:5].tolist()}"
            )
    return y


def scale_images(X: np.ndarray, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Scale uint8 images to ``[0, 1]`` and flatten them to one row per image.

    Parameters
    ----------
    X : numpy.ndarray
        uint8 images, shape ``(N, H, W)`` or ``(N, D)``.
    dtype : dtype, default float32
        Floating dtype of the result.

    Returns
    -------
    numpy.ndarray
        ``X / 255`` with shape ``(N, H*W)``.
    """
    X = np.asarray(X)
    if X.dtype != np.uint8:
        raise ConfigError(f"scale_images expects uint8 images (0..255), got dtype {X.dtype}")
    if X.ndim < 2:
        raise ConfigError(f"scale_images expects (N, H, W) or (N, D) images, got shape {X.shape}")
    out = X.reshape(len(X), -1).astype(_float_dtype(dtype))
    out /= 255
    return out


class StandardScaler:
    r"""Per-feature z-score, fitted on training data only.

    .. math:: z_{ij} = (x_{ij} - \mu_j) / s_j

    where :math:`\mu_j` and :math:`s_j` are the mean and (population) standard
    deviation of feature :math:`j` over the rows given to :meth:`fit`.

    Parameters
    ----------
    dtype : dtype, optional
        Floating dtype of transformed data. Default: the input's dtype when it is
        floating, else float32.

    Attributes
    ----------
    mean_ : numpy.ndarray
        Per-feature mean, float64, shape ``(D,)``.
    scale_ : numpy.ndarray
        Per-feature standard deviation, float64, with zeros replaced by 1: constant
        features (such as Fashion-MNIST's always-black corner pixels) become 0
        instead of NaN.
    n_features_in_ : int
        Number of features seen by :meth:`fit`.
    """

    def __init__(self, dtype: DTypeLike | None = None) -> None:
        self.dtype = dtype

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2:
            raise ConfigError(
                f"StandardScaler expects a 2-d (N, D) array, got shape {X.shape}; "
                f"flatten images first (e.g. scale_images)"
            )
        return X

    def fit(self, X: np.ndarray) -> StandardScaler:
        """Compute per-feature mean and standard deviation of ``X`` (N, D)."""
        X = self._check(X)
        if len(X) == 0:
            raise ConfigError("StandardScaler.fit needs at least one row")
        # float64 statistics: float32 sums over 60000 rows lose digits.
        mean = X.mean(axis=0, dtype=np.float64)
        std = X.std(axis=0, dtype=np.float64)
        # Relative tolerance: a std at rounding level of the mean is a constant feature.
        tiny = 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)
        self.mean_ = mean
        self.scale_ = np.where(std > tiny, std, 1.0)
        self.n_features_in_ = X.shape[1]
        return self

    def _out_dtype(self, X: np.ndarray) -> np.dtype:
        if self.dtype is not None:
            return _float_dtype(self.dtype)
        return X.dtype if X.dtype.kind == "f" else np.dtype(np.float32)

    def _check_fitted(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "mean_"):
            raise ConfigError("this StandardScaler is not fitted yet; call fit(X_train) first")
        X = self._check(X)
        if X.shape[1] != self.n_features_in_:
            raise ConfigError(
                f"X has {X.shape[1]} features, the scaler was fitted on {self.n_features_in_}"
            )
        return X

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Return ``(X - mean_) / scale_`` as a new array."""
        X = self._check_fitted(X)
        dtype = self._out_dtype(X)
        out = X.astype(dtype)
        out -= self.mean_.astype(dtype)
        out /= self.scale_.astype(dtype)
        return out

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        """Fit on ``X`` and return it transformed."""
        return self.fit(X).transform(X)

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        """Undo :meth:`transform`: ``Z * scale_ + mean_``."""
        Z = self._check_fitted(Z)
        dtype = self._out_dtype(Z)
        return (Z * self.scale_ + self.mean_).astype(dtype)


def standardize_per_image(
    X: np.ndarray, dtype: DTypeLike = np.float32, eps: float = 1e-8
) -> np.ndarray:
    r"""Z-score each image by its own mean and standard deviation (as study S1).

    .. math:: z_{ij} = (x_{ij} - \bar{x}_i) / \max(s_i, \varepsilon)

    Needs no fitted statistics, so training and test images are treated alike.

    Parameters
    ----------
    X : numpy.ndarray
        Images, shape ``(N, ...)``; any numeric dtype. The result keeps the shape.
    dtype : dtype, default float32
        Floating dtype of the result.
    eps : float
        Lower bound on the standard deviation, so a blank image becomes zeros.

    Returns
    -------
    numpy.ndarray
        Each image with mean 0 and standard deviation 1 (0 for constant images).
    """
    X = np.asarray(X)
    if X.ndim < 2:
        raise ConfigError(f"expected (N, ...) images, got shape {X.shape}")
    if eps <= 0:
        raise ConfigError(f"eps must be > 0, got {eps}")
    out = X.astype(_float_dtype(dtype))
    axes = tuple(range(1, X.ndim))
    out -= out.mean(axis=axes, keepdims=True)
    out /= np.maximum(out.std(axis=axes, keepdims=True), eps)
    return out


def one_hot(y: np.ndarray, n_classes: int, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Encode integer labels as one-hot rows.

    Parameters
    ----------
    y : numpy.ndarray
        Integer labels in ``[0, n_classes)``, shape ``(N,)``.
    n_classes : int
        Number of classes.
    dtype : dtype, default float32

    Returns
    -------
    numpy.ndarray
        Shape ``(N, n_classes)``, 1 at ``[i, y[i]]`` and 0 elsewhere.
    """
    y = _labels(y, n_classes)
    out = np.zeros((y.size, n_classes), dtype=dtype)
    out[np.arange(y.size), y] = 1
    return out


def _check_fraction(val_fraction: float) -> None:
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")


def stratified_split(
    y: np.ndarray, val_fraction: float = 0.2, seed: SeedLike = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into training and validation sets with the same class proportions.

    Parameters
    ----------
    y : numpy.ndarray
        Integer labels, shape ``(N,)``.
    val_fraction : float
        Fraction of samples for validation, in ``(0, 1)``; ``round(val_fraction * N)``
        samples are drawn.
    seed : int, numpy.random.Generator or None
        Randomness source; the same seed gives the same split.

    Returns
    -------
    train_idx, val_idx : numpy.ndarray
        Sorted int64 indices; disjoint and together ``0 .. N-1``.

    Notes
    -----
    Each class gives ``val_fraction`` of its samples, rounded so the total is
    exact (largest remainders get the extra sample), so per-class counts differ
    from the ideal by less than one.
    """
    y = _labels(y)
    _check_fraction(val_fraction)
    n = y.size
    n_val = round(val_fraction * n)
    if not 0 < n_val < n:
        raise ConfigError(
            f"val_fraction={val_fraction} of {n} samples leaves an empty training or validation set"
        )
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    ideal = counts * (n_val / n)
    take = np.floor(ideal).astype(np.int64)
    # Largest-remainder rounding; ties broken by class order for determinism.
    extra = n_val - int(take.sum())
    order = np.argsort(-(ideal - take), kind="stable")
    take[order[:extra]] += 1
    val_parts = [
        rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take, strict=True)
    ]
    val_idx = np.sort(np.concatenate(val_parts)).astype(np.int64)
    mask = np.ones(n, dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask).astype(np.int64), val_idx


def kfold_indices(
    n: int, k: int = 5, seed: SeedLike = 0, y: np.ndarray | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(train_idx, val_idx)`` for k-fold cross-validation.

    Parameters
    ----------
    n : int
        Number of samples.
    k : int
        Number of folds, ``2 <= k <= n``.
    seed : int, numpy.random.Generator or None
        Randomness source for the shuffle.
    y : numpy.ndarray, optional
        Labels, shape ``(n,)``. When given, folds are stratified: each class is
        spread over the folds as evenly as possible.

    Yields
    ------
    train_idx, val_idx : numpy.ndarray
        Sorted int64 indices. Every index is in exactly one ``val_idx``; fold
        sizes differ by at most one.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise ConfigError(f"n must be an int, got {n!r}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ConfigError(f"k must be an int, got {k!r}")
    if k < 2 or k > n:
        raise ConfigError(f"k must satisfy 2 <= k <= n (n={n}), got k={k}")
    rng = np.random.default_rng(seed)
    if y is None:
        order = rng.permutation(n)
    else:
        y = _labels(y)
        if y.size != n:
            raise ConfigError(f"y has {y.size} labels, expected n={n}")
        # Shuffle, then group by class (stable), then deal round-robin: each class's
        # members land in consecutive folds, so its count per fold differs by <= 1.
        shuffled = rng.permutation(n)
        order = shuffled[np.argsort(y[shuffled], kind="stable")]
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[order] = np.arange(n) % k
    # Validation above runs at call time; the generator below only yields.
    return _folds(fold_of, k)


def _folds(fold_of: np.ndarray, k: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for fold in range(k):
        in_fold = fold_of == fold
        yield np.flatnonzero(~in_fold), np.flatnonzero(in_fold)


def class_subset(
    X: np.ndarray, y: np.ndarray, classes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the samples of some classes and renumber them ``0 .. len(classes)-1``.

    Parameters
    ----------
    X : numpy.ndarray
        Samples, shape ``(N, ...)``.
    y : numpy.ndarray
        Integer labels, shape ``(N,)``.
    classes : sequence of int
        Classes to keep, in the order that defines the new labels; e.g. ``(0, 9)``
        for Fashion-MNIST T-shirt/top (new 0) vs Ankle boot (new 1).

    Returns
    -------
    X_sub : numpy.ndarray
        The selected samples, in their original order.
    y_sub : numpy.ndarray
        Their new labels, same dtype as ``y``.
    """
    X = np.asarray(X)
    y = _labels(y)
    if len(X) != y.size:
        raise ConfigError(f"X has {len(X)} samples but y has {y.size}")
    if y.size and y.min() < 0:
        raise ConfigError(f"y has negative labels, e.g. {y[y < 0][:5].tolist()}")
    classes = [int(c) for c in classes]
    if not classes:
        raise ConfigError("classes must name at least one class")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"classes must be distinct, got {classes}")
    present = set(np.unique(y).tolist())
    absent = [c for c in classes if c not in present]
    if absent:
        raise ConfigError(f"classes {absent} have no samples in y")
    mask = np.isin(y, classes)
    lookup = np.zeros(max(max(classes), int(y.max())) + 1, dtype=y.dtype)
    lookup[classes] = np.arange(len(classes))
    return X[mask], lookup[y[mask]]


def one_vs_rest(y: np.ndarray, positive_class: int, dtype: DTypeLike | None = None) -> np.ndarray:
    """Binary labels: 1 where ``y == positive_class``, else 0.

    Parameters
    ----------
    y : numpy.ndarray
        Integer labels, shape ``(N,)``.
    positive_class : int
        The class that becomes 1.
    dtype : dtype, optional
        Result dtype; default the dtype of ``y``.

    Returns
    -------
    numpy.ndarray
        Shape ``(N,)`` of 0/1.
    """
    y = _labels(y)
    positive_class = int(positive_class)
    if positive_class < 0:
        raise ConfigError(f"positive_class must be >= 0, got {positive_class}")
    return (y == positive_class).astype(y.dtype if dtype is None else dtype)
