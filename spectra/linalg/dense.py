"""Adapters that give any symmetric matrix-like object the operator interface.

The solvers (:func:`spectra.linalg.eigsh`, :func:`spectra.slq`, :func:`spectra.linalg.trace`)
accept a :class:`~spectra.operators.base.CurvatureOperator`, a dense symmetric
tensor or array, a ``scipy.sparse.linalg.LinearOperator``, or anything with
``matvec`` and ``shape``; :func:`as_operator` turns each into an object with
``matmat(V: (P, k)) -> (P, k)``, ``shape``, ``dtype``, ``device`` and
``num_matvecs``.

Precision: the solvers keep their vectors and bases in :func:`work_dtype`, the
operator's dtype raised to float32 for a float16 or bfloat16 one; a product is
computed in the operator's own dtype (the adapters round the vector to it) and comes
back in the vector's. In half precision a Krylov basis loses orthogonality, and a
vector its norm, within a few steps (``sqrt(eps)`` of bfloat16 is 9%), while the
products' rounding is all that the operator's dtype has to lose.
"""

from __future__ import annotations

import math
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
        matrix: a square, non-empty tensor or array with finite entries; must be
            symmetric (checked to a relative ``1e-6`` in its dtype's precision scale).

    Like a :class:`~spectra.operators.base.CurvatureOperator`, a product with NaN
    or Inf entries (an overflow) raises ``FloatingPointError``.
    """

    def __init__(self, matrix: Tensor | np.ndarray) -> None:
        A = torch.as_tensor(matrix).detach()  # a matrix built from parameters: its values
        if A.dim() != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"expected a square matrix, got shape {tuple(A.shape)}")
        if A.shape[0] == 0:
            raise ValueError("the matrix is 0 x 0; an operator needs at least one row and column")
        if A.is_complex():  # the cast below would keep the real part only
            raise ValueError(f"the matrix is complex ({A.dtype}); spectra computes spectra of "
                             "real symmetric matrices")
        if not A.is_floating_point():
            A = A.to(torch.float64)
        bad = ~torch.isfinite(A)
        if bool(bad.any()):
            i, j = (int(x) for x in bad.nonzero()[0])
            raise ValueError(
                f"the matrix has {int(bad.sum())} non-finite entries (NaN or Inf), the first at "
                f"({i}, {j}) = {float(A[i, j])}; a spectrum needs finite entries"
            )
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
        """``A v`` computed in the matrix's dtype, returned in ``v``'s (see the module docstring)."""
        self.num_matvecs += 1
        return finite_product(self.A @ v.to(self.A.dtype), self).to(v.dtype)

    def matmat(self, V: Tensor) -> Tensor:
        """``A V`` computed in the matrix's dtype, returned in ``V``'s."""
        self.num_matvecs += V.shape[1]
        return finite_product(self.A @ V.to(self.A.dtype), self).to(V.dtype)


def finite_product(out: Tensor, op: Any) -> Tensor:
    """``out``, or ``FloatingPointError`` when it has a NaN or Inf entry (the rule of
    :class:`~spectra.operators.base.CurvatureOperator`: the exact test only when the sum
    is not finite)."""
    if not (math.isfinite(float(out.sum())) or bool(torch.isfinite(out).all())):
        raise FloatingPointError(
            f"{type(op).__name__}: the product has NaN or Inf entries; check the operator "
            "(its matrix or its matvec) for non-finite values or an overflow"
        )
    return out


class _CallbackOperator:
    """Wraps an object with ``matvec`` (and maybe ``matmat``) and ``shape``."""

    def __init__(self, obj: Any) -> None:
        shape = tuple(obj.shape)
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"the operator must be square, got shape {shape}")
        if shape[0] == 0:
            raise ValueError("the operator is 0 x 0; it needs at least one row and column")
        self.obj = obj
        self._shape = (int(shape[0]), int(shape[1]))
        self._numpy = _is_scipy_operator(obj)
        dt = getattr(obj, "dtype", torch.float64)
        self._dtype = dt if isinstance(dt, torch.dtype) else torch.float64
        # the device the solvers put their vectors on: ``obj.device`` as a torch.device or a
        # name ("cuda"), the CPU when it has none
        dev = getattr(obj, "device", None)
        try:
            self._device = torch.device(dev) if isinstance(dev, (torch.device, str)) \
                else torch.device("cpu")
        except RuntimeError as exc:
            raise ValueError(f"the operator's device {dev!r} is not a torch device: {exc}") from exc
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

    @property
    def process_group(self) -> Any:
        """The wrapped object's ``process_group`` (a wrapper of a curvature operator,
        such as :class:`~spectra.operators.preconditioned.PreconditionedOperator`), so
        that the solvers' memory budget is agreed over its ranks; ``None`` without one."""
        return getattr(self.obj, "process_group", None)

    def matmat(self, V: Tensor) -> Tensor:
        self._own_count += V.shape[1]
        if self._numpy:
            Y = self.obj.matmat(V.detach().cpu().to(torch.float64).numpy())
            out = torch.as_tensor(np.asarray(Y), dtype=V.dtype, device=V.device)
        else:  # in the dtype the object declares (see the module docstring)
            W = V.to(self._dtype) if self._dtype.is_floating_point else V
            if hasattr(self.obj, "matmat"):
                out = self.obj.matmat(W)
            else:
                out = torch.stack([torch.as_tensor(self.obj.matvec(W[:, j]))  # numpy results too
                                   for j in range(W.shape[1])], dim=1)
        return finite_product(torch.as_tensor(out), self.obj).to(V.dtype)


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



def work_dtype(A: Any) -> torch.dtype:
    """The dtype of the solvers' vectors and bases for the operator ``A`` (as returned by
    :func:`as_operator`): its dtype, float64 for a non-floating one, and float32 for a
    float16 or bfloat16 one (see the module docstring)."""
    dtype = A.dtype if A.dtype.is_floating_point else torch.float64
    return torch.promote_types(dtype, torch.float32)


def checked_operator(op: Any, who: str) -> tuple[Any, int]:
    """The solvers' preamble: ``op`` with the operator interface, and its size ``P >= 1``."""
    A = as_operator(op)
    P = int(A.shape[0])
    if P == 0:
        raise ValueError(f"{who}: the operator is 0 x 0 (no parameters); there is no spectrum to compute")
    return A, P


__all__ = ["DenseOperator", "LinearOperatorLike", "as_operator", "checked_operator", "finite_product",
           "work_dtype"]
