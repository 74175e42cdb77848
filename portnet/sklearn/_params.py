"""The estimators' hyper-parameters: scikit-learn's rules, checked at ``fit``, and their docs."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..errors import ConfigError

STOCHASTIC_SOLVERS = ("sgd", "adam")

_CHOICES = {
    "activation": ("identity", "logistic", "tanh", "relu"),
    "solver": ("lbfgs", "sgd", "adam"),
    "learning_rate": ("constant", "invscaling", "adaptive"),
    "loss": ("squared_error", "poisson"),
    "dtype": (None, "float32", "float64"),
}
_BOOLEANS = ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping", "batch_norm")
# name: (lowest, highest, lowest allowed, highest allowed, integer)
_NUMBERS = {
    "alpha": (0, None, True, False, False),
    "learning_rate_init": (0, None, False, False, False),
    "power_t": (0, None, True, False, False),
    "max_iter": (1, None, True, False, True),
    "tol": (0, None, True, False, False),
    "momentum": (0, 1, True, True, False),
    "validation_fraction": (0, 1, True, False, False),
    "beta_1": (0, 1, True, False, False),
    "beta_2": (0, 1, True, False, False),
    "epsilon": (0, None, False, False, False),
    "max_fun": (1, None, True, False, True),
    "dropout": (0, 1, True, False, False),
    "l1": (0, None, True, False, False),
}


def check_params(estimator: Any) -> list[int]:
    """Check every hyper-parameter; return the hidden layer widths as a list.

    Raises
    ------
    ConfigError
        (a ``ValueError``) naming the parameter, what it must be and what it got.
    """
    name = type(estimator).__name__
    params = estimator.get_params()
    for key, allowed in _CHOICES.items():
        if key in params and params[key] not in allowed:
            raise ConfigError(
                f"The '{key}' parameter of {name} must be one of {list(allowed)}; "
                f"got {params[key]!r} instead."
            )
    for key in _BOOLEANS:
        if not isinstance(params[key], bool | np.bool_):
            raise ConfigError(
                f"The '{key}' parameter of {name} must be True or False; got {params[key]!r}."
            )
    for key, rule in _NUMBERS.items():
        _check_number(name, key, params[key], *rule)
    if not (params["n_iter_no_change"] == np.inf or _is_integer(params["n_iter_no_change"], 1)):
        raise ConfigError(
            f"The 'n_iter_no_change' parameter of {name} must be an int >= 1 or numpy.inf; "
            f"got {params['n_iter_no_change']!r}."
        )
    if params["batch_size"] != "auto" and not _is_integer(params["batch_size"], 1):
        raise ConfigError(
            f"The 'batch_size' parameter of {name} must be 'auto' or an int >= 1; "
            f"got {params['batch_size']!r}."
        )
    if params["solver"] == "lbfgs" and (params["dropout"] or params["batch_norm"]):
        raise ConfigError(
            "dropout and batch_norm make the loss change from one evaluation to the next, "
            "which a full-batch L-BFGS line search cannot follow: use solver='adam' or "
            "'sgd' with them, or drop them."
        )
    return hidden_sizes(params["hidden_layer_sizes"])


def hidden_sizes(value: Any) -> list[int]:
    """``hidden_layer_sizes`` as a list of widths, each at least 1."""
    sizes = list(value) if hasattr(value, "__iter__") else [value]
    if not all(_is_integer(size, 1) for size in sizes):
        raise ConfigError(f"hidden_layer_sizes must be > 0, got {sizes}.")
    return [int(size) for size in sizes]


def _is_integer(value: Any, low: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low


def _check_number(name, key, value, low, high, low_closed, high_closed, integer) -> None:
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and np.isfinite(value)
    if ok:
        ok = value >= low if low_closed else value > low
    if ok and high is not None:
        ok = value <= high if high_closed else value < high
    if not ok:
        left, right = "[" if low_closed else "(", "]" if high_closed else ")"
        span = f"{left}{low}, {'inf' if high is None else high}{right}"
        what = "an int" if integer else "a number"
        raise ConfigError(
            f"The '{key}' parameter of {name} must be {what} in {span}; got {value!r}."
        )


SHARED_PARAMETERS = """
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of neurons in the ith hidden layer.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        The hidden layers' activation.
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
        'adam' and 'sgd' train in minibatches; 'lbfgs' is full-batch L-BFGS, written
        on the Array API like the rest (:func:`portnet.training.lbfgs.minimize_lbfgs`), so it
        runs on a GPU too. For small data sets 'lbfgs' often converges faster.
    alpha : float, default=0.0001
        Strength of the L2 penalty :math:`\\frac{\\alpha}{2n}\\lVert W\\rVert^2` on the
        weights (``n`` the batch's total sample weight).
    batch_size : int or 'auto', default='auto'
        Minibatch size of the stochastic solvers; 'auto' is ``min(200, n_samples)``.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        The 'sgd' schedule: constant; ``learning_rate_init / (t + 1) ** power_t``
        after each epoch, ``t`` the samples seen; or divided by 5 whenever
        ``n_iter_no_change`` epochs pass without an improvement of ``tol``.
    learning_rate_init : float, default=0.001
        The initial learning rate of 'sgd' and 'adam'.
    power_t : float, default=0.5
        The exponent of the 'invscaling' schedule.
    max_iter : int, default=200
        Epochs of the stochastic solvers; iterations of 'lbfgs'.
    shuffle : bool, default=True
        Shuffle the samples every epoch (stochastic solvers).
    random_state : int, RandomState instance or None, default=None
        Draws the initial weights, the early-stopping split and the shuffling, as
        scikit-learn draws them: the same seed gives the same training.
    tol : float, default=1e-4
        Training stops when the loss (or the validation score) has not improved by
        ``tol`` for ``n_iter_no_change`` epochs; 'lbfgs' stops when no gradient
        entry exceeds it.
    verbose : bool or int, default=False
        Print the loss after every epoch (or iteration).
    warm_start : bool, default=False
        Continue from the previous fit's weights instead of starting afresh.
    momentum : float, default=0.9
        Momentum of 'sgd', in [0, 1].
    nesterovs_momentum : bool, default=True
        Nesterov's form of the momentum ('sgd' with momentum > 0).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified for single-output
        classification), stop when its score stalls, and keep the best epoch's weights.
    validation_fraction : float, default=0.1
        The held-out share with ``early_stopping``.
    beta_1, beta_2 : float, default=0.9, 0.999
        Adam's decay rates of its first and second moment estimates, in [0, 1).
    epsilon : float, default=1e-8
        Adam's :math:`\\hat\\epsilon`.
    n_iter_no_change : int or numpy.inf, default=10
        Epochs without an improvement of ``tol`` before stopping.
    max_fun : int, default=15000
        The most loss evaluations 'lbfgs' may make.

    backend : str, optional, keyword-only
        Where NumPy, list and sparse data train: ``"numpy"``, ``"torch"``,
        ``"cupy"``, ``"jax"`` or ``"array_api_strict"`` (:func:`portnet.get_backend`;
        by default ``$PORTNET_BACKEND``, else NumPy). Under scikit-learn's array API
        dispatch a device input trains where it lives instead.
    device : str, optional, keyword-only
        The backend's device, e.g. ``"cuda:0"``.
    dtype : {None, 'float32', 'float64'}, default=None, keyword-only
        The network's floating type. ``None`` follows the input, as scikit-learn
        does (float32 data trains in float32, anything else in float64);
        'float32' trains float64 data in float32, twice as fast on most hardware.
    dropout : float, default=0.0, keyword-only
        Dropout rate after each hidden activation (stochastic solvers).
    batch_norm : bool, default=False, keyword-only
        Batch normalization before each hidden activation (stochastic solvers).
    l1 : float, default=0.0, keyword-only
        Strength of an L1 penalty on the weights, scaled as ``alpha`` is.
