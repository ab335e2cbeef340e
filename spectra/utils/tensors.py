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


# elements per slice of the float64 sums: an 8 MiB float64 temporary at most
_SLICE = 1 << 20


def dot64(x: Tensor, y: Tensor) -> float:
    """``x . y`` of two vectors ``(P,)``, summed in float64 whatever their dtype, slice by
    slice (at most a million entries cast at a time: ``.sum(dtype=torch.float64)`` casts
    the whole vector first, 87 MiB more for 11M float32 entries)."""
    if x.dtype == y.dtype == torch.float64:
        return float(torch.dot(x, y))
    total = 0.0
    for lo in range(0, x.shape[0], _SLICE):
        total += float(torch.dot(x[lo:lo + _SLICE].double(), y[lo:lo + _SLICE].double()))
    return total


def norm64(x: Tensor) -> float:
    """``||x||`` of a vector ``(P,)`` summed in float64, slice by slice (:func:`dot64`)."""
    return math.sqrt(dot64(x, x))
