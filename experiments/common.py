"""What every experiment command shares.

Config files, clean errors and atomic outputs (data preparation is
:func:`portnet.data.prepare.prepare_data`, shared with the sweep workers).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from portnet.errors import ConfigError, PortnetError
from portnet.io.model_file import atomic_write_bytes
from portnet.training.run_config import RunConfig, read_config_file

EXIT_USAGE = 2


def fail(message: str) -> NoReturn:
    """Print one paragraph to stderr and exit with code 2: no traceback for user errors."""
    paragraph = " ".join(str(message).split())
    paragraph = re.sub(r"(?<!\.)\.\.(?!\.)", ".", paragraph)  # "exc.. Fix" -> "exc. Fix"
    print(f"error: {paragraph}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run ``main``, turning every error a user can cause into one paragraph and exit code 2.

    Caught: portnet's own errors (:class:`~portnet.errors.PortnetError`: bad values,
    data, model files, backends), files and folders that cannot be read or written
    (``OSError``), malformed JSON or YAML, and a missing optional package. Anything
    else is a bug in portnet and keeps its traceback.
    """
    try:
        code = main(argv)
    except PortnetError as exc:
        fail(str(exc))
    except argparse.ArgumentTypeError as exc:  # a parser type used on a config value
        fail(f"{exc}. Fix the value and run again.")
    except ImportError as exc:
        fail(f"{exc}. Install the missing package (see README) and run again.")
    except OSError as exc:
        fail(describe_os_error(exc))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        fail(f"a file could not be parsed ({exc}); check or recreate it and run again.")
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as exc:
        if type(exc).__module__.startswith("yaml"):  # yaml.YAMLError without importing yaml
            fail(f"a YAML file could not be parsed ({exc}); fix it and run again.")
        raise
    raise SystemExit(code or 0)


def describe_os_error(exc: OSError) -> str:
    """``"cannot use PATH: reason"`` plus what to do, for a failed file operation."""
    where = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or str(exc)
    return (
        f"cannot use {where}: {reason}. Check that the path exists, is of the right kind "
        "(file or folder) and that you may read or write it, then run again."
    )


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML (or JSON) config file into a flat dict; any problem exits 2 with the fix."""
    try:
        return read_config_file(path)
    except ConfigError as exc:
        fail(f"{exc}.")


# --- output paths: checked before any work, so a long run never ends on an unwritable path --


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (tried, so root and read-only mounts count)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def _check_writable_below(path: Path, flag: str, folder: Path) -> None:
    """Exit 2 unless ``path`` can be made in ``folder`` (which need not exist yet): the
    nearest existing ancestor of ``folder`` must be a folder this process can write in."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        fail(f"{flag} {path} cannot be created: {base} is a file, not a folder; give another path.")
    if not _can_create_in(base):
        fail(
            f"{flag} {path}: cannot write in {base} (no permission or a read-only file "
            "system); give a folder you can write to."
        )


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Exit 2 unless ``path`` is, or can be made, a folder this process can write into.

    Nothing is created: the folder itself is made when the first result is written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        fail(f"{flag} {path} is a file, not a folder; give a new or existing folder.")
    _check_writable_below(path, flag, path)
    return path


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Exit 2 unless a file can be written at ``path`` (its folder may still be missing)."""
    path = Path(path)
    if path.is_dir():
        fail(f"{flag} {path} is a folder; give the path of a file to write.")
    _check_writable_below(path, flag, path.parent)
    return path


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


def positive_int(text: str) -> int:
    """argparse type for counts such as ``--threads``: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


#: The main job's --threads help, for the other commands' --threads.
THREADS_HELP = {f.name: f for f in dataclasses.fields(RunConfig)}["threads"].metadata["help"]
