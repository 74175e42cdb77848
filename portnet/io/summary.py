"""``Model.summary()``: layers, output shapes, parameter counts and memory, as a table.

The shapes come from running the network once, in inference mode, on a batch of two
zero samples on the model's own device (two, so that no layer can mistake the batch
axis for a feature axis); that is cheap and exact for every layer, with no per-layer
shape code. Memory is counted in the model's dtype:

* parameters: every array the network holds (weights and batch-norm statistics);
* activations: the outputs of every layer for ``batch_size`` samples, which training
  keeps for backprop, so this is the bulk of a training step's memory besides the
  optimizer's buffers (Adam keeps two per parameter, momentum one).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..layers.base import Context


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One layer of a summary."""

    index: int
    name: str
    output_shape: tuple[int, ...]  # per sample: without the batch axis
    n_params: int
    n_trainable: int


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """What :meth:`portnet.Model.summary` reports; ``str()`` gives the table."""

    rows: list[LayerRow]
    input_shape: tuple[int, ...]
    batch_size: int
    itemsize: int
    dtype: str
    backend: str

    @property
    def n_params(self) -> int:
        return sum(r.n_params for r in self.rows)

    @property
    def n_trainable(self) -> int:
        return sum(r.n_trainable for r in self.rows)

    @property
    def param_bytes(self) -> int:
        return self.n_params * self.itemsize

    @property
    def activation_bytes(self) -> int:
        """Bytes of every layer's output for ``batch_size`` samples."""
        per_sample = sum(math.prod(r.output_shape) for r in self.rows)
        return per_sample * self.batch_size * self.itemsize

    def __str__(self) -> str:
        header = ("#", "layer", "output shape", "parameters")
        lines = [header] + [
            (
                str(r.index),
                r.name,
                str((self.batch_size, *r.output_shape)),
                f"{r.n_params:,}" + _state_note(r),
            )
            for r in self.rows
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(4)]

        def fmt(line):
            cells = [line[0].rjust(widths[0]), line[1].ljust(widths[1])]
            cells += [line[2].ljust(widths[2]), line[3].rjust(widths[3])]
            return "  ".join(cells)

        rule = "-" * len(fmt(header))
        return "\n".join(
            [
                f"Model on {self.backend} ({self.dtype}), "
                f"input {(self.batch_size, *self.input_shape)}",
                rule,
                fmt(header),
                rule,
                *(fmt(line) for line in lines[1:]),
                rule,
                f"parameters: {self.n_params:,} ({self.n_trainable:,} trainable), "
                f"{_bytes(self.param_bytes)}",
                f"activations at batch {self.batch_size}: {_bytes(self.activation_bytes)} "
                "(every layer's output, kept for backprop)",
            ]
        )

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython shows the table
        printer.text(str(self))


def summarize(model, batch_size: int = 128, input_shape: tuple[int, ...] | None = None):
    """The :class:`ModelSummary` of ``model`` (see :meth:`portnet.Model.summary`)."""
    if input_shape is None:
        if model.n_in is None:
            raise ConfigError(
                "this network does not say its input width (its first layer has none): "
                "pass input_shape, e.g. summary(input_shape=(784,))."
            )
        input_shape = (int(model.n_in),)
    backend, xp = model.backend, model.backend.xp
    # Made on the device, not copied from the host: fit probes the shapes for its
    # evaluation batch size, and its transfer budget has no room for a copy.
    x = xp.zeros((2, *input_shape), dtype=model.dtype, device=backend.device)
    ctx = Context(xp=xp, training=False, need_input_grad=False)
    rows = []
    for index, (layer, params) in enumerate(zip(model.network.layers, model.params, strict=True)):
        x, _ = layer.forward(params, x, ctx)
        n_params = sum(math.prod(p.shape) for p in params.values())
        n_state = sum(math.prod(params[k].shape) for k in layer.state_names if k in params)
        rows.append(
            LayerRow(index, type(layer).__name__, tuple(x.shape[1:]), n_params, n_params - n_state)
        )
    return ModelSummary(
        rows=rows,
        input_shape=tuple(input_shape),
        batch_size=int(batch_size),
        itemsize=int(np.dtype(model.dtype_name).itemsize),
        dtype=model.dtype_name,
        backend=f"{backend.name} {backend.device_name}",
    )


def _state_note(row: LayerRow) -> str:
    n_state = row.n_params - row.n_trainable
    return f" ({n_state:,} state)" if n_state else ""


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def summary_dict(summary: ModelSummary) -> dict[str, Any]:
    """The summary as plain data (for JSON run records)."""
    return {
        "layers": [dataclasses.asdict(r) for r in summary.rows],
        "n_params": summary.n_params,
        "n_trainable": summary.n_trainable,
        "param_bytes": summary.param_bytes,
        "activation_bytes": summary.activation_bytes,
        "batch_size": summary.batch_size,
    }
