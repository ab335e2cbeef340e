"""Context managers that leave a model, the random number generators and the backends'
precision and attention-kernel switches as they were."""

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


# the backends whose float32 kernels may round through a shorter format (TF32 on NVIDIA
# GPUs since Ampere, bfloat16 in oneDNN on CPUs), as torch >= 2.9 names them
_FP32_SWITCHES = (("cudnn", "conv"), ("cudnn", "rnn"), ("cuda", "matmul"),
                  ("mkldnn", "matmul"), ("mkldnn", "conv"), ("mkldnn", "rnn"))


@contextlib.contextmanager
def ieee_float32() -> Iterator[None]:
    """float32 products at float32's own precision inside the block, whatever the global
    settings; restored on leaving.

    On a GPU since Ampere, cuDNN convolutions and RNNs run float32 in TF32 (a 10-bit
    mantissa: rounding to 4.9e-4 relative) by default
    (``torch.backends.cudnn.conv.fp32_precision == "tf32"``), and
    ``torch.set_float32_matmul_precision("high")`` or ``"medium"`` lets matmuls do the
    same (oneDNN on a CPU rounds through bfloat16 at ``"medium"``).
    Products with errors of that size would sit at eigsh's default ``tol`` (1e-3), so
    the curvature operators run their products inside this block.
    torch >= 2.9: each backend's ``fp32_precision`` set to ``"ieee"``; older torch: the
    ``allow_tf32`` switches and the float32 matmul precision ``"highest"``.
    """
    found = []
    for outer, inner in _FP32_SWITCHES:
        ns = getattr(getattr(torch.backends, outer, None), inner, None)
        if ns is not None and hasattr(ns, "fp32_precision"):
            found.append((ns, ns.fp32_precision))
    if found:
        try:
            for ns, _ in found:
                ns.fp32_precision = "ieee"
            yield
        finally:
            for ns, value in found:
                ns.fp32_precision = value
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul  # torch < 2.9
    saved = (cudnn.allow_tf32, matmul.allow_tf32, torch.get_float32_matmul_precision())
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved[0], saved[1]
        torch.set_float32_matmul_precision(saved[2])
