"""Context managers that leave a model and the random number generators as they were."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Put ``model`` in eval mode inside the block (if ``enabled``); on leaving,
    give every module back its own train/eval flag (a mix of modes included)."""
    modes = [(m, m.training) for m in model.modules()] if enabled else []
    if enabled:
        model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore the global CPU (and CUDA) random state on leaving the block, so work
    inside it (a probe's random vectors, dropout in a forward pass) never shifts the
    training's random stream."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
