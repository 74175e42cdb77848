"""scikit-learn estimators over :class:`portnet.Model`: ``PortnetClassifier``, ``PortnetRegressor``.

They train an MLP (:func:`portnet.mlp`) with :meth:`Model.fit` and work in ``Pipeline``,
``GridSearchCV`` and ``cross_val_score``. Arrays live where scikit-learn's array API
support puts them: by default inputs become NumPy arrays, training runs on ``backend``
and outputs are NumPy arrays; under ``sklearn.set_config(array_api_dispatch=True)``
(with ``SCIPY_ARRAY_API=1``, as scikit-learn requires) a torch, CuPy, JAX or
array-api-strict input trains where it lives, outputs stay there and later inputs must
come from the same namespace and device. ``classes_`` is NumPy: labels may be strings.

Needs ``pip install portnet[sklearn]``; ``import portnet`` alone never imports scikit-learn.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import numbers
import tempfile
from pathlib import Path
from typing import Any

import array_api_compat
import numpy as np

try:
    import sklearn
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # validate_data and __sklearn_tags__ are from scikit-learn 1.6
    raise ImportError(
        f"portnet.sklearn needs scikit-learn >= 1.6, missing or too old here ({exc}): "
        "pip install portnet[sklearn] (add -U to upgrade an older scikit-learn)"
    ) from exc

from ._array import to_host
from .backends import Backend, backend_of, get_backend
from .config import check_number
from .errors import ConfigError, DeviceMismatchError, InputError
from .model import Model
from .networks import mlp
from .optim import Optimizer, get_optimizer

__all__ = ["PortnetClassifier", "PortnetRegressor"]

_PARAMETERS = """
    Parameters
    ----------
    hidden : tuple of int, default=(100,)
        Widths of the hidden layers (``()``: none, a linear model).
    activation : {"relu", "tanh", "sigmoid", "leaky_relu"}, default="relu"
    dropout : float, default=0.0, the dropout rate after each hidden activation
    optimizer : str or portnet.Optimizer, default="adam"
        ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"rmsprop"``, ``"adam"`` or an object.
    lr, momentum : float, default=1e-3, 0.9
        A named optimizer's rate, and its momentum (``"momentum"``, ``"nesterov"``).
    epochs, batch_size : int, default=10, 128
        Epochs of :meth:`fit` (:meth:`partial_fit` runs one) and minibatch size.
    l1, l2 : float, default=0.0
        Penalty strengths on the weights.
    patience : int, optional
        Early stopping in :meth:`fit`: stop after this many epochs without a lower
        validation loss and keep the best epoch's weights.
    validation_fraction : float, default=0.1
        With ``patience``: the share held out (at random, stratified for the
        classifier) for the validation loss; ``0`` or ``None``: watch the training loss.
    backend, device : str, optional
        Where NumPy input trains (:func:`portnet.get_backend`). Under array API
        dispatch a device input trains where it lives.
    dtype : str, default="float32"
        The network's floating type; probabilities and regression outputs have it.
    random_state : int, RandomState or None, default=None
        Seeds the initial weights, the shuffling, dropout and the validation split.
    verbose : int, default=0
        0: silent (a divergence is a ``portnet.DivergenceWarning``); 1: a line per epoch.

    Attributes
    ----------
    n_features_in_ : int
    feature_names_in_ : ndarray of str, set only when X had string column names
    model_ : portnet.Model
        The trained network, with its whole API (``save``, ``evaluate`` ...).
    history_ : dict of list
        Per-epoch ``train_loss``, ``val_loss``, ``lr`` ... over every fit call.
    n_iter_ : int, the epochs trained
"""


def _dispatching() -> bool:
    return bool(sklearn.get_config().get("array_api_dispatch", False))


def _input_backend(X: Any) -> Backend | None:
    """The backend of a device input under dispatch (outputs go there); ``None``: NumPy."""
    if not _dispatching() or array_api_compat.is_numpy_array(X):
        return None
    return backend_of(X)


def _where(backend: Backend | None) -> str:
    return "NumPy (host)" if backend is None else f"{backend.name} on {backend.device_name}"


@contextlib.contextmanager
def _input_errors():
    """scikit-learn's validation errors as :class:`InputError`, worded as scikit-learn
    words them (users search for that wording, and the estimator checks match on it)."""
    try:
        yield
    except ValueError as exc:
        raise InputError(str(exc)) from exc


@dataclasses.dataclass(frozen=True)
class _SavedModel:
    """A fitted model as portnet's model file (data, never pickled code), for pickling."""

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


