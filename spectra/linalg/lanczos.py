"""Lanczos with reorthogonalization: the one Krylov engine of the toolkit.

Two drivers share the pieces below (random starts, the orthogonalization):

* :func:`lanczos_tridiagonal` runs ``b`` *independent* Lanczos processes side
  by side, one ``matmat`` of ``b`` vectors per step, and returns each run's
  tridiagonal matrix ``T`` (float64). Stochastic Lanczos quadrature uses it.
* :class:`ThickRestartLanczos` builds one (block) Krylov basis, extracts Ritz
  pairs, and restarts by keeping the wanted Ritz vectors plus the residual
  block (Wu & Simon's thick restart, in the Krylov-Schur form). It keeps the
  products ``A Q`` beside the basis ``Q``, so the residual ``||A x - theta x||``
  of any Ritz pair is exact and free (no extra product). :func:`spectra.linalg.eigsh`
  drives it.

Every new vector is measured against the whole basis. Under full
reorthogonalization it is orthogonalized against all of it, a second time when
the first pass cancelled much of it (the DGKS criterion; "twice is enough",
Giraud et al. 2005), and the basis stays orthonormal to working precision. Under
semi reorthogonalization the coefficients are subtracted only once one exceeds
``sqrt(eps)`` of its norm (those above half of that), so the basis stays within
``sqrt(eps)`` of orthogonal (Simon 1984); the thick-restart engine also keeps
the basis's Gram matrix from the measured coefficients and solves its
Rayleigh-Ritz problem with it, so its Ritz pairs are those of an orthonormal
basis of the same space. Without either,
Lanczos in finite precision loses orthogonality as soon as a Ritz value
converges and returns "ghost" copies of the outlying eigenvalues; with either,
no eigenvalue is reported twice.

Bases are stored row-major, one vector per row (``(n, P)``), so that both
products of a Gram-Schmidt pass are plain matrix products over contiguous
memory, which on a CPU is much faster than column blocks or batched
matrix-vector products (timings in ``analyses/results/bench_core.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.linalg import eigh as _dense_eigh
from scipy.linalg import eigh_tridiagonal
from torch import Tensor

from spectra.utils.tensors import pairwise_dot, pairwise_norm, standard_strides

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
    if g.device.type != "cpu":
        raise ValueError(
            f"generator must be a CPU torch.Generator, got one on {g.device}: the random "
            "vectors are drawn on the CPU (then moved to the operator's device), so that "
            "the same seed gives the same vectors on every device")
    if distribution == "gaussian":
        V = torch.randn(dim, count, generator=g, dtype=torch.float64)
    elif distribution == "rademacher":
        V = torch.randint(0, 2, (dim, count), generator=g, dtype=torch.int64).to(torch.float64)
        V = V.mul_(2).sub_(1)
    else:
        raise ValueError(f"distribution must be 'gaussian' or 'rademacher', got {distribution!r}")
    return V.to(device=device, dtype=dtype)


# Daniel, Gragg, Kaufman & Stewart (1976): after one classical Gram-Schmidt pass, a
# vector that kept more than this fraction of its norm is orthogonal to working
# precision; one that lost more went through cancellation and needs a second pass.
DGKS_ETA = 1.0 / math.sqrt(2.0)


def orthogonalize_(W: Tensor, Q: Tensor, *, passes: int | None = None) -> Tensor:
    """Remove from the rows of ``W`` their components along the rows of ``Q``.

    Shapes: ``W`` (k, P) and ``Q`` (n, P), or batched ``W`` (b, k, P) and ``Q``
    (b, n, P) (one basis per leading index). The rows of ``Q`` must be
    orthonormal. In place, classical Gram-Schmidt as two matrix products, each
    reading ``Q`` once (the cost is memory traffic: ``Q`` is the large operand).

    ``passes=None`` (default) makes one pass and a second only when some row lost
    more than ``1 - 1/sqrt(2)`` of its norm in the first (the DGKS criterion,
    "twice is enough"); ``passes=1`` or ``2`` forces the count.

    Returns:
        The first pass's coefficients ``W Q^T``: ``(k, n)`` or ``(b, k, n)``.
    """
    if passes not in (None, 1, 2):
        raise ValueError(f"passes must be None, 1 or 2, got {passes!r}")
    coef = W @ Q.mT
    if Q.shape[-2] == 0:
        return coef
    before = torch.linalg.vector_norm(W, dim=-1) if passes is None else None
    _subtract_(W, coef, Q)
    if passes == 2 or (
        before is not None
        and float(torch.min(torch.linalg.vector_norm(W, dim=-1) - DGKS_ETA * before)) < 0
    ):
        _subtract_(W, W @ Q.mT, Q)
    return coef


# A semi-orthogonal step subtracts the coefficients above this fraction of the threshold
# (sqrt(eps) ||w||), so every one left is below half of it; a row whose coefficient is
# smaller is still read when it lies between two that are not (see row_segments).
SEMI_KEEP = 0.5


def semi_threshold(norm: float, dtype: torch.dtype) -> float:
    """``sqrt(eps) * norm``: the size of a coefficient ``q . w`` (``norm`` = ``||w||``)
    above which :func:`semi_orthogonalize_` subtracts, semi-orthogonality's bound."""
    return math.sqrt(_machine_eps(dtype)) * norm


