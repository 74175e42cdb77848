r"""Weight penalties added to the loss and to its gradient.

They act on weights only (the parameters a layer lists in ``weight_names``),
never on biases, as in the reference studies.
"""

from __future__ import annotations

from typing import Any

from .config import build, check_number
from .sync_free import sign


class Regularizer:
    """``reg(xp, W) -> (penalty, grad)`` for one weight array."""

    def __init__(self, lam: float):
        self.lam = check_number(f"{type(self).__name__} strength", lam, low=0.0)

    def get_config(self) -> dict[str, Any]:
        return {"lam": self.lam}

    def __call__(self, xp: Any, W: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.lam:g})"


class L2(Regularizer):
    r""":math:`\frac{\lambda}{2}\lVert W\rVert_2^2`, gradient :math:`\lambda W` (S1's form)."""

    def __call__(self, xp, W):
        return (0.5 * self.lam) * xp.sum(W * W), self.lam * W


class L1(Regularizer):
    r""":math:`\lambda\lVert W\rVert_1`, gradient :math:`\lambda\,\mathrm{sign}(W)` (0 at 0)."""

    def __call__(self, xp, W):
        return self.lam * xp.sum(xp.abs(W)), self.lam * sign(xp, W)


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
