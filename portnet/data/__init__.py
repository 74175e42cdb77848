"""Datasets and host-side preprocessing (pure NumPy).

``load_dataset("fashion_mnist")`` finds, verifies and loads Fashion-MNIST, MNIST
or Kuzushiji-MNIST; ``load_dataset("fashion_mnist_sample")`` loads a stratified
2,000 + 500 image subset of Fashion-MNIST shipped with portnet. Fashion-MNIST is
Copyright (c) 2017 Zalando SE, MIT licence (see ``FASHION_MNIST_LICENSE.txt``).
"""

from portnet.data.catalog import DATASETS, Dataset, DatasetSpec, FileSpec, available_datasets
from portnet.data.fetch import search_path
from portnet.data.idx import DatasetError, parse_idx, read_idx, write_idx
from portnet.data.preprocessing import (
    StandardScaler,
    class_subset,
    kfold_indices,
    one_hot,
    one_vs_rest,
    scale_images,
    standardize_per_image,
    stratified_split,
)
from portnet.data.registry import load_dataset

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "FileSpec",
    "StandardScaler",
    "available_datasets",
    "class_subset",
    "kfold_indices",
    "load_dataset",
    "one_hot",
    "one_vs_rest",
    "parse_idx",
    "read_idx",
    "scale_images",
    "search_path",
    "standardize_per_image",
    "stratified_split",
    "write_idx",
]
