"""The non-framework references: scikit-learn's ``MLPClassifier``, the course-style and the
hand-tuned NumPy networks (:mod:`benchmarks.naive_numpy`, :mod:`benchmarks.careful_numpy`),
and ``gemm-only``, the matrix-product floor."""

from __future__ import annotations

import numpy as np

from .impl_base import LR, MOMENTUM, DenseOnlyImplementation, Implementation

# -- scikit-learn --------------------------------------------------------------------


class SklearnMLP(DenseOnlyImplementation):
    """``MLPClassifier(solver="sgd")`` with ``partial_fit`` once per epoch on float32 data."""

    name = "sklearn"
    note = (
        "MLPClassifier.partial_fit, one call per epoch; sklearn shuffles internally (its own "
        "RNG, per-batch fancy indexing), validates X on every call and uses its own "
        "Glorot-uniform init (it cannot be given initial weights)"
    )
    dense_only_reason = "MLPClassifier trains dense networks only: scikit-learn has no convolutions"

    @classmethod
    def unavailable_reason(cls):
        try:
            import sklearn  # noqa: F401
        except ImportError:
            return "scikit-learn is not installed (pip install scikit-learn)"
        return None

    def __init__(self, workload, batch_size, data, seed):
        from sklearn.neural_network import MLPClassifier

        activation = workload.activation if workload.hidden else "identity"
        self.clf = MLPClassifier(
            hidden_layer_sizes=workload.hidden,
            activation=activation,
            solver="sgd",
            momentum=MOMENTUM,
            nesterovs_momentum=False,
            learning_rate="constant",
            learning_rate_init=LR,
            alpha=0.0,
            batch_size=batch_size,
            shuffle=True,
            random_state=seed,
        )
        self.X, self.y = data.X, data.y
        self.classes = np.arange(data.n_classes)

    def run_epoch(self):
        self.clf.partial_fit(self.X, self.y, classes=self.classes)
        return float(self.clf.loss_)


# -- course-style NumPy ----------------------------------------------------------------


class NumpyNaive(DenseOnlyImplementation):
    """The reference studies' style (see :mod:`benchmarks.naive_numpy`), float64."""

    name = "numpy-naive-f64"
    note = "float64, class per layer, one-hot labels, allocating updates, dX of the first layer"

    dense_only_reason = (
        "the course-style baseline is a dense MLP; the reference studies wrote no CNN"
    )

    def __init__(self, workload, batch_size, data, seed):
        from .naive_numpy import NaiveMLP

        np.random.seed(seed)  # noqa: NPY002 - the global RNG, as course code uses it
        self.net = NaiveMLP(workload.initial_weights(seed), workload.activation)
        # The course code loads float64 data and one-hot labels once, before training.
        self.X = data.X.astype(np.float64)
        self.Y = np.eye(data.n_classes)[data.y]
        self.batch_size = batch_size

    def run_epoch(self):
        return float(self.net.train_epoch(self.X, self.Y, self.batch_size, LR, MOMENTUM))


class NumpyCareful(DenseOnlyImplementation):
    """Hand-tuned float32 NumPy (see :mod:`benchmarks.careful_numpy`): NumPy's best case.

    It shares NumPy's limit with ``portnet-numpy`` (elementwise work on one core),
    so it tells how far portnet is from hand-written code, and how far NumPy itself
    is from the floor on this machine.
    """

    name = "numpy-careful"
    note = "hand-written float32 NumPy: in-place updates and activations, no dX of the first layer"

    dense_only_reason = "the hand-tuned NumPy reference is a dense MLP: it has no convolutions"

    def __init__(self, workload, batch_size, data, seed):
        from .careful_numpy import CarefulMLP

        self.net = CarefulMLP(workload.initial_weights(seed), workload.activation)
        self.X, self.y = data.X, data.y
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def run_epoch(self):
        order = self.rng.permutation(self.X.shape[0])
        return self.net.train_epoch(self.X, self.y, order, self.batch_size, LR, MOMENTUM)


# -- the floor ---------------------------------------------------------------------------


