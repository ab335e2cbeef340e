"""Stochastic trace estimators: XTrace, XNysTrace, Hutch++ and Hutchinson.

All spend a budget of ``num_matvecs`` operator products and return the estimate
with an error estimate (:class:`TraceEstimate`).

Hutchinson: ``tr(A) ~ (1/n) sum_i z_i^T A z_i`` with Rademacher ``z_i``; its
standard error is the sample standard deviation over ``sqrt(n)``.

Hutch++ (Meyer, Musco, Musco & Woodruff 2021): split a budget of ``m``
products in thirds. Sketch ``Q = orth(A S)`` with ``m/3`` random ``S``; take
the trace of ``A`` on ``range(Q)`` exactly, ``tr(Q^T A Q)`` (``m/3`` products);
run Hutchinson on the deflated ``(I - QQ^T) A (I - QQ^T)`` with the last third.
The exact part has no variance, so the standard error is that of the
Hutchinson part. For matrices with a few dominant eigenvalues (Hessians),
the error is far below plain Hutchinson's at the same cost.

XTrace (Epperly, Tropp & Webber 2024, "XTrace: making the most of every sample
in stochastic trace estimation", SIAM J. Matrix Anal. Appl. 45(1)): Gaussian
``w_1..w_k`` (``k = num_matvecs / 2``) serve both as sketch and as test
vectors. For each ``i``, ``Q_(i) = orth(A W_{-i})`` (the sketch without
``w_i``) and

    t_i = tr(Q_(i)^T A Q_(i)) + (P - k + 1) u_i^T A u_i / ||u_i||^2,
    u_i = (I - Q_(i) Q_(i)^T) w_i,

an unbiased estimate (``u_i`` is a Gaussian direction in the complement of
``Q_(i)``, independent of it). The estimate is the mean of the ``t_i`` and its
error estimate the paper's ``std(t_i) / sqrt(k)``. All ``k`` leave-one-out
bases come from one QR of ``A W = Q R``: ``Q_(i) Q_(i)^T = Q (I - s_i s_i^T) Q^T``
with ``s_i`` the unit column ``i`` of ``R^{-T}``. ``2k`` products: ``A W``
and ``A Q``.

XNysTrace (same paper), for positive semi-definite operators only: the
Nyström approximation ``A_(i) = Y_{-i} (W_{-i}^T Y_{-i})^{-1} Y_{-i}^T``
(``Y = A W``, ``k = num_matvecs`` Gaussian vectors, one product each) replaces
the projection, ``t_i = tr(A_(i)) + (P - k + 1) w_i^T (A - A_(i)) w_i / ||d_i||^2``
with ``d_i`` the part of ``w_i`` orthogonal to the other vectors (``A - A_(i)``
vanishes on them, so this is the same unbiased rescaling as XTrace's). The Nyström
step needs ``W^T A W`` positive definite: on an indefinite operator (a
Hessian, in general; the GGN and the Fisher are PSD) it raises ``ValueError``
when the sketch shows a negative direction (Cholesky of ``W^T A W`` plus a
round-off shift fails), and where the sketch happens to be positive definite
the estimate stays unbiased but its error, and its error estimate, can be far
off (``analyses/results/estimators.md``: the indefinite rows). A
:class:`~spectra.operators.hessian.HessianOperator` gets a ``UserWarning``: use
``"xtrace"`` for Hessians.

A budget of ``num_matvecs >= P``, whatever the method, buys the exact trace instead:
the sum of ``A``'s diagonal from its products with the ``P`` unit vectors (``P``
products, ``stderr`` 0). No estimate is better at that price, and the sketches are
not exact there in floating point: XTrace's leave-one-out sketch of a singular
operator at ``k = P`` is rounding noise, and XNysTrace's float32 Nyström step at
``k = P`` was off by up to 340 times the trace on a PSD spectrum with exact zeros.

The leave-one-out ``t_i`` share vectors, so ``std(t_i)/sqrt(k)`` is an
estimate, not an exact standard error; ``tests/spectra/linalg/test_trace.py``
checks its calibration in seeded trials.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from spectra.linalg.dense import checked_operator, work_dtype
from spectra.linalg.lanczos import random_vectors
from spectra.utils import checks as _checks
from spectra.utils.progress import Progress
from spectra.utils.progress import progress_bar as make_progress_bar

METHODS = ("xtrace", "xnystrace", "hutch++", "hutchinson")

# the fewest products each method accepts: enough for two samples (a standard error)
MIN_MATVECS = {"xtrace": 4, "xnystrace": 2, "hutch++": 4, "hutchinson": 2}


@dataclass(frozen=True)
class TraceEstimate:
    """A trace estimate.

    Attributes:
        value: the estimate of ``tr(A)``.
        stderr: its error estimate, one standard deviation: for Hutchinson and
            Hutch++ the sample standard deviation of the stochastic part over the
            square root of its sample count; for XTrace and XNysTrace the
            leave-one-out estimate ``std(t_i) / sqrt(k)`` of Epperly, Tropp &
            Webber (2024). ``inf`` when only one sample was drawn.
        num_matvecs: operator products spent (at most the budget: XTrace spends an
            even number below ``2P``; with a budget of ``P`` or more every method
            spends exactly ``P``, on the unit vectors, and ``stderr`` is 0).
        method: ``"xtrace"``, ``"xnystrace"``, ``"hutch++"`` or ``"hutchinson"``.
    """

    value: float
    stderr: float
    num_matvecs: int
    method: str


def trace(
    op: Any,
    method: str = "hutch++",
    num_matvecs: int = 60,
    *,
    generator: torch.Generator | None = None,
    chunk_size: int = 16,
    progress: Progress = False,
) -> TraceEstimate:
    """Estimate ``tr(A)`` with at most ``num_matvecs`` products.

    Args:
        op: a curvature operator, dense symmetric matrix, or operator-like object.
        method: ``"hutch++"`` (default), ``"hutchinson"``, ``"xtrace"`` or
            ``"xnystrace"`` (positive semi-definite operators only: see the module
            docstring; a ``HessianOperator`` gets a ``UserWarning``).
        num_matvecs: the budget; at least 4 for Hutch++ and XTrace, 2 for
            Hutchinson and XNysTrace (two samples give a standard error). At least
            ``P``: the exact trace from the ``P`` unit vectors, for every method.
        generator: source of the random vectors (default: fresh, seeded with 0).
        chunk_size: products per ``matmat`` (bounds the memory of the batch).
        progress: a progress bar over the products (see :mod:`spectra.utils.progress`).

    Raises:
        ValueError: a bad ``method``, ``num_matvecs`` or ``chunk_size`` (integers,
            not bools), a 0 x 0 operator, random vectors larger than the device's
            memory, or ``"xnystrace"`` on an operator its sketch shows indefinite.
    """
    A, P = checked_operator(op, "trace")
    if not isinstance(method, str) or method not in METHODS:
        hint = _checks.did_you_mean(method, METHODS) if isinstance(method, str) else ""
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}" + (f".{hint}" if hint else ""))
    num_matvecs = _checks.integer("num_matvecs", num_matvecs, MIN_MATVECS[method])
    chunk_size = _checks.integer("chunk_size", chunk_size, 1)
    # one stream for every draw (Hutch++ draws its sketch, then its test vectors): a fresh
    # seed-0 generator per draw would make the test vectors repeat the sketch
    generator = _checks.generator("generator", generator, seed=0)
    dtype = work_dtype(A)
    device = A.device
    if num_matvecs >= P:  # the budget covers every direction: no estimate, the trace
        with progress_bar(progress, P, "trace") as bar:
            d = unit_diagonal(A, P, chunk_size, dtype, device, bar)
        return TraceEstimate(value=float(d.to(torch.float64).sum()), stderr=0.0, num_matvecs=P,
                             method=method)
    if method == "xnystrace":  # its sketch, not the unit vectors' exact trace, needs PSD
        _warn_if_hessian(op)
    used = {"xtrace": 2 * (num_matvecs // 2), "xnystrace": num_matvecs}.get(method, num_matvecs)
    check_memory(P, used, dtype, device, method)
    with progress_bar(progress, used, "trace") as bar:
        apply = chunked(A, chunk_size, bar)

        def draw(count: int, distribution: str) -> Tensor:
            return random_vectors(P, count, generator=generator, dtype=dtype, device=device,
                                  distribution=distribution)

        if method == "xtrace":
            return _xtrace(apply, draw, P, used // 2)
        if method == "xnystrace":
            return _xnystrace(apply, draw, P, used, dtype)
        return _hutch(apply, draw, P, method, num_matvecs)


def unit_diagonal(A: Any, P: int, chunk_size: int, dtype: torch.dtype, device: torch.device,
                  bar: Any) -> Tensor:
    """``diag(A)`` ``(P,)`` from its products with the ``P`` unit vectors, ``chunk_size``
    at a time (``P`` products, exact to rounding); ``bar`` (or ``None``) counts them."""
    values = torch.empty(P, dtype=dtype, device=device)
    for start in range(0, P, chunk_size):
        stop = min(start + chunk_size, P)
        E = torch.zeros(P, stop - start, dtype=dtype, device=device)
        idx = torch.arange(start, stop, device=device)
        E[idx, idx - start] = 1
        values[start:stop] = A.matmat(E)[idx, idx - start].to(dtype)
        if bar is not None:
            bar.update(stop - start)
    return values


def _warn_if_hessian(op: Any) -> None:
    """A ``UserWarning`` for XNysTrace on a Hessian operator (generally indefinite)."""
    from spectra.operators.hessian import HessianOperator

    if isinstance(op, HessianOperator):
        warnings.warn(
            "xnystrace assumes a positive semi-definite operator, and a Hessian generally is not: "
            "where its random sketch shows no negative direction, the estimate and its error "
            "estimate can be far off. Use method='xtrace' for a Hessian, 'xnystrace' for a GGN or Fisher",
            UserWarning, stacklevel=3,
        )


def _hutch(apply: Callable[[Tensor], Tensor], draw: Callable[[int, str], Tensor], P: int,
           method: str, num_matvecs: int) -> TraceEstimate:
    """Hutchinson or Hutch++ (the module docstring) with Rademacher vectors."""
    if method == "hutchinson":
        Z = draw(num_matvecs, "rademacher")
        samples = (Z * apply(Z)).sum(dim=0).to(torch.float64)
        return _summarize(samples, 0.0, num_matvecs, method)

    s = min(max(1, num_matvecs // 3), P)
    g = num_matvecs - 2 * s
    if g < 2:
        s = (num_matvecs - 2) // 2
        g = num_matvecs - 2 * s
    S = draw(s, "rademacher")
    Q, _ = torch.linalg.qr(apply(S))
    exact = float(torch.trace(Q.T @ apply(Q)).to(torch.float64))
    G = draw(g, "rademacher")
    G = G - Q @ (Q.T @ G)
    samples = (G * apply(G)).sum(dim=0).to(torch.float64)
    return _summarize(samples, exact, 2 * s + g, method)


def _xtrace(apply: Callable[[Tensor], Tensor], draw: Callable[[int, str], Tensor], P: int,
            k: int) -> TraceEstimate:
    """XTrace with ``k < P`` Gaussian vectors and ``2k`` products (the module docstring)."""
    W = draw(k, "gaussian")                  # (P, k)
    Y = apply(W)                             # A W
    Q, R = torch.linalg.qr(Y)                # (P, k), (k, k)
    S = loo_directions(R)                    # Q_(i) Q_(i)^T = Q (I - s_i s_i^T) Q^T
    Z = apply(Q)                             # A Q
    H = Q.T @ Z                              # Q^T A Q
    # u_i = (I - Q_(i) Q_(i)^T) w_i = w_i - Q v_i, v_i = Q^T w_i - s_i (s_i^T Q^T w_i)
    QtW = Q.T @ W
    V = QtW - S * (S * QtW).sum(dim=0)
    U = W.sub_(Q @ V)                        # (P, k), in place of W
    AU = Y.sub_(Z @ V)                       # A u_i without a product, in place of Y
    quad = (U * AU).sum(dim=0).to(torch.float64)
    norm2 = (U * U).sum(dim=0).to(torch.float64)
    head = float(torch.trace(H).to(torch.float64)) - (S * (H @ S)).sum(dim=0).to(torch.float64)
    samples = head + (P - k + 1) * quad / norm2
    return _summarize(samples, 0.0, 2 * k, "xtrace")


def _xnystrace(apply: Callable[[Tensor], Tensor], draw: Callable[[int, str], Tensor], P: int,
               k: int, dtype: torch.dtype) -> TraceEstimate:
    """XNysTrace with ``k < P`` Gaussian vectors and ``k`` products (the module docstring).

    With ``G = W^T A W = C^T C`` (Cholesky) and ``B = Y C^{-1}``, ``v_i = C^{-T} e_i``:
    ``tr(A_(i)) = ||B||_F^2 - ||B v_i||^2 / ||v_i||^2`` and ``w_i^T (A - A_(i)) w_i
    = 1 / ||v_i||^2`` (a rank-one downdate of ``G^{-1}``). ``A + nu I`` is sketched
    instead of ``A`` (``nu``: a round-off shift, ``sqrt(P) eps ||Y||_F`` or more, see
    :func:`_shifted_cholesky`) and ``P nu`` subtracted, which keeps the estimate unbiased.
    """
    W = draw(k, "gaussian")
    Y = apply(W)
    G0 = W.T @ Y
    G0 = 0.5 * (G0 + G0.T)                   # W^T A W
    WtW = W.T @ W
    nu = math.sqrt(P) * torch.finfo(dtype).eps * float(torch.linalg.matrix_norm(Y)) or torch.finfo(dtype).eps
    L, nu = _shifted_cholesky(G0, WtW, nu, k)
    Y.add_(W, alpha=nu)                      # (A + nu I) W
    eye = torch.eye(k, dtype=L.dtype, device=L.device)
    Vinv = torch.linalg.solve_triangular(L, eye, upper=False)        # C^{-T} = L^{-1}: v_i columns
    B = torch.linalg.solve_triangular(L, Y.T, upper=False).T          # Y C^{-1} = Y L^{-T}
    vnorm2 = (Vinv * Vinv).sum(dim=0).to(torch.float64)
    Bv2 = ((B @ Vinv) ** 2).sum(dim=0).to(torch.float64)
    total = float((B * B).sum().to(torch.float64))
    # ||d_i||^2 of the module docstring: w_i's distance to span(W_{-i}) squared, 1 / ((W^T W)^{-1})_ii
    _, RW = torch.linalg.qr(W)
    dist2 = 1.0 / (loo_directions(RW, normalize=False) ** 2).sum(dim=0).to(torch.float64)
    samples = total - Bv2 / vnorm2 + (P - k + 1) / (vnorm2 * dist2) - P * nu
    return _summarize(samples, 0.0, k, "xnystrace")


def _shifted_cholesky(G0: Tensor, WtW: Tensor, nu: float, k: int) -> tuple[Tensor, float]:
    """``(L, nu')`` with ``G0 + nu' W^T W = L L^T`` for the smallest ``nu' >= nu`` tried.

    ``G0 = W^T A W``. A failed Cholesky is round-off when ``lambda_min(G0) >=
    -100 sqrt(k) eps lambda_max(G0)``: the shift is raised to lift that eigenvalue
    and the factorization retried (3 times at most). Otherwise, or when the
    retries fail, ``A`` is indefinite and XNysTrace refuses it (``ValueError``).
    """
    eps = torch.finfo(G0.dtype).eps
    for _ in range(4):
        G = G0 + nu * WtW
        L, info = torch.linalg.cholesky_ex(0.5 * (G + G.T))
        if int(info) == 0:
            return L, nu
        ev = torch.linalg.eigvalsh(G0.to(torch.float64))
        low, high = float(ev[0]), float(ev[-1])
        if low < -100 * math.sqrt(k) * eps * max(high, 0.0):
            break
        wmin = float(torch.linalg.eigvalsh(WtW.to(torch.float64))[0])
        nu = max(10 * nu, 2 * -low / max(wmin, eps))
    raise ValueError(
        "xnystrace needs a positive semi-definite operator, but W^T A W of its random sketch "
        f"({k} vectors) is not positive definite (smallest eigenvalue {low:.3g}, largest {high:.3g}): "
        "the operator is indefinite (a Hessian usually is; the GGN and the Fisher are not). "
        "Use method='xtrace'"
    )


def loo_directions(R: Tensor, *, normalize: bool = True) -> Tensor:
    """The columns of ``R^{-T}`` for an upper-triangular ``(k, k)`` ``R``, unit length by default.

    Column ``s_i`` is orthogonal to every column of ``R`` but the ``i``-th, so for
    ``Y = Q R``, ``Q (I - s_i s_i^T) Q^T`` projects onto the span of ``Y`` without
    column ``i`` (the leave-one-out bases of XTrace and XDiag). A (numerically)
    singular ``R`` (a rank-deficient sketch) has its tiny diagonal entries raised
    to ``k eps max|R_jj|``; the ``s_i`` then still annihilate the other columns to
    round-off, which is all the estimators need.
    """
    k = R.shape[0]
    d = R.diagonal()
    floor = k * torch.finfo(R.dtype).eps * float(d.abs().max()) if k else 0.0
    floor = max(floor, torch.finfo(R.dtype).tiny)
    small = d.abs() < floor
    if bool(small.any()):
        R = R.clone()
        sign = torch.where(d >= 0, 1.0, -1.0).to(R.dtype)
        R.diagonal().copy_(torch.where(small, sign * floor, d))
    eye = torch.eye(k, dtype=R.dtype, device=R.device)
    S = torch.linalg.solve_triangular(R.T, eye, upper=False)          # R^{-T}
    return S / torch.linalg.vector_norm(S, dim=0) if normalize else S


def chunked(A: Any, chunk_size: int, bar: Any) -> Callable[[Tensor], Tensor]:
    """``V (P, n) -> A V (P, n)`` in ``matmat`` calls of at most ``chunk_size`` columns,
    each counted on ``bar`` (a progress bar or ``None``)."""

    def apply(V: Tensor) -> Tensor:
        out = []
        for c in V.split(chunk_size, dim=1):
            out.append(A.matmat(c))
            if bar is not None:
                bar.update(c.shape[1])
        return torch.cat(out, dim=1)

    return apply


@contextlib.contextmanager
def progress_bar(show: Progress, total: int, desc: str) -> Iterator[Any]:
    """:func:`spectra.utils.progress.progress_bar` over ``total`` products (``None``
    without ``show``), closed on exit."""
    bar = make_progress_bar(show, total, desc)
    if bar is None:
        yield None
        return
    try:
        yield bar
    finally:
        bar.close()


# vectors of P entries each method holds at once, per product of its budget
_HELD_PER_MATVEC = {"hutchinson": 2.0, "hutch++": 2.0, "xtrace": 2.5, "xnystrace": 3.0}


def check_memory(P: int, num_matvecs: int, dtype: torch.dtype, device: Any, method: str = "hutch++",
                 who: str = "trace") -> None:
    """``ValueError`` when the vectors ``method`` holds at once (random vectors, their
    products and bases: 2 to 3 per product of ``num_matvecs``, see ``_HELD_PER_MATVEC``)
    exceed the memory of ``device``."""
    held = math.ceil(_HELD_PER_MATVEC.get(method, 3.0) * num_matvecs)
    _checks.fits_in_memory(
        f"{who} with num_matvecs={num_matvecs} ({held} vectors of P={P:,} "
        f"{_checks.dtype_name(dtype)} entries)",
        held * P * _checks.itemsize(dtype), device, "lower num_matvecs",
    )


def _summarize(samples: Tensor, exact: float, used: int, method: str) -> TraceEstimate:
    n = samples.numel()
    mean = float(samples.mean())
    std = float(samples.std(unbiased=True)) if n > 1 else math.inf
    return TraceEstimate(value=exact + mean, stderr=std / math.sqrt(n), num_matvecs=used, method=method)


__all__ = ["METHODS", "TraceEstimate", "trace", "unit_diagonal"]
