"""Exceptions raised by portnet.

Every error a user can cause by bad input derives from :class:`PortnetError`, so
command-line tools can print the message and exit with code 2 instead of showing
a traceback from deep inside the maths.
"""

from __future__ import annotations


class PortnetError(Exception):
    """Base class of every error portnet raises on purpose."""


class BackendError(PortnetError, RuntimeError):
    """A backend is unknown, not installed, or cannot reach its device."""


class DeviceMismatchError(PortnetError, ValueError):
    """Arrays from different array libraries or devices were combined."""


class InputError(PortnetError, ValueError):
    """Data given to a model has the wrong shape, dtype or values."""


class ModelFileError(PortnetError, ValueError):
    """A saved model file is missing, corrupt or of an unknown format."""


class ConfigError(PortnetError, ValueError):
    """A constructor argument or a configuration value is invalid (wrong type, NaN,
    out of range, unknown name). Subclasses ``ValueError`` for code that caught that."""


class DivergenceWarning(RuntimeWarning):
    """Training stopped because the loss became NaN or infinite; the best weights are kept."""
