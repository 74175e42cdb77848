"""Rows kept on the host and moved to the device one batch at a time.

The Array API has no sparse arrays, so a SciPy sparse matrix cannot go to the
device as it is, and making it dense whole may not fit in memory. A
:class:`HostRows` makes dense only the rows one batch needs, on the host, and
uploads them: one transfer per batch instead of one per dataset.
The minibatch loop (:class:`portnet.training.core.Batch`) gathers batches from it in the
epoch's order.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class HostRows:
    """A host matrix (SciPy sparse, or NumPy) seen as device rows, batch by batch.

    Parameters
    ----------
    matrix : scipy.sparse matrix or array, or numpy.ndarray
        ``(n_samples, n_features)``; a sparse one is kept in CSR form, whose row
        slices are cheap.
    backend : portnet.backends.Backend
        Where batches go.
    dtype : str or dtype
        The dtype batches have on the device.
    order : numpy.ndarray of int, optional
        The epoch's sample order: :meth:`batch` ``(start, stop)`` gives rows
        ``order[start:stop]``; without it, rows ``start:stop``.
    """

    ndim = 2

    def __init__(self, matrix: Any, backend: Any, dtype: Any, order: np.ndarray | None = None):
        self.matrix = matrix.tocsr() if hasattr(matrix, "tocsr") else np.asarray(matrix)
        self.backend = backend
        self.dtype = backend.dtype(dtype)
        self.order = order

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.matrix.shape)

    @property
    def device(self) -> Any:
        return self.backend.device

    def in_order(self, order: np.ndarray) -> HostRows:
        """The same rows, with ``order`` as the epoch's sample order."""
        return HostRows(self.matrix, self.backend, self.dtype, np.asarray(order))

    def take(self, index: Any) -> Any:
        """Rows ``index`` (a host integer array or a slice), dense, on the device."""
        rows = self.matrix[index]
        dense = rows.toarray() if hasattr(rows, "toarray") else np.asarray(rows)
        return self.backend.asarray(dense, self.dtype)

    def batch(self, start: int, stop: int) -> Any:
        """The batch of positions ``start:stop`` of the epoch's order, on the device."""
        return self.take(slice(start, stop) if self.order is None else self.order[start:stop])

    def __repr__(self) -> str:
        return f"HostRows({type(self.matrix).__name__} {self.shape}, {self.backend!r})"
