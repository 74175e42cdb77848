"""The friendly façade: build a model, ``fit``, ``evaluate``, ``predict``, ``save``, ``load``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._array import Tree
from .backends import Backend, get_backend, on_backend_device
from .config import check_number
from .errors import ConfigError, InputError
from .io.checkpoint import restore_checkpoint
from .io.model_file import load_model, save_model
from .layers.activations import Identity
from .layers.base import Layer, Sequential
from .training.budget import DEFAULT_MEMORY_BUDGET, inference_batch_size
from .training.callbacks import Callback, History, ProgressLogger
from .training.core import Trainer, TrainState
from .training.losses import Loss, get_loss
from .training.optim import Optimizer, get_optimizer
from .training.regularizers import Regularizer, get_regularizers
from .training.sample_weights import prepare_sample_weights
from .training.train import fit_loop
from .training.validation import (
    check_chain,
    check_weight_structure,
    prepare_features,
    prepare_targets,
    split_validation,
    weights_to_device,
)


class Model:
    """A network with its parameters on one backend, plus loss, optimizer and regularizers.

    Parameters
    ----------
    layers : list of Layer or Sequential
        The network, e.g. ``[Dense(784, 128), Tanh(), Dense(128, 10)]``. A last
        ``Softmax`` (``Sigmoid``) layer with the softmax (binary) cross-entropy loss
        is fused into the loss for training and applied by :meth:`predict_proba`.
    loss : str or Loss
        ``"softmax_cross_entropy"`` (default), ``"sigmoid_binary_cross_entropy"`` or ``"mse"``.
    optimizer : str or Optimizer
        An :mod:`portnet.training.optim` optimizer or its name (then built with ``lr``).
    lr : float
        Learning rate when ``optimizer`` is a name.
    l1, l2 : float
        L1 / L2 penalty strengths on the weights (S1's forms).
    regularizers : list of Regularizer, optional
        Extra penalties.
    backend : str or Backend, optional
        Where the parameters live; by default :func:`portnet.get_backend` decides
        (``$PORTNET_BACKEND``, else NumPy).
    device : str, optional
        The backend's device.
    dtype : str
        ``"float32"`` (default) or ``"float64"``.
    seed : int
        Seeds the weight initialisation (on the host, so every backend starts from
        the same weights), the shuffling and dropout.
    memory_budget : int
        Bytes an evaluation or prediction batch may use (256 MiB by default); the
        batch size follows from the layers' sizes (:mod:`portnet.training.budget`).
    test_time_flip : bool
        Predict (and evaluate, validation included) with the mean of the class
        probabilities for each image and for its flipped image; the network's
        :class:`~portnet.RandomFlip` layer flips the images, so the network
        needs one. Costs a second inference pass; a model trained with random flips
        gains a few tenths of a percent of accuracy on Fashion-MNIST.
    test_time_shift : int
        With ``s > 0``, predict and evaluate with the mean of the class
        probabilities for each image and for it moved by ``s`` pixels up, down,
        left and right (with :attr:`test_time_flip`, each flipped too: ten
        passes). The network's :class:`~portnet.RandomShift` layer moves the
        images, so the network needs one. The validation scores of each epoch in
        :meth:`fit` leave the shifts out, to keep epochs short. 0 (none) by default.

    Examples
    --------
    >>> import portnet as pn
    >>> model = pn.Model([pn.Dense(784, 128), pn.ReLU(), pn.Dense(128, 10)],
    ...                  optimizer=pn.Adam(1e-3), backend="numpy")
    >>> history = model.fit(X_train, y_train, epochs=5, validation_split=0.1)
    >>> model.evaluate(X_test, y_test)
    {'loss': ..., 'accuracy': ...}
    """

    def __init__(
        self,
        layers: Sequence[Layer] | Sequential,
        loss: str | Loss = "softmax_cross_entropy",
        optimizer: str | Optimizer = "adam",
        *,
        lr: float = 1e-3,
        l1: float = 0.0,
        l2: float = 0.0,
        regularizers: Sequence[Regularizer] = (),
        backend: str | Backend | None = None,
        device: str | None = None,
        dtype: str = "float32",
        seed: int = 0,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        test_time_flip: bool = False,
        test_time_shift: int = 0,
    ):
        self.network = layers if isinstance(layers, Sequential) else Sequential(list(layers))
        self.loss = get_loss(loss)
        if isinstance(optimizer, str):
            optimizer = get_optimizer(optimizer, lr=lr)
        elif not isinstance(optimizer, Optimizer):
            raise ConfigError(
                f"optimizer must be an optimizer name or a portnet Optimizer, got {optimizer!r}"
            )
        self.backend = backend if isinstance(backend, Backend) else get_backend(backend, device)
        self.dtype_name = str(dtype)
        self.dtype = self.backend.dtype(dtype)
        self.seed = check_number("seed", seed, low=0, integer=True)
        self.memory_budget = check_number("memory_budget", memory_budget, low=1, integer=True)
        self.regularizers = list(regularizers) + get_regularizers(l1, l2)
        first = self.network.layers[0]
        # Sample shapes whose way through the network is checked (check_chain).
        self._checked_shapes: set[tuple[int, ...]] = set()
        if hasattr(first, "n_in"):  # else checked against the data, at fit
            check_chain(self.network.layers, (first.n_in,))
            self._checked_shapes.add((first.n_in,))
        test_time_shift = check_number("test_time_shift", test_time_shift, low=0, integer=True)
        if test_time_flip:
            _check_test_time_view(self.network, self.loss, "test_time_flip")
        if test_time_shift:
            _check_test_time_view(self.network, self.loss, "test_time_shift")
        self.trainer = Trainer(
            _trained_network(self.network, self.loss),
            self.loss,
            optimizer,
            self.regularizers,
            test_time_flip=bool(test_time_flip),
            test_time_shift=int(test_time_shift),
        )
        host = self.network.init(np.random.default_rng(self.seed))
        with self.backend.device_scope():
            params = weights_to_device(self.backend, self.dtype, host)
            self.state: TrainState = self.trainer.init_state(params, seed=self.seed)
        self.stop_training = False

    # -- parameters -------------------------------------------------------------
    @property
    def optimizer(self) -> Optimizer:
        return self.trainer.optimizer

    @property
    def optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state: step count ``"t"`` and per-parameter ``"slots"``
        (momentum, Adam moments); ``state.opt_state``.

        Frozen entries such as batch-norm running statistics have no slot. Reset by
        :meth:`set_weights`.
        """
        return self.state.opt_state

    @property
    def params(self) -> Tree:
        """The network's parameters on the device, one dict per layer (``state.params``)."""
        return self.state.params

    @property
    def test_time_flip(self) -> bool:
        """Whether predictions average each image's and its flipped image's (the trainer's)."""
        return self.trainer.test_time_flip

    @property
    def test_time_shift(self) -> int:
        """Pixels by which predictions also move each image, 0 for none (the trainer's)."""
        return self.trainer.test_time_shift

    @property
    def epochs_trained(self) -> int:
        """Epochs trained so far, over every :meth:`fit` call (``state.epoch``)."""
        return self.state.epoch

    @property
    def n_in(self) -> int | None:
        return self.network.n_in

    @property
    def n_out(self) -> int | None:
        return self.network.n_out

    @on_backend_device
    def get_weights(self) -> list[dict[str, np.ndarray]]:
        """The parameters as NumPy arrays (one dict per layer)."""
        return [{k: self.backend.to_numpy(v) for k, v in layer.items()} for layer in self.params]

    @on_backend_device
    def set_weights(self, weights: list[dict[str, Any]]) -> None:
        """Replace the parameters with arrays of the same structure and shapes.

        The arrays may be NumPy arrays or arrays of any backend (they are copied).
        The optimizer state starts afresh; the epoch count and seed are kept.
        """
        check_weight_structure(self.params, weights)
        params = weights_to_device(self.backend, self.dtype, weights)
        self.state = self.trainer.init_state(params, seed=self.state.seed, epoch=self.state.epoch)

    # -- data -----------------------------------------------------------------
    def _prepare_X(self, X: Any, name: str = "X"):
        X_dev = prepare_features(self.backend, self.dtype, X, None, self._probe(), name)
        sample_shape = tuple(X_dev.shape[1:])
        if sample_shape not in self._checked_shapes:  # the first layer takes the data?
            check_chain(self.network.layers, sample_shape, data=name)
            self._checked_shapes.add(sample_shape)
        return X_dev

    def _prepare_y(self, y: Any, n_samples: int, name: str = "y"):
        return prepare_targets(
            self.backend, self.dtype, self.loss, y, self.n_out, n_samples, self._probe(), name
        )

    def _probe(self) -> Any:
        """A parameter array: data given on the device must share its library and device."""
        return next((v for p in self.state.params for v in p.values()), None)

    @on_backend_device
    def prepare_data(self, X: Any, y: Any | None = None, name: str = "X") -> Any:
        """Validate data once and place it on the model's device, as :meth:`fit` does.

        Returns the device features, or ``(features, targets)`` when ``y`` is given.
        Passing the result to :meth:`fit` or :meth:`evaluate` costs one cheap check
        instead of a second transfer.
        """
        X_dev = self._prepare_X(X, name)
        if y is None:
            return X_dev
        return X_dev, self._prepare_y(y, X_dev.shape[0], "y" if name == "X" else f"y_{name}")

    # -- training -------------------------------------------------------------
    @on_backend_device
    def fit(
        self,
        X: Any,
        y: Any,
        *,
        epochs: int = 10,
        batch_size: int = 128,
        validation_data: tuple[Any, Any] | None = None,
        validation_split: float | None = None,
        patience: int | None = None,
        restore_best: bool = True,
        callbacks: Sequence[Callback] = (),
        verbose: int = 0,
        shuffle: bool = True,
        seed: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
        compile: bool = False,
        sample_weight: Any = None,
        class_weight: dict[int, float] | str | None = None,
    ) -> History:
        """Train with minibatch gradient descent; returns the :class:`History`.

        Parameters
        ----------
        X, y : array_like
            Features ``(N, n_in)`` and targets (labels ``(N,)``, one-hot or 0/1),
            NumPy or the backend's arrays; validated and moved to the device once.
        validation_data : (X_val, y_val), optional
        validation_split : float, optional
            Hold out this fraction of ``X`` (its last rows, as Keras does).
        patience : int, optional
            Stop after this many epochs without a lower validation (else training) loss,
            restoring the best epoch's weights unless ``restore_best=False``.
        verbose : int
            1: a line per epoch, and a progress bar in a terminal.
        seed : int, optional
            Replaces ``state.seed``: with the epoch, it fixes shuffling and dropout.
        checkpoint : path, optional
            Written atomically after every epoch. With ``resume``, an existing one is
            loaded and only the epochs left run, as an uninterrupted run would.
        compile : bool
            Compile the step with ``jax.jit`` (:mod:`portnet.training.compiled`).
        sample_weight : array_like, optional
            A non-negative weight per sample: a batch's loss is sum(w * loss) / sum(w).
        class_weight : dict or "balanced", optional
            ``{class: weight}``, times ``sample_weight``; validation stays unweighted.

        A NaN or infinite loss stops training with a :class:`~portnet.DivergenceWarning`,
        keeping the best weights seen (the check reads the epoch's sums: no extra sync).
        """
        epochs = check_number("epochs", epochs, low=1, integer=True)
        batch_size = check_number("batch_size", batch_size, low=1, integer=True)
        if patience is not None:
            patience = check_number("patience", patience, low=1, integer=True)
        X_dev, y_dev, w_dev, validation = self._training_data(
            X, y, validation_data, validation_split, sample_weight, class_weight
        )
        if seed is not None:
            self.state = self.state.replace(seed=check_number("seed", seed, low=0, integer=True))
        progress = restore_checkpoint(self, checkpoint) if resume and _exists(checkpoint) else None
        callbacks = list(callbacks)
        if verbose:
            callbacks.insert(0, ProgressLogger(progress.epochs if progress else epochs))
        return fit_loop(
            self,
            X_dev,
            y_dev,
            epochs=epochs,
            batch_size=batch_size,
            validation=validation,
            patience=patience,
            restore_best=restore_best,
            callbacks=callbacks,
            shuffle=shuffle,
            checkpoint=checkpoint,
            progress=progress,
            compile=compile,
            sample_weight=w_dev,
        )

    def _training_data(self, X, y, validation_data, validation_split, sample_weight, class_weight):
        """``(X, y, sample_weight, validation)`` on the device, validated once."""
        X_dev, y_dev = self.prepare_data(X, y)
        w_dev = prepare_sample_weights(
            self.backend, self.dtype, self.loss, y_dev, self.n_out, sample_weight, class_weight
        )
        if validation_data is not None and validation_split is not None:
            raise InputError("give validation_data or validation_split, not both")
        validation = None
        if validation_data is not None:
            validation = self.prepare_data(*validation_data, name="X_val")
        elif validation_split is not None:
            fraction = check_number(
                "validation_split", validation_split, low=0, high=1, low_open=True, high_open=True
            )
            (X_dev, y_dev, w_dev), held_out = split_validation([X_dev, y_dev, w_dev], fraction)
            validation = tuple(held_out[:2])
        return X_dev, y_dev, w_dev, validation

    # -- inference --------------------------------------------------------------
    def _outputs(self, X: Any, batch_size: int | None = None):
        """Network outputs before the fused activation (logits), on the device."""
        X_dev = self._prepare_X(X)
        batch_size = batch_size or inference_batch_size(self, X_dev.shape[1:])
        return self.trainer.outputs(self.state.params, X_dev, batch_size)

    @on_backend_device
    def predict_proba(self, X: Any):
        """Probabilities (softmax / sigmoid of the logits, as the loss says), on the device.

        For a regression loss, the outputs themselves.
        """
        return self.loss.probabilities(self.backend.xp, self._outputs(X))

    @on_backend_device
    def predict(self, X: Any):
        """Predicted class labels (int64 device array); raw outputs for regression losses."""
        return self.loss.predict(self.backend.xp, self._outputs(X))

    @on_backend_device
    def evaluate(self, X: Any, y: Any, batch_size: int | None = None) -> dict[str, float]:
        """Mean loss and accuracy on a dataset, as Python floats (one host read).

        ``batch_size`` defaults to what :attr:`memory_budget` allows.
        """
        X_dev = self._prepare_X(X)
        batch_size = batch_size or inference_batch_size(self, X_dev.shape[1:])
        y_dev = self._prepare_y(y, X_dev.shape[0])
        loss_sum, correct = self.trainer.evaluate_sums(self.state.params, X_dev, y_dev, batch_size)
        values = self.backend.to_numpy(self.backend.xp.stack([loss_sum, correct]))
        n = X_dev.shape[0]
        return {"loss": float(values[0]) / n, "accuracy": float(values[1]) / n}

    @on_backend_device
    def summary(self, batch_size: int = 128, input_shape: tuple[int, ...] | None = None):
        """Layers, output shapes, parameter counts, and the memory of parameters and of
        activations at ``batch_size``; ``print(model.summary())`` shows the table.

        ``input_shape`` (per sample) is needed only when the first layer does not
        say its input width. See :mod:`portnet.io.summary`.
        """
        from .io.summary import summarize

        batch_size = check_number("batch_size", batch_size, low=1, integer=True)
        return summarize(self, batch_size, input_shape)

    # -- persistence ----------------------------------------------------------
    @on_backend_device
    def save(self, path: str | os.PathLike) -> None:
        """Write the model to ``path`` (``.npz``, no pickle, atomic): architecture, loss,
        weights, optimizer (class, hyper-parameters, schedule, state), regularizers,
        epoch and seed, so :meth:`load` gives a model that trains on exactly as this one.
        """
        save_model(self, path)

    def export_onnx(self, path: str | os.PathLike, **options: Any) -> Path:
        """Write the inference graph to an ONNX file (``pip install "portnet[onnx]"``):
        :func:`portnet.io.onnx_export.export_onnx`, which says what the graph holds."""
        from .io.onnx_export import export_onnx

        return export_onnx(self, path, **options)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        backend: str | Backend | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> Model:
        """Load a model saved by :meth:`save` (or a checkpoint) onto any backend.

        ``dtype`` defaults to the saved one. Files of format version 1 (weights
        only) load with a fresh default optimizer.
        """
        return load_model(cls, path, backend, device, dtype)

    def get_config(self) -> dict[str, Any]:
        return {
            "network": self.network.get_config(),
            # A name where the loss has no settings: readable, and what version 1 files
            # hold; else its class and settings.
            "loss": (
                {"class": type(self.loss).__name__, "config": self.loss.get_config()}
                if self.loss.get_config()
                else self.loss.name
            ),
            "dtype": self.dtype_name,
            "seed": self.seed,
            "test_time_flip": self.test_time_flip,
            "test_time_shift": self.test_time_shift,
        }

    def __repr__(self) -> str:
        return (
            f"Model({self.network!r},\n  loss={self.loss!r}, optimizer={self.optimizer!r}, "
            f"backend={self.backend!r}, dtype={self.dtype_name!r})"
        )


def _check_test_time_view(network: Sequential, loss: Loss, option: str) -> None:
    """``test_time_flip`` needs a RandomFlip to flip the images, ``test_time_shift`` a
    RandomShift to move them, and both predictions that can be averaged."""
    from .layers.augment import RandomFlip, RandomShift

    layer, view = {
        "test_time_flip": (RandomFlip, "its flipped image"),
        "test_time_shift": (RandomShift, "its shifted copies"),
    }[option]
    name = layer.__name__
    if not any(isinstance(each, layer) for each in network.layers):
        raise ConfigError(
            f"{option} averages the predictions for each image and {view}, which the "
            f"network's {name} layer makes, but the network has none: put {name}() after "
            "the Reshape that turns rows into images"
            + (" (pn.mlp(..., flip=(1, 28, 28)) does it for an MLP)" if layer is RandomFlip else "")
            + f", or drop {option}."
        )
    if not loss.supports_test_time_views:
        raise ConfigError(
            f"{option} is available for the softmax cross-entropy and mean squared "
            f"error losses, not for {loss.name}; drop {option}."
        )


def _trained_network(network: Sequential, loss: Loss) -> Sequential:
    """The network the trainer runs: one layer per layer of ``network``, whose last
    activation, where the loss fuses it (a Softmax into the softmax cross-entropy:
    stable and cheaper), is an :class:`~portnet.Identity`, so the loss sees logits."""
    *body, last = network.layers
    if not loss.fuses(last):
        return network
    if not body:
        raise ConfigError("the model has no layer before its output activation")
    return Sequential([*body, Identity()])


def _exists(path: str | os.PathLike | None) -> bool:
    return path is not None and Path(path).is_file()
