r"""Element-wise operations with a Python-scalar operand, spelled so that none waits for a GPU.

The Array API standard lets ``clip``, ``maximum`` and ``sign`` be spelled several
ways, and array-api-compat fills the gaps of each library with wrappers that are
correct but not always free on a GPU:

* its CuPy ``clip`` and ``sign`` write through boolean masks (``out[mask] = ...``);
  CuPy must count the mask's ``True`` entries on the host before it can allocate,
  so each call blocks the host until the GPU has caught up;
* its torch ``maximum`` / ``minimum`` turn a Python scalar into a new device
  tensor, and its ``sign`` writes NaNs through a boolean mask: a blocking
  host-to-device copy (``lift_fresh``) and a ``nonzero`` each call on CUDA.

Every layer, loss, regularizer and optimizer takes these operations from here,
so the choice per library is made once:

=================  ===========================  ==========================  =====================
operation          NumPy, CuPy                  torch                       any other namespace
=================  ===========================  ==========================  =====================
``maximum(x, c)``  ufunc, scalar as argument    ``clamp(x, min=c)``         ``clip(x, min=c)``
``minimum(x, c)``  ufunc, scalar as argument    ``clamp(x, max=c)``         ``clip(x, max=c)``
``clip(x, a, b)``  ``np.clip`` / ``cupy.clip``  ``clamp(x, a, b)``          ``clip(x, a, b)``
``sign(x)``        ``np.sign`` / ``cupy.sign``  ``torch.sign``              ``sign(x)``
``dot(x, y)``      ``vecdot(x, y)``             ``torch.dot``               ``vecdot(x, y)``
=================  ===========================  ==========================  =====================

``dot`` is about speed, not syncs: array-api-compat's torch ``vecdot`` broadcasts
its operands into a batched matrix product, some 200 times slower than
``torch.dot`` on a 200,000-entry vector (1.25 ms against 6.7 us on two CPU cores).

The native ``sign`` of CuPy and torch gives 0 rather than NaN for a NaN entry.
Here that only concerns the L1 gradient of a NaN weight, and a NaN weight already
makes the loss NaN, which stops training at the end of the epoch.

``tests/test_sync_free.py`` proves the choices: every training option runs on an
emulated CuPy whose hidden syncs raise, and under PyTorch's dispatcher with zero
``_local_scalar_dense``, ``nonzero`` and ``lift_fresh`` per step.
"""

from __future__ import annotations

import importlib
from typing import Any

import array_api_compat

_families: dict[str, str] = {}


def family(xp: Any) -> str:
    """``"numpy"``, ``"cupy"``, ``"torch"`` or ``"standard"``, cached per namespace name."""
    kind = _families.get(xp.__name__)
    if kind is None:
        if array_api_compat.is_torch_namespace(xp):
            kind = "torch"
        elif array_api_compat.is_cupy_namespace(xp):
            kind = "cupy"
        elif array_api_compat.is_numpy_namespace(xp):
            kind = "numpy"
        else:
            kind = "standard"
        _families[xp.__name__] = kind
    return kind


def _native(family: str) -> Any:
    """The library itself (``cupy``, ``torch``), for a function its compat wrapper slows."""
    return importlib.import_module(family)


def maximum(xp: Any, x: Any, bound: float) -> Any:
    r""":math:`\max(x, c)` element-wise, for a Python scalar :math:`c`; dtype of ``x``."""
    if family(xp) in ("numpy", "cupy"):
        return xp.maximum(x, bound)
    return xp.clip(x, min=bound)


def minimum(xp: Any, x: Any, bound: float) -> Any:
    r""":math:`\min(x, c)` element-wise, for a Python scalar :math:`c`; dtype of ``x``."""
    if family(xp) in ("numpy", "cupy"):
        return xp.minimum(x, bound)
    return xp.clip(x, max=bound)


def relu(xp: Any, x: Any) -> Any:
    r""":math:`\max(x, 0)` element-wise."""
    return maximum(xp, x, 0.0)


def clip(xp: Any, x: Any, low: float, high: float) -> Any:
    r""":math:`\min(\max(x, a), b)` element-wise, for Python scalars :math:`a \le b`."""
    if family(xp) == "cupy":
        return _native("cupy").clip(x, low, high)
    return xp.clip(x, min=low, max=high)


def sign(xp: Any, x: Any) -> Any:
    r""":math:`\operatorname{sign}(x) \in \{-1, 0, 1\}` element-wise (0 at 0)."""
    kind = family(xp)
    if kind in ("cupy", "torch"):
        return _native(kind).sign(x)
    return xp.sign(x)


def scalar_like(xp: Any, value: float, like: Any) -> Any:
    """A 0-d array holding ``value``, with ``like``'s dtype and device.

    Made by ``full``, a fill kernel on the device, where ``asarray(value)`` would
    copy the number from the host.
    """
    return xp.full((), value, dtype=like.dtype, device=array_api_compat.device(like))


def dot(xp: Any, x: Any, y: Any) -> Any:
    r""":math:`\sum_i x_i y_i` of two 1-D arrays, as a 0-d array."""
    if family(xp) == "torch":
        return _native("torch").dot(x, y)
    return xp.vecdot(x, y)
