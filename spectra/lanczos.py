"""Lanczos with full reorthogonalization: the one Krylov engine of the toolkit.

Two drivers share the pieces below (random starts, the orthogonalization):

* :func:`lanczos_tridiagonal` runs ``b`` *independent* Lanczos processes side
  by side, one ``matmat`` of ``b`` vectors per step, and returns each run's
  tridiagonal matrix ``T`` (float64). Stochastic Lanczos quadrature uses it.
* :class:`ThickRestartLanczos` builds one (block) Krylov basis, extracts Ritz
  pairs, and restarts by keeping the wanted Ritz vectors plus the residual
  block (Wu & Simon's thick restart, in the Krylov-Schur form). It keeps the
  products ``A Q`` beside the basis ``Q``, so the residual ``||A x - theta x||``
  of any Ritz pair is exact and free (no extra product). :func:`spectra.eigsh`
  drives it.

Every new vector is orthogonalized against the whole basis twice ("twice is
enough", Giraud et al. 2005). Without it, Lanczos in finite precision loses
orthogonality as soon as a Ritz value converges and returns "ghost" copies of
the outlying eigenvalues; with it, the basis stays orthonormal to working
precision and no eigenvalue is reported twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import Tensor

MatMat = Callable[[Tensor], Tensor]


def random_vectors(
    dim: int,
    count: int,
    *,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device,
    distribution: str = "gaussian",
) -> Tensor:
    """``count`` random vectors of length ``dim`` as a ``(dim, count)`` tensor.

    Drawn on the CPU in float64 from ``generator`` (a fresh one seeded with 0 if
    ``None``), so results repeat across devices and the global RNG is untouched.
    ``distribution`` is ``"gaussian"`` or ``"rademacher"`` (entries +-1).
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    if distribution == "gaussian":
        V = torch.randn(dim, count, generator=g, dtype=torch.float64)
    elif distribution == "rademacher":
        V = torch.randint(0, 2, (dim, count), generator=g, dtype=torch.int64).to(torch.float64)
        V = V.mul_(2).sub_(1)
    else:
        raise ValueError(f"distribution must be 'gaussian' or 'rademacher', got {distribution!r}")
    return V.to(device=device, dtype=dtype)


def orthogonalize_(W: Tensor, Q: Tensor, passes: int = 2) -> Tensor:
    """Remove from the columns of ``W`` (P, b) their components in span(``Q`` (P, n)).

    In place, classical Gram-Schmidt repeated ``passes`` times. Returns the
    coefficients of the first pass, ``Q^T W`` (n, b).
    """
    first = Q.T @ W
    W.sub_(Q @ first)
    for _ in range(passes - 1):
        W.sub_(Q @ (Q.T @ W))
    return first


def _machine_eps(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps)


