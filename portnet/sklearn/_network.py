"""The portnet network behind an MLP estimator, and its ``coefs_``/``intercepts_``.

The estimator's layers are portnet layers: ``Dense`` and the hidden activation per
layer (with ``BatchNorm`` and ``Dropout`` where asked), no output activation (the
loss applies it to the logits). ``coefs_[i]`` and ``intercepts_[i]`` are the
``Dense`` layers' ``W`` and ``b``: the arrays training updates, or host copies of
them when training runs on another device than the data's. Arrays put there by
hand are what the next ``fit``/``partial_fit`` continues from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._array import to_host
from ..errors import ConfigError
from ..layers.activations import Identity, ReLU, Sigmoid, Tanh
from ..layers.base import Dense, Dropout, Layer
from ..layers.normalization import BatchNorm
from ..model import Model
from ..training.losses import (
    HalfPoissonDeviance,
    HalfSquaredError,
    Loss,
    SigmoidBinaryCrossEntropy,
    SoftmaxCrossEntropy,
)
from ..training.optim import SGD, Adam, Momentum, Optimizer
from ..training.regularizers import L1, L2

HIDDEN_ACTIVATIONS = {"identity": Identity, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}
#: The loss each output activation trains with (scikit-learn's canonical pairs).
LOSSES = {
    "softmax": SoftmaxCrossEntropy,
    "logistic": SigmoidBinaryCrossEntropy,
    "identity": HalfSquaredError,
    "exp": HalfPoissonDeviance,
}


def glorot_uniform(rng: np.random.RandomState, units: list[int], activation: str):
    """scikit-learn's initial ``coefs_`` and ``intercepts_`` (float64, on the host).

    Both uniform in :math:`\\pm\\sqrt{f / (n_{in} + n_{out})}` with :math:`f = 6`
    (Glorot & Bengio, 2010), or 2 for the logistic activation; drawn from ``rng``
    layer by layer, weights then biases, as scikit-learn draws them, so that the
    same ``random_state`` gives the same start.
    """
    factor = 2.0 if activation == "logistic" else 6.0
    coefs, intercepts = [], []
    for fan_in, fan_out in zip(units[:-1], units[1:], strict=True):
        bound = np.sqrt(factor / (fan_in + fan_out))
        coefs.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
        intercepts.append(rng.uniform(-bound, bound, fan_out))
    return coefs, intercepts


def network_layers(
    units: list[int], activation: str, dropout: float, batch_norm: bool
) -> list[Layer]:
    """Dense layers of widths ``units`` with the hidden activation between them."""
    layers: list[Layer] = []
    for i, (n_in, n_out) in enumerate(zip(units[:-1], units[1:], strict=True)):
        # Every Dense keeps its bias, so that intercepts_ has scikit-learn's shape; before
        # a BatchNorm it stays where it starts (the normalization removes it).
        layers.append(Dense(n_in, n_out, init="glorot"))
        if i < len(units) - 2:
            layers += [BatchNorm(n_out)] if batch_norm else []
            layers.append(HIDDEN_ACTIVATIONS[activation]())
            layers += [Dropout(dropout)] if dropout else []
    return layers


def solver_optimizer(estimator: Any) -> Optimizer:
    """The portnet optimizer of the estimator's ``solver``, as scikit-learn's computes it."""
    if estimator.solver == "adam":
        return Adam(
            estimator.learning_rate_init,
            beta1=estimator.beta_1,
            beta2=estimator.beta_2,
            eps=estimator.epsilon,
            form="efficient",
        )
    if estimator.solver == "sgd" and estimator.momentum > 0:
        return Momentum(
            estimator.learning_rate_init,
            gamma=estimator.momentum,
            nesterov=bool(estimator.nesterovs_momentum),
        )
    # Plain SGD; for lbfgs, the optimizer model_ keeps for training it further by hand.
    return SGD(estimator.learning_rate_init)


def penalties(estimator: Any) -> list:
    """``alpha``'s L2 term and ``l1``'s, per sample as scikit-learn scales ``alpha``."""
    terms = [L2(estimator.alpha, per_sample=True)] if estimator.alpha else []
    return terms + ([L1(estimator.l1, per_sample=True)] if estimator.l1 else [])


def _layers_for(estimator: Any, units: list[int]) -> list[Layer]:
    return network_layers(units, estimator.activation, estimator.dropout, estimator.batch_norm)


def build_model(estimator: Any, units: list[int], loss: Loss, backend: Any, dtype: str) -> Model:
    """A :class:`portnet.Model` for the estimator's hyper-parameters and layer widths."""
    model = Model(
        _layers_for(estimator, units),
        loss,
        solver_optimizer(estimator),
        regularizers=penalties(estimator),
        backend=backend,
        dtype=dtype,
    )
    model.trainer.loss_includes_penalty = True  # loss_ is scikit-learn's: with alpha's term
    return model


