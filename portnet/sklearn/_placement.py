"""Where an estimator's arrays live, as scikit-learn's array API support decides.

Without array API dispatch every input becomes a NumPy array, training runs on the
estimator's ``backend``/``device`` and outputs come back as NumPy arrays. Under
``sklearn.set_config(array_api_dispatch=True)`` a torch, CuPy, JAX or
array-api-strict input trains where it lives and outputs stay there; later inputs
must come from the same namespace and device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sklearn

from ..backends import Backend, backend_of, get_backend
from ..errors import DeviceMismatchError


def dispatching() -> bool:
    """Whether scikit-learn's array API dispatch is on."""
    return bool(sklearn.get_config().get("array_api_dispatch", False))


def input_backend(X: Any) -> Backend | None:
    """The backend of a device input under dispatch (outputs go there); ``None``: NumPy."""
    if not dispatching() or isinstance(X, np.ndarray | np.generic) or not hasattr(X, "shape"):
        return None
    if hasattr(X, "tocsr"):  # SciPy sparse: host data
        return None
    return backend_of(X)


def where(backend: Backend | None) -> str:
    """Words for a placement: ``"NumPy (host)"`` or ``"torch on cuda:0"``."""
    return "NumPy (host)" if backend is None else f"{backend.name} on {backend.device_name}"


def training_backend(X: Any, name: str | None, device: str | None) -> Backend:
    """Where training runs: the input's backend under dispatch, else ``name``/``device``.

    Raises
    ------
    DeviceMismatchError
        Under dispatch, when ``name``/``device`` ask for another place than the data's.
    """
    found = input_backend(X)
    if found is None:
        return get_backend(name, device)
    if name is not None and where(get_backend(name, device)) != where(found):
        raise DeviceMismatchError(
            f"X is a {where(found)} array but backend={name!r}, device={device!r} was "
            "asked: under array API dispatch the data decides; leave backend and device "
            "unset, or pass NumPy data."
        )
    return found


def check_same_place(estimator: Any, X: Any, method: str) -> None:
    """Refuse, under dispatch, an input from another namespace or device than fit's."""
    if dispatching() and where(input_backend(X)) != estimator._fitted_on:
        raise DeviceMismatchError(
            f"{type(estimator).__name__}.{method}() got X as {where(input_backend(X))} "
            f"but was fitted on {estimator._fitted_on}: inputs must use the same "
            "namespace and device as the data given to fit."
        )