"""

SHARED_ATTRIBUTES = """
    loss_ : float
        The loss of the last epoch (or of the 'lbfgs' solution), the L2 term included.
    best_loss_ : float or None
        The lowest training loss of the stochastic solvers; ``None`` with early stopping.
    loss_curve_ : list of float
        The loss after each epoch (each 'lbfgs' iteration).
    validation_scores_ : list of float or None
        The held-out score after each epoch with ``early_stopping``, else ``None``.
    best_validation_score_ : float or None
        The best of ``validation_scores_``, else ``None``.
    t_ : int
        Training samples seen by the stochastic solvers.
    coefs_ : list of arrays, shape (n_layers - 1,)
        Weight matrices, ``coefs_[i]`` of shape (fan_in, fan_out): the arrays
        training continues from (set them to start elsewhere). Arrays of the input's
        namespace and device under array API dispatch, else NumPy arrays.
    intercepts_ : list of arrays, shape (n_layers - 1,)
        Bias vectors, like ``coefs_``.
    n_iter_ : int
        Epochs (iterations) the last call ran.
    n_layers_ : int
        Layers, input and output included.
    n_outputs_ : int
        Output units.
    out_activation_ : str
        The output activation: 'softmax', 'logistic', 'identity' or 'exp'.
    n_features_in_ : int
        Features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names seen in ``fit``, where ``X`` had string column names.
    model_ : portnet.Model
        The trained network as a portnet model, with its whole API: ``save``,
        ``export_onnx``, ``summary``, ``evaluate``.
"""
