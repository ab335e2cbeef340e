"""The stability threshold of an optimizer: the sharpness above which its step diverges.

On a quadratic with curvature ``lambda`` along an eigenvector of the Hessian,
gradient descent with learning rate ``eta`` is stable iff ``lambda < 2 / eta``;
training sits at this edge of stability (Cohen et al. 2021, "Gradient descent on
neural networks typically occurs at the edge of stability"). The edge moves with
the optimizer:

=====================================  ==============================  =====================
optimizer (``torch.optim``)            threshold on ``lambda_1``        ``kind``
=====================================  ==============================  =====================
SGD, no momentum                       ``2 / eta``                     ``"2/lr"``
SGD, heavy-ball momentum ``beta``      ``(2 + 2 beta) / eta``          ``"(2+2b)/lr"``
SGD, momentum with dampening ``d``     ``(2 + 2 beta) / ((1 - d) eta)``  ``"(2+2b)/((1-d)lr)"``
SGD, Nesterov momentum ``beta``        ``(2 + 2 beta) / ((1 + 2 beta) eta)``  ``"(2+2b)/((1+2b)lr)"``
Adam, AdamW (``beta1``)                ``(2 + 2 beta1) / ((1 - beta1) eta)``  ``"(2+2b1)/((1-b1)lr)"``
RMSprop, no momentum                   ``2 / eta``                     ``"2/lr"``
RMSprop, momentum ``beta``             ``(2 + 2 beta) / eta``          ``"(2+2b)/lr"``
=====================================  ==============================  =====================

The SGD rows bound ``lambda_1(H)`` (Cohen et al. 2021, Appendix; heavy ball
``v <- beta v + g``, ``w <- w - eta v``). The adaptive rows bound the
*preconditioned* sharpness ``lambda_1(P^-1 H)`` for the optimizer's current
diagonal preconditioner ``P`` held fixed (Cohen et al. 2022, "Adaptive gradient
methods at the edge of stability", Sec. 2: Adam's EMA momentum gives
``(2 + 2 beta1) / ((1 - beta1) eta)``, 38 / eta at ``beta1 = 0.9``); they are
flagged ``preconditioned=True``. Compare them with
:class:`~spectra.PreconditionedOperator`'s top eigenvalue, not with the Hessian's.

Derivations of the two rows that are not in the papers (the characteristic
polynomial of the two-term recurrence on ``f(w) = lambda w^2 / 2``, stable iff
both roots lie in the unit disc, Jury's test):

* dampening ``d`` (``v <- beta v + (1 - d) g``) is heavy ball with the learning rate
  ``(1 - d) eta``;
* Nesterov (PyTorch's form, ``v <- beta v + g``, ``w <- w - eta (g + beta v)``)
  has ``z^2 - (1 + beta)(1 - eta lambda) z + beta (1 - eta lambda)``, stable iff
  ``eta lambda < (2 + 2 beta) / (1 + 2 beta)``.

Both are checked by running ``torch.optim.SGD`` on such a quadratic just below
and just above the threshold (``tests/spectra/curvature/test_stability.py``).

What is left out, by design:

* **Weight decay is ignored.** L2 decay ``wd`` adds ``wd * I`` to the Hessian the
  step sees (AdamW's decoupled decay shrinks the weights instead); the threshold
  returned is the optimizer's, to be compared with the sharpness of the loss
  without the decay term, which is what spectra's operators compute.
* **One learning rate.** Thresholds use the optimizer's *current* ``lr`` (after
  any scheduler) and betas; when param groups disagree on them there is no single
  threshold and ``None`` is returned.
* **No theory, no threshold.** Other optimizers (NAdam, RAdam, Adagrad, LBFGS,
  and the toolkit's CALR, SMARAN, LPSGD, Lion, DCAO with its adaptive lr) get
  ``None`` unless they define a ``stability_threshold()`` method returning a
  :class:`StabilityThreshold` (or ``None``): spectra asks the optimizer first,
  by duck typing, and never imports ``optim``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["KINDS", "StabilityThreshold", "stability_threshold"]

#: The ``kind`` strings of :class:`StabilityThreshold`, as recorded in the
#: ``threshold_kind`` probe column ("" in that column: no threshold).
KINDS: tuple[str, ...] = (
    "2/lr",
    "(2+2b)/lr",
    "(2+2b)/((1-d)lr)",
    "(2+2b)/((1+2b)lr)",
    "(2+2b1)/((1-b1)lr)",
)


@dataclass(frozen=True)
class StabilityThreshold:
    """An optimizer's stability threshold on the (preconditioned) sharpness.

    Attributes:
        value: the threshold, in units of the loss's curvature (1 / lr).
        kind: the formula, one of :data:`KINDS` (e.g. ``"(2+2b)/lr"``).
        preconditioned: ``True`` when ``value`` bounds ``lambda_1(P^-1 H)`` of the
            optimizer's diagonal preconditioner ``P`` (Adam, RMSprop), ``False``
            when it bounds ``lambda_1(H)``.
        lr: the learning rate ``eta`` used.
        beta: the momentum ``beta`` (or Adam's ``beta1``) used; 0 without momentum.
    """

    value: float
    kind: str
    preconditioned: bool
    lr: float
    beta: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not (isinstance(self.value, (int, float)) and math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"value must be a positive finite number, got {self.value!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"value": float(self.value), "kind": self.kind,
                "preconditioned": bool(self.preconditioned), "lr": float(self.lr),
                "beta": float(self.beta)}


def stability_threshold(optimizer: Any) -> StabilityThreshold | None:
    """The stability threshold of ``optimizer`` at its current learning rate.

    Args:
        optimizer: a ``torch.optim.Optimizer`` (``SGD``, ``Adam``, ``AdamW``,
            ``RMSprop`` have thresholds), or any object with a
            ``stability_threshold()`` method, which is called instead.

    Returns:
        A :class:`StabilityThreshold`, or ``None`` where theory gives none (see the
        module docstring: other optimizers, param groups with different lrs or
        betas, a learning rate that is not positive).

    Raises:
        TypeError: ``optimizer`` has neither ``param_groups`` nor a
            ``stability_threshold()`` method, or that method returned something other
            than a :class:`StabilityThreshold` or ``None``.
    """
    own = getattr(optimizer, "stability_threshold", None)
    if callable(own):
        out = own()
        if out is not None and not isinstance(out, StabilityThreshold):
            raise TypeError(
                f"{type(optimizer).__name__}.stability_threshold() must return a "
                f"spectra.StabilityThreshold or None, got {type(out).__name__}"
            )
        return out
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, (list, tuple)) or not groups:
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer (with param_groups) or define "
            f"stability_threshold(), got {type(optimizer).__name__}"
        )
    if isinstance(optimizer, torch.optim.SGD):
        return _same(groups, _sgd)
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return _same(groups, _adam)
    if isinstance(optimizer, torch.optim.RMSprop):
        return _same(groups, _rmsprop)
    return None


def _same(groups: list[dict[str, Any]], rule: Any) -> StabilityThreshold | None:
    """``rule`` of the first group, or ``None`` when the groups' thresholds differ."""
    out = [rule(g) for g in groups]
    if any(t != out[0] for t in out[1:]):
        return None
    return out[0]


def _lr(group: dict[str, Any]) -> float | None:
    lr = group.get("lr")
    lr = float(lr.item() if isinstance(lr, torch.Tensor) else lr) if lr is not None else math.nan
    return lr if math.isfinite(lr) and lr > 0 else None


def _sgd(group: dict[str, Any]) -> StabilityThreshold | None:
    lr = _lr(group)
    if lr is None:
        return None
    beta = float(group.get("momentum", 0.0) or 0.0)
    damp = float(group.get("dampening", 0.0) or 0.0)
    if beta == 0.0:
        return StabilityThreshold(2.0 / lr, "2/lr", False, lr, 0.0)
    if group.get("nesterov", False):
        return StabilityThreshold((2 + 2 * beta) / ((1 + 2 * beta) * lr), "(2+2b)/((1+2b)lr)", False, lr, beta)
    if damp != 0.0:
        if damp >= 1.0:  # no gradient enters the buffer: no step at all
            return None
        return StabilityThreshold((2 + 2 * beta) / ((1 - damp) * lr), "(2+2b)/((1-d)lr)", False, lr, beta)
    return StabilityThreshold((2 + 2 * beta) / lr, "(2+2b)/lr", False, lr, beta)


def _adam(group: dict[str, Any]) -> StabilityThreshold | None:
    lr = _lr(group)
    if lr is None:
        return None
    beta1 = float(group["betas"][0])
    return StabilityThreshold((2 + 2 * beta1) / ((1 - beta1) * lr), "(2+2b1)/((1-b1)lr)", True, lr, beta1)


def _rmsprop(group: dict[str, Any]) -> StabilityThreshold | None:
    lr = _lr(group)
    if lr is None:
        return None
    beta = float(group.get("momentum", 0.0) or 0.0)
    if beta == 0.0:
        return StabilityThreshold(2.0 / lr, "2/lr", True, lr, 0.0)
    return StabilityThreshold((2 + 2 * beta) / lr, "(2+2b)/lr", True, lr, beta)
