"""What every experiment command shares.

Config files, clean errors, atomic outputs and data preparation.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from portnet.errors import PortnetError
from portnet.io import atomic_write_bytes

EXIT_USAGE = 2


def fail(message: str) -> None:
    """Print one paragraph to stderr and exit with code 2: no traceback for user errors."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run ``main`` turning portnet's own errors into a message and exit code 2."""
    try:
        code = main(argv)
    except PortnetError as exc:
        fail(str(exc))
    except ImportError as exc:
        fail(f"{exc}. Install the missing package (see README) and run again.")
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(code or 0)


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML (or JSON) config file into a flat dict."""
    path = Path(path)
    if not path.is_file():
        fail(f"config file {path} does not exist.")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        try:
            import yaml
        except ImportError:
            fail('YAML configs need PyYAML: pip install "portnet[yaml]" (or use a .json config).')
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            fail(f"config file {path} is not valid YAML: {exc}")
    if not isinstance(data, dict):
        fail(f"config file {path} must hold a mapping of option: value.")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def merge_config(
    defaults: Mapping[str, Any], file_config: Mapping[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Defaults, overridden by the config file, overridden by flags given on the command line."""
    unknown = sorted(set(file_config) - set(defaults))
    if unknown:
        fail(
            f"unknown option(s) in the config file: {', '.join(unknown)}. "
            f"Known options: {', '.join(sorted(defaults))}."
        )
    config = {**defaults, **file_config}
    for key in defaults:
        value = getattr(args, key, None)
        if value is not None:
            config[key] = value
    return config


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON atomically (temporary file, then rename)."""
    payload = (json.dumps(data, indent=2, default=_json_default) + "\n").encode("utf-8")
    atomic_write_bytes(path, lambda handle: handle.write(payload))
    return Path(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def default_out_dir(prefix: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{prefix}-{stamp}"


def parse_int_list(text: str) -> list[int]:
    """``"500,324"`` -> ``[500, 324]``; ``""`` or ``"none"`` -> ``[]`` (no hidden layer)."""
    if text is None or str(text).strip().lower() in ("", "none", "0"):
        return []
    if isinstance(text, list | tuple):
        return [int(v) for v in text]
    try:
        values = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text!r}")
    return values


def positive_int(text: str) -> int:
    """argparse type for counts such as ``--threads``: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


THREADS_HELP = (
    "limit BLAS, OpenMP and torch CPU threads to N (default: each library's own, "
    "usually one per core); on a busy or small machine 1 or 2 is steadier and often faster"
)


def prepare_images(
    X_train: np.ndarray, X_test: np.ndarray, normalize: str
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Flatten uint8 images to float32 rows and normalise them.

    ``normalize``: ``"scale"`` ([0, 1]), ``"feature"`` (z-score per pixel, statistics
    of the training set only) or ``"image"`` (z-score per image, as study S1).
    Returns the arrays and the statistics needed to repeat the transform.
    """
    from portnet.data import StandardScaler, scale_images, standardize_per_image

    train, test = scale_images(X_train), scale_images(X_test)
    if normalize == "scale":
        return train, test, {}
    if normalize == "feature":
        scaler = StandardScaler().fit(train)
        return (
            scaler.transform(train),
            scaler.transform(test),
            {"mean": scaler.mean_, "scale": scaler.scale_},
        )
    if normalize == "image":
        return standardize_per_image(train), standardize_per_image(test), {}
    fail(f"unknown normalisation {normalize!r}; choose scale, feature or image.")
    raise AssertionError  # unreachable: fail() exits


def apply_normalization(
    X_images: np.ndarray, normalize: str, stats: Mapping[str, np.ndarray]
) -> np.ndarray:
    """Repeat :func:`prepare_images`'s transform on new images with saved statistics."""
    from portnet.data import scale_images, standardize_per_image

    X = scale_images(X_images)
    if normalize == "feature":
        return ((X - stats["mean"]) / stats["scale"]).astype(np.float32)
    if normalize == "image":
        return standardize_per_image(X)
    return X