@dataclass(frozen=True)
class SemiStep:
    """What :func:`semi_orthogonalize_` measured and subtracted, float64 ``(n,)`` each.

    Attributes:
        first: the coefficients ``Q w`` of the vector as it came in.
        last: the latest measurement of ``Q w``: ``first``, or the DGKS pass's.
        after: the coefficients subtracted since ``last`` was measured (zero where a
            row was not).
        norm: ``||w||`` after the step (measured by it; NaN after a DGKS pass).
        cancelled: the first subtraction took most of the norm, so a DGKS pass ran.
    """

    first: np.ndarray
    last: np.ndarray
    after: np.ndarray
    norm: float
    cancelled: bool = False

    @property
    def subtracted(self) -> bool:
        """Whether anything was subtracted."""
        return bool(self.after.any())

    def left(self, gram: np.ndarray) -> np.ndarray:
        """``Q w`` now, for rows ``Q`` whose Gram matrix ``Q Q^T`` is ``gram`` (n, n):
        ``last - gram @ after``, from the latest measurement, so that a vector that lost
        most of its norm in a DGKS pass is not judged by the rounding of the first."""
        return self.last - gram @ self.after


def semi_orthogonalize_(w: Tensor, Q: Tensor) -> SemiStep:
    """Make ``w`` (P,) semi-orthogonal to the orthonormal-ish rows of ``Q`` (n, P), in place.

    Measures the coefficients ``Q w`` (one pass over ``Q``, a matrix-vector product).
    When one exceeds ``sqrt(eps) ||w||``, subtracts every coefficient above half of that
    (Simon's (1984) partial reorthogonalization subtracts only the large ones too), so
    that all that remain are below ``sqrt(eps) ||w||`` (below half of it after a
    subtraction): semi-orthogonality, by measurement. Only the rows whose coefficients
    are subtracted are read again, in contiguous segments (how many, on a network's
    Hessian: ``python -m analyses.scale_bench --time-share``). A vector that lost more
    than ``1 - 1/sqrt(2)`` of its norm gets a second full pass (DGKS), measured and
    subtracted whole.

    Returns:
        :class:`SemiStep`: the coefficients measured and subtracted, from which
        :class:`ThickRestartLanczos` keeps its Gram matrix.
    """
    c = torch.mv(Q, w)
    before = float(torch.linalg.vector_norm(w))
    tau = semi_threshold(before, w.dtype)
    c64 = c.to("cpu", torch.float64).numpy()
    d = np.zeros(c64.shape)
    mag = np.abs(c64)
    if not mag.size or float(mag.max()) <= tau:
        return SemiStep(c64, c64, d, before)
    for lo, hi in row_segments(mag > SEMI_KEEP * tau):
        w.addmv_(Q[lo:hi].T, c[lo:hi], alpha=-1.0)
        d[lo:hi] = c64[lo:hi]
    after = float(torch.linalg.vector_norm(w))
    if after < DGKS_ETA * before:
        c2 = torch.mv(Q, w)
        w.addmv_(Q.T, c2, alpha=-1.0)
        last = c2.to("cpu", torch.float64).numpy()
        return SemiStep(c64, last, last, math.nan, cancelled=True)
    return SemiStep(c64, c64, d, after)


def row_segments(rows: np.ndarray, gap: int = 2) -> list[tuple[int, int]]:
    """The ``True`` entries of ``rows`` (n,) as ``[lo, hi)`` segments, two segments
    merged when at most ``gap`` rows lie between them: a product over a segment reads
    ``w`` and writes it back once, two vectors' worth of traffic, so reading a gap of up
    to two rows costs no more than starting a new segment."""
    idx = np.flatnonzero(rows)
    if idx.size == 0:
        return []
    cut = np.flatnonzero(np.diff(idx) > gap + 1)
    starts = np.concatenate([[idx[0]], idx[cut + 1]])
    ends = np.concatenate([idx[cut], [idx[-1]]]) + 1
    return list(zip(starts.tolist(), ends.tolist()))


def as_rows(X: Tensor) -> Tensor:
    """The columns of ``X`` (P, b) as the rows of a contiguous ``(b, P)`` tensor (and
    the rows of ``(k, P)`` as the columns of a contiguous ``(P, k)``: any transposing copy).

    A product comes back as ``(P, b)`` columns, the engine works on rows. On the CPU
    (float32, float64) numpy's transposing copy is used: several times faster than
    torch's ``.T.contiguous()`` for a few columns of a million rows, and it runs once
    per Lanczos step."""
    T = X.T
    if T.is_contiguous():
        return standard_strides(T)
    if T.device.type == "cpu" and T.dtype in (torch.float32, torch.float64) \
            and not (T.requires_grad or T.is_neg()):
        return torch.from_numpy(np.ascontiguousarray(T.numpy()))
    return T.contiguous()


