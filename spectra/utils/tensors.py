"""Small tensor helpers shared by the operators and the Krylov engine."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def standard_strides(x: Tensor) -> Tensor:
    """``x`` with the strides of a fresh contiguous tensor of its shape.

    A transposed ``(P, 1)`` tensor is "contiguous" to PyTorch, yet keeps the
    strides ``(1, 1)``; ``clone`` and ``copy_`` preserve them and then fall
    back to an element-by-element loop, many times slower than a copy. A view
    with the same shape recomputes the strides for free; a non-contiguous ``x``
    is copied.
    """
    return x.view(x.shape) if x.is_contiguous() else x.contiguous()


def pairwise_dot(x: Tensor, y: Tensor) -> float:
    """``x . y`` of two vectors ``(P,)`` by torch's summation of the products (a cascade:
    pairwise partial sums, error growing as ``log P``), where ``torch.dot`` (MKL's
    ``sdot``) accumulates a float32 product of a million entries in a few running sums.
    The Lanczos coefficients need it: with ``sdot`` sums a float32 operator's nodes came
    out off by 1e-4 of the spectrum's width and more (see
    :func:`spectra.linalg.lanczos.lanczos_tridiagonal`). One temporary vector; a few
    times ``torch.dot``'s time, small beside an operator product. Half-precision
    vectors are summed in float32 (their squares overflow float16 past a norm of 256)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        x, y = x.float(), y.float()
    return float((x * y).sum())


def pairwise_norm(x: Tensor) -> float:
    """``||x||`` of a vector ``(P,)`` by the same summation (:func:`pairwise_dot`)."""
    return math.sqrt(pairwise_dot(x, x))
