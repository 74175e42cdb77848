"""Every training option of portnet, each as a small model on small data.

The sync checks train, evaluate and predict each of these on every backend
instrument (the emulated CuPy, PyTorch's dispatcher, a real GPU in
``python -m benchmarks.gpu_check``). Between them they run every layer,
activation, loss, target form, regularizer, optimizer, optimizer path, clipping
mode, schedule and ``fit`` feature. A new option of the library gets a line here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import layers
from ..layers import activations, augment, conv, normalization, pooling
from ..model import Model
from ..networks import mlp
from ..training import optim, schedules

N_FEATURES, N_CLASSES, IMAGE = 12, 3, (1, 8, 8)


def _cnn_maxpool() -> list[layers.Layer]:
    return [
        conv.Reshape(IMAGE),
        augment.RandomFlip(),
        conv.Conv2D(1, 4, 3, padding=1),
        normalization.BatchNorm(4),
        activations.ReLU(),
        pooling.MaxPool2D(2),
        conv.Flatten(),
        layers.Dense(4 * 4 * 4, N_CLASSES),
    ]


def _cnn_augmented() -> list[layers.Layer]:
    # Both augmentations, in training and as test-time views.
    return [
        conv.Reshape(IMAGE),
        augment.RandomFlip(),
        augment.RandomShift(1),
        conv.Conv2D(1, 4, 3, padding=1),
        activations.ReLU(),
        conv.Flatten(),
        layers.Dense(4 * 8 * 8, N_CLASSES),
    ]


def _cnn_strided() -> list[layers.Layer]:
    # Stride 2 without bias, then overlapping, padded windows in both pooling layers.
    return [
        conv.Reshape(IMAGE),
        conv.Conv2D(1, 4, 3, stride=2, padding=1, bias=False),
        activations.Tanh(),
        pooling.AvgPool2D(3, stride=1, padding=1),
        pooling.MaxPool2D(3, stride=2, padding=1),
        conv.Flatten(),
        layers.Dense(4 * 2 * 2, N_CLASSES),
    ]


def _cnn_winograd() -> list[layers.Layer]:
    # Winograd's F(2x2, 3x3) on 8x8, then on 7x7 (odd: tiles past the edge are cropped).
    return [
        conv.Reshape(IMAGE),
        conv.Conv2D(1, 4, 3, padding=1, algorithm="winograd"),
        activations.ReLU(),
        pooling.AvgPool2D(2, stride=1),
        conv.Conv2D(4, 3, 3, padding=1, bias=False, algorithm="winograd"),
        conv.Flatten(),
        layers.Dense(3 * 7 * 7, N_CLASSES),
    ]


@dataclasses.dataclass(frozen=True)
class TrainingOption:
    """One option to train: layers, loss, optimizer, penalties, target form and fit flags.

    Attributes
    ----------
    name : str
        Short id, used as a test id and a table row.
    make_layers : callable
        Returns a fresh layer list (``n_in`` is 12, or 64 for an 8x8 image).
    make_optimizer : callable
        Returns a fresh optimizer.
    loss : str
    targets : {"labels", "one_hot", "binary", "regression"}
    l1, l2 : float
    image : bool
        Whether the inputs are flattened 1x8x8 images.
    fit_kwargs : dict
        Extra ``Model.fit`` arguments (early stopping, say).
    model_kwargs : dict
        Extra ``Model`` arguments (test-time views, say).
    """

    name: str
    make_layers: Callable[[], list[layers.Layer]]
    make_optimizer: Callable[[], optim.Optimizer] = lambda: optim.SGD(0.05)
    loss: str = "softmax_cross_entropy"
    targets: str = "labels"
    l1: float = 0.0
    l2: float = 0.0
    image: bool = False
    fit_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(np.prod(IMAGE)) if self.image else N_FEATURES

    def data(self, n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Host features (float32) and targets of the option's form; learnable, not noise."""
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(n, self.n_features)).astype(np.float32)
        scores = X @ rng.normal(size=(self.n_features, N_CLASSES))
        labels = np.argmax(scores, axis=1).astype(np.int64)
        if self.targets == "one_hot":
            return X, np.eye(N_CLASSES, dtype=np.float32)[labels]
        if self.targets == "binary":
            return X, (scores[:, 0] > 0).astype(np.int64)
        if self.targets == "regression":
            return X, scores[:, :2].astype(np.float32)
        return X, labels

    def build(self, backend: Any, seed: int = 0, dtype: str = "float32") -> Model:
        """The option's model on ``backend`` (a name or a Backend)."""
        return Model(
            self.make_layers(),
            loss=self.loss,
            optimizer=self.make_optimizer(),
            l1=self.l1,
            l2=self.l2,
            backend=backend,
            dtype=dtype,
            seed=seed,
            **self.model_kwargs,
        )

    @property
    def classifies(self) -> bool:
        return self.targets != "regression"


