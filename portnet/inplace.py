"""In-place updates as a capability of the array library, decided here and nowhere else.

NumPy, CuPy and torch arrays may be mutated (``p -= g``), which saves one
parameter-sized temporary per operation; the standard does not promise it (JAX
arrays are immutable, array-api-strict forbids some in-place forms), so there the
same formula rebinds (``p = p - g``). :class:`Updates` writes each formula once
in either mode, much as array-api-extra's ``at`` does for indexed assignment.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError
from .sync_free import family

_MUTABLE_FAMILIES = ("numpy", "cupy", "torch")


def supports_inplace(xp: Any) -> bool:
    """Whether arrays of namespace ``xp`` may be updated in place."""
    return family(xp) in _MUTABLE_FAMILIES


def resolve_inplace(xp: Any, override: bool | None = None) -> bool:
    """The in-place decision for ``xp``: ``override`` when given, else the capability.

    Forcing ``True`` on a library without the capability is refused: it would
    fail deep inside a step.
    """
    capable = supports_inplace(xp)
    if override is None:
        return capable
    if override and not capable:
        raise ConfigError(
            f"in-place updates were forced but {getattr(xp, '__name__', xp)} arrays cannot be "
            "updated in place; leave inplace=None to let portnet decide."
        )
    return bool(override)


class Updates:
    """Update-or-rebind arithmetic: each method returns the result, which is its first
    argument mutated when ``inplace`` and a new array otherwise.

    Only pass arrays the caller owns as the first argument (optimizer buffers,
    parameters, gradients it may consume, or a layer's fresh output).
    """

    __slots__ = ("inplace",)

    def __init__(self, inplace: bool):
        self.inplace = bool(inplace)

    def add(self, x: Any, y: Any) -> Any:
        if self.inplace:
            x += y
            return x
        return x + y

    def sub(self, x: Any, y: Any) -> Any:
        if self.inplace:
            x -= y
            return x
        return x - y

    def mul(self, x: Any, y: Any) -> Any:
        if self.inplace:
            x *= y
            return x
        return x * y

    def div(self, x: Any, y: Any) -> Any:
        if self.inplace:
            x /= y
            return x
        return x / y

    def assign(self, scratch: Any, value: Any) -> Any:
        """``value`` copied into ``scratch`` (in place), or ``value`` itself (rebinding)."""
        if self.inplace:
            scratch[...] = value
            return scratch
        return value

    def blocks(self, xp: Any, *arrays: Any) -> list[slice] | None:
        """Slices of the flattened ``arrays`` (of one size) to update one after the
        other, or ``None`` for whole arrays.

        Elementwise updates of a large array in host memory (an optimizer's dozen
        passes over a parameter, its gradient and its moments) run out of the CPU's
        caches; done block by block, each block's passes stay in its L2 cache, and the
        results are the same bits. In place on NumPy only, and only for contiguous
        arrays, whose flat reshape is a view the blocks write through: a GPU wants
        whole-array kernels, and rebinding libraries could not write the blocks back.
        """
        first = arrays[0]
        if not self.inplace or family(xp) != "numpy" or first.nbytes < 2 * _BLOCK_BYTES:
            return None
        if not all(a.flags.c_contiguous and a.size == first.size for a in arrays):
            return None
        step = max(1, _BLOCK_BYTES // first.itemsize)
        return [slice(start, start + step) for start in range(0, first.size, step)]

    def __repr__(self) -> str:
        return f"Updates(inplace={self.inplace})"


#: Bytes of each array in one block: four or five such arrays fit a 1-2 MB L2 cache.
_BLOCK_BYTES = 128 * 1024


#: The two modes, made once: a step asks for them many times.
UPDATES = {True: Updates(True), False: Updates(False)}
