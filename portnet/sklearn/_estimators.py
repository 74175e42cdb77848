"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's MLP on portnet's training core."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from .._array import to_host
from ..errors import ConfigError, InputError
from ..model import Model
from ..training.budget import inference_batch_size
from ..training.core import copy_tree
from ..training.sample_weights import prepare_sample_weights
from ._data import TrainingData, features_on_device, row_slice
from ._network import (
    LOSSES,
    build_model,
    dense_parameters,
    follow_hyper_parameters,
    glorot_uniform,
    set_dense_parameters,
)
from ._params import SHARED_ATTRIBUTES, SHARED_PARAMETERS, STOCHASTIC_SOLVERS, check_params
from ._placement import check_same_place, input_backend, training_backend, where
from ._solvers import fit_lbfgs, fit_stochastic

_NON_FINITE = (
    "Solver produced non-finite parameter weights. The input data may contain large values "
    "and need to be preprocessed."
)


def _validation(X: Any) -> dict[str, Any]:
    """``validate_data``'s options: sparse accepted, floats kept, anything else made
    float64, in the input's own namespace (whose dtypes are not NumPy's)."""
    backend = input_backend(X)
    xp = np if backend is None else backend.xp
    return {"accept_sparse": ["csr", "csc"], "dtype": (xp.float64, xp.float32)}


