"""Evaluation and prediction batch sizes from a memory budget.

A fixed 4,096 images suits an MLP but not a CNN, whose first convolution's columns
take 1.8 GB at that batch. So the batch follows the layers: one inference forward on
two zero samples gives each layer's shapes, plus what it allocates besides
(:meth:`portnet.Layer.inference_workspace`); the largest layer's bytes per sample,
doubled for elementwise temporaries, divide the budget (capped at
:data:`MAX_INFERENCE_BATCH`).
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from ..config import check_number
from ..io.summary import summarize

#: Default bytes an evaluation or prediction batch may use on the device: small
#: beside a laptop's memory or an 8 GB GPU, and past the point where bigger
#: batches stop getting faster for the networks here.
DEFAULT_MEMORY_BUDGET = 256 * 2**20
#: No gain beyond this batch size: the per-batch overhead is already negligible.
MAX_INFERENCE_BATCH = 4096
#: Headroom for the short-lived temporaries of elementwise maths inside a layer.
TEMPORARIES_FACTOR = 2

# Peak bytes per sample by network: its layers fix every shape, so the figure for
# a (sample shape, dtype) holds for the network's life, whatever its weights.
_BYTES_PER_SAMPLE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inference_bytes_per_sample(model, sample_shape: tuple[int, ...]) -> int:
    """Peak bytes one sample costs in an inference forward of ``model``.

    The largest, over the layers, of (input + output + workspace) elements, times
    the dtype's size and :data:`TEMPORARIES_FACTOR`.
    """
    summary = summarize(model, batch_size=1, input_shape=tuple(sample_shape))
    in_shape, peak = tuple(sample_shape), 0
    for layer, row in zip(model.network.layers, summary.rows, strict=True):
        elements = (
            math.prod(in_shape) + math.prod(row.output_shape) + layer.inference_workspace(in_shape)
        )
        peak = max(peak, elements)
        in_shape = row.output_shape
    return peak * summary.itemsize * TEMPORARIES_FACTOR


def inference_batch_size(
    model, sample_shape: tuple[int, ...], memory_budget: int | None = None
) -> int:
    """The evaluation/prediction batch size for ``model`` within ``memory_budget`` bytes.

    Parameters
    ----------
    model : portnet.Model
    sample_shape : tuple of int
        One sample's shape (``X.shape[1:]``).
    memory_budget : int, optional
        Bytes a batch may use; ``model.memory_budget`` by default.

    Returns
    -------
    int
        Between 1 and :data:`MAX_INFERENCE_BATCH`.
    """
    budget = model.memory_budget if memory_budget is None else memory_budget
    budget = check_number("memory_budget", budget, low=1, integer=True)
    key = (tuple(sample_shape), model.dtype_name)
    cache = _BYTES_PER_SAMPLE.setdefault(model.network, {})
    if key not in cache:  # one probe per network, sample shape and dtype
        cache[key] = inference_bytes_per_sample(model, sample_shape)
    return int(np.clip(budget // cache[key], 1, MAX_INFERENCE_BATCH))


def training_batch_size(model, sample_shape: tuple[int, ...]) -> int:
    """Samples a full-batch objective may take at once within ``model.memory_budget``.

    Training keeps every layer's output for backprop and makes gradients of the same
    sizes, so a sample costs its input and all layer outputs, times
    :data:`TEMPORARIES_FACTOR`. Full-batch L-BFGS sums its loss and gradient over
    chunks of this many samples.
    """
    summary = summarize(model, batch_size=1, input_shape=tuple(sample_shape))
    elements = math.prod(sample_shape) + summary.activation_bytes // summary.itemsize
    return max(1, model.memory_budget // (elements * summary.itemsize * TEMPORARIES_FACTOR))