def _dense(activation: str = "relu", **kwargs: Any) -> Callable[[], list[layers.Layer]]:
    return lambda: mlp([N_FEATURES, 16, N_CLASSES], activation, **kwargs)


OPTIONS: tuple[TrainingOption, ...] = (
    TrainingOption("sgd-relu", _dense("relu")),
    TrainingOption("momentum-classic", _dense(), lambda: optim.Momentum(0.05, gamma=0.9)),
    TrainingOption("momentum-ema", _dense(), lambda: optim.Momentum(0.1, form="ema")),
    TrainingOption("nesterov", _dense(), lambda: optim.Nesterov(0.05)),
    TrainingOption("rmsprop", _dense(), lambda: optim.RMSProp(1e-2)),
    TrainingOption("adam", _dense(), lambda: optim.Adam(1e-2)),
    TrainingOption("adamw", _dense(), lambda: optim.Adam(1e-2, weight_decay=0.1)),
    TrainingOption("momentum-portable", _dense(), lambda: optim.Momentum(0.05, inplace=False)),
    TrainingOption("adam-portable", _dense(), lambda: optim.Adam(1e-2, inplace=False)),
    TrainingOption("l1", _dense("tanh"), l1=1e-3),
    TrainingOption("l2", _dense(), l2=1e-3),
    TrainingOption("l1-l2-momentum", _dense(), lambda: optim.Momentum(0.05), l1=1e-3, l2=1e-3),
    TrainingOption("clip-norm", _dense(), lambda: optim.SGD(0.05, clip_norm=1.0)),
    TrainingOption("clip-value", _dense("tanh"), lambda: optim.Momentum(0.05, clip_value=0.1)),
    TrainingOption(
        "cosine-schedule",
        _dense(),
        lambda: optim.Momentum(schedules.CosineDecay(0.05, epochs=3)),
    ),
    TrainingOption("tanh", _dense("tanh")),
    TrainingOption("sigmoid", _dense("sigmoid")),
    TrainingOption("leaky-relu", _dense("leaky_relu")),
    TrainingOption("identity", _dense("identity")),
    TrainingOption("dropout", _dense("relu", dropout=0.3)),
    TrainingOption(
        "no-bias-dense",
        lambda: [
            layers.Dense(N_FEATURES, 16, bias=False),
            activations.ReLU(),
            layers.Dense(16, N_CLASSES, bias=False),
        ],  # fmt: skip
    ),
    TrainingOption("softmax-output", _dense("relu", output="softmax")),
    TrainingOption("one-hot-targets", _dense(), targets="one_hot"),
    TrainingOption(
        "sigmoid-bce",
        lambda: [
            layers.Dense(N_FEATURES, 8),
            activations.Tanh(),
            layers.Dense(8, 1),
            activations.Sigmoid(),
        ],  # fmt: skip
        loss="sigmoid_binary_cross_entropy",
        targets="binary",
    ),
    TrainingOption(
        "mse-regression",
        lambda: mlp([N_FEATURES, 16, 2], "relu"),
        lambda: optim.SGD(0.01),
        loss="mse",
        targets="regression",
    ),
    TrainingOption(
        "softmax-mse",
        _dense("tanh", output="softmax"),  # a Softmax layer not fused into its loss
        loss="mse",
        targets="one_hot",
    ),
    TrainingOption(
        "batchnorm-dense",
        lambda: [
            layers.Dense(N_FEATURES, 16),
            normalization.BatchNorm(16),
            activations.ReLU(),
            layers.Dense(16, N_CLASSES),
        ],  # fmt: skip
    ),
    TrainingOption("cnn-maxpool", _cnn_maxpool, lambda: optim.Adam(1e-2), image=True),
    TrainingOption(
        "cnn-test-time-views",
        _cnn_augmented,
        image=True,
        model_kwargs={"test_time_flip": True, "test_time_shift": 1},
    ),
    TrainingOption("cnn-strided-pools", _cnn_strided, image=True),
    TrainingOption("cnn-winograd", _cnn_winograd, lambda: optim.Adam(1e-2), image=True),
    TrainingOption(
        "early-stopping",
        _dense(),
        lambda: optim.Adam(1e-2),
        fit_kwargs={"patience": 1, "restore_best": True},
    ),
)


def option(name: str) -> TrainingOption:
    """The option called ``name``."""
    for candidate in OPTIONS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no training option {name!r}; known: {', '.join(o.name for o in OPTIONS)}")
