"""Namespace inference from arrays, with a device check, and small tree helpers.

There is no module-level ``xp`` and no global "current backend": functions ask
the arrays they are given (as scikit-learn's ``_array_api.py`` and
array-api-compat's ``array_namespace`` do).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import array_api_compat

from .backends.ops import ops_for
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


def xp_of(array: Any) -> Any:
    """The Array-API namespace of one array, without a device check (cached per
    array type, through :func:`~portnet.backends.ops.ops_for`)."""
    return ops_for(array).xp


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


def to_host(array: Any) -> Any:
    """A NumPy view of host data, or a NumPy copy of a device array (through its backend).

    NumPy arrays, scalars, lists, tuples and other array-likes (pandas) are returned
    through ``np.asarray``;
    arrays of another library (CuPy, torch, array-api-strict) come back through
    their backend's ``to_numpy``, the one counted device-to-host exit. Host-facing
    functions (plots, cross-validation, gradient checks, ``set_weights``) call
    this instead of ``np.asarray``, which a GPU array refuses.
    """
    import numpy as np

    if isinstance(array, np.ndarray | np.generic | list | tuple | int | float | bool):
        return np.asarray(array)
    if not array_api_compat.is_array_api_obj(array):  # pandas, or any array-like
        return np.asarray(array)
    from .backends import backend_of

    return backend_of(array).to_numpy(array)


def on_device_of_inputs(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``function`` inside the device scope of its first array argument.

    Functions that infer their namespace from arrays (metrics, PCA) create new
    arrays too; on CuPy those land on the *current* device, so the inputs' device
    is made current first (see ``Backend.device_scope``; a no-op elsewhere).
    """

    @functools.wraps(function)
    def on_device(*args: Any, **kwargs: Any) -> Any:
        first = next((a for a in (*args, *kwargs.values()) if _is_device_array(a)), None)
        if first is None:
            return function(*args, **kwargs)
        from .backends import backend_of

        with backend_of(first).device_scope():
            return function(*args, **kwargs)

    return on_device


def _is_device_array(value: Any) -> bool:
    import numpy as np

    return not isinstance(value, np.ndarray) and array_api_compat.is_array_api_obj(value)


def tree_map(fn: Callable[..., Any], *trees: Tree) -> Tree:
    """Apply ``fn`` leaf by leaf to trees of the same structure."""
    return [
        {key: fn(*(t[i][key] for t in trees)) for key in layer} for i, layer in enumerate(trees[0])
    ]


def tree_leaves(tree: Tree) -> list[Any]:
    """The arrays of a tree in a fixed order (layer by layer, keys in insertion order)."""
    return [value for layer in tree for value in layer.values()]
