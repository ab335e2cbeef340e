"""A curvature operator seen through a diagonal preconditioner: ``P^(-1/2) H P^(-1/2)``.

An adaptive optimizer with a diagonal preconditioner ``P`` (Adam's
``(1 - beta1^t)(sqrt(v_hat) + eps)``, see :func:`spectra.preconditioner`) steps
along ``P^(-1) g``; its stability is governed by the spectrum of ``P^(-1) H``, the
*preconditioned sharpness* ``lambda_1(P^(-1) H)`` of Cohen et al. 2022 ("Adaptive
gradient methods at the edge of stability", arXiv 2207.14484). ``P^(-1) H`` is not
symmetric, but it is similar to the symmetric ``P^(-1/2) H P^(-1/2)``::

    P^(-1/2) (P^(-1) H) P^(1/2) = P^(-1/2) H P^(-1/2),

so both have the same eigenvalues, and the symmetric form is what Lanczos
(:func:`spectra.eigsh`), SLQ (:func:`spectra.slq`) and the trace estimators take.
An eigenvector ``u`` of the symmetric form gives the eigenvector ``P^(-1/2) u`` of
``P^(-1) H`` (:meth:`PreconditionedOperator.right_eigenvectors`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from spectra.linalg.dense import as_operator, finite_product


class PreconditionedOperator:
    """The symmetric ``(P, P)`` operator ``D^(-1/2) A D^(-1/2)`` with ``D = diag(diag)``.

    Args:
        op: a symmetric operator ``A`` (a :class:`~spectra.operators.base.CurvatureOperator`
            such as :class:`~spectra.HessianOperator`, a dense tensor, a
            :class:`~spectra.DenseOperator`, anything :func:`spectra.linalg.dense.as_operator`
            takes, another ``PreconditionedOperator``).
        diag: the diagonal of the preconditioner, a ``(P,)`` floating-point tensor of
            positive finite entries on ``op``'s device, in the order of ``op``'s
            coordinates (for a curvature operator: its parameters, ``op.param_names``).
            It is copied (and cast to ``op``'s dtype); later changes to it are not seen.

    Each product costs one product of ``op`` (counted by ``op`` too) and two
    elementwise scalings. :attr:`num_matvecs` counts this operator's products.

    Example:
        >>> import torch
        >>> from spectra import PreconditionedOperator
        >>> A = torch.diag(torch.tensor([8.0, 32.0], dtype=torch.float64))
        >>> op = PreconditionedOperator(A, torch.tensor([4.0, 16.0], dtype=torch.float64))
        >>> op.matvec(torch.ones(2, dtype=torch.float64))  # (8 / 4, 32 / 16)
        tensor([2., 2.], dtype=torch.float64)

    Raises:
        TypeError: ``diag`` is not a real floating-point tensor.
        ValueError: ``diag`` has the wrong shape, a non-positive or non-finite entry
            (before or after the cast to ``op``'s dtype), or lies on another device.
    """

    def __init__(self, op: Any, diag: Tensor) -> None:
        self.op = as_operator(op)
        P = int(self.op.shape[0])
        self._dim = P
        self._dtype = self.op.dtype if self.op.dtype.is_floating_point else torch.float64
        self._device = torch.device(self.op.device)
        self.diag = check_diagonal(diag, P, self._dtype, self._device)
        self._inv_sqrt = self.diag.rsqrt()
        if not bool(torch.isfinite(self._inv_sqrt).all()):
            i = int((~torch.isfinite(self._inv_sqrt)).nonzero()[0])
            raise ValueError(
                f"diag[{i}] = {float(self.diag[i]):.3g} is so small that its inverse square root "
                f"overflows {self._dtype}; the preconditioned operator would have infinite entries"
            )
        self.num_matvecs = 0

    @property
    def shape(self) -> tuple[int, int]:
        """``(P, P)``, the shape of ``op``."""
        return (self._dim, self._dim)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of ``op``'s products (and of :attr:`diag`)."""
        return self._dtype

    @property
    def device(self) -> torch.device:
        """The device of ``op``."""
        return self._device

    @property
    def process_group(self) -> Any:
        """``op``'s ``torch.distributed`` group (``None``: one process, or an ``op``
        without one): its products are ``op``'s, all-reduced over it."""
        return getattr(self.op, "process_group", None)

    @property
    def param_names(self) -> list[str] | None:
        """``op``'s parameter names when it has them (a curvature operator), else ``None``."""
        names = getattr(self.op, "param_names", None)
        return list(names) if names is not None else None

    def matvec(self, v: Tensor) -> Tensor:
        """``D^(-1/2) A D^(-1/2) v`` for ``v`` of shape ``(P,)``; returns ``(P,)``."""
        if not isinstance(v, Tensor) or v.dim() != 1 or v.shape[0] != self._dim:
            got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(f"expected a tensor of shape ({self._dim},), got {got}")
        return self.matmat(v.unsqueeze(1)).squeeze(1)

    def matmat(self, V: Tensor) -> Tensor:
        """``D^(-1/2) A D^(-1/2) V`` for ``V`` of shape ``(P, k)``; returns ``(P, k)``.

        Costs ``k`` products of ``op`` and ``k`` in :attr:`num_matvecs`. The
        result keeps the memory layout of ``op``'s product.
        """
        if not isinstance(V, Tensor) or V.dim() != 2 or V.shape[0] != self._dim:
            got = tuple(V.shape) if isinstance(V, Tensor) else type(V).__name__
            raise ValueError(f"expected a tensor of shape ({self._dim}, k), got {got}")
        V = V.to(device=self._device, dtype=self._dtype)
        s = self._inv_sqrt.unsqueeze(1)
        out = self.op.matmat(V * s) * s  # not in place: op may hand out a tensor it keeps
        self.num_matvecs += int(V.shape[1])
        return finite_product(out, self)

    __matmul__ = matmat

    def right_eigenvectors(self, U: Tensor) -> Tensor:
        """Eigenvectors of ``D^(-1) A`` from eigenvectors ``U`` (``(P,)`` or ``(P, k)``)
        of this operator: ``D^(-1/2) U``, each column scaled to unit norm."""
        s = self._inv_sqrt if U.dim() == 1 else self._inv_sqrt.unsqueeze(1)
        X = U.to(device=self._device, dtype=self._dtype) * s
        return X / torch.linalg.vector_norm(X, dim=0, keepdim=U.dim() > 1)

    def to_scipy(self) -> Any:
        """A :class:`scipy.sparse.linalg.LinearOperator` view (numpy float64 in and out)."""
        from scipy.sparse.linalg import LinearOperator

        def _mm(x: np.ndarray) -> np.ndarray:
            X = torch.as_tensor(np.asarray(x, dtype=np.float64))
            squeeze = X.ndim == 1
            X = X.reshape(self._dim, -1).to(device=self._device, dtype=self._dtype)
            Y = self.matmat(X).to(device="cpu", dtype=torch.float64).numpy()
            return Y[:, 0] if squeeze else Y

        return LinearOperator(shape=self.shape, dtype=np.float64, matvec=_mm, rmatvec=_mm, matmat=_mm)

    def __repr__(self) -> str:
        return (
            f"PreconditionedOperator({type(self.op).__name__}, P={self._dim}, dtype={self._dtype}, "
            f"device={self._device})"
        )


def check_diagonal(diag: Any, P: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``diag`` validated as the ``(P,)`` positive, finite diagonal of a preconditioner
    on ``device``, returned as a copy in ``dtype``; ``TypeError``/``ValueError`` naming
    what is wrong otherwise."""
    if not isinstance(diag, Tensor):
        raise TypeError(f"diag must be a torch.Tensor of shape ({P},), got {type(diag).__name__}")
    if not diag.is_floating_point():
        raise TypeError(f"diag must be a real floating-point tensor, got dtype {diag.dtype}")
    if diag.dim() != 1 or diag.shape[0] != P:
        raise ValueError(
            f"diag must have shape ({P},), one entry per coordinate of the operator, got "
            f"{tuple(diag.shape)}; build the operator over the preconditioner's parameters "
            "(params=) in the same order"
        )
    if not same_device(diag.device, device):
        raise ValueError(
            f"diag is on {diag.device} but the operator on {device}; move it with diag.to({str(device)!r})"
        )
    for where, d in (("", diag), (f" after the cast to {dtype}", diag.detach().to(dtype))):
        bad = ~torch.isfinite(d)
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise ValueError(
                f"diag has {int(bad.sum())} non-finite entries{where} (NaN or Inf), the first "
                f"diag[{i}] = {float(d[i])}; a preconditioner's diagonal must be finite"
            )
        nonpos = d <= 0
        if bool(nonpos.any()):
            i = int(nonpos.nonzero()[0])
            raise ValueError(
                f"diag has {int(nonpos.sum())} entries <= 0{where}, the first diag[{i}] = "
                f"{float(d[i]):.3g}; a preconditioner's diagonal must be positive"
            )
    return diag.detach().to(dtype=dtype, copy=True)


def same_device(a: torch.device | str, b: torch.device | str) -> bool:
    """Whether ``a`` and ``b`` name one device. A tensor's device always has an index
    (``cuda:0``), a device given by name may not (``cuda``, ``cpu``): a missing index is
    the default one, the current CUDA device for ``cuda`` (the only device for ``cpu``)."""
    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    if a.index is None or b.index is None:
        if a.type != "cuda":
            return True
        current = torch.cuda.current_device()
        return (current if a.index is None else a.index) == (current if b.index is None else b.index)
    return a.index == b.index


__all__ = ["PreconditionedOperator", "check_diagonal", "same_device"]
