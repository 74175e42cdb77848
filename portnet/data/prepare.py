"""One data preparation for every job: load, subset, split, normalise.

:func:`prepare_data` is what the main job (``experiments.fashion``), the
reproduced studies and the sweep workers (:func:`portnet.sweeps.train_config`)
all call, so a configuration means the same images wherever it runs:

1. load a registered dataset (:func:`~portnet.data.load_dataset`);
2. optionally keep a stratified random subset of ``train_size`` training images
   (and of ``test_size`` test images);
3. optionally hold out a stratified validation set (``val_fraction`` or ``val_size``);
4. flatten to float32 rows and normalise: ``"scale"`` to [0, 1], ``"feature"``
   z-score per pixel with the statistics of the training part only (no validation
   or test information leaks into training), ``"image"`` z-score per image.

The same ``seed`` always gives the same subset and split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ConfigError
from .catalog import Dataset
from .preprocessing import StandardScaler, scale_images, standardize_per_image, stratified_split
from .registry import load_dataset

#: The normalisations :func:`prepare_data` and :func:`normalize_images` know.
NORMALIZATIONS = ("scale", "feature", "image")


@dataclasses.dataclass
class PreparedData:
    """Arrays ready for :meth:`portnet.Model.fit`, and where they came from.

    ``X*`` are float32 rows ``(N, 784)``, ``y*`` int64 labels. Without a validation
    split ``X_val`` and ``y_val`` are None. ``train_rows`` / ``val_rows`` / ``test_rows``
    index the raw images of ``dataset`` (for pictures of the images a model saw);
    ``stats`` repeats the normalisation on new images (:func:`normalize_images`).
    """

    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    X_test: np.ndarray
    y_test: np.ndarray
    normalize: str
    stats: dict[str, np.ndarray]
    dataset: Dataset
    train_rows: np.ndarray
    val_rows: np.ndarray | None
    test_rows: np.ndarray

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset.class_names)

    @property
    def source(self) -> str:
        return str(self.dataset.source)

    @property
    def validation(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(X_val, y_val)`` for ``fit(validation_data=...)``, or None."""
        return None if self.X_val is None else (self.X_val, self.y_val)


def _subset(y: np.ndarray, size: Any, seed: int, what: str) -> np.ndarray:
    """Rows of a stratified random subset of ``size`` samples (all rows without one)."""
    rows = np.arange(len(y), dtype=np.int64)
    if size is None:
        return rows
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ConfigError(f"{what} must be a positive whole number or None, got {size!r}")
    if size >= len(y):
        return rows
    _, keep = stratified_split(y, size / len(y), seed=seed)
    return keep


def prepare_data(
    name: str,
    *,
    data_dir: str | None = None,
    normalize: str = "scale",
    train_size: int | None = None,
    test_size: int | None = None,
    val_fraction: float | None = None,
    val_size: int | None = None,
    seed: int = 0,
) -> PreparedData:
    """Load, subset, split and normalise a registered image dataset.

    Parameters
    ----------
    name : str
        A registered dataset (``"fashion_mnist"``, ``"fashion_mnist_sample"``, ...).
    data_dir : str, optional
        Folder holding its IDX files (searched first).
    normalize : {"scale", "feature", "image"}
        See the module docstring; ``"feature"`` statistics come from the training part.
    train_size, test_size : int, optional
        Keep a stratified random subset of this many training (test) images; the
        validation set is then held out of the training subset.
    val_fraction : float, optional
        Hold out this fraction of the training images, stratified, for validation.
    val_size : int, optional
        Or this many images (not both).
    seed : int
        Seeds the subsets and the split.

    Raises
    ------
    ConfigError
        An unknown normalisation, a bad size, or both ``val_fraction`` and ``val_size``.
    DatasetError
        The dataset cannot be found or fails its checksum.
    """
    if normalize not in NORMALIZATIONS:
        raise ConfigError(
            f"unknown normalisation {normalize!r}; choose one of {', '.join(NORMALIZATIONS)}"
        )
    if val_fraction is not None and val_size is not None:
        raise ConfigError("give val_fraction or val_size, not both")
    ds = load_dataset(name, data_dir=data_dir)
    y_all = ds.y_train.astype(np.int64)
    y_test_all = ds.y_test.astype(np.int64)
    rows = _subset(y_all, train_size, seed, "train_size")
    test_rows = _subset(y_test_all, test_size, seed, "test_size")
    rows, val_rows = _hold_out(y_all, rows, val_fraction, val_size, seed)
    X, X_val, X_test, stats = _images(ds, (rows, val_rows, test_rows), normalize)
    return PreparedData(
        X=X,
        y=y_all[rows],
        X_val=X_val,
        y_val=None if val_rows is None else y_all[val_rows],
        X_test=X_test,
        y_test=y_test_all[test_rows],
        normalize=normalize,
        stats=stats,
        dataset=ds,
        train_rows=rows,
        val_rows=val_rows,
        test_rows=test_rows,
    )


def _hold_out(
    y: np.ndarray, rows: np.ndarray, val_fraction: float | None, val_size: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """``rows`` split, stratified, into training and validation rows (None: no split)."""
    if val_size is not None:
        if isinstance(val_size, bool) or not isinstance(val_size, int | np.integer):
            raise ConfigError(f"val_size must be a whole number, got {val_size!r}")
        if not 0 < val_size < len(rows):
            raise ConfigError(
                f"val_size={val_size} must be between 1 and the {len(rows)} training images - 1"
            )
        val_fraction = val_size / len(rows)
    if not val_fraction:
        return rows, None
    train_part, val_part = stratified_split(y[rows], float(val_fraction), seed=seed)
    return rows[train_part], rows[val_part]


def _images(ds: Dataset, parts: tuple, normalize: str) -> tuple:
    """The training, validation (or None) and test images of ``parts``' rows,
    normalised, and the statistics (from the training images) that did it."""
    rows, val_rows, test_rows = parts
    X = scale_images(ds.X_train[rows])
    X_val = scale_images(ds.X_train[val_rows]) if val_rows is not None else None
    X_test = scale_images(ds.X_test[test_rows])
    stats: dict[str, np.ndarray] = {}
    if normalize == "feature":
        scaler = StandardScaler().fit(X)
        stats = {"mean": scaler.mean_, "scale": scaler.scale_}
    X, X_val, X_test = (
        None if part is None else _normalize(part, normalize, stats) for part in (X, X_val, X_test)
    )
    return X, X_val, X_test, stats


def _normalize(X: np.ndarray, normalize: str, stats: Mapping[str, np.ndarray]) -> np.ndarray:
    if normalize == "feature":
        return ((X - stats["mean"]) / stats["scale"]).astype(np.float32)
    if normalize == "image":
        return standardize_per_image(X)
    return X


def normalize_images(
    images: np.ndarray, normalize: str, stats: Mapping[str, np.ndarray] | None = None
) -> np.ndarray:
    """Repeat :func:`prepare_data`'s normalisation on new uint8 images.

    ``stats`` is :attr:`PreparedData.stats` (needed for ``"feature"``).
    """
    if normalize not in NORMALIZATIONS:
        raise ConfigError(
            f"unknown normalisation {normalize!r}; choose one of {', '.join(NORMALIZATIONS)}"
        )
    if normalize == "feature" and not stats:
        raise ConfigError('normalize="feature" needs the training statistics (mean, scale)')
    return _normalize(scale_images(images), normalize, stats or {})


__all__ = ["NORMALIZATIONS", "PreparedData", "normalize_images", "prepare_data"]
