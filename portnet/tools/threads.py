"""Limit the CPU threads of the BLAS, OpenMP and PyTorch pools of this process.

On a small or shared machine, one spinning BLAS thread per core slows training
erratically (5-50x on a busy 2-core machine); one or two threads are repeatable.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError


def limit_threads(threads: int | None) -> Callable[[], None]:
    """Limit every loaded BLAS/OpenMP pool, and torch's intra-op pool, to ``threads``.

    Parameters
    ----------
    threads : int or None
        Threads per pool. ``None`` (or 0) leaves every library at its default.

    Returns
    -------
    callable
        Call it to restore the previous limits.

    Raises
    ------
    ConfigError
        If ``threads`` is negative (a ``ValueError``).

    Notes
    -----
    Call it after importing the array library: only pools already loaded are
    limited (so it never imports torch).
    """
    if not threads:
        return lambda: None
    threads = int(threads)
    if threads < 0:
        raise ConfigError(f"threads must be a positive number, got {threads}")
    from threadpoolctl import threadpool_limits

    from ..backends import limit_library_threads

    limiter = threadpool_limits(limits=threads)
    restore = [limiter.restore_original_limits, limit_library_threads(threads)]

    def undo() -> None:
        for step in reversed(restore):
            step()

    return undo
