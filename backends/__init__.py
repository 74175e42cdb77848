"""Backends: one small adapter per array library (installed as ``portnet.backends``).

A :class:`Backend` bundles what the Array API standard leaves out and portnet
needs at the edges: the namespace, the device, moving host data onto the device
(:meth:`Backend.asarray`), the single device-to-host exit (:meth:`Backend.to_numpy`),
``synchronize`` for benchmarks and a native uniform sampler for dropout. Its
:attr:`Backend.ops` (:mod:`portnet.backends.ops`) holds the library's own choices:
in place or rebind, the sync-free spellings, whether the step compiles.

The backend is chosen once, at the edge, with :func:`get_backend`; library code
infers the namespace from the arrays it is given.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import BackendError
from ._base import Backend, TransferCount, count_transfers, on_backend_device
from .ops import Ops, ops_for

__all__ = [
    "Backend",
    "Ops",
    "TransferCount",
    "available_backends",
    "backend_of",
    "count_transfers",
    "get_backend",
    "known_backends",
    "limit_library_threads",
    "on_backend_device",
    "ops_for",
    "runs_on_gpu",
]


def _load_numpy(device: str | None) -> Backend:
    from . import numpy_backend

    return numpy_backend.load(device)


def _load_torch(device: str | None) -> Backend:
    from . import torch_backend

    return torch_backend.load(device)


def _load_cupy(device: str | None) -> Backend:
    from . import cupy_backend

    return cupy_backend.load(device)


def _load_jax(device: str | None) -> Backend:
    from . import jax_backend

    return jax_backend.load(device)


def _load_strict(device: str | None) -> Backend:
    from . import strict_backend

    return strict_backend.load(device)


_LOADERS: dict[str, Callable[[str | None], Backend]] = {
    "numpy": _load_numpy,
    "torch": _load_torch,
    "cupy": _load_cupy,
    "array_api_strict": _load_strict,
    "jax": _load_jax,
}

# Friendly spellings users type; each maps to one canonical name above.
_ALIASES = {
    "np": "numpy",
    "pytorch": "torch",
    "strict": "array_api_strict",
    "array-api-strict": "array_api_strict",
}


def known_backends() -> tuple[str, ...]:
    """Return the canonical names of every backend portnet knows."""
    return tuple(_LOADERS)


def _canonical(name: str) -> str:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _LOADERS:
        raise BackendError(
            f"Unknown backend {name!r}. Known backends: {', '.join(known_backends())} "
            "(set PORTNET_BACKEND or pass --backend with one of these)."
        )
    return key


def get_backend(name: str | None = None, device: str | None = None) -> Backend:
    """Return the backend to use, chosen once at the edge of a program.

    Parameters
    ----------
    name : str, optional
        ``"numpy"``, ``"torch"``, ``"cupy"`` or ``"array_api_strict"``. When
        omitted, ``$PORTNET_BACKEND`` is read (at call time, never at import);
        when that is unset too, ``"numpy"``.
    device : str, optional
        Device name understood by the backend (``"cpu"``, ``"cuda:0"``, ``"mps"``,
        ``"device1"``, ``"no_float64"`` ...). When omitted, ``$PORTNET_DEVICE``,
        then the backend's default device.

    Returns
    -------
    Backend

    Raises
    ------
    BackendError
        The name is unknown, the library is not installed, or the device is
        missing. portnet never falls back to another backend silently.
    """
    env_name = os.environ.get("PORTNET_BACKEND") or "numpy"
    from_env = not name
    name = _canonical(name or env_name)
    env_key = env_name.strip().lower()
    if not device and (from_env or name == _ALIASES.get(env_key, env_key)):
        # $PORTNET_DEVICE belongs to $PORTNET_BACKEND: `--backend numpy` with
        # PORTNET_BACKEND=torch PORTNET_DEVICE=cuda must not ask numpy for cuda.
        device = os.environ.get("PORTNET_DEVICE") or None
    return _LOADERS[name](device or None)


def available_backends() -> dict[str, str]:
    """Say which backends load on this machine, and why the others do not.

    Returns
    -------
    dict
        Maps each known backend name to ``"ok (<device>)"`` or to the reason it
        cannot be used here.
    """
    status = {}
    for name, loader in _LOADERS.items():
        try:
            backend = loader(None)
        except BackendError as exc:
            status[name] = str(exc)
        else:
            status[name] = f"ok ({backend.device_name})"
    return status


def runs_on_gpu(name: str | None, device: str | None) -> bool:
    """Whether a backend name and device (as a configuration gives them) mean a GPU:
    CuPy, or torch or JAX on a ``cuda`` device. Nothing is imported."""
    key = str(name or "numpy").strip().lower()
    key = _ALIASES.get(key, key)
    return key == "cupy" or (key in ("torch", "jax") and str(device or "").startswith("cuda"))


def limit_library_threads(threads: int) -> Callable[[], None]:
    """Limit the intra-op thread pool of each loaded array library that has its own
    (torch's; BLAS and OpenMP pools are threadpoolctl's). Returns the undo."""
    import sys

    torch = sys.modules.get("torch")  # never imported here
    if torch is None:
        return lambda: None
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    return lambda: torch.set_num_threads(old)


def backend_of(array) -> Backend:
    """Return the :class:`Backend` an existing array lives on.

    Used where a function receives device arrays but no backend, for example to
    bring a metric back to the host.
    """
    import array_api_compat as compat

    if compat.is_numpy_array(array):
        return _load_numpy(None)
    if compat.is_torch_array(array):
        return _load_torch(str(array.device))
    if compat.is_cupy_array(array):
        return _load_cupy(f"cuda:{array.device.id}")
    if compat.is_jax_array(array):
        from . import jax_backend

        return jax_backend.from_device(compat.device(array))
    if compat.is_array_api_strict_namespace(compat.array_namespace(array)):
        from . import strict_backend

        return strict_backend.from_device(array.device)
    raise BackendError(
        f"portnet has no backend for arrays of type {type(array).__module__}."
        f"{type(array).__name__}; known backends: {', '.join(known_backends())}."
    )
