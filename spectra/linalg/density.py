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

from spectra.linalg.dense import checked_operator, work_dtype
from spectra.linalg.lanczos import lanczos_tridiagonal, random_vectors
from spectra.linalg.memory import MemoryPlan, budget, format_bytes
from spectra.utils import checks as _checks
from spectra.utils.progress import Progress, progress_bar


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
        plan: the mode :func:`slq` ran in and why (``plan.mode``: ``"full"`` or
            ``"bounded"``); ``None`` for a measure read back or built by hand.
    """

    nodes: np.ndarray
    weights: np.ndarray
    num_matvecs: int
    dim: int
    plan: MemoryPlan | None = None

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
        """Estimate of ``tr(A^p) / P``: the mean over probes of ``sum_j w_j tau_j^p``;
        ``p`` a non-negative integer (``A^p`` of an indefinite ``A`` is defined for
        those only)."""
        p = _checks.integer("p", p, 0)
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
        """A width that resolves the support: the larger of 1% of its length and 1e-3 of
        its largest magnitude (at least 1e-3: a support at zero is still drawn)."""
        lo, hi = self.support()
        return max(1e-2 * (hi - lo), 1e-3 * max(abs(lo), abs(hi), 1.0))

    def density(self, grid: np.ndarray | None = None, sigma: float | None = None) -> np.ndarray:
        """The Gaussian-smoothed density on ``grid`` (eigenvalue units^-1); integrates to ~1.

        ``phi_sigma(t) = mean_v sum_j w_vj N(t; tau_vj, sigma^2)``.
        """
        s = self.default_sigma() if sigma is None else float(sigma)
        if not (math.isfinite(s) and s > 0):
            raise ValueError(f"sigma must be a positive number, got {sigma!r}")
        t = self.grid(sigma=s) if grid is None else np.asarray(grid, dtype=np.float64)
        z = (t[:, None, None] - self.nodes[None]) / s
        kern = np.exp(-0.5 * z**2) / (s * np.sqrt(2 * np.pi))
        return np.einsum("gvm,vm->g", kern, self.weights) / self.num_vectors


SLQ_MODES = ("auto", "full", "bounded")


def slq(
    op: Any,
    num_vectors: int = 4,
    num_steps: int = 80,
    *,
    generator: torch.Generator | None = None,
    distribution: str = "rademacher",
    progress: Progress = False,
    max_memory: int | str | None = None,
    mode: str = "auto",
) -> SpectralMeasure:
    """Stochastic Lanczos quadrature of a symmetric operator's spectral density.

    Two modes, chosen by the memory budget ``max_memory`` (see
    :mod:`spectra.linalg.memory`) and recorded in :attr:`SpectralMeasure.plan`:

    * ``"full"``: all ``num_vectors`` Lanczos runs advance together (one ``matmat``
      of ``num_vectors`` vectors per step), each reorthogonalized against its
      stored basis (``num_vectors * min(num_steps, P)`` vectors of length ``P``) to
      semi-orthogonality, measured at every step (``reorthogonalize="semi"`` of
      :func:`~spectra.linalg.lanczos.lanczos_tridiagonal`: the same nodes as full
      reorthogonalization to working precision; the basis is read once per step, and
      the rows whose measured coefficients ask for it a second time). Its Ritz
      values are eigenvalue estimates one by one (no ghosts).
    * ``"bounded"``: the three-term recurrence without a basis (see
      :func:`~spectra.linalg.lanczos.lanczos_tridiagonal`, ``reorthogonalize="none"``):
      about 4 vectors of length ``P`` per run whatever ``num_steps``, the runs
      together when ``4 * num_vectors`` vectors fit in the budget, else one at a
      time. The quadrature (density, moments, extreme nodes) matches the full
      mode's; a converged outlier may appear as several nodes sharing its weight.

    Args:
        op: a curvature operator, dense symmetric matrix, or operator-like object.
        num_vectors: ``n_v``, independent random vectors (4-10 is typical).
        num_steps: ``m``, Lanczos steps per vector (80-128 is typical); capped at ``P``
            (after ``P`` steps the Krylov space is the whole space and the nodes are
            the exact eigenvalues: more steps cannot give more nodes).
        generator: source of the random vectors (default: fresh, seeded with 0).
        distribution: ``"rademacher"`` or ``"gaussian"`` entries, normalized to unit length.
        progress: a progress bar over the products (see :mod:`spectra.utils.progress`).
        max_memory: bytes (or a size such as ``"2GB"``) the solver's vectors may take;
            default half the memory available on the operator's device.
        mode: ``"auto"`` (full when it fits in ``max_memory``, else bounded),
            ``"full"`` or ``"bounded"``.

    Returns:
        :class:`SpectralMeasure` with ``num_vectors * min(num_steps, P)`` nodes and weights.

    Raises:
        ValueError: ``num_vectors`` or ``num_steps`` not a positive integer (bools are
            refused), a 0 x 0 operator, a bad ``max_memory`` or ``mode``, or vectors
            larger than the device's memory even in the bounded mode.
    """
    A, P = checked_operator(op, "slq")
    num_vectors = _checks.integer("num_vectors", num_vectors, 1)
    num_steps = _checks.integer("num_steps", num_steps, 1)
    # one stream for every pass: a fresh seed-0 generator per pass would repeat its vectors
    generator = _checks.generator("generator", generator, seed=0)
    dtype = work_dtype(A)
    m = min(num_steps, P)
    plan = plan_memory(P, num_vectors, num_steps, dtype, A.device, max_memory, mode,
                       group=getattr(A, "process_group", None))
    counter = {"n": 0}
    bar = progress_bar(progress, m * num_vectors, "slq")  # at most m products per vector

    def matmat(V: torch.Tensor) -> torch.Tensor:
        counter["n"] += V.shape[1]
        out = A.matmat(V)
        if bar is not None:
            bar.update(V.shape[1])
        return out

    def draw(count: int) -> torch.Tensor:
        return random_vectors(P, count, generator=generator, dtype=dtype, device=A.device,
                              distribution=distribution)

    runs = []
    try:
        b = plan.probes_per_pass
        for lo in range(0, num_vectors, b):
            V0 = draw(min(b, num_vectors - lo))
            policy = "semi" if plan.mode == "full" else "none"
            runs.append(lanczos_tridiagonal(matmat, V0, m, reorthogonalize=policy))
            del V0
    finally:
        if bar is not None:
            bar.close()
    nodes = np.zeros((num_vectors, m))
    weights = np.zeros((num_vectors, m))
    i = 0
    for tri in runs:
        for r in range(tri.alpha.shape[0]):
            evals, evecs = tri.eigh(r)
            L = len(evals)
            nodes[i, :L] = evals
            weights[i, :L] = evecs[0, :] ** 2
            nodes[i, L:] = evals[-1]
            i += 1
    weights /= weights.sum(axis=1, keepdims=True)
    return SpectralMeasure(nodes=nodes, weights=weights, num_matvecs=counter["n"], dim=P, plan=plan)


def full_mode_bytes(P: int, n_v: int, m: int, item: int) -> int:
    """Bytes of the full mode's vectors for ``n_v`` random vectors of ``m`` steps on
    a ``P``-dimensional operator of ``item``-byte entries: the bases, and the block
    (current, previous, product, start; start vectors drawn in float64)."""
    return (n_v * m + 4 * n_v) * P * item + n_v * P * 8


def _bounded_bytes(P: int, b: int, item: int) -> int:
    """The bounded mode's vectors for ``b`` runs together (start vectors drawn in float64)."""
    return 4 * b * P * item + b * P * 8


