"""Layers: each forward returns its output and a backprop closure.

A layer object holds only configuration. Its parameters live outside it, in a
dict of arrays, so the same layer runs on any backend and optimizers can treat
all parameters alike (the thinc / micrograd style: no autograd engine).

``forward(params, x, ctx) -> (y, backprop)`` and ``backprop(dy) -> (dx, grads)``,
where ``grads`` has the keys of ``params``. ``dx`` is ``None`` when
``ctx.need_input_grad`` is false (the first layer: nobody needs the gradient of
the data, and skipping it saves the largest matrix product of the step).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._array import namespace_of
from ..backends.ops import Ops, ops_for
from ..errors import ConfigError

Backprop = Callable[[Any], tuple[Any, dict[str, Any]]]

_REGISTRY: dict[str, type[Layer]] = {}


@dataclasses.dataclass
class Context:
    """What a forward pass needs besides parameters and input.

    Attributes
    ----------
    xp : namespace
        The Array-API namespace of the input.
    training : bool
        Training mode (dropout active) or inference.
    random : RandomStream or None
        Per-step randomness, needed only by dropout in training mode.
    need_input_grad : bool
        Whether backprop must return the gradient with respect to the input.
    check_inputs : bool
        Check that input and weights share a library and device (the training loop
        turns this off: it validated the data once).
    ops : Ops, optional
        The library's operations (:class:`~portnet.backends.ops.Ops`). When
        ``ops.inplace``, layers may update their own fresh outputs in place, and the
        gradient their backprop receives: in training every backprop returns a
        fresh array (or a view of one) that only the layer before it reads, so a
        backprop consumes its ``dy``. Never their input ``x`` or their parameters
        (``tests/test_inplace.py``). By default the rebinding Ops of ``xp``; the
        training step passes its optimizer's (:meth:`~portnet.Optimizer.ops_for`).
    test_time_flip : bool
        Inference only: this is test-time flipping's flipped pass
        (``Model(test_time_flip=True)``), so :class:`~portnet.RandomFlip` layers
        flip every image.
    test_time_shift : tuple of int
        Inference only: the ``(rows, columns)`` by which this test-time view moves
        the images (``Model(test_time_shift=...)``): :class:`~portnet.RandomShift`
        layers move every image by it.
    shard : BatchShard or None
        Training only: this pass runs one row shard of the batch, beside the others
        (:mod:`portnet.training.shards`). A layer whose maths spans the batch sums
        over it with :meth:`batch_sum` and :meth:`batch_rows`.
    """

    xp: Any
    training: bool = False
    random: Any = None
    need_input_grad: bool = True
    check_inputs: bool = True
    ops: Ops | None = None
    test_time_flip: bool = False
    test_time_shift: tuple[int, int] = (0, 0)
    shard: Any = None

    def __post_init__(self) -> None:
        if self.ops is None:
            self.ops = ops_for(self.xp).with_inplace(False)

    def batch_sum(self, *sums: Any) -> tuple[Any, ...]:
        """Sums over this pass's rows, as sums over the whole batch: the same arrays,
        unless the pass runs one shard of the batch (then added over the shards)."""
        return sums if self.shard is None else self.shard.all_sum(sums)

    def batch_rows(self, rows: int) -> int:
        """Rows of the whole batch, given this pass's ``rows``."""
        return rows if self.shard is None else self.shard.total_rows


class ShapeMismatch(ConfigError):
    """A layer cannot take one sample's input shape; ``takes`` says what it takes.

    :func:`portnet.training.validation.check_chain` turns it into the message naming both layers.
    """

    def __init__(self, takes: str) -> None:
        super().__init__(takes)
        self.takes = takes


