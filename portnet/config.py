"""Configuration as data: ``{"class": name, "config": {...}}`` specs, and value rules.

Layers, optimizers, schedules, regularizers and losses describe themselves with
``get_config()`` (their JSON-serialisable constructor arguments) and are rebuilt
from a spec by :func:`build`, so files and Dask workers receive plain data, never
pickled code.

:class:`Number`, :class:`Choice` and :class:`Kind` are the rules a value must meet;
the run configuration (:class:`portnet.RunConfig`) and the command lines use them,
so a value is refused with the same message wherever it is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError


def spec_of(obj: Any) -> dict[str, Any]:
    """The spec ``{"class": type name, "config": obj.get_config()}`` of an object."""
    return {"class": type(obj).__name__, "config": obj.get_config()}


def build(spec: Any, registry: Mapping[str, type], kind: str) -> Any:
    """Rebuild an object from its spec, with errors that name the problem.

    Parameters
    ----------
    spec : dict
        ``{"class": name, "config": {...}}``; ``config`` may be left out.
    registry : mapping of str to class
        The classes of this kind, by name.
    kind : str
        What is built (``"optimizer"``, ``"layer"`` ...), for error messages.
    """
    if not isinstance(spec, Mapping) or "class" not in spec:
        raise ConfigError(
            f"a {kind} must be given as {{'class': name, 'config': {{...}}}}, got {spec!r}"
        )
    name = spec["class"]
    cls = registry.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(
            f"unknown {kind} class {name!r}; choose one of {', '.join(sorted(registry))}"
        )
    config = spec.get("config", {}) or {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"the config of {kind} {name} must be a mapping, got {config!r}")
    try:
        return cls(**config)
    except TypeError as exc:  # an unknown or missing constructor argument
        raise ConfigError(f"{kind} {name}: {exc}") from None


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> Any:
    """Return ``value`` as a float (or int) after checking its type, finiteness and range.

    Raises
    ------
    ConfigError
        For a non-number (strings and booleans included), NaN or infinity, a
        fractional value where an integer is needed, or a value out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be finite, got {value}")
    if integer:
        if float(value) != int(value):
            raise ConfigError(f"{name} must be a whole number, got {value}")
        value = int(value)
    else:
        value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        low_text = "-inf" if low is None else f"{low:g}"
        high_text = "inf" if high is None else f"{high:g}"
        interval = f"{left}{low_text}, {high_text}{right}"
        raise ConfigError(f"{name} must be in {interval}, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class Number:
    """A numeric value: see :func:`check_number`. ``optional``: ``None`` is allowed."""

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
    """One of a few strings."""

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
    """A value of a plain type (``str``, ``bool``, ``list`` ...)."""

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


@dataclasses.dataclass(frozen=True)
class Widths:
    """Layer widths: a list of whole numbers ≥ 1, or ``"500,324"``; ``"none"`` or ``[]``
    for no hidden layer."""

    def check(self, name: str, value: Any) -> list[int]:
        if value is None or str(value).strip().lower() in ("", "none", "0", "[]"):
            return []
        if isinstance(value, list | tuple):
            parts = list(value)
        elif isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
        else:
            parts = [value]
        try:
            widths = [int(p) if isinstance(p, str) else p for p in parts]
        except ValueError:
            widths = None
        if widths is None or any(isinstance(w, bool) or not isinstance(w, int) for w in widths):
            raise ConfigError(
                f"{name} must be whole numbers such as 500,324 or [500, 324], got {value!r}"
            )
        if any(w < 1 for w in widths):
            raise ConfigError(f"{name} must be positive widths, got {value!r}")
        return widths

    def arg(self, text: str) -> list[int]:
        try:
            return self.check("the widths", text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace("the widths ", "")) from None


Rule = Number | Choice | Kind | Widths
