"""Checks of user features and of the network's shapes, done before any maths runs.

Targets are checked by the loss, which knows its task (:meth:`Loss.check_host_targets`).

CuPy wraps out-of-range indices silently and NaN propagates without a word, so
both are caught here, with messages that say what is wrong and what to do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._array import namespace_of, to_host
from ..errors import ConfigError, DeviceMismatchError, InputError
from ..layers.base import Context, Layer, ShapeMismatch


def check_chain(
    layers: list[Layer], in_shape: tuple[int, ...], data: str | None = None
) -> tuple[int, ...] | None:
    """Refuse layers that do not chain, before training: their widths must agree.

    Walks one sample's shape from ``in_shape`` through ``layers``
    (:meth:`~portnet.Layer.output_shape`) and returns the output shape, or
    ``None`` where a layer's shape could not be found.

    Raises
    ------
    ConfigError
        Naming both layers (from 1) and their widths, e.g. "layer 2 (Dense) takes
        17 inputs but layer 1 (Dense) gives 16".
    InputError
        When the data (named ``data``) do not fit the first layer.
    """
    shape = tuple(int(s) for s in in_shape)
    for i, layer in enumerate(layers):
        try:
            out = layer.output_shape(shape)
            if out is None:
                out = _probe_output_shape(layer, shape)
        except ShapeMismatch as exc:
            here = f"layer {i + 1} ({type(layer).__name__}) takes {exc.takes}"
            gives = str(shape[0]) if len(shape) == 1 else f"samples of shape {shape}"
            if i == 0 and data is not None:
                raise InputError(
                    f"{here} but {data} has {gives} features per sample: check the data's "
                    "preprocessing or the first layer's input width."
                ) from None
            before = layers[i - 1] if i else None
            giver = f"layer {i} ({type(before).__name__})" if i else "the input"
            fix = "make them equal" if len(shape) == 1 else "make them fit"
            raise ConfigError(f"{here} but {giver} gives {gives}: {fix}.") from None
        if out is None:
            return None
        shape = tuple(int(s) for s in out)
    return shape


def _probe_output_shape(layer: Layer, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """A layer's output shape from an inference forward on two zero samples (NumPy);
    ``None`` when that fails: the layer does not say what it takes."""
    ctx = Context(xp=np, training=False, need_input_grad=False, check_inputs=False)
    try:
        y, _ = layer.forward(layer.init(np.random.default_rng(0)), np.zeros((2, *shape)), ctx)
    except Exception:
        return None
    return tuple(y.shape[1:])


def check_feature_shape(shape: tuple[int, ...], n_in: int | None, name: str = "X") -> None:
    """Raise :class:`InputError` unless ``shape`` is a non-empty ``(N, n_in)``."""
    shape = tuple(shape)
    if len(shape) != 2:
        hint = " (flatten images first, e.g. X.reshape(len(X), -1))" if len(shape) > 2 else ""
        raise InputError(f"{name} must be 2-D (samples x features), got shape {shape}{hint}.")
    if shape[0] == 0:
        raise InputError(f"{name} is empty (0 samples): there is nothing to train on or evaluate.")
    if n_in is not None and shape[1] != n_in:
        raise InputError(
            f"{name} has {shape[1]} features per sample but the model's first layer expects "
            f"{n_in}: check the data's preprocessing or the model's input width."
        )


def check_features(X_host: np.ndarray, n_in: int | None, name: str = "X") -> None:
    """Raise :class:`InputError` unless ``X_host`` is finite, numeric, non-empty (N, n_in)."""
    check_feature_shape(X_host.shape, n_in, name)
    if X_host.dtype.kind not in "fiub":
        raise InputError(f"{name} must hold numbers, got dtype {X_host.dtype}.")
    if X_host.dtype.kind == "f" and not np.isfinite(X_host).all():
        bad = int(np.size(X_host) - np.count_nonzero(np.isfinite(X_host)))
        raise InputError(
            f"{name} contains {bad} NaN or infinite value(s): clean or impute them before training."
        )


def as_host(backend, array: Any) -> np.ndarray:
    """The host copy of user data: NumPy data as is, device arrays through ``to_numpy``."""
    if isinstance(array, np.ndarray):
        return array
    if isinstance(array, list | tuple):
        return np.asarray(array)
    try:
        return backend.to_numpy(array)
    except Exception as exc:  # wrong library or device for this backend
        raise InputError(
            f"Could not read data of type {type(array).__name__} on backend {backend}: {exc}. "
            "Pass NumPy arrays, or arrays of the model's backend and device."
        ) from None


def prepare_features(
    backend, dtype: Any, X: Any, n_in: int | None, probe: Any, name: str = "X"
) -> Any:
    """Validate features once, then put them on the device once.

    Host data is checked on the host; device data (which must share ``probe``'s
    library and device) is checked with one device reduction (a 0-d read)
    instead of a full copy back to the host.
    """
    if isinstance(X, np.ndarray | list | tuple):
        host = np.asarray(X)
        check_features(host, n_in, name)
        return backend.asarray(host, dtype)
    _check_on_backend(backend, X, probe, name)
    xp = backend.xp
    check_feature_shape(X.shape, n_in, name)
    X = xp.astype(X, dtype)
    if not bool(backend.to_numpy(xp.all(xp.isfinite(X)))):
        raise InputError(f"{name} contains NaN or infinite values: clean or impute them first.")
    return X


def prepare_targets(
    backend, dtype: Any, loss, y: Any, n_out: int | None, n_samples: int, probe: Any, name: str
) -> Any:
    """Validate targets once (``loss`` says how), then put them on the device once."""
    if not isinstance(y, np.ndarray | list | tuple):
        _check_on_backend(backend, y, probe, name)
        on_device = loss.check_device_targets(
            backend.xp, y, n_out, n_samples, name, backend.to_numpy
        )
        if on_device is not None:
            return on_device
    host = loss.check_host_targets(as_host(backend, y), n_out, n_samples, name)
    return backend.asarray(host, "int64" if host.dtype == np.int64 else dtype)


def _check_on_backend(backend, array: Any, probe: Any, name: str) -> None:
    try:
        namespace_of(array, probe)
    except DeviceMismatchError as exc:
        raise DeviceMismatchError(
            f"{name} is not on the model's backend {backend}: {exc}"
        ) from None


def check_weight_structure(current: list[dict[str, Any]], weights: list[dict[str, Any]]) -> None:
    """Raise :class:`ConfigError` unless ``weights`` has ``current``'s layers, names and shapes."""
    if len(weights) != len(current):
        raise ConfigError(f"expected weights for {len(current)} layers, got {len(weights)}")
    for i, (old, new) in enumerate(zip(current, weights, strict=True)):
        if set(old) != set(new):
            raise ConfigError(f"layer {i}: expected parameters {sorted(old)}, got {sorted(new)}")
        for key, value in new.items():
            if tuple(np.shape(value)) != tuple(old[key].shape):
                raise ConfigError(
                    f"layer {i} {key}: expected shape {tuple(old[key].shape)}, "
                    f"got {np.shape(value)}"
                )


def weights_to_device(backend, dtype, weights: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``weights`` (one dict per layer, host or device arrays) on ``backend``."""
    # Copy first: on NumPy and torch-cpu, asarray may share the caller's memory,
    # and in-place optimizer steps must never write into the user's arrays.
    return [
        {k: backend.asarray(np.array(to_host(v), copy=True), dtype) for k, v in layer.items()}
        for layer in weights
    ]


def split_validation(arrays: list[Any], fraction: float) -> tuple[list[Any], list[Any]]:
    """Hold out the last ``fraction`` of the rows of each array (``None`` stays ``None``).

    Returns the training parts and the held-out parts, as Keras's
    ``validation_split`` does (no shuffling: shuffle the data first if it is ordered).
    """
    n = arrays[0].shape[0]
    n_val = int(round(n * fraction))
    if not 0 < n_val < n:
        raise InputError(f"validation_split {fraction} leaves no data on one side")
    cut = n - n_val

    def part(a, rows):
        return None if a is None else a[rows, ...]

    return [part(a, slice(0, cut)) for a in arrays], [part(a, slice(cut, n)) for a in arrays]
