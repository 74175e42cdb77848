"""The registered datasets: their names, classes, files, published checksums and mirrors.

:data:`DATASETS` holds one :class:`DatasetSpec` per IDX dataset (Fashion-MNIST,
MNIST, Kuzushiji-MNIST), each with the :class:`FileSpec` of its four files and the
source of every checksum; :data:`SAMPLE_DATASETS` names the samples shipped inside
the package. :class:`Dataset` is what :func:`~portnet.data.load_dataset` returns.
All of these are also importable from :mod:`portnet.data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from portnet.data.idx import DatasetError

SPLITS = ("X_train", "y_train", "X_test", "y_test")


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset release.

    Attributes
    ----------
    filename : str
        Name of the published file, e.g. ``train-images-idx3-ubyte.gz``. The same
        name without ``.gz`` is accepted for an uncompressed copy.
    md5 : str
        Published md5 of the ``.gz`` file (what the download is checked against).
    content_md5 : str or None
        md5 of the decompressed content, when a source for it is known. It lets a
        re-compressed archive (Debian's) or a gunzipped copy be verified too.
    shape : tuple of int
        Shape the IDX header must declare.
    """

    filename: str
    md5: str
    content_md5: str | None
    shape: tuple[int, ...]

    @property
    def raw_filename(self) -> str:
        return self.filename.removesuffix(".gz")


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: names, classes, download mirrors, files and folders."""

    name: str
    title: str
    class_names: tuple[str, ...]
    urls: tuple[str, ...]
    files: dict[str, FileSpec]
    system_dirs: tuple[str, ...] = ()
    apt_package: str | None = None
    homepage: str = ""

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset, as NumPy arrays on the host.

    Attributes
    ----------
    X_train, X_test : numpy.ndarray
        uint8 images, shape ``(N, 28, 28)``.
    y_train, y_test : numpy.ndarray
        uint8 labels in ``[0, n_classes)``, shape ``(N,)``.
    class_names : tuple of str
        Name of each class, indexed by label.
    name : str
        Registry name, e.g. ``"fashion_mnist"``.
    source : str
        The folder the files were read from, or ``"embedded sample (...)"``.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    name: str
    source: str
    # Per-file verification method, e.g. "md5 of .gz"; useful in logs and tests.
    verified: dict[str, str] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def _files(md5s: dict[str, str], content_md5s: dict[str, str | None]) -> dict[str, FileSpec]:
    names = {
        "X_train": ("train-images-idx3-ubyte.gz", (60000, 28, 28)),
        "y_train": ("train-labels-idx1-ubyte.gz", (60000,)),
        "X_test": ("t10k-images-idx3-ubyte.gz", (10000, 28, 28)),
        "y_test": ("t10k-labels-idx1-ubyte.gz", (10000,)),
    }
    return {
        key: FileSpec(filename, md5s[key], content_md5s[key], shape)
        for key, (filename, shape) in names.items()
    }


DATASETS: dict[str, DatasetSpec] = {
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        title="Fashion-MNIST",
        # Label order from the Fashion-MNIST README ("Labels" table).
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        # The S3 website endpoint is the official link in the README (http only);
        # the GitHub copy in the same repository is the https fallback.
        urls=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        files=_files(
            # Source: README.md of github.com/zalandoresearch/fashion-mnist, "Get the
            # Data" table (the same values are in torchvision datasets/mnist.py).
            md5s={
                "X_train": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "y_train": "25c81989df183df01b3e8a0aad5dffbe",
                "X_test": "bef4ecab320f06d8554ea6380940ec79",
                "y_test": "bb300cfdad3c16e7a12a480ee83cd310",
            },
            # md5 of the decompressed files, as listed in several public loaders
            # (e.g. a torchvision-based FashionMNIST loader's `raw_data` table).
            # Checked here: Debian's dataset-fashion-mnist re-gzips the files (its
            # .gz md5s differ from the README's) and decompresses to exactly these.
            content_md5s={
                "X_train": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                "y_train": "9018921c3c673c538a1fc5bad174d6f9",
                "X_test": "8181f5470baa50b63fa0f6fddb340f0a",
                "y_test": "15d484375f8d13e6eb1aabb0c3f46965",
            },
        ),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        apt_package="dataset-fashion-mnist",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST",
        class_names=tuple(str(d) for d in range(10)),
        # yann.lecun.com often refuses downloads now; torchvision lists the PyTorch
        # S3 mirror first for the same reason.
        urls=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        files=_files(
            # Source: torchvision/datasets/mnist.py, MNIST.resources.
            md5s={
                "X_train": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "y_train": "d53e105ee54ea40749a09fcbcd1e9432",
                "X_test": "9fb629c4189551a2d022fa330f9573f3",
                "y_test": "ec29112dd5afa0611ce80d1b7f02629c",
            },
            # md5 of the decompressed files, as listed (with the decompressed size
            # 47040016 for the training images) in public MNIST loaders; not checked
            # on this machine, which has no MNIST copy.
            content_md5s={
                "X_train": "6bbc9ace898e44ae57da46a324031adb",
                "y_train": "a25bea736e30d166cdddb491f175f624",
                "X_test": "2646ac647ad5339dbf082846283269ea",
                "y_test": "27ae3e4e09519cfbb04c329615203637",
            },
        ),
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "kmnist": DatasetSpec(
        name="kmnist",
        title="Kuzushiji-MNIST",
        # Romanised hiragana, label order of kmnist_classmap.csv (rois-codh/kmnist).
        class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        urls=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        files=_files(
            # Source: torchvision/datasets/mnist.py, KMNIST.resources.
            md5s={
                "X_train": "bdb82020997e1d708af4cf47b453dcf7",
                "y_train": "e144d726b3acfaa3e44228e80efcd344",
                "X_test": "5c965bf0a639b31b8f53240b1b52f4d7",
                "y_test": "7320c461ea6c1c855c0b718fb2a4b134",
            },
            # No published md5 of the decompressed files: an uncompressed copy is
            # validated by its IDX header and expected shape only.
            content_md5s=dict.fromkeys(SPLITS),
        ),
        homepage="https://github.com/rois-codh/kmnist",
    ),
}

#: Datasets shipped inside the package: name -> (npz file next to this module, parent).
SAMPLE_DATASETS: dict[str, tuple[str, str]] = {
    "fashion_mnist_sample": ("fashion_mnist_sample.npz", "fashion_mnist"),
}


def available_datasets() -> tuple[str, ...]:
    """Names accepted by :func:`load_dataset`."""
    return (*DATASETS, *SAMPLE_DATASETS)


def _canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    if key not in DATASETS and key not in SAMPLE_DATASETS:
        known = ", ".join(available_datasets())
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {known}.")
    return key
