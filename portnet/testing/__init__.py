"""Instruments that prove portability on a machine without a GPU.

* :func:`emulated_cupy`: array-api-compat's real CuPy wrappers over NumPy, with
  hidden host syncs raising :class:`HostSyncError`, uploads and kernels counted.
* :func:`count_torch_ops`: every aten op PyTorch dispatches in a block, with the
  host syncs (``_local_scalar_dense``, ``nonzero``) and scalar uploads
  (``lift_fresh``) a CUDA run would pay for.
* :mod:`portnet.testing.options` lists every training option of the library, and
  :mod:`portnet.testing.audit` measures each one per step on either instrument.
"""

from __future__ import annotations

from .emulated_cupy import Counts, EmulatedCupy, HostSyncError, emulated_cupy
from .torch_ops import TorchOpCount, count_torch_ops

__all__ = [
    "Counts",
    "EmulatedCupy",
    "HostSyncError",
    "TorchOpCount",
    "count_torch_ops",
    "emulated_cupy",
]
