"""Data augmentation as layers: random in training, the identity in inference.

An augmentation layer sits in the network like :class:`portnet.Dropout`, so it runs
on the device, per minibatch, from the backend's native generator, and a saved model
keeps it (inactive) in its layer list. Put it right after the layer that makes
images of the flat rows (:class:`portnet.Reshape`).
"""

from __future__ import annotations

from .errors import ConfigError
from .layers import Layer


class RandomFlip(Layer):
    r"""Mirror each image left-right with probability ``probability``, in training only.

    For an ``N x ... x W`` batch, sample :math:`n` becomes
    :math:`y_{n,\dots,j} = x_{n,\dots,W-1-j}` when its draw :math:`u_n < p`.
    Mirroring is its own inverse and its own adjoint, so backprop mirrors
    :math:`\delta` of the same samples. A mirrored shirt is still a shirt: on
    Fashion-MNIST this adds plausible training images for free (it would not suit
    digits or text).

    Parameters
    ----------
    probability : float
        Chance that a sample is mirrored, in [0, 1]; 0.5 by default.

    Notes
    -----
    Written with ``flip`` and ``where`` from the Array API: no indexing by a
    boolean mask, so it runs unchanged on every backend. In inference
    (``ctx.training`` false) the layer returns its input.
    """

    def __init__(self, probability: float = 0.5):
        if not 0.0 <= float(probability) <= 1.0:
            raise ConfigError(f"flip probability must be in [0, 1], got {probability}")
        self.probability = float(probability)

    def forward(self, params, x, ctx):
        if not ctx.training or self.probability == 0.0:
            return x, lambda dy: (dy, {})
        if x.ndim < 3:
            raise ConfigError(
                f"RandomFlip mirrors images (N x ... x H x W); got shape {tuple(x.shape)}. "
                "Put it after a Reshape layer that makes images of the flat rows."
            )
        if ctx.random is None:
            raise ConfigError("RandomFlip in training mode needs ctx.random (a RandomStream)")
        xp = ctx.xp
        n = x.shape[0]
        draws = ctx.random.uniform((n,), x.dtype)
        # One draw per sample, broadcast over its pixels.
        flip = xp.reshape(draws < self.probability, (n,) + (1,) * (x.ndim - 1))

        def mirror(a):
            return xp.where(flip, xp.flip(a, axis=-1), a)

        return mirror(x), lambda dy: (mirror(dy), {})

    def get_config(self):
        return {"probability": self.probability}