def _stochastic(estimator: Any) -> bool:
    if estimator.solver not in STOCHASTIC_SOLVERS:
        raise AttributeError(
            f"partial_fit is only available for stochastic optimizers. {estimator.solver} "
            "is not stochastic."
        )
    return True


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: training, placement, pickling."""

    def fit(self, X, y, sample_weight=None):
        """Fit the network to ``X`` (n_samples, n_features; dense or sparse) and ``y``.

        ``sample_weight`` (n_samples,), optional: weight 2 counts a sample twice.
        Returns ``self``.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    # -- training ---------------------------------------------------------------
    def _fit(self, X, y, sample_weight, incremental: bool):
        hidden = check_params(self)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        rng = check_random_state(self.random_state)
        units = [X.shape[1], *hidden, int(y.shape[1])]
        if first_pass:
            self._initialize(X, units, rng)
        else:
            self._resume(X, units)
        data = self._training_data(X, y, sample_weight)
        with self.model_.backend.device_scope():
            if self.solver == "lbfgs":
                fit_lbfgs(self, data)
            else:
                fit_stochastic(self, data, incremental, rng)
            self._publish()
            self._check_finite()
        return self

    def _initialize(self, X, units: list[int], rng) -> None:
        """A new network with scikit-learn's initial weights, and fresh bookkeeping."""
        self._new_model(X, units)
        set_dense_parameters(self.model_, *glorot_uniform(rng, units, self.activation))
        self._best_params = copy_tree(self.model_.state.params)
        self.n_iter_, self.t_ = 0, 0
        if self.solver in STOCHASTIC_SOLVERS:
            self.loss_curve_, self._stalled_epochs = [], 0
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
                self.best_loss_ = None
            else:
                self.validation_scores_ = self.best_validation_score_ = None
                self.best_loss_ = np.inf
        self._publish()

    def _resume(self, X, units: list[int]) -> None:
        """Go on from ``coefs_``/``intercepts_``: the last fit's, or arrays set by hand
        (then a network is built around them)."""
        fitted = "model_" in self.__dict__
        if fitted:
            check_same_place(self, X, "fit")
        else:
            self._new_model(X, units)
            self._published = ([], [])
            self._best_params = copy_tree(self.model_.state.params)
            for name, default in (("t_", 0), ("n_iter_", 0), ("loss_curve_", [])):
                setattr(self, name, getattr(self, name, default))
            self.best_loss_, self._stalled_epochs = getattr(self, "best_loss_", np.inf), 0
        widths = [int(W.shape[0]) for W in self.coefs_] + [int(self.coefs_[-1].shape[1])]
        if widths != units:
            raise ConfigError(
                f"the network has layer widths {widths}, but hidden_layer_sizes and the data "
                f"ask for {units}: set warm_start=False to start a new network."
            )
        if fitted and follow_hyper_parameters(self, units):
            self._learning_rate = None  # new layers: a fresh optimizer
        self._push_hand_set()

    def _new_model(self, X, units: list[int]) -> None:
        """``model_`` for these layer widths, where ``X`` says training runs."""
        self._fitted_on = where(input_backend(X))
        self.n_outputs_, self.n_layers_ = units[-1], len(units)
        self.out_activation_ = self._output_activation()
        backend = training_backend(X, self.backend, self.device)
        loss = LOSSES[self.out_activation_]()
        self.model_ = build_model(self, units, loss, backend, self._dtype_name(X))
        self._learning_rate = None  # the stochastic solvers start a fresh optimizer

    def _push_hand_set(self) -> None:
        """Copy into the network any ``coefs_``/``intercepts_`` array set by hand."""
        coefs, intercepts = self._published
        if not (_same_arrays(self.coefs_, coefs) and _same_arrays(self.intercepts_, intercepts)):
            with self.model_.backend.device_scope():
                set_dense_parameters(self.model_, self.coefs_, self.intercepts_)
            self._publish()

    def _publish(self) -> None:
        """Expose the Dense layers' parameters as ``coefs_`` and ``intercepts_``."""
        on_host = self._fitted_on == where(None)
        self.coefs_, self.intercepts_ = dense_parameters(self.model_, on_host)
        self._published = (list(self.coefs_), list(self.intercepts_))

    def _check_finite(self) -> None:
        xp = self.model_.backend.xp
        checks = [
            xp.all(xp.isfinite(p)) for layer in self.model_.state.params for p in layer.values()
        ]
        if not bool(np.all(self.model_.backend.to_numpy(xp.stack(checks)))):
            raise InputError(_NON_FINITE)

    def _training_data(self, X, y, sample_weight) -> TrainingData:
        model = self.model_
        backend, dtype = model.backend, model.dtype
        with backend.device_scope():
            X_dev = features_on_device(X, backend, dtype)
            y_dev, stratify = self._device_targets(y)
            w_dev = None
            if sample_weight is not None:
                w_dev = prepare_sample_weights(
                    backend, dtype, model.loss, y_dev, self.n_outputs_, to_host(sample_weight)
                )
        return TrainingData(X_dev, y_dev, w_dev, stratify)

    def _dtype_name(self, X) -> str:
        if self.dtype is not None:
            return self.dtype
        return "float32" if str(X.dtype).endswith("float32") else "float64"

    # -- inference ------------------------------------------------------------
    def _outputs(self, X, method: str):
        """The network's outputs (logits) for ``X`` on its device, and where results go."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, **_validation(X))
        check_same_place(self, X, method)
        self._push_hand_set()
        model = self.model_
        with model.backend.device_scope():
            X_dev = features_on_device(X, model.backend, model.dtype)
            size = inference_batch_size(model, tuple(X_dev.shape[1:]))
            parts = [
                model.trainer.inference_outputs(
                    model.state.params, row_slice(X_dev, start, min(start + size, X.shape[0]))
                )
                for start in range(0, X.shape[0], size)
            ]
            outputs = parts[0] if len(parts) == 1 else model.backend.xp.concat(parts, axis=0)
        return outputs, input_backend(X)

    def _answer(self, array, where_to):
        """An output in the input's namespace: the device array, or a NumPy copy."""
        return array if where_to is not None else self.model_.backend.to_numpy(array)

    # -- pickling: the network travels as its portnet model file ------------------
    def __getstate__(self):
        state = dict(super().__getstate__())
        if isinstance(state.get("model_"), Model):
            self._push_hand_set()
            state["model_"] = _SavedModel.of(self.model_)
            for name in ("coefs_", "intercepts_", "_published"):
                state.pop(name, None)
            state["_best_params"] = [
                {k: to_host(v) for k, v in layer.items()} for layer in self._best_params
            ]
        return state

    def __setstate__(self, state):
        saved = state.get("model_")
        super().__setstate__(state)
        if isinstance(saved, _SavedModel):
            self.model_ = saved.load()
            self.model_.trainer.loss_includes_penalty = True
            backend = self.model_.backend
            self._best_params = [
                {k: backend.asarray(v, self.model_.dtype) for k, v in layer.items()}
                for layer in self._best_params
            ]
            self._publish()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.array_api_support = True
        return tags


