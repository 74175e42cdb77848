"""portnet.limit_threads: the --threads flag of the CLIs and the benchmark."""

from __future__ import annotations

import numpy as np  # noqa: F401  (loads the BLAS that threadpoolctl must see)
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import portnet as pn


def _pool_threads():
    return sorted({pool["num_threads"] for pool in threadpool_info()})


def test_limits_every_pool_and_restores_them():
    if not threadpool_info():
        pytest.skip("no BLAS or OpenMP pool that threadpoolctl can see")
    torch = pytest.importorskip("torch")
    with threadpool_limits(limits=2):
        torch.set_num_threads(2)
        restore = pn.limit_threads(1)
        try:
            assert _pool_threads() == [1]
            assert torch.get_num_threads() == 1
        finally:
            restore()
        assert _pool_threads() == [2]
        assert torch.get_num_threads() == 2


def test_none_and_zero_leave_the_libraries_alone():
    if not threadpool_info():
        pytest.skip("no BLAS or OpenMP pool that threadpoolctl can see")
    torch = pytest.importorskip("torch")
    # A count that neither a limit of 1 nor the machine's default would give.
    old_torch = torch.get_num_threads()
    with threadpool_limits(limits=3):
        torch.set_num_threads(3)
        try:
            for value in (None, 0):
                restore = pn.limit_threads(value)
                assert (_pool_threads(), torch.get_num_threads()) == ([3], 3), value
                restore()
                assert (_pool_threads(), torch.get_num_threads()) == ([3], 3), value
        finally:
            torch.set_num_threads(old_torch)


def test_negative_count_is_refused():
    with pytest.raises(ValueError, match="positive"):
        pn.limit_threads(-2)
