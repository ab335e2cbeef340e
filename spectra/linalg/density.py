"""Spectral densities by stochastic Lanczos quadrature (SLQ).

For a symmetric ``A`` (P x P) with eigenvalues ``lambda_i``, the spectral
density is ``phi(t) = (1/P) sum_i delta(t - lambda_i)``. SLQ (Golub & Meurant;
Ghorbani, Krishnan & Xiao 2019) estimates it from ``n_v`` random unit vectors
``q``: ``m`` Lanczos steps from ``q`` give a tridiagonal ``T`` whose
eigenvalues ``tau_j`` (nodes) and squared first eigenvector components
``w_j`` (weights, summing to 1) form a Gauss quadrature for ``q^T f(A) q``:
exact for polynomials ``f`` of degree below ``2m``. Averaging the ``n_v``
discrete measures estimates ``phi``; :meth:`SpectralMeasure.density` smooths
it with a Gaussian of width ``sigma``.

The raw nodes and weights are kept (and stored by the run format) so that any
plot can re-smooth them later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from spectra.linalg.dense import checked_operator
from spectra.linalg.lanczos import lanczos_tridiagonal, random_vectors
from spectra.utils import checks as _checks


@dataclass(frozen=True)
class SpectralMeasure:
    """The SLQ estimate of a spectral density, as raw quadrature rules.

    Attributes:
        nodes: ``(n_v, m)`` float64 Ritz values per random vector (eigenvalue units).
        weights: ``(n_v, m)`` float64, each row sums to 1. A run that reached an
            invariant subspace before ``m`` steps has its unused entries padded
            with weight 0 (and its last node).
        num_matvecs: operator products spent.
        dim: ``P``, the operator's size.
    """

    nodes: np.ndarray
    weights: np.ndarray
    num_matvecs: int
    dim: int

    @property
    def num_vectors(self) -> int:
        return int(self.nodes.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.nodes.shape[1])

    def support(self) -> tuple[float, float]:
        """``(min, max)`` over the nodes with positive weight."""
        mask = self.weights > 0
        return float(self.nodes[mask].min()), float(self.nodes[mask].max())

    def moment(self, p: int) -> float:
        """Estimate of ``tr(A^p) / P``: the mean over probes of ``sum_j w_j tau_j^p``."""
        return float(np.mean(np.sum(self.weights * self.nodes**p, axis=1)))

    def trace(self) -> float:
        """Estimate of ``tr(A)``: ``P`` times the first moment."""
        return self.dim * self.moment(1)

    def grid(self, num: int = 1000, sigma: float | None = None, pad: float = 3.0) -> np.ndarray:
        """An evenly spaced grid ``(num,)``, ``num >= 2``, over the support widened by ``pad * sigma``."""
        num = _checks.integer("num", num, 2)
        if sigma is not None and not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive number, got {sigma!r}")
        if not (math.isfinite(pad) and pad >= 0):
            raise ValueError(f"pad must be a finite number >= 0, got {pad!r}")
        lo, hi = self.support()
        s = self.default_sigma() if sigma is None else sigma
        return np.linspace(lo - pad * s, hi + pad * s, num)

    def default_sigma(self) -> float:
        """A width that resolves the support: 1% of its length (or 1e-3 if it is a point)."""
        lo, hi = self.support()
        return max(1e-2 * (hi - lo), 1e-3 * max(abs(lo), abs(hi), 1.0))

    def density(self, grid: np.ndarray | None = None, sigma: float | None = None) -> np.ndarray:
        """The Gaussian-smoothed density on ``grid`` (eigenvalue units^-1); integrates to ~1.

        ``phi_sigma(t) = mean_v sum_j w_vj N(t; tau_vj, sigma^2)``.
        """
        s = self.default_sigma() if sigma is None else float(sigma)
        if s <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        t = self.grid(sigma=s) if grid is None else np.asarray(grid, dtype=np.float64)
        z = (t[:, None, None] - self.nodes[None]) / s
        kern = np.exp(-0.5 * z**2) / (s * np.sqrt(2 * np.pi))
        return np.einsum("gvm,vm->g", kern, self.weights) / self.num_vectors


def slq(
    op: Any,
    num_vectors: int = 4,
    num_steps: int = 80,
    *,
    generator: torch.Generator | None = None,
    distribution: str = "rademacher",
    progress: bool = False,
) -> SpectralMeasure:
    """Stochastic Lanczos quadrature of a symmetric operator's spectral density.

    All ``num_vectors`` Lanczos runs advance together: each step is one
    ``matmat`` of ``num_vectors`` vectors. Each run is fully reorthogonalized
    (memory: ``num_vectors * min(num_steps, P)`` vectors of length ``P``).

    Args:
        op: a curvature operator, dense symmetric matrix, or operator-like object.
        num_vectors: ``n_v``, independent random vectors (4-10 is typical).
        num_steps: ``m``, Lanczos steps per vector (80-128 is typical); capped at ``P``
            (after ``P`` steps the Krylov space is the whole space and the nodes are
            the exact eigenvalues: more steps cannot give more nodes).
        generator: source of the random vectors (default: fresh, seeded with 0).
        distribution: ``"rademacher"`` or ``"gaussian"`` entries, normalized to unit length.
        progress: show a progress bar over the Lanczos steps.

    Returns:
        :class:`SpectralMeasure` with ``num_vectors * min(num_steps, P)`` nodes and weights.

    Raises:
        ValueError: ``num_vectors`` or ``num_steps`` not a positive integer (bools are
            refused), a 0 x 0 operator, or a basis larger than the device's memory.
    """
    A, P = checked_operator(op, "slq")
    num_vectors = _checks.integer("num_vectors", num_vectors, 1)
    num_steps = _checks.integer("num_steps", num_steps, 1)
    dtype = A.dtype if A.dtype.is_floating_point else torch.float64
    m = min(num_steps, P)
    check_memory(P, num_vectors, num_steps, dtype, A.device)
    V0 = random_vectors(
        P, num_vectors, generator=generator, dtype=dtype, device=A.device, distribution=distribution
    )
    counter = {"n": 0}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=m, desc="slq", unit="step", leave=False)

    def matmat(V: torch.Tensor) -> torch.Tensor:
        counter["n"] += V.shape[1]
        out = A.matmat(V)
        if bar is not None:
            bar.update(1)
        return out

    try:
        tri = lanczos_tridiagonal(matmat, V0, m)
    finally:
        if bar is not None:
            bar.close()
    m = tri.alpha.shape[1]
    nodes = np.zeros((num_vectors, m))
    weights = np.zeros((num_vectors, m))
    for i in range(num_vectors):
        evals, evecs = tri.eigh(i)
        L = len(evals)
        nodes[i, :L] = evals
        weights[i, :L] = evecs[0, :] ** 2
        nodes[i, L:] = evals[-1]
    weights /= weights.sum(axis=1, keepdims=True)
    return SpectralMeasure(nodes=nodes, weights=weights, num_matvecs=counter["n"], dim=P)


def check_memory(P: int, num_vectors: int, num_steps: int, dtype: torch.dtype, device: Any) -> None:
    """``ValueError`` when the bases of :func:`slq` (``num_vectors * min(num_steps, P)``
    vectors of ``P`` entries) exceed the memory of ``device``."""
    m = min(num_steps, P)
    _checks.fits_in_memory(
        f"slq with num_vectors={num_vectors}, num_steps={num_steps} (a Lanczos basis of "
        f"{num_vectors} x {m} vectors of P={P:,} {_checks.dtype_name(dtype)} entries)",
        num_vectors * m * P * _checks.itemsize(dtype), device, "lower num_vectors or num_steps",
    )


def strip_padding(nodes: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The rules of ``(n_v, m)`` arrays with their NaN padding removed; None if none is left.

    The run store pads rows of different lengths with NaN, and a probe without a
    density is NaN throughout. Entries that are not finite, or whose weight is not
    positive, get weight 0 (their node is set to 0); random vectors with no weight
    left are dropped, so that the mean over vectors stays a probability measure.

    Returns:
        ``(nodes, weights)``, float64 ``(n_v', m)`` with ``n_v' <= n_v``, or None.
    """
    nodes = np.asarray(nodes, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(nodes) & np.isfinite(weights) & (weights > 0)
    w = np.where(ok, weights, 0.0)
    x = np.where(np.isfinite(nodes), nodes, 0.0)
    keep = w.sum(axis=1) > 0
    if not np.any(keep):
        return None
    return x[keep], w[keep]


def nonfinite_rows(nodes: np.ndarray, weights: np.ndarray) -> list[int]:
    """Rows ``i`` of ``(r, n_v, m)`` (or ``(n_v, m)``) SLQ arrays that hold a NaN or Inf
    that is not padding.

    Padding (and a row without a density) is NaN in both arrays at once, so an Inf
    anywhere, or a NaN beside a finite partner, marks a probe that diverged or a
    damaged file.
    """
    n = np.asarray(nodes, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    broken = ~(np.isfinite(n) & np.isfinite(w)) & ~(np.isnan(n) & np.isnan(w))
    return [int(i) for i in np.flatnonzero(broken.reshape(broken.shape[0], -1).any(axis=1))]


__all__ = ["SpectralMeasure", "nonfinite_rows", "slq", "strip_padding"]
