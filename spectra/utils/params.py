"""Which parameters of a model count: the trainable ones (``requires_grad``)."""

from __future__ import annotations

from torch import Tensor, nn


def trainable_parameters(model: nn.Module) -> list[tuple[str, Tensor]]:
    """``(name, parameter)`` of every parameter with ``requires_grad``, in
    ``named_parameters`` order: the coordinates of the Hessian, the optimizer's
    variables."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def num_parameters(model: nn.Module) -> int:
    """``P``: the number of trainable scalars of ``model`` (the Hessian is ``P x P``)."""
    return sum(p.numel() for _, p in trainable_parameters(model))