def follow_hyper_parameters(estimator: Any, units: list[int]) -> bool:
    """Make a fitted ``model_`` match hyper-parameters changed since (``set_params``
    before a warm start or a ``partial_fit``), keeping its weights: scikit-learn reads
    ``alpha`` and ``activation`` afresh in every call. Returns whether the layers
    changed (their optimizer state then starts afresh)."""
    model = estimator.model_
    model.regularizers[:] = penalties(estimator)  # the trainer holds this same list
    wanted = _layers_for(estimator, units)
    if [spec(layer) for layer in wanted] == [spec(layer) for layer in model.network.layers]:
        return False
    rebuilt = build_model(estimator, units, model.loss, model.backend, model.dtype_name)
    old, new = model.network.layers, rebuilt.network.layers
    params = [dict(p) for p in rebuilt.state.params]
    for kind in (Dense, BatchNorm):  # the n-th layer of a kind keeps its parameters
        pairs = zip(
            [i for i, layer in enumerate(old) if isinstance(layer, kind)],
            [i for i, layer in enumerate(new) if isinstance(layer, kind)],
            strict=False,
        )
        for i, j in pairs:
            params[j] = dict(model.state.params[i])
    rebuilt.state = rebuilt.trainer.init_state(params, seed=model.state.seed)
    estimator.model_ = rebuilt
    return True


def spec(layer: Layer) -> tuple:
    """What a layer is: its class and settings."""
    return type(layer).__name__, sorted(layer.get_config().items())


def dense_indices(model: Model) -> list[int]:
    """Positions of the ``Dense`` layers in the model's parameter list."""
    return [i for i, layer in enumerate(model.trainer.layers) if isinstance(layer, Dense)]


def set_dense_parameters(model: Model, coefs: list[Any], intercepts: list[Any]) -> None:
    """Copy ``coefs``/``intercepts`` (host or device arrays) into the model's Dense
    layers, keeping the optimizer's state."""
    params = [dict(p) for p in model.state.params]
    for i, W, b in zip(dense_indices(model), coefs, intercepts, strict=True):
        for key, value in (("W", W), ("b", b)):
            host = np.array(to_host(value), dtype=np.float64, copy=True)
            if host.shape != tuple(params[i][key].shape):
                raise ConfigError(
                    f"layer {i} {key} has shape {host.shape}, but the network expects "
                    f"{tuple(params[i][key].shape)}: coefs_ and intercepts_ must keep the "
                    "shapes fit gave them."
                )
            params[i][key] = model.backend.asarray(host, model.dtype)
    model.state = model.state.replace(params=params)


def dense_parameters(model: Model, on_host: bool) -> tuple[list[Any], list[Any]]:
    """The Dense layers' weights and biases: the model's arrays, or (``on_host``)
    host copies of those that are not NumPy arrays already."""
    params = model.state.params
    picked = [(params[i]["W"], params[i]["b"]) for i in dense_indices(model)]
    if on_host:
        picked = [(_host(model, W), _host(model, b)) for W, b in picked]
    return [W for W, _ in picked], [b for _, b in picked]


def _host(model: Model, array: Any) -> Any:
    """``array`` itself if it is a NumPy array already, else its host copy."""
    return array if isinstance(array, np.ndarray) else model.backend.to_numpy(array)
