r"""Weight penalties added to the loss and to its gradient.

They act on weights only (the parameters a layer lists in ``weight_names``),
never on biases, as in the reference studies. A penalty is either added once per
batch, beside the mean loss (the reference studies' and Keras's form), or, with
``per_sample=True``, divided by the batch's total sample weight first (its size
without sample weights): scikit-learn's ``alpha`` is such a penalty.
"""

from __future__ import annotations

from typing import Any

from ..backends.ops import ops_for
from ..config import build, check_number


class Regularizer:
    r"""``reg(xp, W) -> (penalty, grad)`` for one weight array.

    Parameters
    ----------
    lam : float
        The strength.
    per_sample : bool
        Divide the penalty (and its gradient) by the batch's total sample weight,
        so that ``lam`` weighs it against the summed rather than the mean loss
        (scikit-learn's ``alpha``: :math:`\frac{\alpha}{2n}\lVert W\rVert^2`).
        The training step does the division (:meth:`portnet.Trainer.loss_and_grads`).
    """

    def __init__(self, lam: float, per_sample: bool = False):
        self.lam = check_number(f"{type(self).__name__} strength", lam, low=0.0)
        self.per_sample = bool(per_sample)

    def get_config(self) -> dict[str, Any]:
        return {"lam": self.lam, **({"per_sample": True} if self.per_sample else {})}

    def __call__(self, xp: Any, W: Any) -> tuple[Any, Any]:
        return self.value(xp, W), self.gradient(xp, W)

    def value(self, xp: Any, W: Any) -> Any:
        """The penalty of ``W`` (0-d)."""
        raise NotImplementedError

    def gradient(self, xp: Any, W: Any, scale: Any = 1.0) -> Any:
        """The penalty's gradient with respect to ``W``, times ``scale`` (one pass)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        extra = ", per_sample=True" if self.per_sample else ""
        return f"{type(self).__name__}({self.lam:g}{extra})"


class L2(Regularizer):
    r""":math:`\frac{\lambda}{2}\lVert W\rVert_2^2`, gradient :math:`\lambda W` (S1's form)."""

    def value(self, xp, W):
        flat = xp.reshape(W, (-1,))
        return (0.5 * self.lam) * ops_for(xp).dot(flat, flat)  # a dot product: no W * W temporary

    def gradient(self, xp, W, scale=1.0):
        return (self.lam * scale) * W


class L1(Regularizer):
    r""":math:`\lambda\lVert W\rVert_1`, gradient :math:`\lambda\,\mathrm{sign}(W)` (0 at 0)."""

    def value(self, xp, W):
        return self.lam * xp.sum(xp.abs(W))

    def gradient(self, xp, W, scale=1.0):
        return (self.lam * scale) * ops_for(xp).sign(W)


def get_regularizers(l1: float = 0.0, l2: float = 0.0) -> list[Regularizer]:
    """The regularizers for the given strengths (zero strengths are left out)."""
    regs: list[Regularizer] = []
    if l1:
        regs.append(L1(l1))
    if l2:
        regs.append(L2(l2))
    return regs


REGULARIZERS = {cls.__name__: cls for cls in (L1, L2)}


def regularizer_from_spec(spec: dict[str, Any]) -> Regularizer:
    """Rebuild a regularizer from ``{"class": "L2", "config": {"lam": ...}}``."""
    return build(spec, REGULARIZERS, "regularizer")
