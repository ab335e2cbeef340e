"""Stochastic diagonal estimators: Hutchinson's and XDiag.

Both spend a budget of ``num_matvecs`` operator products and return the ``(P,)``
estimate of ``diag(A)`` with a per-entry error estimate (:class:`DiagonalEstimate`).

Hutchinson (Bekas, Kokiopoulou & Saad 2007): ``diag(A) ~ (1/n) sum_i z_i * (A z_i)``
(entrywise products) with Rademacher ``z_i``; entry ``j`` of a sample is
``A_jj + sum_{l != j} A_jl z_ij z_il``, so its error shrinks with the
off-diagonal mass of row ``j``. The error estimate is the per-entry sample
standard deviation over ``sqrt(n)``.

XDiag (Epperly, Tropp & Webber 2024, "XTrace: making the most of every sample in
stochastic trace estimation", SIAM J. Matrix Anal. Appl. 45(1)): the diagonal
analogue of XTrace. ``k = num_matvecs / 2`` Rademacher vectors ``w_i`` are both
sketch and test vectors: with ``Q_(i) = orth(A W_{-i})``,

    d_i = diag(Q_(i) Q_(i)^T A) + w_i * ((I - Q_(i) Q_(i)^T) A w_i),

exact on the range of the sketch, Hutchinson's on the rest; the estimate is the
mean of the ``d_i`` and the error estimate ``std(d_i) / sqrt(k)`` per entry. The
leave-one-out bases come from one QR (see :mod:`spectra.linalg.trace`). ``2k``
products: ``A W`` and ``A Q``. For a matrix with a few dominant eigenvalues (a
trained network's Hessian) the sketch removes most of the off-diagonal mass
that makes Hutchinson's estimate noisy.

With ``num_matvecs >= P`` either method returns the exact diagonal from ``P``
products with the unit vectors (error estimate 0): a sketch cannot do better.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from spectra.linalg.dense import checked_operator, work_dtype
from spectra.linalg.lanczos import random_vectors
from spectra.linalg.trace import check_memory, chunked, loo_directions, progress_bar, unit_diagonal
from spectra.utils import checks as _checks

METHODS = ("hutchinson", "xdiag")

# the fewest products each method accepts: enough for two samples (an error estimate)
MIN_MATVECS = {"hutchinson": 2, "xdiag": 4}


@dataclass(frozen=True)
class DiagonalEstimate:
    """An estimate of ``diag(A)``.

    Attributes:
        values: ``(P,)`` the estimate, in the operator's dtype.
        stderr: ``(P,)`` its per-entry error estimate, one standard deviation (the
            sample standard deviation of Hutchinson's samples, or of XDiag's
            leave-one-out estimates, over the square root of their count); zeros
            when the diagonal was computed exactly.
        num_matvecs: operator products spent.
        method: ``"hutchinson"`` or ``"xdiag"``.
        exact: whether ``values`` is the exact diagonal (``num_matvecs >= P``).
    """

    values: Tensor
    stderr: Tensor
    num_matvecs: int
    method: str
    exact: bool = False


def diagonal(
    op: Any,
    method: str = "hutchinson",
    num_matvecs: int = 60,
    *,
    generator: torch.Generator | None = None,
    chunk_size: int = 16,
    progress: bool = False,
) -> DiagonalEstimate:
    """Estimate ``diag(A)`` with at most ``num_matvecs`` products.

    Args:
        op: a curvature operator, dense symmetric matrix, or operator-like object.
        method: ``"hutchinson"`` (default) or ``"xdiag"``.
        num_matvecs: the budget; at least 2 for Hutchinson and 4 for XDiag (two
            samples give an error estimate). At ``num_matvecs >= P`` the exact
            diagonal is returned from ``P`` products.
        generator: source of the Rademacher vectors (default: fresh, seeded with 0).
        chunk_size: products per ``matmat`` (bounds the memory of the batch).
        progress: show a progress bar over the products.

    Raises:
        ValueError: a bad ``method``, ``num_matvecs`` or ``chunk_size`` (integers,
            not bools), a 0 x 0 operator, or vectors larger than the device's memory.

    Example:
        >>> import torch, spectra
        >>> A = torch.diag(torch.arange(1.0, 5.0, dtype=torch.float64))
        >>> est = spectra.diagonal(A, "xdiag", num_matvecs=4)
        >>> est.values.tolist(), est.exact, est.num_matvecs
        ([1.0, 2.0, 3.0, 4.0], True, 4)
    """
    A, P = checked_operator(op, "diagonal")
    if not isinstance(method, str) or method not in METHODS:
        hint = _checks.did_you_mean(method, METHODS) if isinstance(method, str) else ""
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}" + (f".{hint}" if hint else ""))
    num_matvecs = _checks.integer("num_matvecs", num_matvecs, MIN_MATVECS[method])
    generator = _checks.generator("generator", generator, seed=0)
    chunk_size = _checks.integer("chunk_size", chunk_size, 1)
    dtype = work_dtype(A)
    device = A.device
    exact = num_matvecs >= P
    used = P if exact else (2 * (num_matvecs // 2) if method == "xdiag" else num_matvecs)
    if not exact:
        check_memory(P, used, dtype, device, "xtrace" if method == "xdiag" else "hutchinson", "diagonal")
    with progress_bar(progress, used, "diagonal") as bar:
        apply = chunked(A, chunk_size, bar)
        if exact:
            return _exact(A, P, method, chunk_size, dtype, device, bar)
        W = random_vectors(P, used // 2 if method == "xdiag" else used, generator=generator,
                           dtype=dtype, device=device, distribution="rademacher")
        samples = _xdiag(apply, W) if method == "xdiag" else W * apply(W)
    k = samples.shape[1]
    return DiagonalEstimate(
        values=samples.mean(dim=1),
        stderr=samples.std(dim=1, unbiased=True) / math.sqrt(k),
        num_matvecs=used,
        method=method,
    )


def _xdiag(apply: Callable[[Tensor], Tensor], W: Tensor) -> Tensor:
    """XDiag's ``(P, k)`` leave-one-out estimates ``d_i`` (the module docstring) from the
    ``(P, k)`` Rademacher ``W``, with ``2k`` products.

    With ``A W = Y = Q R``, ``Z = A Q`` and ``s_i`` the unit columns of ``R^{-T}``:
    ``diag(Q_(i) Q_(i)^T A) = rowsum(Q * Z) - (Q s_i) * (Z s_i)`` and
    ``(I - Q_(i) Q_(i)^T) A w_i = y_i - Q (r_i - s_i (s_i^T r_i))`` with ``r_i = Q^T y_i``.
    """
    Y = apply(W)
    Q, R = torch.linalg.qr(Y)
    S = loo_directions(R)
    Z = apply(Q)
    QtY = Q.T @ Y
    head = (Q * Z).sum(dim=1, keepdim=True) - (Q @ S) * (Z @ S)
    residual = Y.sub_(Q @ (QtY - S * (S * QtY).sum(dim=0)))
    return head + W * residual


def _exact(A: Any, P: int, method: str, chunk_size: int, dtype: torch.dtype, device: torch.device,
           bar: Any) -> DiagonalEstimate:
    """``diag(A)`` from its products with the ``P`` unit vectors, ``chunk_size`` at a time."""
    values = unit_diagonal(A, P, chunk_size, dtype, device, bar)
    return DiagonalEstimate(values=values, stderr=torch.zeros_like(values), num_matvecs=P,
                            method=method, exact=True)


__all__ = ["METHODS", "DiagonalEstimate", "diagonal"]
