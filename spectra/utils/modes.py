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


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Select PyTorch's math kernel for ``scaled_dot_product_attention`` inside the block.

    The fused kernels (flash, memory-efficient, cuDNN; on CPU too) have no double
    backward, so a Hessian or GGN product through a transformer fails with
    "derivative for aten::_scaled_dot_product_..._backward is not implemented".
    The math kernel is made of differentiable ops. The kernel is chosen when the
    forward runs, so the block must hold the forward whose graph is differentiated
    twice. torch >= 2.3: ``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``;
    older torch: the global ``torch.backends.cuda.enable_*_sdp`` switches, which
    the CPU dispatch reads too, set and restored on leaving.
    """
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        sdpa_kernel = None
    if sdpa_kernel is not None:
        with sdpa_kernel(SDPBackend.MATH):
            yield
        return
    back = torch.backends.cuda
    saved = (back.flash_sdp_enabled(), back.mem_efficient_sdp_enabled(), back.math_sdp_enabled())
    back.enable_flash_sdp(False)
    back.enable_mem_efficient_sdp(False)
    back.enable_math_sdp(True)
    try:
        yield
    finally:
        back.enable_flash_sdp(saved[0])
        back.enable_mem_efficient_sdp(saved[1])
        back.enable_math_sdp(saved[2])
