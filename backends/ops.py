r"""One :class:`Ops` per array library: every per-library choice portnet makes, in one place.

:func:`ops_for` is the only code outside the backend adapters that asks which
library an array or namespace belongs to. Everything else asks the :class:`Ops`:

* ``inplace``: may arrays be mutated? NumPy, CuPy and torch yes, which saves one
  parameter-sized temporary per update (``p -= g``); the standard does not promise
  it (JAX arrays are immutable, array-api-strict refuses some in-place forms), so
  there the same formula rebinds (``p = p - g``). ``add``, ``sub``, ``mul``, ``div``
  and ``assign`` write each formula once for both modes.
* ``can_compile``: the training step can be compiled (with ``jax.jit``: JAX only).
* element-wise operations with a Python-scalar operand, spelled so that none waits
  for a GPU. array-api-compat fills each library's gaps with wrappers that are
  correct but not always free there: its CuPy ``clip`` and ``sign`` write through
  boolean masks, whose ``True`` count CuPy must read on the host; its torch
  ``maximum``/``minimum`` copy the scalar to the device (``lift_fresh``) and its
  ``sign`` writes NaNs through a mask (a ``nonzero``). The choices:

=================  ===========================  ==========================  =====================
operation          NumPy, CuPy                  torch                       other libraries
=================  ===========================  ==========================  =====================
``maximum(x, c)``  ufunc, scalar as argument    ``clamp(x, min=c)``         ``clip(x, min=c)``
``minimum(x, c)``  ufunc, scalar as argument    ``clamp(x, max=c)``         ``clip(x, max=c)``
``clip(x, a, b)``  ``np.clip`` / ``cupy.clip``  ``clamp(x, a, b)``          ``clip(x, a, b)``
``sign(x)``        ``np.sign`` / ``cupy.sign``  ``torch.sign``              ``sign(x)``
``dot(x, y)``      ``vecdot(x, y)``             ``torch.dot``               ``vecdot(x, y)``
=================  ===========================  ==========================  =====================

``dot`` is about speed: array-api-compat's torch ``vecdot`` is a batched matrix
product, some 200 times slower than ``torch.dot`` on a 200,000-entry vector. The
native ``sign`` of CuPy and torch gives 0 for NaN, not NaN; that only touches the
L1 gradient of a NaN weight, whose loss is NaN already.
``multiply_add`` and ``add_product`` (``x * a + b``) are one pass on torch
(``addcmul``) and two elsewhere.
``tests/test_sync_free.py`` proves the choices on an emulated CuPy whose hidden
syncs raise, and under PyTorch's dispatcher.

This module imports only :mod:`portnet.errors`, array-api-compat and the standard
library.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
from typing import Any

import array_api_compat

from ..errors import ConfigError, InputError

#: Libraries whose arrays may be updated in place.
_MUTABLE = ("numpy", "cupy", "torch")
#: Libraries whose ``maximum``/``minimum`` ufuncs take a Python scalar directly.
_UFUNC = ("numpy", "cupy")
#: Bytes of each array in one block of :meth:`Ops.blocks`: four or five such
#: arrays fit a 1-2 MB L2 cache.
_BLOCK_BYTES = 128 * 1024


@dataclasses.dataclass(frozen=True, slots=True, eq=False, repr=False)
class Ops:
    """The operations and capabilities of one array library, in one update mode.

    Get one with :func:`ops_for` (or ``backend.ops``); instances are cached, so a
    training step builds none.

    Attributes
    ----------
    xp : namespace
        The Array-API namespace.
    library : str
        ``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"``, or ``"standard"`` for any
        other (array-api-strict, ndonnx ...).
    inplace : bool
        Whether the update methods mutate their first argument. Only ever true
        where the library allows it (see :meth:`with_inplace`).
    native : module or None
        The library itself (``cupy``, ``torch``), for the functions whose compat
        wrappers are slow or sync; ``None`` elsewhere.
    """

    xp: Any
    library: str
    inplace: bool
    native: Any = None

    def __repr__(self) -> str:
        return f"Ops({self.library!r}, inplace={self.inplace})"

    # -- capabilities ----------------------------------------------------------
    @property
    def can_mutate(self) -> bool:
        """Whether this library's arrays may be updated in place at all."""
        return self.library in _MUTABLE

    @property
    def can_compile(self) -> bool:
        """Whether the training step can be compiled (with ``jax.jit``)."""
        return self.library == "jax"

    @property
    def single_core_passes(self) -> bool:
        """Whether element-wise passes run on one CPU core (NumPy's do; torch spreads
        them over its threads, CuPy and JAX run on their device), so that a step's
        row shards in threads use the other cores (:mod:`portnet.training.shards`)."""
        return self.library == "numpy"

    def with_inplace(self, inplace: bool | None) -> Ops:
        """The Ops of the same library that updates in place (``True``) or rebinds
        (``False``); ``None`` gives the library's default (in place where possible).

        Raises
        ------
        ConfigError
            ``True`` for a library whose arrays cannot be mutated: it would fail
            deep inside a step.
        """
        if inplace is None:
            return ops_for(self.xp)
        inplace = bool(inplace)
        if inplace == self.inplace:
            return self
        if inplace and not self.can_mutate:
            raise ConfigError(
                f"in-place updates were forced but {getattr(self.xp, '__name__', self.xp)} "
                "arrays cannot be updated in place; leave inplace=None to let portnet decide."
            )
        return _cached(self.xp, inplace)

    # -- sync-free element-wise operations -----------------------------------------
    def maximum(self, x: Any, bound: float) -> Any:
        r""":math:`\max(x, c)` element-wise, for a Python scalar :math:`c`; dtype of ``x``."""
        if self.library in _UFUNC:
            return self.xp.maximum(x, bound)
        return self.xp.clip(x, min=bound)

    def minimum(self, x: Any, bound: float) -> Any:
        r""":math:`\min(x, c)` element-wise, for a Python scalar :math:`c`; dtype of ``x``."""
        if self.library in _UFUNC:
            return self.xp.minimum(x, bound)
        return self.xp.clip(x, max=bound)

    def relu(self, x: Any) -> Any:
        r""":math:`\max(x, 0)` element-wise."""
        return self.maximum(x, 0.0)

    def relu_backprop(self, dy: Any, y: Any) -> Any:
        r""":math:`\delta \cdot [y > 0]` for a ReLU's output :math:`y \ge 0`; ``dy`` is
        consumed (masked in place) where allowed.

        torch multiplies by ``sign(y)``, which is that mask as floats because
        :math:`y \ge 0`: its float-by-bool product was measured 3x slower than a
        float one. NumPy and CuPy multiply by the bool mask directly (faster there
        than making a float one); the standard defines no float-bool promotion, so
        elsewhere the mask is cast.
        """
        if self.library == "torch":
            mask = self.native.sign(y)
        elif self.library in _UFUNC:
            mask = y > 0
        else:
            mask = self.xp.astype(y > 0, dy.dtype)
        return self.mul(dy, mask)

    def clip(self, x: Any, low: float, high: float) -> Any:
        r""":math:`\min(\max(x, a), b)` element-wise, for Python scalars :math:`a \le b`."""
        if self.library == "cupy":
            return self.native.clip(x, low, high)
        return self.xp.clip(x, min=low, max=high)

    def sign(self, x: Any) -> Any:
        r""":math:`\operatorname{sign}(x) \in \{-1, 0, 1\}` element-wise (0 at 0)."""
        if self.native is not None:
            return self.native.sign(x)
        return self.xp.sign(x)

    def dot(self, x: Any, y: Any) -> Any:
        r""":math:`\sum_i x_i y_i` of two 1-D arrays, as a 0-d array."""
        if self.library == "torch":
            return self.native.dot(x, y)
        return self.xp.vecdot(x, y)

    def scalar_like(self, value: float, like: Any) -> Any:
        """A 0-d array holding ``value``, with ``like``'s dtype and device.

        ``full`` is a fill kernel on the device; ``asarray(value)`` would copy the
        number from the host.
        """
        return self.xp.full((), value, dtype=like.dtype, device=array_api_compat.device(like))

    # -- update or rebind -------------------------------------------------------------
    # Each returns the result: its first argument, mutated, when ``inplace``, else a
    # new array. Pass as first argument only arrays the caller owns (optimizer
    # buffers, parameters, gradients it may consume, a layer's fresh output).
    def add(self, x: Any, y: Any) -> Any:
        """``x + y``."""
        if self.inplace:
            x += y
            return x
        return x + y

    def sub(self, x: Any, y: Any) -> Any:
        """``x - y``."""
        if self.inplace:
            x -= y
            return x
        return x - y

    def mul(self, x: Any, y: Any) -> Any:
        """``x * y``."""
        if self.inplace:
            x *= y
            return x
        return x * y

    def div(self, x: Any, y: Any) -> Any:
        """``x / y``."""
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

    # -- fused products -----------------------------------------------------------------
    # torch fuses a product and a sum into one pass (``addcmul``), which BatchNorm's
    # activation-sized passes measured ~1.6x faster with; elsewhere they are two.
    def multiply_add(self, x: Any, a: Any, b: Any) -> Any:
        """``x * a + b`` as a fresh array (the arguments broadcast; none is changed)."""
        if self.library == "torch":
            return self.native.addcmul(b, x, a)
        return self.add(x * a, b)

    def add_product(self, acc: Any, x: Any, a: Any) -> Any:
        """``acc + x * a``; ``acc`` is updated in place where allowed (an array the
        caller owns, of the result's shape)."""
        if self.library == "torch":
            return acc.addcmul_(x, a) if self.inplace else self.native.addcmul(acc, x, a)
        return self.add(acc, x * a)

    # -- the optimizers' two update shapes ----------------------------------------------
    def ema(self, average: Any, x: Any, decay: float, *, consume: bool = False) -> Any:
        r"""The moving average :math:`a \leftarrow \beta a + (1 - \beta) x`, into ``average``.

        ``consume=True`` lets ``x`` (an array the caller owns and no longer needs)
        hold :math:`(1-\beta) x`, which saves a temporary.
        """
        term = self.mul(x, 1.0 - decay) if consume else (1.0 - decay) * x
        return self.add(self.mul(average, decay), term)

    def descend(self, p: Any, direction: Any, lr: Any) -> Any:
        r"""The step :math:`p \leftarrow p - \eta d`, into ``p``; consumes ``direction``."""
        return self.sub(p, self.mul(direction, lr))

    def blocks(self, *arrays: Any) -> list[slice] | None:
        """Slices of the flattened ``arrays`` (of one size) to update one after the
        other, or ``None`` for whole arrays.

        Element-wise updates of a large host array (an optimizer's dozen passes over
        a parameter, its gradient and its moments) run out of the CPU's caches;
        block by block, each block's passes stay in L2, with the same bits. In place
        on NumPy only, for contiguous arrays, whose flat reshape is a view the blocks
        write through: a GPU wants whole-array kernels, and rebinding could not write
        the blocks back.
        """
        first = arrays[0]
        if not self.inplace or self.library != "numpy" or first.nbytes < 2 * _BLOCK_BYTES:
            return None
        if not all(a.flags.c_contiguous and a.size == first.size for a in arrays):
            return None
        step = max(1, _BLOCK_BYTES // first.itemsize)
        return [slice(start, start + step) for start in range(0, first.size, step)]


_BY_NAMESPACE: dict[tuple[Any, bool], Ops] = {}
_DEFAULT: dict[Any, Ops] = {}
_BY_ARRAY_TYPE: dict[type, Ops] = {}


def ops_for(xp_or_array: Any) -> Ops:
    """The :class:`Ops` of a namespace, or of an array's namespace, in the library's
    default mode (in place where arrays may be mutated).

    Cached per namespace, and per array type, which decides the namespace:
    array-api-compat's lookup costs microseconds and a step asks a dozen times.
    """
    kind = type(xp_or_array)
    if kind is not types.ModuleType:
        ops = _BY_ARRAY_TYPE.get(kind)
        if ops is not None:
            return ops
        if array_api_compat.is_array_api_obj(xp_or_array):
            ops = ops_for(array_api_compat.array_namespace(xp_or_array))
            return _BY_ARRAY_TYPE.setdefault(kind, ops)
        if not hasattr(xp_or_array, "asarray"):
            raise InputError(
                f"{kind.__name__} is neither an array nor an Array API namespace; give an "
                "array of a supported library (NumPy, CuPy, torch, JAX, array-api-strict)"
            )
    ops = _DEFAULT.get(xp_or_array)
    if ops is None:
        library = _library(xp_or_array)
        ops = _DEFAULT.setdefault(xp_or_array, _cached(xp_or_array, library in _MUTABLE))
    return ops


def _cached(xp: Any, inplace: bool) -> Ops:
    ops = _BY_NAMESPACE.get((xp, inplace))
    if ops is None:
        library = _library(xp)
        # The native module as imported now: inside portnet.testing's emulated CuPy,
        # "cupy" is the emulation that this namespace wraps.
        native = importlib.import_module(library) if library in ("cupy", "torch") else None
        ops = _BY_NAMESPACE.setdefault((xp, inplace), Ops(xp, library, inplace, native))
    return ops


def _library(xp: Any) -> str:
    """The one place that asks array-api-compat which library a namespace is."""
    if array_api_compat.is_numpy_namespace(xp):
        return "numpy"
    if array_api_compat.is_cupy_namespace(xp):
        return "cupy"
    if array_api_compat.is_torch_namespace(xp):
        return "torch"
    if array_api_compat.is_jax_namespace(xp):
        return "jax"
    return "standard"
