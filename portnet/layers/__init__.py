"""Layers: the base class and the context (:mod:`.base`), dense, convolution, pooling,
normalization, activation and augmentation layers, each a forward and its backprop."""

from .activations import Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh, get_activation
from .augment import RandomFlip, RandomShift
from .base import (
    Context,
    Dense,
    Dropout,
    Layer,
    RandomStream,
    Sequential,
    layer_classes,
    layer_from_config,
)
from .conv import Conv2D, Flatten, Reshape
from .normalization import BatchNorm
from .pooling import AvgPool2D, MaxPool2D

__all__ = [
    "AvgPool2D",
    "BatchNorm",
    "Context",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "Identity",
    "Layer",
    "LeakyReLU",
    "MaxPool2D",
    "RandomFlip",
    "RandomShift",
    "RandomStream",
    "ReLU",
    "Reshape",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "get_activation",
    "layer_classes",
    "layer_from_config",
]
