"""A hand-tuned float32 NumPy MLP: what single-threaded NumPy can do at best.

Issue #4's "careful float32 NumPy, in-place updates" row. Written for speed, not
for reading or portability: every elementwise step works in place (``out=``),
the learning rate is folded into the small output gradient, the first layer
computes no input gradient, and the softmax gradient subtracts 1 at the labels by
fancy indexing instead of building one-hot rows. It trains the same network with
the same maths as portnet (classic momentum, mean softmax cross-entropy), so the
gap between the two is what portnet's portability and bookkeeping cost.

NumPy runs elementwise work on one core whatever the machine has, while the
matrix products use every BLAS thread; this reference shares that limit with
``portnet-numpy``.
"""

from __future__ import annotations

import numpy as np


class CarefulMLP:
    """Dense layers with ReLU or tanh between them, trained by classic momentum.

    Parameters
    ----------
    weights : list of (W, b)
        Initial weights per dense layer, ``W`` of shape ``(n_in, n_out)``; copied
        as float32.
    activation : str
        ``"relu"`` or ``"tanh"`` between dense layers.
    """

    def __init__(self, weights, activation: str = "relu"):
        if activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
        self.activation = activation
        self.W = [np.array(W, dtype=np.float32) for W, _ in weights]
        self.b = [np.array(b, dtype=np.float32) for _, b in weights]
        self.vW = [np.zeros_like(W) for W in self.W]
        self.vb = [np.zeros_like(b) for b in self.b]

    def step(self, x, y, lr: float, momentum: float) -> tuple[float, int]:
        """One step on float32 ``x`` and integer labels ``y``; returns summed loss and correct."""
        W, b, last = self.W, self.b, len(self.W) - 1
        acts = [x]  # acts[l] is the input of dense layer l
        for layer in range(last + 1):
            z = acts[layer] @ W[layer]
            z += b[layer]
            if layer < last:
                if self.activation == "relu":
                    np.maximum(z, 0.0, out=z)
                else:
                    np.tanh(z, out=z)
            acts.append(z)
        d, loss_sum, correct = self._softmax_gradient(acts.pop(), y, lr)
        for layer in range(last, -1, -1):
            grad_W = acts[layer].T @ d
            grad_b = d.sum(axis=0)
            if layer:
                d_below = d @ W[layer].T  # before W changes below
                self._activation_backprop(d_below, acts[layer])
            self._momentum(self.vW[layer], grad_W, W[layer], momentum)
            self._momentum(self.vb[layer], grad_b, b[layer], momentum)
            if layer:
                d = d_below
        return loss_sum, correct

    @staticmethod
    def _softmax_gradient(logits, y, lr):
        """Turn ``logits`` in place into ``lr * (softmax - onehot) / m``."""
        m, rows = logits.shape[0], np.arange(logits.shape[0])
        correct = int(np.count_nonzero(logits.argmax(axis=1) == y))
        logits -= logits.max(axis=1, keepdims=True)
        picked = logits[rows, y]  # shifted logit of the true class
        np.exp(logits, out=logits)
        norm = logits.sum(axis=1, keepdims=True)
        loss_sum = float(np.sum(np.log(norm[:, 0]) - picked))
        logits /= norm
        logits[rows, y] -= 1.0
        logits *= lr / m
        return logits, loss_sum, correct

    def _activation_backprop(self, d, out):
        if self.activation == "relu":
            d *= out > 0
        else:  # tanh' = 1 - tanh^2, from the saved output
            slope = out * out
            np.subtract(1.0, slope, out=slope)
            d *= slope

    @staticmethod
    def _momentum(v, grad, p, momentum):
        v *= momentum
        v -= grad  # grad already holds lr * gradient
        p += v

    def train_epoch(self, X, y, order, batch_size: int, lr: float, momentum: float) -> float:
        """One epoch over ``X[order]``; returns the mean loss."""
        n, loss_sum = order.shape[0], 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss, _ = self.step(X.take(idx, axis=0), y.take(idx), lr, momentum)
            loss_sum += loss
        return loss_sum / n
