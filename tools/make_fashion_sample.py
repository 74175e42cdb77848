"""Regenerate portnet/data/fashion_mnist_sample.npz from the full Fashion-MNIST.

The sample holds 200 training and 50 test images per class (2,000 + 500), drawn
without replacement with a fixed seed, so running this again on the same
Fashion-MNIST release gives the same arrays::

    python tools/make_fashion_sample.py [--data-dir DIR] [--out FILE]

(with portnet importable: after ``pip install -e .``, or with ``PYTHONPATH=.``).

Why not ``np.savez_compressed``: its zlib (deflate) members come to about
1.1 MB for 2,500 images, over the 1 MB budget for a file shipped in the package.
The same ``.npy`` members in a zip with LZMA compression take about 0.94 MB and
still load with ``np.load(path, allow_pickle=False)`` (zipfile reads LZMA).

Fashion-MNIST is Copyright (c) 2017 Zalando SE, MIT licence; see
portnet/data/FASHION_MNIST_LICENSE.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import zipfile
from pathlib import Path

import numpy as np

from portnet.data import load_dataset

SEED = 20170828  # Fashion-MNIST's release date; any fixed value would do.
PER_CLASS = {"train": 200, "test": 50}
MAX_BYTES = 1_000_000
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "portnet" / "data" / "fashion_mnist_sample.npz"


def stratified_pick(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``per_class`` random samples of every class."""
    picks = [
        rng.choice(np.flatnonzero(y == c), size=per_class, replace=False) for c in np.unique(y)
    ]
    # Sorted: keep the release's own (already shuffled) order, classes interleaved.
    return np.sort(np.concatenate(picks))


def write_npz_lzma(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an npz whose members are LZMA-compressed, atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_LZMA) as zf:
            for key, array in arrays.items():
                # A fixed timestamp keeps the file's bytes reproducible.
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(2017, 8, 28, 0, 0, 0))
                info.compress_type = zipfile.ZIP_LZMA
                with zf.open(info, "w") as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="folder with the four Fashion-MNIST IDX files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="npz file to write")
    args = parser.parse_args()

    full = load_dataset("fashion_mnist", data_dir=args.data_dir)
    rng = np.random.default_rng(SEED)
    arrays = {}
    for split in ("train", "test"):
        X, y = getattr(full, f"X_{split}"), getattr(full, f"y_{split}")
        idx = stratified_pick(y, PER_CLASS[split], rng)
        arrays[f"X_{split}"] = np.ascontiguousarray(X[idx], dtype=np.uint8)
        arrays[f"y_{split}"] = np.ascontiguousarray(y[idx], dtype=np.uint8)
    # Key order X_train, y_train, X_test, y_test, as the loader documents.
    arrays = {k: arrays[k] for k in ("X_train", "y_train", "X_test", "y_test")}

    write_npz_lzma(args.out, arrays)
    size = args.out.stat().st_size
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"source: {full.source}")
    for key, array in arrays.items():
        print(f"  {key}: {array.dtype} {array.shape}")
    print(f"wrote {args.out}: {size} bytes, sha256 {digest}")
    if size >= MAX_BYTES:
        raise SystemExit(f"error: {args.out} is {size} bytes, over the {MAX_BYTES} byte budget")


if __name__ == "__main__":
    main()