@dataclasses.dataclass(frozen=True)
class _SavedModel:
    """A fitted network as portnet's model file (data, never pickled code)."""

    data: bytes
    backend: str
    device: str

    @classmethod
    def of(cls, model: Model) -> _SavedModel:
        with tempfile.TemporaryDirectory() as folder:
            model.save(path := Path(folder) / "model.npz")
            return cls(path.read_bytes(), model.backend.name, model.backend.device_name)

    def load(self) -> Model:
        with tempfile.TemporaryDirectory() as folder:
            (path := Path(folder) / "model.npz").write_bytes(self.data)
            return Model.load(path, backend=self.backend, device=self.device)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = f"""Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier``
    on any Array API library.

    The same constructor, defaults, fitted attributes and training as
    ``sklearn.neural_network.MLPClassifier`` (the same ``random_state`` draws the
    same initial weights and batches), written on portnet's layers, losses and
    optimizers, so it trains on NumPy, PyTorch, CuPy, JAX or array-api-strict
    arrays. A softmax output for multiclass data, a logistic one for binary and
    multilabel (indicator) targets; cross-entropy loss.

    Parameters
    ----------
{SHARED_PARAMETERS}
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, a NumPy array wherever the data live (labels may be strings).
{SHARED_ATTRIBUTES}
    Examples
    --------
    >>> from portnet.sklearn import MLPClassifier
    >>> clf = MLPClassifier(random_state=1, max_iter=300).fit(X_train, y_train)
    >>> clf.predict_proba(X_test[:1]), clf.score(X_test, y_test)
    """

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend=None,
        device=None,
        dtype=None,
        dropout=0.0,
        batch_norm=False,
        l1=0.0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.device = device
        self.dtype = dtype
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.l1 = l1

    def _validate_input(self, X, y, incremental: bool, reset: bool):
        X, y = validate_data(self, X, y, multi_output=True, reset=reset, **_validation(X))
        y = to_host(y)  # labels are binarized on the host, once per fit
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise InputError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise InputError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {classes}."
                )
        return X, self._label_binarizer.transform(y).astype(bool)

    def _output_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _device_targets(self, y: np.ndarray):
        # The binarized 0/1 columns, one-hot for softmax (no one-hot made per step).
        return self.model_.backend.asarray(y.astype(np.float64), self.model_.dtype), y

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch on ``X``, ``y`` (and ``sample_weight``); the first call needs
        ``classes``, every label that will ever appear. Returns ``self``."""
        if _first_partial_fit_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def _probabilities(self, X, method: str):
        outputs, where_to = self._outputs(X, method)
        xp = self.model_.backend.xp
        proba = self.model_.loss.probabilities(xp, outputs)
        if self.out_activation_ == "logistic":
            # sigma(z) < 1 for every z, but rounds to 1.0 from z ~ 37 (float64): keep the
            # largest float below 1 instead, so no logistic probability claims certainty.
            proba = self.model_.backend.ops.minimum(
                proba, 1.0 - float(xp.finfo(proba.dtype).eps) / 2
            )
        if self.n_outputs_ == 1:  # binary: the logistic output is the second class's
            proba = xp.concat([1 - proba, proba], axis=1)
        return proba, where_to

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), in the input's namespace."""
        proba, where_to = self._probabilities(X, "predict_proba")
        return self._answer(proba, where_to)

    def predict_log_proba(self, X):
        """``log(predict_proba(X))`` (``-inf`` where a probability is 0), in the
        input's namespace."""
        proba, where_to = self._probabilities(X, "predict_log_proba")
        xp = self.model_.backend.xp
        positive = proba > 0
        log_proba = xp.where(positive, xp.log(xp.where(positive, proba, 1.0)), -xp.inf)
        return self._answer(log_proba, where_to)

    def predict(self, X):
        """Labels from ``classes_`` (an indicator matrix for multilabel data)."""
        outputs, where_to = self._outputs(X, "predict")
        backend = self.model_.backend
        xp = backend.xp
        if self.out_activation_ == "logistic" and self.n_outputs_ > 1:
            return self._answer(xp.astype(outputs > 0, xp.int64), where_to)
        if self.out_activation_ == "softmax":
            index = xp.argmax(outputs, axis=1)
        else:
            index = xp.astype(outputs[:, 0] > 0, xp.int64)
        if where_to is None or self.classes_.dtype.kind not in "biuf":
            return self.classes_[backend.to_numpy(index)]
        return xp.take(backend.asarray(self.classes_), index)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = f"""Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor``
    on any Array API library.

    The same constructor, defaults, fitted attributes and training as
    ``sklearn.neural_network.MLPRegressor``, written on portnet's layers, losses and
    optimizers, so it trains on NumPy, PyTorch, CuPy, JAX or array-api-strict arrays.

    Parameters
    ----------
    loss : {{'squared_error', 'poisson'}}, default='squared_error'
        Half the squared error with an identity output, or half the Poisson deviance
        with an exponential output (targets >= 0). With several outputs, summed over
        them (scikit-learn reports the squared error's mean over outputs, but trains
        on the gradient of the sum; here the reported loss is the one trained on).
{SHARED_PARAMETERS}
    Attributes
    ----------
{SHARED_ATTRIBUTES}
    Examples
    --------
    >>> from portnet.sklearn import MLPRegressor
    >>> reg = MLPRegressor(random_state=1, max_iter=2000, tol=0.1).fit(X_train, y_train)
    >>> reg.predict(X_test[:2]), reg.score(X_test, y_test)
    """

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend=None,
        device=None,
        dtype=None,
        dropout=0.0,
        batch_norm=False,
        l1=0.0,
    ):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.device = device
        self.dtype = dtype
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.l1 = l1

    def _validate_input(self, X, y, incremental: bool, reset: bool):
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=True, reset=reset, **_validation(X)
        )
        y = to_host(y).astype(np.float64)  # a small host copy: checked once per fit
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y.reshape(y.shape[0], -1)

    def _output_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _device_targets(self, y: np.ndarray):
        model = self.model_
        checked = model.loss.check_host_targets(y, self.n_outputs_, y.shape[0])
        return model.backend.asarray(checked, model.dtype), None

    @available_if(_stochastic)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch on ``X``, ``y`` (and ``sample_weight``). Returns ``self``."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predictions (n_samples,) or (n_samples, n_outputs), in the input's namespace."""
        outputs, where_to = self._outputs(X, "predict")
        xp = self.model_.backend.xp
        predicted = self.model_.loss.predict(xp, outputs)
        if self.n_outputs_ == 1:
            predicted = xp.reshape(predicted, (-1,))
        return self._answer(predicted, where_to)


def _same_arrays(current: list[Any], published: list[Any]) -> bool:
    return len(current) == len(published) and all(
        a is b for a, b in zip(current, published, strict=True)
    )


def _first_partial_fit_call(estimator: Any, classes: Any) -> bool:
    """scikit-learn's rule: the first ``partial_fit`` names every class; later ones
    may repeat the same classes or leave them out."""
    known = getattr(estimator, "classes_", None)
    if known is None and classes is None:
        raise InputError("classes must be passed on the first call to partial_fit.")
    if classes is None:
        return False
    if known is not None:
        if not np.array_equal(known, unique_labels(classes)):
            raise InputError(
                f"`classes={classes!r}` is not the same as on last call to partial_fit, "
                f"was: {known!r}"
            )
        return False
    estimator.classes_ = unique_labels(classes)
    return True