def plan_memory(P: int, num_vectors: int, num_steps: int, dtype: torch.dtype, device: Any,
                max_memory: Any = None, mode: str = "auto", group: Any = None) -> MemoryPlan:
    """The mode :func:`slq` runs in, and why (see its docstring). ``group``: the operator's
    ``process_group``, over whose ranks the budget is the least (every rank plans alike).

    Raises:
        ValueError: a bad ``mode`` or ``max_memory``, or a request that exceeds the
            device's total memory even in the bounded mode with one run at a time
            (``full`` asked explicitly: its bases).
    """
    if mode not in SLQ_MODES:
        raise ValueError(f"mode must be one of {', '.join(SLQ_MODES)}, got {mode!r}")
    m = min(num_steps, P)
    item = _checks.itemsize(dtype)
    limit, said = budget(max_memory, device, group)
    full = full_mode_bytes(P, num_vectors, m, item)
    what = (f"slq with num_vectors={num_vectors}, num_steps={num_steps} (a Lanczos basis of "
            f"{num_vectors} x {m} vectors of P={P:,} {_checks.dtype_name(dtype)} entries)")
    if mode == "full" or (mode == "auto" and full <= limit):
        _checks.fits_in_memory(what, full, device, "lower num_vectors or num_steps, or use "
                               "mode='bounded'")
        why = "requested" if mode == "full" else f"{format_bytes(full)} fit in the {said}"
        return MemoryPlan("full", why, full, limit, num_vectors)
    # the most runs that fit together (the bytes are linear in b), at least one
    per_run = max(_bounded_bytes(P, 1, item), 1)
    b = num_vectors if math.isinf(limit) else max(1, min(num_vectors, int(limit // per_run)))
    need = _bounded_bytes(P, b, item)
    _checks.fits_in_memory(
        f"slq with num_vectors={num_vectors}, num_steps={num_steps} (in the bounded mode, "
        f"{4 * b} vectors of P={P:,} {_checks.dtype_name(dtype)} entries)", need, device,
        "the operator is too large for this device")
    if mode == "bounded":
        why = "requested"
    else:
        why = f"the full mode's {format_bytes(full)} exceed the {said}"
    if b < num_vectors:
        why += f"; {b} random vector(s) at a time"
    return MemoryPlan("bounded", why, need, limit, b)


def check_memory(P: int, num_vectors: int, num_steps: int, dtype: torch.dtype, device: Any,
                 max_memory: Any = None, mode: str = "auto") -> MemoryPlan:
    """``ValueError`` when :func:`slq` could not run on ``device`` in ``mode`` (``"auto"``:
    in any mode; see :func:`plan_memory`); otherwise the plan it would follow now."""
    return plan_memory(P, num_vectors, num_steps, dtype, device, max_memory, mode)


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


__all__ = ["SLQ_MODES", "SpectralMeasure", "full_mode_bytes", "nonfinite_rows", "plan_memory", "slq",
           "strip_padding"]
