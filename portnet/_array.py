"""Namespace inference from arrays, with a device check, and small tree helpers.

There is no module-level ``xp`` and no global "current backend": functions ask
the arrays they are given (as scikit-learn's ``_array_api.py`` and
array-api-compat's ``array_namespace`` do).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import array_api_compat

from .errors import DeviceMismatchError

# Parameters, gradients and optimizer buffers share one structure: a list with one
# dict per layer, mapping parameter names ("W", "b") to arrays.
Tree = list[dict[str, Any]]


def namespace_of(*arrays: Any) -> Any:
    """Return the Array-API namespace shared by ``arrays`` (``None`` entries are skipped).

    Raises
    ------
    DeviceMismatchError
        The arrays come from different libraries or live on different devices.
    """
    arrays = tuple(a for a in arrays if a is not None)
    try:
        xp = array_api_compat.array_namespace(*arrays)
    except TypeError as exc:
        kinds = sorted({f"{type(a).__module__}.{type(a).__name__}" for a in arrays})
        raise DeviceMismatchError(
            f"Arrays from different array libraries were combined ({', '.join(kinds)}): "
            "move data onto the model's backend first, e.g. with backend.asarray(X)."
        ) from exc
    check_same_device(*arrays)
    return xp


def check_same_device(*arrays: Any) -> Any:
    """Return the device shared by ``arrays`` or raise :class:`DeviceMismatchError`."""
    devices = [array_api_compat.device(a) for a in arrays]
    first = devices[0]
    for other in devices[1:]:
        if other != first:
            raise DeviceMismatchError(
                f"Arrays on different devices were combined ({first!r} and {other!r}): "
                "put all data and the model on one device (backend.asarray moves host data)."
            )
    return first


def tree_map(fn: Callable[..., Any], *trees: Tree) -> Tree:
    """Apply ``fn`` leaf by leaf to trees of the same structure."""
    return [
        {key: fn(*(t[i][key] for t in trees)) for key in layer} for i, layer in enumerate(trees[0])
    ]


def tree_leaves(tree: Tree) -> list[Any]:
    """The arrays of a tree in a fixed order (layer by layer, keys in insertion order)."""
    return [value for layer in tree for value in layer.values()]
