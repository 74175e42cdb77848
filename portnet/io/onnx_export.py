r"""ONNX export: the inference forward, recorded as a graph by running it on ndonnx arrays.

`ndonnx <https://ndonnx.readthedocs.io>`_ implements the Array API standard with
lazy arrays: every operation on them adds a node to an ONNX graph instead of
computing. portnet's layers are written against the standard, so the very
forward pass that :meth:`~portnet.Model.predict_proba` runs, with the same
inference context (``training=False``), records itself; no layer has ONNX code.

- The input is an ndonnx *argument* of shape ``("N", n_in)``: the batch size is
  the symbol ``N``, so the file takes any number of rows. Layers get their batch
  sizes from their input (``reshape(x, (-1, ...))``, ``full_like``), never as a
  number.
- The parameters become constants of the graph (BatchNorm's running statistics
  included), in the model's dtype.
- Dropout, RandomFlip and RandomShift are the identity in inference and record
  nothing: the graph has no random operator.
- The output is what :meth:`~portnet.Model.predict_proba` gives (softmax or
  sigmoid of the logits, as the loss says; the outputs themselves for a
  regression loss), or with ``output="logits"`` the logits of
  :meth:`~portnet.Model.predict`'s arg-max.

Needs the ``onnx`` extra: ``pip install "portnet[onnx]"`` (ndonnx, and onnxruntime
to run the file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .model_file import atomic_write_bytes

#: What the exported graph may return.
OUTPUTS = ("probabilities", "logits")
#: Names in the graph: the input, and the symbol of its batch dimension.
INPUT_NAME, BATCH_DIM = "x", "N"
_EXTRA = 'ONNX export needs ndonnx and onnxruntime, the onnx extra: pip install "portnet[onnx]"'


def _require(module: str) -> Any:
    """Import an optional dependency of the ``onnx`` extra, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{_EXTRA} (import {module} failed: {exc})") from exc


def check_installed() -> None:
    """Raise the :class:`ImportError` of a missing ``onnx`` extra now, before other work."""
    _require("ndonnx")
    _require("onnxruntime")


def to_onnx(model: Any, output: str = "probabilities", input_shape: tuple[int, ...] | None = None):
    r"""Record ``model``'s inference forward as an ONNX model.

    Parameters
    ----------
    model : Model
        A portnet model on any backend; its weights are read once to the host.
    output : {"probabilities", "logits"}
        ``"probabilities"`` (default): what :meth:`~portnet.Model.predict_proba`
        returns, :math:`\mathrm{softmax}(z)` for the softmax cross-entropy,
        :math:`\sigma(z)` for the binary one, :math:`z` for regression.
        ``"logits"``: the network's outputs :math:`z` before that activation.
    input_shape : tuple of int, optional
        One sample's shape. By default ``(model.n_in,)``: the flat rows that
        :meth:`~portnet.Model.fit` and :meth:`~portnet.Model.predict` take. Needed
        only when no layer declares an input width.

    Returns
    -------
    onnx.ModelProto
        Input ``"x"`` of shape ``(N, *input_shape)`` and the model's dtype, with
        ``N`` symbolic; one output named after ``output``, of shape ``(N, ...)``.

    Raises
    ------
    ImportError
        ndonnx is missing; the message says ``pip install "portnet[onnx]"``.
    ConfigError
        An unknown ``output``, or no input shape to be found.
    """
    if output not in OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    if input_shape is None:
        if model.n_in is None:
            raise ConfigError(
                "the model's first layers declare no input width: give input_shape, one "
                "sample's shape, e.g. (1, 28, 28)"
            )
        input_shape = (model.n_in,)
    ndx = _require("ndonnx")
    from .. import __version__

    # Host copies, then graph constants.
    weights = model.get_weights()
    params = [{key: ndx.asarray(value) for key, value in layer.items()} for layer in weights]
    x = ndx.argument(
        shape=(BATCH_DIM, *(int(s) for s in input_shape)), dtype=getattr(ndx, model.dtype_name)
    )
    # What Trainer.outputs runs on each chunk for predict and predict_proba: inference
    # mode (Dropout and RandomFlip return their input; with test_time_flip a second
    # pass flips the images), no randomness.
    logits = model.trainer.inference_outputs(params, x, ndx)
    result = model.loss.probabilities(ndx, logits) if output == "probabilities" else logits
    proto = ndx.build({INPUT_NAME: x}, {output: result})
    # ndonnx leaves the output's batch dimension unnamed; it is the input's N.
    proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    proto.producer_name, proto.producer_version = "portnet", __version__
    proto.doc_string = (
        f"portnet {type(model.loss).__name__} model: {output} of shape (N, ...) for input "
        f"{INPUT_NAME!r} of shape (N, {', '.join(str(s) for s in input_shape)}), "
        f"{model.dtype_name}."
    )
    return proto


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    output: str = "probabilities",
    input_shape: tuple[int, ...] | None = None,
) -> Path:
    """Write :func:`to_onnx`'s model to ``path`` atomically (a temporary file, then a
    rename) and return the path. Parameters as in :func:`to_onnx`."""
    data = to_onnx(model, output, input_shape).SerializeToString()
    path = Path(path)
    atomic_write_bytes(path, lambda handle: handle.write(data))
    return path


def run_onnx(model: Any, X: Any) -> np.ndarray:
    """Run an exported model (a path, bytes or an ``onnx.ModelProto``) on host data
    ``X`` with onnxruntime on the CPU; returns its output as a NumPy array."""
    ort = _require("onnxruntime")
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif not isinstance(model, bytes):
        model = os.fspath(model)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    dtype = np.float64 if session.get_inputs()[0].type == "tensor(double)" else np.float32
    return session.run(None, {name: np.ascontiguousarray(X, dtype=dtype)})[0]