class _PortnetEstimator(BaseEstimator):
    """What the classifier and the regressor share: hyper-parameters, fit, placement."""

    def __init__(
        self,
        hidden=(100,),
        activation="relu",
        dropout=0.0,
        optimizer="adam",
        lr=1e-3,
        momentum=0.9,
        epochs=10,
        batch_size=128,
        l1=0.0,
        l2=0.0,
        patience=None,
        validation_fraction=0.1,
        backend=None,
        device=None,
        dtype="float32",
        random_state=None,
        verbose=0,
    ):
        self.hidden = hidden
        self.activation = activation
        self.dropout = dropout
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.epochs = epochs
        self.batch_size = batch_size
        self.l1 = l1
        self.l2 = l2
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.backend = backend
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        return tags

    # -- training ---------------------------------------------------------------
    def fit(self, X, y):
        """Train a new network on ``X`` (n_samples, n_features) and ``y``; returns ``self``."""
        return self._fit(X, y, first=True, epochs=self.epochs, patience=self.patience)

    def partial_fit(self, X, y):
        """One epoch on ``X``, ``y``, continuing the training; the first call builds the network."""
        return self._fit(X, y, first=not hasattr(self, "model_"), epochs=1)

    def _fit(self, X, y, *, first: bool, epochs: int, patience=None, classes=None):
        with _input_errors():
            X, y = validate_data(self, X, y, reset=first, **self._y_checks)
        targets = self._encode(to_host(y), first, classes)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        if first:
            backend = self._training_backend(X)
            self._fitted_on = _where(_input_backend(X))  # a string: pickles
            self.model_ = self._build(backend, X.shape[1], seed)
            self.history_ = {}
        else:
            self._check_placement(X, "partial_fit")
        validation = None
        X, y = self.model_.prepare_data(X, targets)
        if patience is not None and self.validation_fraction:
            X, y, validation = self._hold_out(X, y, targets, seed)
        options = {"batch_size": self.batch_size, "verbose": 1 if self.verbose else 0}
        # A diverging fit is reported by portnet's DivergenceWarning; NumPy's overflow
        # warnings would only repeat it (no other backend gives them).
        with np.errstate(over="ignore", invalid="ignore"):
            history = self.model_.fit(
                X, y, epochs=epochs, validation_data=validation, patience=patience, **options
            )
        for key, values in history.history.items():
            self.history_.setdefault(key, []).extend(values)
        self.n_iter_ = self.model_.epochs_trained
        return self

    def _training_backend(self, X) -> Backend:
        found = _input_backend(X)
        if found is None or self.backend is None:
            return get_backend(self.backend, self.device) if found is None else found
        if _where(get_backend(self.backend, self.device)) != _where(found):
            raise DeviceMismatchError(
                f"X is a {_where(found)} array but backend={self.backend!r}, "
                f"device={self.device!r} was asked: under array API dispatch the data "
                "decides; leave backend and device unset, or pass NumPy data."
            )
        return found

    def _build(self, backend: Backend, n_in: int, seed: int) -> Model:
        hidden = (self.hidden,) if isinstance(self.hidden, numbers.Integral) else self.hidden
        try:
            widths = [check_number("hidden", w, low=1, integer=True) for w in hidden]
        except TypeError:
            raise ConfigError(f"hidden must be a tuple of layer widths, got {hidden!r}") from None
        if not isinstance(self.activation, str):
            raise ConfigError(f"activation must be a name, got {self.activation!r}")
        if isinstance(self.optimizer, Optimizer):
            optimizer = copy.deepcopy(self.optimizer)  # a hyper-parameter is never trained
        else:
            named = str(self.optimizer).lower() in ("momentum", "nesterov")
            extra = {"gamma": self.momentum} if named else {}
            optimizer = get_optimizer(self.optimizer, lr=self.lr, **extra)
        layers = mlp([n_in, *widths, self._n_outputs()], self.activation, dropout=self.dropout)
        penalties = {"l1": self.l1, "l2": self.l2}
        return Model(
            layers, self._loss, optimizer, **penalties, backend=backend, seed=seed, dtype=self.dtype
        )

    def _hold_out(self, X, y, targets: np.ndarray, seed: int):
        """Split device data into training and validation rows, at random."""
        fraction = check_number("validation_fraction", self.validation_fraction, low=0, high=1)
        n = len(targets)
        n_val = int(round(n * fraction))
        if not 0 < n_val < n:
            raise InputError(f"validation_fraction={fraction} of n_samples = {n} empties a side")
        stratify = None
        if is_classifier(self):  # where it can: each class twice, and room on both sides
            counts = np.bincount(targets)
            if counts.min() >= 2 and len(counts) <= n_val <= n - len(counts):
                stratify = targets
        train, val = train_test_split(
            np.arange(n), test_size=n_val, random_state=seed, stratify=stratify
        )
        backend = self.model_.backend

        def rows(array, index):
            return backend.xp.take(array, backend.asarray(np.sort(index)), axis=0)

        return rows(X, train), rows(y, train), (rows(X, val), rows(y, val))

    # -- inference ------------------------------------------------------------
    def _check_placement(self, X, method: str) -> None:
        if _dispatching() and _where(_input_backend(X)) != self._fitted_on:
            raise DeviceMismatchError(
                f"{type(self).__name__}.{method}() got X as {_where(_input_backend(X))} "
                f"but was fitted on {self._fitted_on}: inputs must use the same "
                "namespace and device as the data given to fit."
            )

    def _validated(self, X, method: str):
        """``X`` checked against the fit, and the backend outputs go to (``None``: NumPy)."""
        check_is_fitted(self)
        with _input_errors():
            X = validate_data(self, X, reset=False)
        self._check_placement(X, method)
        return X, _input_backend(X)

    def _output(self, array, where: Backend | None):
        return array if where is not None else self.model_.backend.to_numpy(array)

    # -- pickling: the model travels as its model file ---------------------------
    def __getstate__(self):
        state = dict(super().__getstate__())
        if isinstance(state.get("model_"), Model):
            state["model_"] = _SavedModel.of(state["model_"])
        return state

    def __setstate__(self, state):
        if isinstance(state.get("model_"), _SavedModel):
            state = {**state, "model_": state["model_"].load()}
        super().__setstate__(state)


