"""A course-style NumPy MLP, written plainly on purpose: the reference studies' own style.

float64 everywhere, a Python class per layer that stores what it needs, one-hot
labels, ``np.exp`` softmax, and updates that allocate new arrays. It is the
baseline portnet is meant to beat, so nothing here is tuned; do not "fix" it.
"""

from __future__ import annotations

import numpy as np


class DenseLayer:
    def __init__(self, W, b):
        self.W = np.array(W, dtype=np.float64)
        self.b = np.array(b, dtype=np.float64)
        self.vW = np.zeros_like(self.W)
        self.vb = np.zeros_like(self.b)

    def forward(self, x):
        self.x = x
        return np.dot(x, self.W) + self.b

    def backward(self, grad):
        self.dW = np.dot(self.x.T, grad)
        self.db = np.sum(grad, axis=0)
        return np.dot(grad, self.W.T)

    def update(self, lr, momentum):
        self.vW = momentum * self.vW - lr * self.dW
        self.vb = momentum * self.vb - lr * self.db
        self.W = self.W + self.vW
        self.b = self.b + self.vb


class ReLULayer:
    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, grad):
        return grad * self.mask


class TanhLayer:
    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, grad):
        return grad * (1 - self.out**2)


def softmax(z):
    z = z - np.max(z, axis=1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=1, keepdims=True)


class NaiveMLP:
    """A list of layers trained with softmax cross-entropy and classic momentum.

    Parameters
    ----------
    weights : list of (W, b)
        Initial weights per dense layer.
    activation : str
        ``"relu"`` or ``"tanh"`` between dense layers.
    """

    def __init__(self, weights, activation="relu"):
        self.layers = []
        for i, (W, b) in enumerate(weights):
            self.layers.append(DenseLayer(W, b))
            if i < len(weights) - 1:
                self.layers.append(ReLULayer() if activation == "relu" else TanhLayer())

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def train_epoch(self, X, Y_onehot, batch_size, lr=0.01, momentum=0.9):
        """One epoch over a fresh permutation; returns the mean loss."""
        n = X.shape[0]
        perm = np.random.permutation(n)  # noqa: NPY002 - course style, on purpose
        total_loss = 0.0
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            xb = X[idx]
            yb = Y_onehot[idx]
            probs = softmax(self.forward(xb))
            loss = -np.sum(yb * np.log(probs + 1e-12)) / len(idx)
            total_loss += loss * len(idx)
            grad = (probs - yb) / len(idx)
            for layer in reversed(self.layers):
                grad = layer.backward(grad)
            for layer in self.layers:
                if isinstance(layer, DenseLayer):
                    layer.update(lr, momentum)
        return total_loss / n