class RandomStream:
    """A backend's native random generator, seeded once, for per-step randomness."""

    def __init__(self, backend, seed: int, generator: Any = None) -> None:
        self.backend = backend
        self.generator = backend.generator(seed) if generator is None else generator

    def uniform(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self.backend.uniform(self.generator, shape, dtype)


class Layer:
    """Base class: stateless configuration plus forward/backprop maths."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def init(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Create this layer's parameters on the host, in float64 (none by default)."""
        return {}

    def forward(self, params: dict[str, Any], x: Any, ctx: Context) -> tuple[Any, Backprop]:
        raise NotImplementedError

    def forward_with_state(
        self, params: dict[str, Any], x: Any, ctx: Context
    ) -> tuple[Any, Backprop, dict[str, Any]]:
        """:meth:`forward`, plus the new values of this layer's :attr:`state_names`.

        Layers with non-trainable state (batch-norm running statistics) return their
        updates here, in training mode, instead of writing them anywhere; the training
        step stores them after the optimizer step. Stateless layers return ``{}``.
        """
        y, backprop = self.forward(params, x, ctx)
        return y, backprop, {}

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serialisable, used by save/load."""
        return {}

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """One sample's output shape for one sample's input shape ``in_shape``.

        Raises :class:`ShapeMismatch` where the layer cannot take ``in_shape``.
        ``None`` (the default): not declared, so the network check finds it by a
        forward pass on zeros (:func:`portnet.training.validation.check_chain`).
        """
        return None

    def inference_workspace(self, in_shape: tuple[int, ...]) -> int:
        """Elements per sample that an inference forward allocates besides its input
        and output (``in_shape`` is one sample's shape). The evaluation batch size is
        chosen from it (:mod:`portnet.training.budget`); 0 for layers that make only their output.
        """
        return 0

    @property
    def weight_names(self) -> tuple[str, ...]:
        """Parameters that regularizers and weight decay act on (not biases)."""
        return ()

    @property
    def state_names(self) -> tuple[str, ...]:
        """Non-trainable entries of the parameters (running statistics): saved and
        loaded like weights, never touched by the optimizer."""
        return ()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def layer_classes() -> dict[str, type[Layer]]:
    """The public layer classes by name: what a ``{"class": name}`` spec may name."""
    return {name: cls for name, cls in _REGISTRY.items() if not name.startswith("_")}


def layer_from_config(spec: dict[str, Any]) -> Layer:
    """Rebuild a layer from ``{"class": name, "config": {...}}``."""
    try:
        cls = _REGISTRY[spec["class"]]
    except KeyError:
        raise ConfigError(f"unknown layer class {spec.get('class')!r}") from None
    return cls(**spec.get("config", {}))


_INITS = ("he", "glorot", "normal", "zeros")


class Dense(Layer):
    r"""Fully connected layer :math:`y = x W + b`.

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths; ``W`` has shape ``(n_in, n_out)``.
    init : {"he", "glorot", "normal", "zeros"}
        Weight initialisation: He normal :math:`\mathcal N(0, 2/n_{in})` (for ReLU),
        Glorot uniform :math:`\mathcal U(\pm\sqrt{6/(n_{in}+n_{out})})` (for tanh and
        sigmoid), normal :math:`\mathcal N(0, \sigma^2)` with ``std``, or zeros.
    bias : bool
        Whether to add the bias ``b`` (initialised to zero).
    std : float
        Standard deviation for ``init="normal"``.

    Notes
    -----
    Backprop: :math:`\partial W = x^\top \delta`, :math:`\partial b = \sum_n \delta_n`,
    :math:`\partial x = \delta W^\top`.
    """

    def __init__(
        self, n_in: int, n_out: int, init: str = "he", bias: bool = True, std: float = 0.01
    ):
        if int(n_in) < 1 or int(n_out) < 1:
            raise ConfigError(f"Dense widths must be positive, got n_in={n_in}, n_out={n_out}")
        if init not in _INITS:
            raise ConfigError(f"unknown init {init!r}; choose one of {', '.join(_INITS)}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.init_scheme, self.bias, self.std = init, bool(bias), float(std)

    def init(self, rng):
        shape = (self.n_in, self.n_out)
        if self.init_scheme == "he":
            W = rng.normal(0.0, math.sqrt(2.0 / self.n_in), size=shape)
        elif self.init_scheme == "glorot":
            limit = math.sqrt(6.0 / (self.n_in + self.n_out))
            W = rng.uniform(-limit, limit, size=shape)
        elif self.init_scheme == "normal":
            W = rng.normal(0.0, self.std, size=shape)
        else:
            W = np.zeros(shape)
        params = {"W": W}
        if self.bias:
            params["b"] = np.zeros(self.n_out)
        return params

    @property
    def weight_names(self):
        return ("W",)

    def output_shape(self, in_shape):
        if tuple(in_shape) != (self.n_in,):
            flat = "" if len(in_shape) == 1 else " as flat rows (put a Flatten before it)"
            raise ShapeMismatch(f"{self.n_in} inputs{flat}")
        return (self.n_out,)

    def forward(self, params, x, ctx):
        xp = ctx.xp
        W = params["W"]
        y = xp.matmul(x, W)
        if self.bias:
            y = ctx.ops.add(y, params["b"])  # y is fresh: no extra array
        need_dx = ctx.need_input_grad

        def backprop(dy):
            grads = {"W": xp.matmul(xp.matrix_transpose(x), dy)}
            if self.bias:
                grads["b"] = xp.sum(dy, axis=0)
            dx = xp.matmul(dy, xp.matrix_transpose(W)) if need_dx else None
            return dx, grads

        return y, backprop

    def get_config(self):
        return {
            "n_in": self.n_in,
            "n_out": self.n_out,
            "init": self.init_scheme,
            "bias": self.bias,
            "std": self.std,
        }


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability ``rate`` and
    scale the survivors by ``1 / (1 - rate)``; in inference, the identity.

    The mask comes from the backend's native generator (the standard has no RNG).
    """

    def __init__(self, rate: float = 0.5):
        if not 0.0 <= float(rate) < 1.0:
            raise ConfigError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)

    def forward(self, params, x, ctx):
        xp = ctx.xp
        if not ctx.training or self.rate == 0.0:
            return x, lambda dy: (dy, {})
        if ctx.random is None:
            raise ConfigError("Dropout in training mode needs ctx.random (a RandomStream)")
        keep = ctx.random.uniform(tuple(x.shape), x.dtype) >= self.rate
        # The mask already holds the 1/(1-rate) scale: one multiply forward and back.
        mask = xp.astype(keep, x.dtype) * (1.0 / (1.0 - self.rate))
        y = x * mask

        def backprop(dy):
            return dy * mask, {}

        return y, backprop

    def get_config(self):
        return {"rate": self.rate}


def _add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)`` (Python 3.11+), kept in ``__notes__`` on 3.10 as well."""
    notes = getattr(exc, "__notes__", None)
    if notes is None:
        try:
            exc.__notes__ = notes = []
        except AttributeError:
            return
    if note not in notes:
        notes.append(note)


def _first_with_params(params) -> int:
    """Index of the first layer that holds parameters (``len(params)`` if none does)."""
    return next((i for i, p in enumerate(params) if p), len(params))


class Sequential(Layer):
    """A chain of layers of any depth; itself a layer, so chains nest.

    Parameters are a list with one dict per layer.
    """

    def __init__(self, layers: list[Layer]):
        flat: list[Layer] = []
        for layer in layers:
            if isinstance(layer, dict):  # a saved {"class", "config"} spec
                layer = layer_from_config(layer)
            if isinstance(layer, Sequential):
                # Nested chains are flattened so parameters stay one dict per layer.
                flat.extend(layer.layers)
            elif isinstance(layer, Layer):
                flat.append(layer)
            else:
                raise ConfigError(f"Sequential takes Layer objects, got {type(layer).__name__}")
        if not flat:
            raise ConfigError("Sequential needs at least one layer")
        self.layers = flat

    def init(self, rng):
        return [layer.init(rng) for layer in self.layers]

    @property
    def n_in(self) -> int | None:
        """Input width of the first layer that declares one."""
        for layer in self.layers:
            if hasattr(layer, "n_in"):
                return layer.n_in
        return None

    @property
    def n_out(self) -> int | None:
        for layer in reversed(self.layers):
            if hasattr(layer, "n_out"):
                return layer.n_out
        return None

    def forward(self, params, x, ctx):
        y, backprop, _ = self.forward_with_state(params, x, ctx)
        return y, backprop

    def forward_with_state(self, params, x, ctx):
        """Forward through every layer; the state updates come back as one dict per layer."""
        # One check at the entry: data and weights must share a library and a device.
        if ctx.check_inputs:
            first = next((v for layer in params for v in layer.values()), None)
            namespace_of(x, first)
        # Gradients flow back only as far as the first layer with parameters
        # (``stop``): when the caller needs no input gradient, the parameter-free
        # layers before it (Reshape, RandomFlip, RandomShift) need none either, and
        # that layer need not fold one back (for a first convolution, a col2im per
        # step). Every layer after it must return its input gradient. That context
        # is made once per forward, not once per layer: the step is Python-bound at
        # small batch sizes.
        stop = 0 if ctx.need_input_grad else _first_with_params(params)
        deeper = ctx if ctx.need_input_grad else dataclasses.replace(ctx, need_input_grad=True)
        backprops, updates = [], []
        for i, (layer, p) in enumerate(zip(self.layers, params, strict=True)):
            try:
                x, back, new_state = layer.forward_with_state(p, x, ctx if i <= stop else deeper)
            except Exception as exc:
                # Say which layer failed (a tracing compiler reports only the operation).
                _add_note(exc, f"layer {i}, {type(layer).__name__}")
                raise
            backprops.append(back)
            updates.append(new_state)

        def backprop(dy):
            grads = [{} for _ in backprops]  # parameter-free layers below stop: none
            for i in range(len(backprops) - 1, stop - 1, -1):
                dy, grads[i] = backprops[i](dy)
            return (dy if stop == 0 else None), grads

        return x, backprop, updates

    def get_config(self):
        return {
            "layers": [{"class": type(l).__name__, "config": l.get_config()} for l in self.layers]
        }

    def __repr__(self):
        inner = ",\n    ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n    {inner},\n])"
