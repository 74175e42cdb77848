"""scikit-learn's MLP on every Array API library: ``MLPClassifier``, ``MLPRegressor``.

Change one import and keep your code::

    from portnet.sklearn import MLPClassifier   # was: from sklearn.neural_network import ...

The estimators take scikit-learn's constructor arguments, defaults and fitted
attributes and train the same way (:mod:`portnet.sklearn._estimators` says how),
on NumPy, PyTorch, CuPy, JAX or array-api-strict arrays: under
``sklearn.set_config(array_api_dispatch=True)`` (with ``SCIPY_ARRAY_API=1``) a
device input trains where it lives and predictions stay there. portnet adds
keyword-only options after scikit-learn's: ``backend``, ``device``, ``dtype``,
``dropout``, ``batch_norm`` and ``l1``, and ``model_``, the trained network as a
:class:`portnet.Model`.

Needs ``pip install "portnet[sklearn]"``; ``import portnet`` alone never imports
scikit-learn.
"""

from __future__ import annotations

try:
    import sklearn  # noqa: F401
    from sklearn.utils.validation import validate_data  # noqa: F401  (scikit-learn >= 1.6)
except ImportError as exc:
    raise ImportError(
        f"portnet.sklearn needs scikit-learn >= 1.7, missing or too old here ({exc}): "
        'pip install "portnet[sklearn]" (add -U to upgrade an older scikit-learn)'
    ) from exc

from ._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]

#: The estimators of portnet 0.1's first releases, replaced by the scikit-learn names.
_REMOVED = {"PortnetClassifier": "MLPClassifier", "PortnetRegressor": "MLPRegressor"}


def __getattr__(name: str):
    if name in _REMOVED:
        raise ImportError(
            f"portnet.sklearn.{name} was replaced by portnet.sklearn.{_REMOVED[name]}, which "
            "takes scikit-learn's parameter names (hidden_layer_sizes, learning_rate_init, "
            "max_iter ...). A pickled estimator of the old class cannot be loaded: fit a "
            f"{_REMOVED[name]} again, or load its model_ file with portnet.Model.load."
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