class GemmOnly(Implementation):
    """Only the step's matrix products, into preallocated float32 buffers: the floor.

    Forward ``x @ W`` per layer, ``dW = a.T @ d`` per layer and ``dx = d @ W.T`` for
    all but the first layer, on contiguous row slices (no gather, no elementwise
    work, no update). The buffers hold finite random values so no denormals slow
    the products down.

    For the ``cnn`` workload the floor is defined the same way: the products a
    Conv2D step cannot avoid, i.e. the im2col matrix ``cols`` (N L, C K) times W^T
    forward, ``dW = cols^T d`` and ``dcols = d W`` (all but the first layer), then the
    dense layers as above. The im2col gather, col2im, pooling, batch norm and the
    elementwise work are what ``ratio_to_gemm_only`` then measures: how much of a CNN
    epoch is not matrix products. ``cols`` is a preallocated random buffer, not
    gathered from the batch (that gather is exactly what is left out).
    """

    name = "gemm-only"
    note = (
        "matrix products only, preallocated, contiguous batches: a lower bound "
        "(cnn: the im2col products of each Conv2D and the dense products, no gather)"
    )

    def __init__(self, workload, batch_size, data, seed):
        rng = np.random.default_rng(seed)
        self.kind = workload.kind
        if workload.kind == "cnn":
            self._init_products(workload, batch_size, data, seed, rng)
            return
        self.X = data.X
        self.batch_size = batch_size
        self.W = [W.astype(np.float32) for W, _ in workload.initial_weights(seed)]
        self.dW = [np.empty_like(W) for W in self.W]

        def buffer(width):
            return rng.standard_normal((batch_size, width), dtype=np.float32) * 0.01

        # z[l]: output of layer l; d[l]: gradient w.r.t. that output.
        self.z = [buffer(W.shape[1]) for W in self.W]
        self.d = [buffer(W.shape[1]) for W in self.W]

    def _init_products(self, workload, batch_size, data, seed, rng):
        """Buffers for the products of every Conv2D and Dense layer, as (rows, k) @ (k, n)."""
        self.n, self.batch_size = data.n, batch_size
        self.shapes = workload.product_shapes()
        params = [p for p in workload.initial_params(seed) if "W" in p]
        # Conv2D W (F, C, Kh, Kw) -> (C K, F); Dense W is already (n_in, n_out).
        self.W = [
            np.ascontiguousarray(p["W"].reshape(p["W"].shape[0], -1).T, dtype=np.float32)
            if p["W"].ndim == 4
            else p["W"].astype(np.float32)
            for p in params
        ]
        self.dW = [np.empty_like(W) for W in self.W]

        def buffer(rows, width):
            return rng.standard_normal((batch_size * rows, width), dtype=np.float32) * 0.01

        self.a = [buffer(s.rows, s.k) for s in self.shapes]  # layer inputs (cols for Conv2D)
        self.z = [buffer(s.rows, s.n) for s in self.shapes]  # outputs
        self.d = [buffer(s.rows, s.n) for s in self.shapes]  # output gradients
        self.da = [buffer(s.rows, s.k) if i else None for i, s in enumerate(self.shapes)]

    def _run_products(self):
        n, bs, W, dW, shapes = self.n, self.batch_size, self.W, self.dW, self.shapes
        for start in range(0, n, bs):
            m = min(bs, n - start)
            for layer, s in enumerate(shapes):
                r = m * s.rows
                np.matmul(self.a[layer][:r], W[layer], out=self.z[layer][:r])
            for layer in range(len(W) - 1, -1, -1):
                r = m * shapes[layer].rows
                np.matmul(self.a[layer][:r].T, self.d[layer][:r], out=dW[layer])
                if layer:
                    np.matmul(self.d[layer][:r], W[layer].T, out=self.da[layer][:r])
        return float("nan")

    def run_epoch(self):
        if self.kind == "cnn":
            return self._run_products()
        n, bs, W, z, d, dW = self.X.shape[0], self.batch_size, self.W, self.z, self.d, self.dW
        for start in range(0, n, bs):
            x = self.X[start : start + bs]
            m = x.shape[0]
            inputs = [x]
            for layer in range(len(W)):
                np.matmul(inputs[-1], W[layer], out=z[layer][:m])
                inputs.append(z[layer][:m])
            for layer in range(len(W) - 1, -1, -1):
                np.matmul(inputs[layer].T, d[layer][:m], out=dW[layer])
                if layer:
                    np.matmul(d[layer][:m], W[layer].T, out=d[layer - 1][:m])
        return float("nan")
