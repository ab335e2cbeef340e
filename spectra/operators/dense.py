"""Adapters that give any symmetric matrix-like object the operator interface.

The solvers (:func:`spectra.eigsh`, :func:`spectra.slq`, :func:`spectra.trace`)
accept a :class:`~spectra.operators.base.CurvatureOperator`, a dense symmetric
tensor or array, a ``scipy.sparse.linalg.LinearOperator``, or anything with
``matvec`` and ``shape``; :func:`as_operator` turns each into an object with
``matmat(V: (P, k)) -> (P, k)``, ``shape``, ``dtype``, ``device`` and
``num_matvecs``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor


@runtime_checkable
class LinearOperatorLike(Protocol):
    """The interface the solvers need: a symmetric ``P x P`` operator."""

    shape: tuple[int, int]

    def matmat(self, V: Tensor) -> Tensor: ...


class DenseOperator:
    """A dense symmetric matrix ``A`` of shape ``(P, P)`` as an operator.

    Args:
        matrix: a square tensor or array; must be symmetric (checked to a
            relative ``1e-6`` in its dtype's precision scale).
    """

    def __init__(self, matrix: Tensor | np.ndarray) -> None:
        A = torch.as_tensor(matrix)
        if A.dim() != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"expected a square matrix, got shape {tuple(A.shape)}")
        if not A.is_floating_point():
            A = A.to(torch.float64)
        scale = float(A.abs().max()) if A.numel() else 0.0
        asym = float((A - A.T).abs().max()) if A.numel() else 0.0
        tol = 1e-6 if A.dtype == torch.float64 else 1e-4
        if asym > tol * max(scale, 1e-300):
            raise ValueError(f"the matrix is not symmetric: max |A - A^T| = {asym:.3g}")
        self.A = A
        self.num_matvecs = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.A.shape[0]), int(self.A.shape[1]))

    @property
    def dtype(self) -> torch.dtype:
        return self.A.dtype

    @property
    def device(self) -> torch.device:
        return self.A.device

    def matvec(self, v: Tensor) -> Tensor:
        self.num_matvecs += 1
        return self.A @ v.to(self.A.dtype)

    def matmat(self, V: Tensor) -> Tensor:
        self.num_matvecs += V.shape[1]
        return self.A @ V.to(self.A.dtype)


class _CallbackOperator:
    """Wraps an object with ``matvec`` (and maybe ``matmat``) and ``shape``."""

    def __init__(self, obj: Any) -> None:
        shape = tuple(obj.shape)
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"the operator must be square, got shape {shape}")
        self.obj = obj
        self._shape = (int(shape[0]), int(shape[1]))
        self._numpy = _is_scipy_operator(obj)
        dt = getattr(obj, "dtype", torch.float64)
        self._dtype = dt if isinstance(dt, torch.dtype) else torch.float64
        self._device = getattr(obj, "device", torch.device("cpu"))
        if not isinstance(self._device, torch.device):
            self._device = torch.device("cpu")
        self._own_count = 0

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def num_matvecs(self) -> int:
        return getattr(self.obj, "num_matvecs", self._own_count)

    def matmat(self, V: Tensor) -> Tensor:
        self._own_count += V.shape[1]
        if self._numpy:
            Y = self.obj.matmat(V.detach().cpu().to(torch.float64).numpy())
            return torch.as_tensor(np.asarray(Y), dtype=V.dtype, device=V.device)
        if hasattr(self.obj, "matmat"):
            return self.obj.matmat(V)
        return torch.stack([self.obj.matvec(V[:, j]) for j in range(V.shape[1])], dim=1)


def _is_scipy_operator(obj: Any) -> bool:
    try:
        from scipy.sparse.linalg import LinearOperator
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, LinearOperator)


def as_operator(obj: Any) -> Any:
    """Return ``obj`` with the solver interface (see the module docstring)."""
    from spectra.operators.base import CurvatureOperator

    if isinstance(obj, (CurvatureOperator, DenseOperator)):
        return obj
    if isinstance(obj, (Tensor, np.ndarray)):
        return DenseOperator(obj)
    if hasattr(obj, "shape") and (hasattr(obj, "matvec") or hasattr(obj, "matmat")):
        return _CallbackOperator(obj)
    raise TypeError(
        f"expected a curvature operator, a square tensor/array, or an object with "
        f"matvec/matmat and shape; got {type(obj).__name__}"
    )


__all__ = ["DenseOperator", "LinearOperatorLike", "as_operator"]