def _subtract_(W: Tensor, C: Tensor, Q: Tensor) -> None:
    """``W -= C Q`` in place (2-D or batched)."""
    if W.dim() == 2:
        W.addmm_(C, Q, alpha=-1.0)
    else:
        W.baddbmm_(C, Q, alpha=-1.0)


_BLAS_CONTROLLER: list = []


def one_blas_thread() -> Any:
    """A context in which numpy's and scipy's BLAS run on one thread (threadpoolctl).

    For the engine's small dense problems (``n x n``, ``n`` the basis size), run between
    products: OpenBLAS wakes helper threads for them (scipy's generalized ``eigh`` at any
    ``n``, plain ``eigh`` at a few hundred), and those threads then spin on after the
    call, taking a core from the products that follow (seen as process CPU time far above
    wall time when such calls are made between pauses). The controller is made once."""
    from threadpoolctl import ThreadpoolController

    if not _BLAS_CONTROLLER:
        _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas")


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


REORTHOGONALIZE = ("full", "semi", "none")


def _reorth_policy(reorthogonalize: bool | str) -> str:
    if reorthogonalize is True:
        return "full"
    if reorthogonalize is False:
        return "none"
    if reorthogonalize not in REORTHOGONALIZE:
        raise ValueError(
            f"reorthogonalize must be one of {', '.join(REORTHOGONALIZE)} (or a bool), "
            f"got {reorthogonalize!r}"
        )
    return str(reorthogonalize)


def lanczos_tridiagonal(
    matmat: MatMat,
    V0: Tensor,
    num_steps: int,
    *,
    reorthogonalize: bool | str = True,
) -> Tridiagonal:
    """Run ``b`` independent Lanczos processes from the columns of ``V0`` (P, b).

    Each step is one ``matmat`` of the ``b`` current vectors. ``reorthogonalize``:

    * ``"full"`` (or ``True``, the default): each run keeps its basis (``b * m * P``
      entries) and orthogonalizes every new vector against all of it
      (:func:`orthogonalize_`); the basis stays orthonormal to working precision.
    * ``"semi"``: the same stored basis; every new vector's coefficients against the
      whole basis are measured (one product with it), and when one exceeds ``sqrt(eps)``
      of the vector's norm, those above half of that are subtracted, reading only their
      rows again (:func:`semi_orthogonalize_`; a second full pass when the DGKS
      criterion asks). So every basis vector is, by measurement, within ``sqrt(eps)``
      of orthogonal to all earlier ones (semi-orthogonality), and by Simon's (1984)
      theorem ``T`` is then, to working precision, the projection of ``A`` on an
      orthonormal basis of the Krylov space: the nodes and weights of ``"full"``.
      Until a Ritz value converges the coefficients stay near rounding level and the
      basis is read once per step instead of twice; after, a part of it twice.
    * ``"none"`` (or ``False``): no basis at all, the three-term recurrence only:
      memory is a few vectors per run whatever ``num_steps``. Orthogonality is lost
      as Ritz values converge and converged outliers come back as "ghost" copies,
      but the quadrature rule stays accurate (Greenbaum 1989; Knizhnerman 1996):
      the ghosts split an outlier's weight between copies, the density and its
      moments are kept. The Ritz values of such a run are not eigenvalue estimates
      one by one.

    Precision: the coefficients ``alpha_j = q_j . w`` and ``beta_j = ||w||`` are summed
    pairwise (:func:`~spectra.utils.tensors.pairwise_dot`), not by ``torch.dot``, whose
    float32 running sums put nodes past the spectrum: without a basis, on the
    1.13M-parameter MLP's float32 Hessian, a node 3.7e-4 of the width above
    lambda_max, 3.0e-6 with the pairwise sums (``python -m analyses.bounded_density``
    before and after the change); on the float32 diagonals of the engine test
    (``test_float32_nodes_stay_inside_the_spectrum``), 1.2e-3 of the width without a
    basis (100k entries) and 1.2e-4 under ``"semi"`` (1M entries), within the test's
    1e-5 now.

    Returns:
        The tridiagonal matrices (float64), see :class:`Tridiagonal`.
    """
    policy = _reorth_policy(reorthogonalize)
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
    # row layout: run i's vectors are rows, its basis a contiguous (m, P) block
    q = standard_strides((V0 / norms).T)  # (b, P)
    basis = torch.empty(b, m, P, dtype=dtype, device=device) if policy != "none" else None
    alpha = np.zeros((b, m))
    beta = np.zeros((b, max(m - 1, 0)))
    lengths = np.full(b, m, dtype=np.int64)
    active = np.ones(b, dtype=bool)
    q_prev = torch.zeros_like(q)
    beta_prev = torch.zeros(b, 1, dtype=dtype, device=device)
    scale = np.zeros(b)
    for j in range(m):
        if basis is not None:
            basis[:, j, :] = q
        W = as_rows(matmat(q.T))  # (b, P)
        # (b, 1): q_i . w_i, run by run (a batched vecdot of strided rows is slower on a
        # CPU), summed pairwise: see the note on precision in the docstring
        a_np = np.array([pairwise_dot(q[i], W[i]) for i in range(b)])
        a = torch.as_tensor(a_np, device=device).to(dtype).unsqueeze(1)
        if basis is not None and j > 0:  # q_{j-1}, q_j are rows j-1, j: one pass over w
            pair = torch.cat([beta_prev, a], dim=1)  # (b, 2)
            for i in range(b):
                W[i].addmv_(basis[i, j - 1 : j + 1].T, pair[i], alpha=-1.0)
        else:
            W.addcmul_(q, a, value=-1.0).addcmul_(q_prev, beta_prev, value=-1.0)  # no temporaries
        alpha[:, j] = np.where(active, a_np, alpha[:, j])
        if basis is not None and j < m - 1:
            for i in range(b):  # run by run: faster than batched products on a CPU
                if policy == "full":
                    orthogonalize_(W[i : i + 1], basis[i, : j + 1])
                else:
                    semi_orthogonalize_(W[i], basis[i, : j + 1])
        if j == m - 1:
            break
        b_np = np.array([pairwise_norm(W[i]) for i in range(b)])  # not the semi step's norm
        bnorm = torch.as_tensor(b_np, device=device).to(dtype).unsqueeze(1)  # (b, 1)
        scale = np.maximum(scale, np.abs(a_np) + b_np)
        broke = (b_np <= 10 * eps * np.maximum(scale, 1e-300)) & active
        lengths[broke] = j + 1
        active &= ~broke
        beta[:, j] = np.where(active, b_np, 0.0)
        if not active.any():
            break
        if active.all():
            q_prev, q, beta_prev = q, W.div_(bnorm), bnorm
        else:  # finished runs continue as zeros
            live = torch.as_tensor(active, device=device).unsqueeze(1)
            safe = torch.where(live, bnorm, torch.ones_like(bnorm))
            q_prev, q = q, torch.where(live, W / safe, torch.zeros_like(W))
            beta_prev = torch.where(live, bnorm, torch.zeros_like(bnorm))
    return Tridiagonal(alpha=alpha, beta=beta, lengths=lengths)