# ---------------------------------------------------------------------- plain runs
@dataclass(frozen=True)
class Tridiagonal:
    """The Lanczos tridiagonal matrices of ``b`` independent runs.

    Attributes:
        alpha: ``(b, m)`` float64 diagonals.
        beta: ``(b, m - 1)`` float64 off-diagonals.
        lengths: ``(b,)`` int, the size of each run's ``T``; a run stops early
            (``length < m``) when its Krylov space is invariant (``beta ~ 0``),
            and its ``T`` is then exact.
    """

    alpha: np.ndarray
    beta: np.ndarray
    lengths: np.ndarray

    def eigh(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues ``(L,)`` and eigenvectors ``(L, L)`` of run ``i``'s ``T``."""
        L = int(self.lengths[i])
        if L == 1:
            return self.alpha[i, :1].copy(), np.ones((1, 1))
        return eigh_tridiagonal(self.alpha[i, :L], self.beta[i, : L - 1])


def lanczos_tridiagonal(
    matmat: MatMat,
    V0: Tensor,
    num_steps: int,
    *,
    reorthogonalize: bool = True,
) -> Tridiagonal:
    """Run ``b`` independent Lanczos processes from the columns of ``V0`` (P, b).

    Each step is one ``matmat`` of the ``b`` current vectors. With
    ``reorthogonalize`` (the default, and the only setting whose Ritz values
    may be read as eigenvalues), each run keeps its basis (``b * m * P``
    entries) and orthogonalizes every new vector against it twice.

    Returns:
        The tridiagonal matrices (float64), see :class:`Tridiagonal`.
    """
    P, b = V0.shape
    m = int(num_steps)
    if m < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    m = min(m, P)
    dtype, device = V0.dtype, V0.device
    eps = _machine_eps(dtype)
    norms = V0.norm(dim=0)
    if bool((norms == 0).any()):
        raise ValueError("a start vector is zero")
    q = V0 / norms
    basis = torch.empty(b, m, P, dtype=dtype, device=device) if reorthogonalize else None
    alpha = np.zeros((b, m))
    beta = np.zeros((b, max(m - 1, 0)))
    lengths = np.full(b, m, dtype=np.int64)
    active = torch.ones(b, dtype=torch.bool, device=device)
    q_prev = torch.zeros_like(q)
    beta_prev = torch.zeros(b, dtype=dtype, device=device)
    scale = torch.zeros(b, dtype=torch.float64)
    for j in range(m):
        if basis is not None:
            basis[:, j, :] = q.T
        W = matmat(q)
        a = (q * W).sum(dim=0)
        W = W - q * a - q_prev * beta_prev
        if basis is not None:
            Qj = basis[:, : j + 1, :]  # (b, j+1, P); memory-bound: batched matmuls
            Wt = W.T.contiguous().unsqueeze(2)  # (b, P, 1)
            for _ in range(2):
                coef = torch.bmm(Qj, Wt)  # (b, j+1, 1)
                Wt = Wt - torch.bmm(Qj.transpose(1, 2), coef)
            W = Wt.squeeze(2).T
        a_np = a.detach().to("cpu", torch.float64).numpy()
        alpha[:, j] = np.where(active.cpu().numpy(), a_np, alpha[:, j])
        if j == m - 1:
            break
        bnorm = W.norm(dim=0)
        b_np = bnorm.detach().to("cpu", torch.float64)
        scale = torch.maximum(scale, torch.as_tensor(np.abs(a_np)) + b_np)
        broke = (b_np <= 10 * eps * scale.clamp_min(1e-300)) & active.cpu()
        for i in torch.nonzero(broke).flatten().tolist():
            lengths[i] = j + 1
        active = active & ~broke.to(device)
        beta[:, j] = np.where(active.cpu().numpy(), b_np.numpy(), 0.0)
        if not bool(active.any()):
            break
        safe = torch.where(active, bnorm, torch.ones_like(bnorm))
        q_prev, q = q, torch.where(active, W / safe, torch.zeros_like(W))
        beta_prev = torch.where(active, bnorm, torch.zeros_like(bnorm))
    return Tridiagonal(alpha=alpha, beta=beta, lengths=lengths)


# ---------------------------------------------------------------------- thick restart
WHICH = ("LA", "SA", "BE", "LM")


def select(theta: np.ndarray, which: str, count: int) -> np.ndarray:
    """Indices of the ``count`` Ritz values ``theta`` (ascending) wanted by ``which``.

    Ordered by priority: LA descending, SA ascending, LM by descending
    magnitude, BE alternating from the top and the bottom (top first).
    """
    n = len(theta)
    count = min(count, n)
    if which == "LA":
        return np.arange(n - 1, n - 1 - count, -1)
    if which == "SA":
        return np.arange(count)
    if which == "LM":
        return np.argsort(-np.abs(theta), kind="stable")[:count]
    if which == "BE":
        order = []
        lo, hi = 0, n - 1
        while len(order) < count:
            order.append(hi)
            hi -= 1
            if len(order) < count:
                order.append(lo)
                lo += 1
        return np.asarray(order)
    raise ValueError(f"which must be one of {', '.join(WHICH)}, got {which!r}")


class ThickRestartLanczos:
    """A thick-restart (block) Lanczos process with full reorthogonalization.

    State: the orthonormal basis ``Q`` (P, n), all of it multiplied, its
    products ``AQ = A Q`` (P, n), the projected matrix ``H = Q^T A Q`` (n, n,
    float64), and the next block ``F`` (P, b), orthonormal and orthogonal to
    ``Q``, not yet multiplied. Between restarts ``Q`` is a (block) Krylov basis
    and ``H`` is (block) tridiagonal up to rounding; after a restart ``H`` has
    the arrowhead-plus-tridiagonal shape of the Krylov-Schur form.

    Args:
        matmat: the operator, ``(P, b) -> (P, b)``.
        start: ``(P, b)`` start block (need not be orthonormal).
        max_basis: the basis size (``ncv``); a restart is needed before a block
            that would not fit.
        generator: used to replace a broken-down direction by a random one.
    """

    def __init__(
        self,
        matmat: MatMat,
        start: Tensor,
        *,
        max_basis: int,
        generator: torch.Generator | None = None,
    ) -> None:
        P, b = start.shape
        self.matmat = matmat
        self.P, self.b = P, b
        self.dtype, self.device = start.dtype, start.device
        self.max_basis = int(min(max_basis, P))
        if self.max_basis < b:
            raise ValueError(f"max_basis={max_basis} is smaller than the block size {b}")
        self.generator = generator
        self.Q = torch.zeros(P, self.max_basis, dtype=self.dtype, device=self.device)
        self.AQ = torch.zeros_like(self.Q)
        self.H = np.zeros((self.max_basis, self.max_basis))
        self.n = 0
        self.num_matvecs = 0
        self._coupling = np.zeros((0, 0))
        self._last_block = (0, 0)
        self.F = self._orthonormal_block(start.clone())

    @property
    def exhausted(self) -> bool:
        """The basis spans an invariant subspace and no direction is left: exact."""
        return self.F.shape[1] == 0

    @property
    def needs_restart(self) -> bool:
        """The next block does not fit in the basis."""
        return self.n + self.F.shape[1] > self.max_basis

    # --------------------------------------------------------------- basis growth
    def _orthonormal_block(self, W: Tensor, ref_norms: Tensor | None = None) -> Tensor:
        """Orthonormalize the columns of ``W`` against ``Q`` and each other.

        A column that vanishes (its Krylov space is invariant) is replaced by a
        random direction orthogonal to everything so far; when ``Q`` and the
        block already span the whole space, fewer columns are returned.
        """
        eps = _machine_eps(self.dtype)
        cols: list[Tensor] = []
        for j in range(W.shape[1]):
            w = W[:, j : j + 1]
            ref = float(ref_norms[j]) if ref_norms is not None else float(w.norm())
            for _attempt in range(3):
                if self.n + len(cols) >= self.P:
                    return _stack(cols, self.P, self.dtype, self.device)
                for _pass in range(2):
                    if self.n:
                        orthogonalize_(w, self.Q[:, : self.n], passes=1)
                    for c in cols:
                        w.sub_(c * (c.T @ w))
                nrm = float(w.norm())
                if nrm > 100 * eps * max(ref, 1e-300):
                    cols.append(w / nrm)
                    break
                w = random_vectors(
                    self.P, 1, generator=self.generator, dtype=self.dtype, device=self.device
                )
                ref = float(w.norm())
        return _stack(cols, self.P, self.dtype, self.device)

    def expand(self) -> None:
        """Multiply the next block, append it to the basis, update ``H``, and
        form the following block. Requires ``not needs_restart``."""
        if self.exhausted:
            return
        if self.needs_restart:
            raise RuntimeError("the basis is full: restart before expanding")
        F = self.F
        lo, hi = self.n, self.n + F.shape[1]
        W = self.matmat(F)
        self.num_matvecs += F.shape[1]
        if tuple(W.shape) != tuple(F.shape):
            raise ValueError(f"the operator returned shape {tuple(W.shape)}, expected {tuple(F.shape)}")
        W = W.to(self.dtype)
        self.Q[:, lo:hi] = F
        self.AQ[:, lo:hi] = W
        self.n = hi
        C = (self.Q[:, :hi].T @ W).to("cpu", torch.float64).numpy()
        self.H[:hi, lo:hi] = C
        self.H[lo:hi, :hi] = C.T
        blk = self.H[lo:hi, lo:hi]
        self.H[lo:hi, lo:hi] = 0.5 * (blk + blk.T)
        self.F = self._orthonormal_block(W.clone(), W.norm(dim=0))
        # W = Q C + F R with F orthogonal to Q, so R = F^T W: the Krylov relation
        # A Q = Q H + F R E^T (E: the last block) gives every Ritz residual for free
        self._coupling = (self.F.T @ W).to("cpu", torch.float64).numpy()
        self._last_block = (lo, hi)

    # --------------------------------------------------------------- Ritz pairs
    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values ``(n,)`` ascending and their basis coordinates ``(n, n)``."""
        n = self.n
        return np.linalg.eigh(self.H[:n, :n])

    def residual_estimates(self, Y: np.ndarray) -> np.ndarray:
        """``||A x - theta x||`` from the Krylov relation, for coordinates ``Y`` (n, j).

        ``||R Y[last block]||``: no work of size ``P``. Exact in exact arithmetic;
        :meth:`residual_norms` verifies it from the stored products."""
        lo, hi = self._last_block
        if self._coupling.size == 0:
            return np.zeros(Y.shape[1])
        return np.linalg.norm(self._coupling @ Y[lo:hi, :], axis=0)

    def residual_norms(self, theta: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Exact ``||A x - theta x||`` for Ritz pairs ``(theta (j,), Y (n, j))``.

        Computed from the stored products ``A Q``: no operator product."""
        Yt = torch.as_tensor(Y, dtype=self.dtype, device=self.device)
        th = torch.as_tensor(theta, dtype=self.dtype, device=self.device)
        R = self.AQ[:, : self.n] @ Yt - (self.Q[:, : self.n] @ Yt) * th
        return R.norm(dim=0).to("cpu", torch.float64).numpy()

    def ritz_vectors(self, Y: np.ndarray) -> Tensor:
        """``Q Y``: Ritz vectors ``(P, j)`` for basis coordinates ``Y`` (n, j)."""
        Yt = torch.as_tensor(Y, dtype=self.dtype, device=self.device)
        return self.Q[:, : self.n] @ Yt

    def restart(self, keep: np.ndarray, theta: np.ndarray, Y: np.ndarray) -> None:
        """Keep the Ritz vectors ``X = Q Y[:, keep]`` and the next block ``F``.

        ``A X = X Theta + F S^T`` holds for the Krylov-Schur form, so ``H``
        restarts as ``diag(Theta)``; the coupling between ``X`` and ``F`` is
        filled in by the next :meth:`expand` (which computes ``Q^T A F``).
        """
        n = self.n
        Yk = torch.as_tensor(Y[:, keep], dtype=self.dtype, device=self.device)
        X = self.Q[:, :n] @ Yk
        AX = self.AQ[:, :n] @ Yk
        kc = len(keep)
        self.Q.zero_()
        self.AQ.zero_()
        self.H[:] = 0.0
        self.Q[:, :kc] = X
        self.AQ[:, :kc] = AX
        self.H[np.arange(kc), np.arange(kc)] = theta[keep]
        self.n = kc
        # F is orthogonal to the old basis, hence to X; this removes rounding only
        self.F = self._orthonormal_block(self.F, torch.ones(self.F.shape[1]))


def _stack(cols: list[Tensor], P: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    if not cols:
        return torch.zeros(P, 0, dtype=dtype, device=device)
    return torch.cat(cols, dim=1)
