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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from portnet.config import check_number
from portnet.errors import ConfigError, PortnetError
from portnet.io import atomic_write_bytes

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
    path = Path(path)
    if path.is_dir():
        fail(f"config file {path} is a folder; give the path of a .yaml or .json file.")
    if not path.is_file():
        fail(f"config file {path} does not exist; check the path given to --config.")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"config file {path} cannot be read ({exc.strerror or exc}); check its permissions.")
    except UnicodeDecodeError:
        fail(f"config file {path} is not UTF-8 text; give a YAML or JSON file of option: value.")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            fail(f"config file {path} is not valid JSON ({exc}); fix it and run again.")
    else:
        try:
            import yaml
        except ImportError:
            fail('YAML configs need PyYAML: pip install "portnet[yaml]" (or use a .json config).')
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            fail(f"config file {path} is not valid YAML: {exc}")
        data = {} if data is None else data
    if not isinstance(data, dict):
        fail(
            f"config file {path} must hold a mapping of option: value, got a {type(data).__name__}."
        )
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


# --- checking values: one rule per option, used for flags and config files alike ----------


@dataclasses.dataclass(frozen=True)
class Number:
    """A rule for a numeric option: see :func:`portnet.config.check_number`.

    ``optional``: ``None`` is allowed (the option is off).
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    optional: bool = False

    def check(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        return check_number(
            name,
            value,
            low=self.low,
            high=self.high,
            low_open=self.low_open,
            high_open=self.high_open,
            integer=self.integer,
        )

    def arg(self, text: str) -> Any:
        """argparse ``type=``: parse a flag's text and check it."""
        try:
            value = int(text) if self.integer else float(text)
        except ValueError:
            kind = "a whole number" if self.integer else "a number"
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        try:
            return self.check("the value", value)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace("the value ", "")) from None


@dataclasses.dataclass(frozen=True)
class Choice:
    """A rule for an option that takes one of a few strings."""

    choices: tuple[str, ...]
    optional: bool = False

    def check(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if not isinstance(value, str) or value not in self.choices:
            raise ConfigError(f"{name} must be one of {', '.join(self.choices)}, got {value!r}")
        return value


@dataclasses.dataclass(frozen=True)
class Kind:
    """A rule for an option of a plain type (``str``, ``bool``, ``list`` ...)."""

    types: tuple[type, ...]
    optional: bool = False

    def check(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if not isinstance(value, self.types) or (
            bool not in self.types and isinstance(value, bool)
        ):
            wanted = " or ".join(_TYPE_WORDS.get(t, t.__name__) for t in self.types)
            raise ConfigError(f"{name} must be {wanted}, got {value!r} ({type(value).__name__})")
        return value


_TYPE_WORDS = {str: "a string", bool: "true or false", list: "a list", dict: "a mapping"}

Rule = Number | Choice | Kind


def check_options(config: Mapping[str, Any], rules: Mapping[str, Rule], where: str) -> None:
    """Check every option of ``config`` that has a rule; exit 2 naming the first bad one.

    ``where`` says where the values come from (``"config file x.yaml"``), for the message.
    """
    for key, value in config.items():
        rule = rules.get(key)
        if rule is None:
            continue
        try:
            rule.check(key, value)
        except ConfigError as exc:
            fail(f"{where}: {exc}. Fix the value and run again.")


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


def parse_int_list(text: Any) -> list[int]:
    """``"500,324"`` -> ``[500, 324]``; ``""`` or ``"none"`` -> ``[]`` (no hidden layer).

    Also takes a list of whole numbers (from a config file). Raises
    ``argparse.ArgumentTypeError`` for anything else, fractions and widths below 1.
    """
    if text is None or str(text).strip().lower() in ("", "none", "0"):
        return []
    if isinstance(text, list | tuple):
        if any(isinstance(v, bool) or not isinstance(v, int) for v in text):
            raise argparse.ArgumentTypeError(f"layer widths must be whole numbers, got {text!r}")
        values = list(text)
    elif isinstance(text, bool) or not isinstance(text, str | int):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 500,324, got {text!r}"
        )
    else:
        try:
            values = [int(part) for part in str(text).split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated integers such as 500,324, got {text!r}"
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