# ---------------------------------------------------------------------- thick restart
WHICH = ("LA", "SA", "BE", "LM")
EIGSH_REORTHOGONALIZE = ("semi", "full")


def thick_restart_policy(reorthogonalize: Any) -> str:
    """``reorthogonalize`` if it is one of :data:`EIGSH_REORTHOGONALIZE` (the policies of
    :class:`ThickRestartLanczos` and :func:`spectra.linalg.eigsh`), else ``ValueError``."""
    if not isinstance(reorthogonalize, str) or reorthogonalize not in EIGSH_REORTHOGONALIZE:
        raise ValueError(f"reorthogonalize must be one of {', '.join(EIGSH_REORTHOGONALIZE)}, "
                         f"got {reorthogonalize!r}")
    return reorthogonalize


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

    State, in row layout (one vector per row): the orthonormal basis ``Q``
    (n, P), all of it multiplied, its products ``AQ`` (n, P) (row ``i`` is
    ``A q_i``), the projected matrix ``H = Q A Q^T`` (n, n, float64), and the
    next block ``F`` (b, P), orthonormal and orthogonal to ``Q``, not yet
    multiplied. Between restarts ``Q`` is a (block) Krylov basis and ``H`` is
    (block) tridiagonal up to rounding; after a restart ``H`` has the
    arrowhead-plus-tridiagonal shape of the Krylov-Schur form.

    Args:
        matmat: the operator, ``(P, b) -> (P, b)``.
        start: ``(P, b)`` start block (need not be orthonormal).
        max_basis: the basis size (``ncv``); a restart is needed before a block
            that would not fit.
        generator: used to replace a broken-down direction by a random one.
        storage: where ``Q`` and ``AQ`` live: ``"device"`` (the start block's device),
            ``"host"`` (CPU memory, pageable: see :func:`basis_storage`) or
            ``"disk"`` (a numpy memmap of a file in ``tmpdir``, deleted at once, so the
            OS pages the basis out under memory pressure and drops it on exit). Off
            the device, the Gram-Schmidt work runs where the basis is and only the
            blocks of ``b`` vectors cross to the operator (see :func:`basis_storage`).
        tmpdir: the folder of the ``"disk"`` basis (default: the system's temp folder).
        reorthogonalize: ``"full"``: every new vector is orthogonalized against the
            whole basis (two passes over it, :func:`orthogonalize_`), ``Q`` stays
            orthonormal to working precision. ``"semi"`` (single-vector steps, ``b = 1``,
            in float32 or float64; blocks and half precision use ``"full"``): the
            coefficients are measured in one pass and subtracted only past
            ``sqrt(eps) ||w||`` (:func:`semi_orthogonalize_`), so ``Q`` is
            semi-orthogonal; its Gram matrix ``G = Q Q^T`` is kept from the
            measured coefficients (no extra pass), and the Ritz pairs solve
            ``H y = theta G y``. ``H = Q A Q^T`` holds exactly either way, so the Ritz
            values are those of ``A`` projected on the same space, and the Ritz vectors
            ``Y^T Q`` (``Y^T G Y = I``) are orthonormal: the results of ``"full"``
            within rounding, reading the basis once per step instead of twice while
            the coefficients stay small. At a restart the next block is made orthogonal
            to the whole old basis (through ``G``), so the kept Ritz vectors restart
            orthonormal and the Krylov-Schur relation holds exactly.
    """

    def __init__(
        self,
        matmat: MatMat,
        start: Tensor,
        *,
        max_basis: int,
        generator: torch.Generator | None = None,
        storage: str = "device",
        tmpdir: str | None = None,
        reorthogonalize: str = "full",
    ) -> None:
        reorthogonalize = thick_restart_policy(reorthogonalize)
        P, b = start.shape
        self.P, self.b = P, b
        self.op_device = start.device
        self.storage = storage
        self.dtype = start.dtype
        self.device = start.device if storage == "device" else torch.device("cpu")
        if self.device == self.op_device:
            self.matmat = matmat
        else:  # blocks cross to the operator's device and back
            self.matmat = lambda V: matmat(V.to(self.op_device)).to(self.device)
        self.max_basis = int(min(max_basis, P))
        if self.max_basis < b:
            raise ValueError(f"max_basis={max_basis} is smaller than the block size {b}")
        self.generator = generator
        # rows past ``n`` are never read: empty, so untouched pages cost nothing
        self.Q = basis_storage(self.max_basis, P, self.dtype, self.device, storage,
                               tmpdir=tmpdir)
        self.AQ = basis_storage(self.max_basis, P, self.dtype, self.device, storage,
                                tmpdir=tmpdir)
        start = start.to(self.device)
        self.H = np.zeros((self.max_basis, self.max_basis))
        # semi: single vectors, in float32 or float64 (in half precision sqrt(eps) is
        # several percent, too loose for a well-conditioned Gram matrix)
        self.semi = (reorthogonalize == "semi" and b == 1
                     and _machine_eps(self.dtype) <= _machine_eps(torch.float32))
        # the Gram matrix Q Q^T (the identity under full reorthogonalization), and the
        # next block's inner products with the basis rows ((b, n); None: orthogonal)
        self.G = np.eye(self.max_basis)
        self._g_next: np.ndarray | None = None
        self.n = 0
        self.num_matvecs = 0
        self._coupling = np.zeros((0, 0))
        self._last_block = (0, 0)
        self._prev_lo: int | None = None  # first row of the previous block, if adjacent
        W = standard_strides(start.T)
        self._work = torch.empty(0, P, dtype=self.dtype, device=self.device)
        self.F = self._orthonormal_block(W, W.norm(dim=1))

    @property
    def block_width(self) -> int:
        """The number of vectors in the next block (``b``, fewer near exhaustion)."""
        return int(self.F.shape[0])

    @property
    def exhausted(self) -> bool:
        """The basis spans an invariant subspace and no direction is left: exact."""
        return self.block_width == 0

    @property
    def needs_restart(self) -> bool:
        """The next block does not fit in the basis."""
        return self.n + self.block_width > self.max_basis

    # --------------------------------------------------------------- basis growth
    def _orthonormal_block(self, W: Tensor, ref_norms: Tensor, projected: bool = False) -> Tensor:
        """Orthonormalize the rows of ``W`` (j, P) against ``Q`` and each other.

        ``ref_norms`` (j,) are the rows' norms before any projection (the scale
        for deciding that a row vanished); ``projected`` says that ``W`` was
        already orthogonalized against ``Q`` once (by :meth:`expand`). A row that
        vanishes (its Krylov space is invariant) is replaced by a random
        direction orthogonal to everything so far; when ``Q`` and the block
        already span the whole space, fewer rows are returned.
        """
        eps = _machine_eps(self.dtype)
        rows: list[Tensor] = []
        for j in range(W.shape[0]):
            w = W[j : j + 1]
            ref = float(ref_norms[j])
            fresh = not projected
            for _attempt in range(3):
                if self.n + len(rows) >= self.P:
                    return _stack(rows, self.P, self.dtype, self.device)
                if self.n and fresh:
                    orthogonalize_(w, self.Q[: self.n])
                if rows:
                    before = float(w.norm())
                    orthogonalize_(w, torch.cat(rows), passes=2)
                    if self.n and float(w.norm()) < DGKS_ETA * before:
                        orthogonalize_(w, self.Q[: self.n])  # cancellation: once more
                nrm = float(torch.linalg.vector_norm(w))
                if nrm > 100 * eps * max(ref, 1e-300):
                    rows.append(w / nrm)
                    break
                w = standard_strides(random_vectors(
                    self.P, 1, generator=self.generator, dtype=self.dtype, device=self.device
                ).T)
                ref = float(w.norm())
                fresh = True
        return _stack(rows, self.P, self.dtype, self.device)

    def expand(self) -> None:
        """Multiply the next block, append it to the basis, update ``H``, and
        form the following block. Requires ``not needs_restart``."""
        if self.exhausted:
            return
        if self.needs_restart:
            raise RuntimeError("the basis is full: restart before expanding")
        F = self.F
        lo, hi = self.n, self.n + F.shape[0]
        W = self.matmat(F.T)
        self.num_matvecs += F.shape[0]
        if tuple(W.shape) != (self.P, F.shape[0]):
            raise ValueError(
                f"the operator returned shape {tuple(W.shape)}, expected {(self.P, F.shape[0])}"
            )
        W = as_rows(W.to(self.dtype))  # (b, P): row i is A f_i
        if F.data_ptr() != self.Q[lo:hi].data_ptr():  # not already written there
            self.Q[lo:hi] = F
        self.AQ[lo:hi] = W
        G = self.G
        G[lo:hi, :hi] = 0.0
        G[:hi, lo:hi] = 0.0
        G[lo:hi, lo:hi] = np.eye(hi - lo)
        if self._g_next is not None:
            G[lo:hi, :lo] = self._g_next
            G[:lo, lo:hi] = self._g_next.T
        self.n = hi
        # The new entries of H = Q A Q^T are the Gram-Schmidt coefficients. First the
        # block recurrence (this block and the one before it, a few rows), then the
        # whole basis: in exact arithmetic the rest is zero, so that pass rarely
        # cancels and rarely needs the second pass it would need on A F itself.
        if self._work.shape[0] < W.shape[0]:
            self._work = torch.empty_like(W)
        R = self._work[: W.shape[0]]  # reused every step: no fresh pages to fault in
        near = self._prev_lo if self._prev_lo is not None else lo
        # one classical Gram-Schmidt pass over the recurrence's rows, R = W - local Q_near,
        # written into R as it is formed (W, kept in A Q, is not copied first)
        Q_near = self.Q[near:hi]
        local = W @ Q_near.mT  # (b, hi - near)
        torch.addmm(W, local, Q_near, alpha=-1.0, out=R)
        local64 = local.to("cpu", torch.float64).numpy()
        if self.semi:
            step = semi_orthogonalize_(R[0], self.Q[:hi])
            C = step.first[None, :]
        else:
            C = orthogonalize_(R, self.Q[:hi]).to("cpu", torch.float64).numpy()
        # (b, hi): A F Q^T = (what the passes measured) + local (Q[near:hi] Q^T)
        C = C + local64 @ G[near:hi, :hi]
        self._prev_lo = lo
        self.H[lo:hi, :hi] = C
        self.H[:hi, lo:hi] = C.T
        blk = self.H[lo:hi, lo:hi]
        self.H[lo:hi, lo:hi] = 0.5 * (blk + blk.T)
        ref = torch.linalg.vector_norm(W, dim=1)
        # W = C Q + S F with F orthogonal to Q, so S = W F^T: the Krylov relation
        # A Q^T = Q^T H + F^T S^T E^T (E: the last block) gives every Ritz residual free
        if self.semi:
            self.F, self._g_next, self._coupling = self._next_vector(
                R, ref, step, local64[0], near)
        else:
            self.F = self._orthonormal_block(R, ref, projected=True)
            self._coupling = (self.F @ W.T).to("cpu", torch.float64).numpy()  # (b', b)
        self._last_block = (lo, hi)

    def _next_vector(self, R: Tensor, ref: Tensor, step: SemiStep, local: np.ndarray,
                     near: int) -> tuple[Tensor, np.ndarray | None, np.ndarray]:
        """The next vector from ``R`` (1, P), after the semi step ``step``, its row of ``G``
        (its inner products with ``Q``: what the step left, ``(1, n)``) and its coupling
        ``S = w f`` to the product ``w`` it came from (``(1, 1)``, see :meth:`expand`).

        ``local`` (k,) are the coefficients the recurrence's pass subtracted along rows
        ``near .. n - 1``. Then ``w = R + c Q`` with ``c`` those and the step's, and ``f =
        R / ||R||`` is, when it fits, written straight into the basis row it will take, so
        ``S = ||R|| + c g`` (``g``: its row of ``G``) without reading ``w`` or ``f`` again.
        When the step cancelled (a DGKS pass ran) or ``R`` vanished (its Krylov space is
        invariant), ``R`` may be rounding inside the span of ``Q``, whose inner products
        the step's coefficients do not tell to working precision: it is projected out
        exactly (through ``G``, twice), replaced by a random direction when nothing is
        left, its row of ``G`` measured (see :meth:`_exact_next_vector`) and ``S`` too."""
        eps = _machine_eps(self.dtype)
        nrm = step.norm  # R is the vector the step left: its norm is known
        n = self.n
        if not step.cancelled and nrm > 100 * eps * max(float(ref[0]), 1e-300) and n < self.P:
            g = step.left(self.G[:n, :n]) / nrm  # (n,)
            c = step.after.copy()
            c[near:n] += local
            coupling = np.array([[nrm + float(c @ g)]])
            if n < self.max_basis:  # its row of the basis: no copy at the next expand
                F = torch.div(R, nrm, out=self.Q[n:n + 1])
            else:
                F = R / nrm
            return F, g[None, :], coupling
        F, g_next = self._exact_next_vector(R, float(ref[0]))
        return F, g_next, (F @ self.AQ[n - 1:n].T).to("cpu", torch.float64).numpy()

    def _remove_span_(self, W: Tensor, C: np.ndarray) -> None:
        """``W`` (b, P) minus its orthogonal projection on the span of ``Q``, in place, from
        its inner products ``C = W Q^T`` (b, n): ``W -= (G^{-1} C^T)^T Q``, exact for a
        basis that is not orthonormal (one pass over ``Q``)."""
        n = self.n
        with one_blas_thread():
            Y = np.linalg.solve(self.G[:n, :n], C.T)  # (n, b)
        W.addmm_(self._coords(Y), self.Q[:n], alpha=-1.0)

    def _project_out_(self, w: Tensor) -> float:
        """``w`` (1, P) minus its orthogonal projection on the span of ``Q``, in place, its
        inner products measured first (:meth:`_remove_span_`). Returns ``||w||`` after."""
        self._remove_span_(w, (w @ self.Q[: self.n].T).to("cpu", torch.float64).numpy())
        return float(torch.linalg.vector_norm(w))

    def _exact_next_vector(self, R: Tensor, ref: float) -> tuple[Tensor, np.ndarray | None]:
        """A unit vector orthogonal to the span of ``Q`` from ``R`` (1, P), or from a random
        direction when ``R`` has nothing outside the span (up to three tries, as in
        :meth:`_orthonormal_block`), with its row of ``G`` measured; ``(0, P)`` and
        ``None`` when the space is exhausted. ``R`` is kept when the second of two exact
        projections leaves at least ``1/sqrt(2)`` of what the first left (DGKS)."""
        eps = _machine_eps(self.dtype)
        w, scale = R, ref
        for _attempt in range(3):
            if self.n >= self.P:
                break
            if float(torch.linalg.vector_norm(w)) > 100 * eps * max(scale, 1e-300):
                mid = self._project_out_(w)
                last = self._project_out_(w)
                if last > DGKS_ETA * mid and last > 100 * eps * max(scale, 1e-300):
                    F = w / last
                    return F, (F @ self.Q[: self.n].T).to("cpu", torch.float64).numpy()
            w = standard_strides(random_vectors(
                self.P, 1, generator=self.generator, dtype=self.dtype, device=self.device).T)
            scale = float(torch.linalg.vector_norm(w))
        return torch.zeros(0, self.P, dtype=self.dtype, device=self.device), None

    # --------------------------------------------------------------- Ritz pairs
    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values ``(n,)`` ascending and their basis coordinates ``(n, n)``:
        ``H y = theta y``, or under semi reorthogonalization ``H y = theta G y`` (so that
        ``Y^T G Y = I`` and the vectors ``Y^T Q`` are orthonormal).

        scipy's LAPACK driver with one BLAS thread (:func:`one_blas_thread`): this runs
        after every block, between products."""
        n = self.n
        with one_blas_thread():
            if self.semi:
                return _dense_eigh(self.H[:n, :n], self.G[:n, :n], check_finite=False)
            return _dense_eigh(self.H[:n, :n], check_finite=False)

    def residual_estimates(self, Y: np.ndarray) -> np.ndarray:
        """``||A x - theta x||`` from the Krylov relation, for coordinates ``Y`` (n, j).

        ``||S Y[last block]||``: no work of size ``P``. Exact in exact arithmetic;
        :meth:`ritz_pairs` verifies it from the stored products."""
        lo, hi = self._last_block
        if self._coupling.size == 0:
            return np.zeros(Y.shape[1])
        return np.linalg.norm(self._coupling @ Y[lo:hi, :], axis=0)

    def _coords(self, Y: np.ndarray) -> Tensor:
        """``Y^T`` (j, n) in the basis's dtype and device, contiguous."""
        return torch.as_tensor(np.ascontiguousarray(Y.T), dtype=self.dtype, device=self.device)

    def ritz_pairs(self, theta: np.ndarray, Y: np.ndarray) -> tuple[Tensor, np.ndarray]:
        """Ritz vectors as rows ``(j, P)`` and their exact residuals ``||A x - theta x||``
        (j,) for Ritz pairs ``(theta (j,), Y (n, j))``.

        Computed from the stored products ``A Q``: no operator product, one pass over
        ``Q`` for the vectors and one over ``A Q`` (slab by slab) for the residuals. Both
        are products ``Y^T (n, P)`` over contiguous rows, several times faster on a CPU
        than forming ``(P, j)`` columns from the transposed basis."""
        Yt = self._coords(Y)  # (j, n)
        X = Yt @ self.Q[: self.n]  # (j, P)
        th = torch.as_tensor(theta, dtype=self.dtype, device=self.device).unsqueeze(1)
        # A X - theta X slab by slab: a small reused temporary, not a (j, P) one
        sq = torch.zeros(Y.shape[1], dtype=torch.float64, device=self.device)
        step = 1 << 16
        for lo in range(0, self.P, step):
            hi = min(lo + step, self.P)
            R = (Yt @ self.AQ[: self.n, lo:hi]).addcmul_(X[:, lo:hi], th, value=-1.0)
            sq += torch.linalg.vector_norm(R, dim=1, dtype=torch.float64).square()
        return X, sq.sqrt().to("cpu").numpy()

    def _combine_in_place_(self, rows: Tensor, Y: np.ndarray) -> None:
        """``rows[:j] = Y^T rows[:n]`` in place, ``Y`` (n, j) with ``j <= n``.

        Column slab by column slab (each slab's combination is formed before it is
        written back), so no ``(j, P)`` temporary is allocated and the slab of
        ``rows`` read stays in cache; the product costs ``2 j n P`` flops."""
        Yt = self._coords(Y)
        j, n = Yt.shape
        step = max(1024, (1 << 18) // max(n, 1))  # a slab of n rows: ~1 MiB of float32
        for lo in range(0, self.P, step):
            hi = min(lo + step, self.P)
            rows[:j, lo:hi] = Yt @ rows[:n, lo:hi]

    def restart(self, keep: np.ndarray, theta: np.ndarray, Y: np.ndarray) -> None:
        """Keep the Ritz vectors ``X = Y[:, keep]^T Q`` and the next block ``F``.

        ``A X^T = X^T Theta + F^T S^T`` holds for the Krylov-Schur form, so ``H``
        restarts as ``diag(Theta)``; the coupling between ``X`` and ``F`` is
        filled in by the next :meth:`expand` (which computes ``Q A F^T``).
        """
        kc = len(keep)
        if self._g_next is not None and self.block_width:
            # F leans on the old basis by g = F Q^T (known): remove all of it, so that
            # A X^T = X^T Theta + F^T S^T holds exactly
            self._remove_span_(self.F, self._g_next)
        self._g_next = None
        self._combine_in_place_(self.Q, Y[:, keep])
        self._combine_in_place_(self.AQ, Y[:, keep])
        self.H[:] = 0.0
        self.H[np.arange(kc), np.arange(kc)] = theta[keep]
        self.G[:kc, :kc] = np.eye(kc)  # X X^T = Y^T G Y = I
        self.n = kc
        self._prev_lo = None  # the kept rows are coupled to F through H, not a recurrence
        # F is orthogonal to the old basis, hence to X; this removes rounding only
        self.F = self._orthonormal_block(self.F.clone(), self.F.norm(dim=1))


STORAGES = ("device", "host", "disk")


def basis_storage(rows: int, P: int, dtype: torch.dtype, device: torch.device, storage: str,
                  *, tmpdir: str | None = None) -> Tensor:
    """An uninitialized ``(rows, P)`` tensor for a Krylov basis, kept in ``storage``.

    ``"device"``: on ``device``. ``"host"``: CPU memory, pageable: a basis sent to the
    host is one too large for the device, and page-locking gigabytes would take them
    from the rest of the machine for nothing, since the Gram-Schmidt work runs where
    the basis is and only blocks of a few vectors cross to the operator. ``"disk"``: a
    numpy memmap of a file created in ``tmpdir`` and unlinked at once (the mapping
    keeps it alive; nothing is left behind, even after a crash); its pages are written
    back to disk and evicted by the OS under memory pressure, so the basis is bounded
    by disk space, not RAM.
    """
    if storage == "device":
        return torch.empty(rows, P, dtype=dtype, device=device)
    if storage == "host":
        return torch.empty(rows, P, dtype=dtype)
    if storage != "disk":
        raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    import os
    import tempfile

    np_dtype = {torch.float32: np.float32, torch.float64: np.float64,
                torch.float16: np.float16}.get(dtype)
    if np_dtype is None:
        raise ValueError(f"a disk basis needs float16, float32 or float64, got {dtype}")
    fd, path = tempfile.mkstemp(prefix="spectra-basis-", suffix=".bin", dir=tmpdir)
    try:
        os.close(fd)
        arr = np.memmap(path, dtype=np_dtype, mode="w+", shape=(rows, P))
    finally:
        os.unlink(path)
    return torch.from_numpy(arr)


def _stack(rows: list[Tensor], P: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    if not rows:
        return torch.zeros(0, P, dtype=dtype, device=device)
    return rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)
