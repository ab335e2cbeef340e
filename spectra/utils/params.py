"""Which parameters of a model count (the trainable ones, ``requires_grad``), and where
they live."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def trainable_parameters(model: nn.Module) -> list[tuple[str, Tensor]]:
    """``(name, parameter)`` of every parameter with ``requires_grad``, in
    ``named_parameters`` order: the coordinates of the Hessian, the optimizer's
    variables."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def num_parameters(model: nn.Module) -> int:
    """``P``: the number of trainable scalars of ``model`` (the Hessian is ``P x P``)."""
    return sum(p.numel() for _, p in trainable_parameters(model))


def model_device(model: nn.Module) -> torch.device | None:
    """The device of ``model``'s first parameter (else first buffer): where its batches
    go; ``None`` for a model with neither (its batches then stay where they are)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None
