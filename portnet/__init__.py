"""portnet: a from-scratch neural-network library written once against the Python Array API.

The same layers, losses, regularizers and optimizers run on NumPy, CuPy,
PyTorch, JAX and array-api-strict. Pick the backend once with :func:`get_backend`
(or ``$PORTNET_BACKEND``); everything else follows the arrays.
"""

from __future__ import annotations

from . import errors
from .backends import Backend, available_backends, backend_of, count_transfers, get_backend
from .errors import (
    BackendError,
    ConfigError,
    DeviceMismatchError,
    DivergenceWarning,
    InputError,
    ModelFileError,
    PortnetError,
)
from .layers.activations import Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, get_activation
from .layers.augment import RandomFlip, RandomShift
from .layers.base import Context, Dense, Dropout, Layer, RandomStream, Sequential
from .layers.conv import Conv2D, Flatten, Reshape
from .layers.normalization import BatchNorm
from .layers.pooling import AvgPool2D, MaxPool2D
from .model import Model
from .networks import mlp
from .tools.allocator import retain_freed_memory
from .tools.decomposition import PCA
from .tools.gradcheck import check_layer_gradients, format_gradient_table, gradient_check
from .tools.metrics import accuracy, confusion_matrix, precision_recall_f1
from .tools.model_selection import CVResult, cross_validate
from .tools.threads import limit_threads
from .training.callbacks import Callback, History, ProgressLogger
from .training.core import Trainer, TrainState
from .training.losses import (
    HalfPoissonDeviance,
    HalfSquaredError,
    MeanSquaredError,
    SigmoidBinaryCrossEntropy,
    SoftmaxCrossEntropy,
    get_loss,
)
from .training.lr_range import LRFinderResult, lr_find
from .training.optim import SGD, Adam, Momentum, Nesterov, Optimizer, RMSProp, get_optimizer
from .training.regularizers import L1, L2
from .training.run import PreparedRun, RunResult, prepare_run, train_run
from .training.run_config import RunConfig
from .training.schedules import Constant, CosineDecay, ExponentialDecay, StepDecay

__version__ = "0.1.0"

__all__ = [
    "PreparedRun",
    "RunConfig",
    "RunResult",
    "prepare_run",
    "train_run",
    "AvgPool2D",
    "BatchNorm",
    "Conv2D",
    "Flatten",
    "MaxPool2D",
    "Reshape",
    "PCA",
    "CVResult",
    "cross_validate",
    "L1",
    "L2",
    "LRFinderResult",
    "SGD",
    "Adam",
    "Backend",
    "BackendError",
    "Callback",
    "Constant",
    "ConfigError",
    "Context",
    "CosineDecay",
    "Dense",
    "DeviceMismatchError",
    "DivergenceWarning",
    "Dropout",
    "ExponentialDecay",
    "HalfPoissonDeviance",
    "HalfSquaredError",
    "History",
    "Identity",
    "InputError",
    "Layer",
    "LeakyReLU",
    "MeanSquaredError",
    "Model",
    "ModelFileError",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "PortnetError",
    "ProgressLogger",
    "RMSProp",
    "RandomFlip",
    "RandomShift",
    "RandomStream",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SigmoidBinaryCrossEntropy",
    "Softmax",
    "SoftmaxCrossEntropy",
    "StepDecay",
    "Tanh",
    "TrainState",
    "Trainer",
    "accuracy",
    "available_backends",
    "backend_of",
    "check_layer_gradients",
    "confusion_matrix",
    "count_transfers",
    "errors",
    "format_gradient_table",
    "get_activation",
    "lr_find",
    "get_backend",
    "get_loss",
    "get_optimizer",
    "gradient_check",
    "limit_threads",
    "retain_freed_memory",
    "mlp",
    "precision_recall_f1",
]
