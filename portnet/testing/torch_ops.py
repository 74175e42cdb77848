"""Counting the aten operations PyTorch dispatches, to see a CUDA run's syncs on a CPU.

Every tensor operation passes through PyTorch's dispatcher, on the CPU as on CUDA.
Counted there, a CPU run shows what the same code would cost on a GPU:

* ``_local_scalar_dense``: a host read of a device value (``float()``, ``bool()``,
  ``.item()``), which waits for all queued work;
* ``nonzero``: an output whose size depends on the data, which must read a count
  on the host. Indexing with a boolean mask (``index.Tensor``, ``index_put_``)
  runs ``nonzero`` inside the kernel, where the dispatcher does not see it, so
  it is counted here as one ``nonzero`` as well;
* ``lift_fresh``: a tensor made from Python data (``torch.asarray(0.0)``), a
  blocking host-to-device copy from pageable memory on CUDA.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Iterator
from typing import Any

#: Ops that make the host wait for the device.
SYNC_OPS = ("_local_scalar_dense", "nonzero", "item", "is_nonzero", "equal")
#: Ops that copy Python data to the device.
UPLOAD_OPS = ("lift_fresh", "lift_fresh_copy")
# Indexing ops that call nonzero inside their kernel when an index is a boolean mask.
_INDEXING = ("index.Tensor", "index_put", "_index_put_impl")
# Dispatcher entries that launch no kernel: profiler markers around optimizer.step.
_BOOKKEEPING = ("_record_function_enter", "_record_function_exit")


@dataclasses.dataclass
class TorchOpCount:
    """The aten ops dispatched inside a :func:`count_torch_ops` block.

    Attributes
    ----------
    ops : Counter
        Op name (overload included when not ``default``) to count.
    views : int
        How many of them were views (no kernel launch).
    bookkeeping : int
        Profiler markers (no kernel launch).
    """

    ops: Counter = dataclasses.field(default_factory=Counter)
    views: int = 0
    bookkeeping: int = 0

    @property
    def total(self) -> int:
        """Every dispatched op, views included."""
        return sum(self.ops.values())

    @property
    def kernels(self) -> int:
        """Ops that compute or allocate: a GPU kernel launch each."""
        return self.total - self.views - self.bookkeeping

    def count(self, names: tuple[str, ...]) -> int:
        """How many ops whose name starts with one of ``names`` ran."""
        return sum(c for op, c in self.ops.items() if op.startswith(names))

    @property
    def syncs(self) -> int:
        """Host reads of device values and data-dependent shapes (see :data:`SYNC_OPS`)."""
        return self.count(SYNC_OPS)

    @property
    def scalar_uploads(self) -> int:
        """Python scalars or sequences copied to the device (see :data:`UPLOAD_OPS`)."""
        return self.count(UPLOAD_OPS)

    def by_name(self, *names: str) -> dict[str, int]:
        """The counts of exactly these op names (0 where none ran)."""
        return {name: self.count((name,)) for name in names}


def _has_boolean_index(args: Any) -> bool:
    import torch

    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


@contextlib.contextmanager
def count_torch_ops() -> Iterator[TorchOpCount]:
    """Count every aten op dispatched inside the block (needs PyTorch).

    Examples
    --------
    >>> with count_torch_ops() as count:
    ...     y = torch.clamp(x, min=0.0)
    >>> count.scalar_uploads, count.syncs
    (0, 0)
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    result = TorchOpCount()

    class _Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None):
            name = func.__name__.removesuffix(".default")
            result.ops[name] += 1
            if name.startswith(_INDEXING) and _has_boolean_index(args):
                result.ops["nonzero"] += 1
            if func.is_view:
                result.views += 1
            elif name.startswith(_BOOKKEEPING):
                result.bookkeeping += 1
            return func(*args, **(kwargs or {}))

    with _Counter():
        yield result
