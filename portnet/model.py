"""The friendly façade: build a model, ``fit``, ``evaluate``, ``predict``, ``save``, ``load``."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._array import Tree, namespace_of, to_host
from .backends import Backend, get_backend
from .errors import ConfigError, DeviceMismatchError, InputError
from .layers import Context, Layer, Sequential
from .losses import Loss, get_loss
from .optim import Optimizer, get_optimizer
from .regularizers import Regularizer, get_regularizers
from .train import Callback, History, ProgressLogger, Trainer, fit_loop
from .validation import as_host, check_feature_shape, check_features, check_targets


def _on_device(method: Callable) -> Callable:
    """Run a Model method inside its backend's :meth:`~Backend.device_scope`.

    CuPy creates arrays on its current device; entering the model's device here
    keeps every array of a model on ``cuda:1`` on ``cuda:1``.
    """

    @functools.wraps(method)
    def on_device(self: Model, *args: Any, **kwargs: Any) -> Any:
        with self.backend.device_scope():
            return method(self, *args, **kwargs)

    return on_device


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
        An :mod:`portnet.optim` optimizer or its name (then built with ``lr``).
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
    ):
        self.network = layers if isinstance(layers, Sequential) else Sequential(list(layers))
        self.loss = get_loss(loss)
        if isinstance(optimizer, str):
            optimizer = get_optimizer(optimizer, lr=lr)
        self.backend = backend if isinstance(backend, Backend) else get_backend(backend, device)
        if optimizer.inplace is None:
            # A copy, so one optimizer object can configure models on several backends.
            optimizer = copy.copy(optimizer)
            optimizer.inplace = self.backend.inplace
        self.dtype_name = str(dtype)
        self.dtype = self.backend.dtype(dtype)
        self.seed = int(seed)
        self.regularizers = list(regularizers) + get_regularizers(l1, l2)
        last = self.network.layers[-1]
        # Fuse a final Softmax/Sigmoid into its cross-entropy: stable and cheaper.
        self._fused = type(last).__name__ == self.loss.output_activation
        train_layers = self.network.layers[:-1] if self._fused else self.network.layers
        if not train_layers:
            raise ConfigError("the model has no layer before its output activation")
        self.trainer = Trainer(Sequential(train_layers), self.loss, optimizer, self.regularizers)
        host = self.network.init(np.random.default_rng(self.seed))
        with self.backend.device_scope():
            self.params: Tree = self._to_device(host)
            self._opt_state = self.optimizer.init(
                self._trainable_params(), self._decay_mask(), self._frozen_mask()
            )
        self._epochs_done = 0
        self.stop_training = False

    # -- parameters -------------------------------------------------------------
    @property
    def optimizer(self) -> Optimizer:
        return self.trainer.optimizer

    @property
    def optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state: step count ``"t"`` and per-parameter ``"slots"``
        (momentum, Adam moments), as :meth:`Trainer.run_epoch` takes and returns it.

        Frozen entries such as batch-norm running statistics have no slot. Reset by
        :meth:`set_weights`.
        """
        return self._opt_state

    @property
    def n_in(self) -> int | None:
        return self.network.n_in

    @property
    def n_out(self) -> int | None:
        return self.network.n_out

    def _to_device(self, weights: list[dict[str, Any]]) -> Tree:
        # Copy first: on NumPy and torch-cpu, asarray may share the caller's memory,
        # and in-place optimizer steps must never write into the user's arrays.
        return [
            {
                k: self.backend.asarray(np.array(to_host(v), copy=True), self.dtype)
                for k, v in layer.items()
            }
            for layer in weights
        ]

    def _n_trainable(self) -> int:
        return len(self.network.layers) - (1 if self._fused else 0)

    def _trainable_params(self) -> Tree:
        return self.params[: self._n_trainable()]

    def _set_trainable_params(self, params: Tree) -> None:
        self.params = list(params) + self.params[self._n_trainable() :]

    def _decay_mask(self):
        return [layer.weight_names for layer in self.trainer.network.layers]

    def _frozen_mask(self):
        return [layer.state_names for layer in self.trainer.network.layers]

    @_on_device
    def get_weights(self) -> list[dict[str, np.ndarray]]:
        """The parameters as NumPy arrays (one dict per layer)."""
        return [{k: self.backend.to_numpy(v) for k, v in layer.items()} for layer in self.params]

    @_on_device
    def set_weights(self, weights: list[dict[str, Any]]) -> None:
        """Replace the parameters with arrays of the same structure and shapes.

        The arrays may be NumPy arrays or arrays of any backend (they are copied).
        """
        if len(weights) != len(self.params):
            raise ConfigError(f"expected weights for {len(self.params)} layers, got {len(weights)}")
        for i, (old, new) in enumerate(zip(self.params, weights, strict=True)):
            if set(old) != set(new):
                raise ConfigError(
                    f"layer {i}: expected parameters {sorted(old)}, got {sorted(new)}"
                )
            for key, value in new.items():
                if tuple(np.shape(value)) != tuple(old[key].shape):
                    raise ConfigError(
                        f"layer {i} {key}: expected shape {tuple(old[key].shape)}, "
                        f"got {np.shape(value)}"
                    )
        self.params = self._to_device(weights)
        self._opt_state = self.optimizer.init(
            self._trainable_params(), self._decay_mask(), self._frozen_mask()
        )

    # -- data -----------------------------------------------------------------
    def _prepare_X(self, X: Any, name: str = "X"):
        """Validate features once, then put them on the device once.

        Host data is checked on the host; device data is checked with one device
        reduction (a 0-d read) instead of a full copy back to the host.
        """
        if isinstance(X, np.ndarray | list | tuple):
            host = np.asarray(X)
            check_features(host, self.n_in, name)
            return self.backend.asarray(host, self.dtype)
        self._check_on_backend(X, name)
        xp = self.backend.xp
        check_feature_shape(X.shape, self.n_in, name)
        X = xp.astype(X, self.dtype)
        if not bool(self.backend.to_numpy(xp.all(xp.isfinite(X)))):
            raise InputError(f"{name} contains NaN or infinite values: clean or impute them first.")
        return X

    def _prepare_y(self, y: Any, n_samples: int, name: str = "y"):
        """Validate targets (labels in range) once, then put them on the device once."""
        loss = self.loss.name
        if isinstance(y, np.ndarray | list | tuple):
            host = check_targets(np.asarray(y), loss, self.n_out, n_samples, name)
            return self.backend.asarray(host, "int64" if host.dtype == np.int64 else self.dtype)
        self._check_on_backend(y, name)
        xp = self.backend.xp
        integer_labels = loss == "softmax_cross_entropy" and y.ndim == 1
        if integer_labels:
            # Only the range matters for labels already on the device: read min and max.
            low_high = self.backend.to_numpy(xp.stack([xp.min(y), xp.max(y)]))
            check_targets(low_high, loss, self.n_out, 2, name)
            if y.shape[0] != n_samples:
                raise InputError(f"{name} has {y.shape[0]} entries but X has {n_samples} samples.")
            return xp.astype(y, xp.int64)
        host = check_targets(as_host(self.backend, y), loss, self.n_out, n_samples, name)
        return self.backend.asarray(host, self.dtype)

    def _check_on_backend(self, array: Any, name: str) -> None:
        probe = self.params[0].get("W", next((v for p in self.params for v in p.values()), None))
        try:
            namespace_of(array, probe)
        except DeviceMismatchError as exc:
            raise DeviceMismatchError(
                f"{name} is not on the model's backend {self.backend}: {exc}"
            ) from None

    # -- training -------------------------------------------------------------
    @_on_device
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
        verbose: int = 1,
        shuffle: bool = True,
        seed: int | None = None,
    ) -> History:
        """Train with minibatch gradient descent.

        Parameters
        ----------
        X, y : array_like
            Features ``(N, n_in)`` and targets (class labels ``(N,)``, one-hot
            ``(N, K)`` or 0/1 for binary), as NumPy arrays or arrays of the model's
            backend. They are validated once and moved to the device once.
        epochs, batch_size : int
        validation_data : (X_val, y_val), optional
        validation_split : float, optional
            Hold out this fraction of ``X`` (the last rows, as Keras does) for validation.
        patience : int, optional
            Early stopping: stop after this many epochs without a lower validation
            loss (training loss without validation data) and restore the best
            weights (S2's algorithm).
        restore_best : bool
            With ``patience``: restore the best epoch's weights when stopping early
            (default), or keep the last epoch's (``False``, as Keras's default).
        callbacks : list of Callback
        verbose : int
            0 silent, 1 one line per epoch (and a progress bar in a terminal).
        shuffle : bool
        seed : int, optional
            Shuffling and dropout seed; by default derived from the model's seed.

        Returns
        -------
        History

        Notes
        -----
        If the loss becomes NaN or infinite, training stops at that epoch with a
        message and the best weights seen are kept. The check reads the epoch's
        sums, which are brought to the host once per epoch anyway, so it costs no
        extra synchronisation.
        """
        if epochs < 1 or batch_size < 1:
            raise InputError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
        X_dev = self._prepare_X(X)
        y_dev = self._prepare_y(y, X_dev.shape[0])
        if validation_data is not None and validation_split is not None:
            raise InputError("give validation_data or validation_split, not both")
        validation = None
        if validation_data is not None:
            Xv = self._prepare_X(validation_data[0], "X_val")
            validation = (Xv, self._prepare_y(validation_data[1], Xv.shape[0], "y_val"))
        elif validation_split is not None:
            if not 0.0 < validation_split < 1.0:
                raise InputError(f"validation_split must be in (0, 1), got {validation_split}")
            n_val = int(round(X_dev.shape[0] * validation_split))
            if not 0 < n_val < X_dev.shape[0]:
                raise InputError(f"validation_split {validation_split} leaves no data on one side")
            cut = X_dev.shape[0] - n_val
            validation = (X_dev[cut:, ...], y_dev[cut:, ...])
            X_dev, y_dev = X_dev[:cut, ...], y_dev[:cut, ...]
        callbacks = list(callbacks)
        if verbose:
            callbacks.insert(0, ProgressLogger(epochs))
        seed = self.seed + 7919 * (self._epochs_done + 1) if seed is None else int(seed)
        return fit_loop(
            self,
            X_dev,
            y_dev,
            epochs=epochs,
            batch_size=int(batch_size),
            validation=validation,
            patience=patience,
            restore_best=restore_best,
            callbacks=callbacks,
            shuffle=shuffle,
            seed=seed,
        )

    # -- inference --------------------------------------------------------------
    def _outputs(self, X: Any, batch_size: int = 4096):
        """Network outputs before the fused activation (logits), on the device."""
        X_dev = self._prepare_X(X)
        xp = self.backend.xp
        ctx = Context(xp=xp, training=False, need_input_grad=False)
        net, params = self.trainer.network, self._trainable_params()
        n = X_dev.shape[0]
        chunks = [
            net.forward(params, X_dev[i : min(i + batch_size, n), ...], ctx)[0]
            for i in range(0, n, batch_size)
        ]
        return chunks[0] if len(chunks) == 1 else xp.concat(chunks, axis=0)

    @_on_device
    def predict_proba(self, X: Any):
        """Class probabilities (softmax / sigmoid of the logits), as a device array."""
        outputs = self._outputs(X)
        if not self._fused and self.loss.output_activation is None:
            return outputs
        xp = self.backend.xp
        from .activations import softmax, stable_sigmoid

        if self.loss.output_activation == "Softmax":
            return softmax(xp, outputs)
        return stable_sigmoid(xp, outputs)

    @_on_device
    def predict(self, X: Any):
        """Predicted class labels (int64 device array); raw outputs for regression losses."""
        outputs = self._outputs(X)
        xp = self.backend.xp
        if self.loss.output_activation == "Softmax":
            return xp.argmax(outputs, axis=-1)
        if self.loss.output_activation == "Sigmoid":
            return xp.astype(xp.reshape(outputs > 0, (-1,)), xp.int64)
        return outputs

    @_on_device
    def evaluate(self, X: Any, y: Any, batch_size: int = 4096) -> dict[str, float]:
        """Mean loss and accuracy on a dataset, as Python floats (one host read)."""
        X_dev = self._prepare_X(X)
        y_dev = self._prepare_y(y, X_dev.shape[0])
        loss_sum, correct = self.trainer.evaluate_sums(
            self._trainable_params(), X_dev, y_dev, batch_size
        )
        values = self.backend.to_numpy(self.backend.xp.stack([loss_sum, correct]))
        n = X_dev.shape[0]
        return {"loss": float(values[0]) / n, "accuracy": float(values[1]) / n}

    # -- persistence ----------------------------------------------------------
    @_on_device
    def save(self, path) -> None:
        """Write the architecture and weights to ``path`` (``.npz``, no pickle, atomic)."""
        from .io import save_model

        save_model(self, path)

    @classmethod
    def load(
        cls,
        path,
        backend: str | Backend | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> Model:
        """Load a model saved by :meth:`save` onto any backend."""
        from .io import load_model

        return load_model(path, backend=backend, device=device, dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        return {
            "network": self.network.get_config(),
            "loss": self.loss.name,
            "dtype": self.dtype_name,
            "seed": self.seed,
        }

    def __repr__(self) -> str:
        return (
            f"Model({self.network!r},\n  loss={self.loss!r}, optimizer={self.optimizer!r}, "
            f"backend={self.backend!r}, dtype={self.dtype_name!r})"
        )


def mlp(
    sizes: Sequence[int],
    activation: str = "relu",
    output: str | None = None,
    init: str | None = None,
    dropout: float = 0.0,
) -> list[Layer]:
    """Layers of a multilayer perceptron, e.g. ``mlp([784, 500, 324, 10], "relu")``.

    Parameters
    ----------
    sizes : list of int
        Input width, hidden widths, output width.
    activation : str
        Hidden activation (``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"leaky_relu"``).
    output : str, optional
        Output activation layer (``"softmax"``, ``"sigmoid"``); by default none (logits).
    init : str, optional
        Weight init; by default He for ReLU-like and Glorot otherwise.
    dropout : float
        Dropout rate after each hidden activation (0 for none).
    """
    from .activations import get_activation
    from .layers import Dense, Dropout

    if len(sizes) < 2:
        raise ConfigError("mlp needs at least input and output sizes")
    init = init or ("he" if "relu" in activation else "glorot")
    layers: list[Layer] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        layers.append(Dense(n_in, n_out, init=init))
        if not last:
            layers.append(get_activation(activation))
            if dropout:
                layers.append(Dropout(dropout))
    if output:
        layers.append(get_activation(output))
    return layers
