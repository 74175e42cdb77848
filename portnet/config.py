"""Configuration as data: ``{"class": name, "config": {...}}`` specs, and number checks.

Layers, optimizers, schedules, regularizers and losses all describe themselves
with ``get_config()`` (their constructor arguments, JSON-serialisable) and are
rebuilt from a spec by :func:`build`. Saved models, checkpoints and sweep
configurations use these specs, so what a file or a Dask worker receives is
plain data, never pickled code.

Constructors check their numbers with :func:`check_number`, so ``lr=nan`` or a
negative rate fails where it is given, as a :class:`~portnet.errors.ConfigError`,
instead of training on garbage.
"""

from __future__ import annotations

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