class PortnetClassifier(ClassifierMixin, _PortnetEstimator):
    __doc__ = f"""A portnet MLP classifier (softmax cross-entropy) with scikit-learn's interface.
{_PARAMETERS}
    classes_ : ndarray of shape (n_classes,)
        The sorted labels, a NumPy array wherever the data lives.

    Examples
    --------
    >>> PortnetClassifier(hidden=(64,), epochs=20, random_state=0).fit(X, y).predict_proba(X)
    """

    _loss = "softmax_cross_entropy"
    _y_checks: dict = {}

    def _n_outputs(self) -> int:
        return len(self.classes_)

    def _encode(self, y: np.ndarray, first: bool, classes) -> np.ndarray:
        """Labels as indices into ``classes_``, which the first call sets and later ones keep."""
        with _input_errors():
            check_classification_targets(y)
        named = np.unique(y if classes is None else np.asarray(classes))
        if not first and classes is not None and not np.array_equal(named, self.classes_):
            raise InputError(f"classes={named.tolist()} differs from the first call's classes_.")
        self.classes_ = named if first else self.classes_
        unknown = ~np.isin(y, self.classes_)
        if unknown.any():
            raise InputError(
                f"y has labels {np.unique(y[unknown])[:5].tolist()} not in classes_ "
                f"{self.classes_[:10].tolist()}: name every class in partial_fit's first call."
            )
        return np.searchsorted(self.classes_, y)

    def partial_fit(self, X, y, classes=None):
        """One epoch on ``X``, ``y``; the first call builds the network and needs ``classes``."""
        first = not hasattr(self, "model_")
        if first and classes is None:
            raise InputError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, first=first, epochs=1, classes=classes)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), in the input's namespace and device."""
        X, where = self._validated(X, "predict_proba")
        return self._output(self.model_.predict_proba(X), where)

    def predict(self, X):
        """Labels from ``classes_``, in the input's namespace and device (strings: NumPy)."""
        X, where = self._validated(X, "predict")
        index = self.model_.predict(X)
        backend = self.model_.backend
        if where is None or self.classes_.dtype.kind not in "biuf":
            return self.classes_[backend.to_numpy(index)]
        return backend.xp.take(backend.asarray(self.classes_), index)


class PortnetRegressor(RegressorMixin, _PortnetEstimator):
    __doc__ = f"""A portnet MLP regressor (mean squared error) with scikit-learn's interface.
{_PARAMETERS}
    Examples
    --------
    >>> PortnetRegressor(hidden=(32,), lr=1e-2, epochs=50, random_state=0).fit(X, y).score(X, y)
    """

    _loss = "mse"
    _y_checks = {"y_numeric": True}

    def _n_outputs(self) -> int:
        return 1

    def _encode(self, y: np.ndarray, first: bool, classes) -> np.ndarray:
        return y

    def predict(self, X):
        """Predicted targets (n_samples,), in the input's namespace and device."""
        X, where = self._validated(X, "predict")
        xp = self.model_.backend.xp
        return self._output(xp.reshape(self.model_.predict(X), (-1,)), where)
