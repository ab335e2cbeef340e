"""Small tensor helpers shared by the operators and the Krylov engine."""

from __future__ import annotations

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
