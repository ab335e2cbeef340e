"""Extreme eigenpairs of a symmetric operator: :func:`eigsh`.

Thick-restart Lanczos with semi (default) or full reorthogonalization (see
:mod:`spectra.linalg.lanczos`), in the spirit of ``scipy.sparse.linalg.eigsh`` but on
torch tensors, with batched products, an explicit random generator, and
residuals that are exact rather than estimated.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from spectra.linalg.dense import checked_operator, work_dtype
from spectra.linalg.lanczos import (
    STORAGES,
    WHICH,
    ThickRestartLanczos,
    as_rows,
    random_vectors,
    select,
    thick_restart_policy,
)
from spectra.linalg.memory import MemoryPlan, budget, format_bytes
from spectra.utils import checks as _checks
from spectra.utils.progress import Progress, progress_bar


@dataclass(frozen=True)
class EigenResult:
    """Eigenpairs found by :func:`eigsh` (or the :func:`power_iteration` baseline).

    Dtypes (the same for every operator): the numbers are float64 CPU tensors
    (``eigenvalues``, ``residuals``; they come from the float64 projected matrix
    and are what gets reported and stored), the vectors are in the operator's dtype
    and on its device (``eigenvectors``: ready for the next product, e.g. as ``v0``).

    Attributes:
        eigenvalues: ``(k,)`` float64 (CPU), ordered for ``which``: ``"LA"`` descending,
            ``"SA"`` ascending, ``"LM"`` by descending magnitude, ``"BE"``
            descending.
        eigenvectors: ``(P, k)`` in the operator's dtype and on its device,
            orthonormal columns, signs fixed so that each column's largest entry is
            positive (also when the basis was kept on the host or on disk).
        residuals: ``(k,)`` float64 (CPU), ``||A x_i - lambda_i x_i||`` computed from
            real products (not a recurrence estimate).
        converged: ``(k,)`` bool, ``residual <= max(tol * |lambda|, atol, floor)``, the
            floor being what the computation can resolve: ``10 eps max|theta|`` (``eps``
            the machine epsilon of the operator's float32 or float64, ``theta`` the Ritz
            values), which matters for an eigenvalue near 0; for a float16 or bfloat16
            operator (its basis kept in float32), ``2 eps max|theta|`` with the ``eps`` of
            its dtype, four rounding units of its products, which matters everywhere
            (bfloat16: 1.6% of the largest; :func:`eigsh` warns when a pair met only
            the floor there).
        num_matvecs: operator products spent (a ``matmat`` of ``j`` vectors counts ``j``).
        num_restarts: thick restarts performed.
        which, tol: the request.
        plan: where the Krylov basis was kept and why (``plan.mode``: ``"device"``,
            ``"host"`` or ``"disk"``, see :mod:`spectra.linalg.memory`); ``None`` for
            :func:`power_iteration`.
    """

    eigenvalues: Tensor
    eigenvectors: Tensor
    residuals: Tensor
    converged: Tensor
    num_matvecs: int
    num_restarts: int = 0
    which: str = "LA"
    tol: float = 1e-3
    plan: MemoryPlan | None = None

    @property
    def all_converged(self) -> bool:
        return bool(self.converged.all())


def eigsh(
    op: Any,
    k: int = 1,
    which: str = "LA",
    tol: float = 1e-3,
    *,
    max_matvecs: int | None = None,
    v0: Tensor | None = None,
    generator: torch.Generator | None = None,
    ncv: int | None = None,
    block_size: int = 1,
    atol: float = 0.0,
    progress: Progress = False,
    warn: bool = True,
    max_memory: int | str | None = None,
    storage: str = "auto",
    reorthogonalize: str = "semi",
    min_basis: int | None = None,
) -> EigenResult:
    """The ``k`` extreme eigenpairs of a symmetric operator, by thick-restart Lanczos.

    Args:
        op: a curvature operator, a dense symmetric ``(P, P)`` tensor or array,
            a scipy ``LinearOperator``, or anything with ``matvec``/``matmat`` and ``shape``.
        k: number of eigenpairs, ``1 <= k <= P``.
        which: ``"LA"`` largest algebraic (sharpness: the top of the spectrum),
            ``"SA"`` smallest algebraic (most negative curvature), ``"BE"`` both
            ends (``ceil(k/2)`` from the top, the rest from the bottom), ``"LM"``
            largest magnitude.
        tol: relative residual tolerance: a pair is converged when
            ``||A x - lambda x|| <= tol * |lambda|`` (then ``lambda`` is within
            ``tol * |lambda|`` of an eigenvalue, and much closer when isolated).
        max_matvecs: budget of operator products (default ``max(1000, 20 * ncv)``);
            on exhaustion the result holds what was reached, with ``converged``
            flags, and a warning.
        v0: start vector ``(P,)`` or block ``(P, j)``; e.g. the previous call's
            eigenvectors to warm-start a tracking computation. Missing columns
            of the block are drawn at random. A warm start converges in few products
            to the eigenvalues it already holds, also when another, more extreme one
            has appeared that it barely touches: so with ``v0`` no pair counts as
            converged before the basis holds ``min_basis`` vectors.
        generator: the source of the random start (default: a fresh generator
            seeded with 0, so the global RNG is never touched).
        min_basis: the basis size below which no pair counts as converged (default: 1
            from a random start; with ``v0``, ``max(20, 2k + 1)``, ARPACK's first basis,
            capped at ``ncv``, ``max_matvecs`` and ``P``). A small residual says that a
            Ritz value is near *an* eigenvalue, not that it is the extreme one: a start
            that barely touches the extreme eigenvector (a warm start from vectors that
            missed it, or a huge cluster of eigenvalues just inside it) can meet ``tol``
            on a lesser one after one or two products. A larger ``min_basis`` gives the
            Krylov space room to find it, at that many products at least.
        ncv: basis size before a thick restart (default :func:`default_ncv`:
            50, or what fits in 2 GiB, but at least ``max(20, 2k + 2b + 4)``;
            capped at ``P``); memory is ``2 * ncv`` vectors of length ``P``.
            A larger basis restarts less, which matters most for an eigenvalue
            at the edge of a dense bulk (the most negative one of a trained
            network).
        atol: absolute residual tolerance: a pair is also converged when
            ``||A x - lambda x|| <= atol``. Use ``tol * lambda_max`` for an
            eigenvalue near zero inside a dense cluster (the most negative
            eigenvalue of a trained network), whose relative accuracy is out
            of reach in float32.
        block_size: vectors per Krylov step, ``b``. A single-vector Krylov space
            holds one direction of each eigenspace, so an eigenvalue of exact
            multiplicity ``> b`` is found once; ``b >= multiplicity`` finds every
            copy. ``b > 1`` also batches the products.
        progress: a progress bar over products (see :mod:`spectra.utils.progress`).
        warn: warn when not all pairs converge within the budget.
        max_memory: bytes (or a size such as ``"2GB"``) the basis and its products
            (``2 * ncv`` vectors of length ``P``) may take on the operator's device;
            default half the memory available there (see :mod:`spectra.linalg.memory`).
        storage: where the basis lives: ``"auto"`` (the operator's device when it fits
            in ``max_memory``; else host memory when the operator is on a GPU and the
            basis fits in half the host's available memory; else disk), or
            ``"device"``, ``"host"``, ``"disk"`` to force it. Off the device the
            Gram-Schmidt work runs on the CPU and each block of ``b`` vectors is copied
            across; the results are the same up to rounding. The result's ``plan``
            says which ran and why.
        reorthogonalize: ``"semi"`` (default) or ``"full"``; both give the Ritz values
            and vectors of an orthonormal basis. ``"full"`` orthogonalizes each new
            vector against the whole basis (two passes over it). ``"semi"`` measures its
            coefficients in one pass and, once one exceeds ``sqrt(eps)`` of its norm,
            subtracts those above half of that, reading only their rows again; the
            basis ``Q`` is then semi-orthogonal, its Gram matrix ``Q Q^T`` is kept from
            the measured coefficients, and the Rayleigh-Ritz problem is solved with it
            (a generalized one), so the Ritz values are those of the projection on the
            same Krylov space and the Ritz vectors are orthonormal (see
            :class:`~spectra.linalg.lanczos.ThickRestartLanczos`). It pays off when the
            basis is large (a network's ``P``); for a small dense matrix and a large
            ``ncv`` the generalized problem at each step can cost more than the pass it
            saves. Blocks (``block_size > 1``) always use ``"full"``. The basis of a
            float16 or bfloat16 operator is kept in float32, its products in its own dtype
            (:func:`~spectra.linalg.dense.work_dtype`).

    Returns:
        :class:`EigenResult`.

    Raises:
        ValueError: an argument out of range (``k``, ``block_size``, ``ncv`` and
            ``max_matvecs`` must be integers, not bools), a 0 x 0 operator, a bad
            ``max_memory``, ``storage`` or ``reorthogonalize``, working blocks larger
            than the device's memory, or a disk basis larger than the free disk space.

    Example:
        >>> import torch
        >>> from spectra import eigsh
        >>> A = torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64))
        >>> res = eigsh(A, k=3, which="LA", tol=1e-8)
        >>> [round(x, 6) for x in res.eigenvalues.tolist()]  # exact to ~1e-13
        [100.0, 99.0, 98.0]
        >>> bool(res.converged.all())
        True
    """
    A, P = checked_operator(op, "eigsh")
    # one stream for the start and any replacement direction: a fresh seed-0 draw for
    # each would repeat the start vector, which is in the basis
    generator = _checks.generator("generator", generator, seed=0)
    s = _settings(A, P, k, which, tol, atol, block_size, ncv, max_matvecs, max_memory, storage,
                  reorthogonalize, min_basis, warm=v0 is not None)
    search = _Search(A.matmat, s, _start_block(P, s.b, v0, generator, s.dtype, s.device),
                     generator)
    bar = _progress_bar(progress, s.budget)
    try:
        while not search.done:
            before = search.engine.num_matvecs
            search.iterate()
            if bar is not None:
                bar.update(search.engine.num_matvecs - before)
    finally:
        if bar is not None:
            bar.close()
    result = search.extract()
    half = torch.finfo(s.op_dtype).eps > torch.finfo(torch.float32).eps
    if warn and half and bool(result.converged.any()):
        asked = np.maximum(s.tol * result.eigenvalues.abs().numpy(), s.atol)
        by_floor = result.converged.numpy() & (result.residuals.numpy() > asked)
        if by_floor.any():
            warnings.warn(
                f"eigsh: {int(by_floor.sum())} of {s.k} eigenpairs count as converged only to "
                f"the rounding of {s.op_dtype} (residuals up to {float(result.residuals.max()):.3g}"
                f" against tol={s.tol:g}); compute in float32 for tol (a HessianOperator "
                "of a half-precision model does by default)", stacklevel=2)
    if warn and not bool(result.converged.all()):
        warnings.warn(
            f"eigsh: {int(result.converged.sum())} of {s.k} eigenpairs converged to tol={s.tol:g} "
            f"within {result.num_matvecs} products; raise max_matvecs or ncv, or loosen tol",
            stacklevel=2,
        )
    return result


@dataclass(frozen=True)
class _Settings:
    """The checked arguments of one :func:`eigsh` call."""

    k: int
    which: str
    tol: float
    atol: float
    b: int          # block size
    ncv: int        # basis size before a thick restart
    budget: int     # operator products allowed
    dtype: torch.dtype     # the basis's and vectors' (work_dtype: float32 at least)
    op_dtype: torch.dtype  # the operator's: its products' precision (the floor) and the result's
    device: torch.device
    plan: MemoryPlan
    reorthogonalize: str
    min_basis: int  # no pair counts as converged before the basis held this many vectors


def _settings(A: Any, P: int, k: Any, which: str, tol: float, atol: float, block_size: Any,
              ncv: Any, max_matvecs: Any, max_memory: Any,
              storage: str, reorthogonalize: Any, min_basis: Any = None,
              warm: bool = False) -> _Settings:
    """Check and complete :func:`eigsh`'s arguments (see its docstring for the rules)."""
    if which not in WHICH:
        raise ValueError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    reorthogonalize = thick_restart_policy(reorthogonalize)
    k = _checks.integer("k", k, 1, P)
    tol = _checks.number("tol", tol, positive=True)
    atol = _checks.number("atol", atol, low=0)
    b = _checks.integer("block_size", block_size, 1, P)
    dtype = work_dtype(A)
    if ncv is not None:  # more than P is capped at P: the Krylov space has P dimensions
        ncv = min(P, _checks.integer("ncv", ncv, 1))
        if ncv < min(P, k + b):
            raise ValueError(f"ncv must be at least k + block_size = {k + b}, got {ncv}")
    else:
        ncv = default_ncv(P, k, b, dtype)
    plan = plan_memory(P, k, ncv, b, dtype, A.device, max_memory, storage,
                       group=getattr(A, "process_group", None))
    if max_matvecs is not None:
        budget = _checks.integer("max_matvecs", max_matvecs, 1)
        need = -(-min(P, k) // b) * b  # the basis must hold k vectors, in whole blocks
        if budget < need:
            raise ValueError(f"max_matvecs must be at least {need} (k={k} vectors in blocks of "
                             f"block_size={b}), got {budget}")
    else:
        budget = max(1000, 20 * ncv)
    if min_basis is not None:
        floor = _checks.integer("min_basis", min_basis, 1)
    else:
        floor = max(20, 2 * k + 1) if warm else 1
    floor = min(floor, ncv, budget, P)
    op_dtype = A.dtype if A.dtype.is_floating_point else dtype
    return _Settings(k, which, float(tol), float(atol), b, ncv, budget, dtype, op_dtype, A.device,
                     plan, reorthogonalize, floor)


class _Search:
    """The iteration state of one :func:`eigsh` call around the Lanczos engine: the
    restart policy (keep the wanted Ritz vectors and half the rest) and the
    convergence test (the free residual estimates first, the exact residuals only
    to confirm), as scipy's ARPACK driver keeps them in its engine object."""

    def __init__(self, matmat: Any, s: _Settings, start: Tensor,
                 generator: torch.Generator | None) -> None:
        self.s = s
        self.engine = ThickRestartLanczos(matmat, start, max_basis=s.ncv, generator=generator,
                                          storage=s.plan.mode,
                                          reorthogonalize=s.reorthogonalize)
        # the floor's multiple of max|theta|: what the basis's dtype resolves, or four
        # rounding units of a half-precision operator's products (EigenResult.converged)
        self.floor = max(10 * float(torch.finfo(s.dtype).eps),
                         2 * float(torch.finfo(s.op_dtype).eps))
        self.restarts = 0
        self.want = np.arange(0)
        self.theta = np.zeros(0)
        self.Y = np.zeros((0, 0))
        # the wanted pairs' indices in the result's order, their Ritz vectors (rows) and
        # exact residuals, once verified
        self.verified: tuple[np.ndarray, Tensor, np.ndarray] | None = None
        self.done = False
        self.largest = 0  # the most vectors the basis has held (min_basis)

    def _bound(self, values: np.ndarray) -> np.ndarray:
        """Residual each pair must reach: ``tol * |lambda|``, not below rounding or ``atol``."""
        floor = max(self.floor * float(np.abs(self.theta).max()), self.s.atol, 1e-300)
        return np.maximum(self.s.tol * np.abs(values), floor)

    def iterate(self) -> None:
        """Restart if the basis is full, add one block, and test convergence."""
        s, engine = self.s, self.engine
        if engine.needs_restart:
            keep_count = max(min(max(s.k, s.k + (engine.n - s.k) // 2), s.ncv - 2 * s.b), s.k)
            engine.restart(select(self.theta, s.which, keep_count), self.theta, self.Y)
            self.restarts += 1
        engine.expand()
        self.largest = max(self.largest, engine.n)
        self.theta, self.Y = engine.ritz()
        self.want = select(self.theta, s.which, s.k)
        out_of_budget = engine.exhausted or engine.num_matvecs + engine.block_width > s.budget
        if len(self.want) == s.k and (self.largest >= s.min_basis or engine.exhausted):
            bound = self._bound(self.theta[self.want])
            # the free estimate first; the exact residual (2 products of size P x n)
            # only when the estimate says every pair has converged
            if bool((engine.residual_estimates(self.Y[:, self.want]) <= bound).all()):
                sel = self._ordered()
                X, res = engine.ritz_pairs(self.theta[sel], self.Y[:, sel])
                if bool((res <= self._bound(self.theta[sel])).all()):
                    self.verified = (sel, X, res)
                    self.done = True
                    return
        self.done = out_of_budget

    def _ordered(self) -> np.ndarray:
        """The wanted pairs' indices in the result's order (see :func:`_final_order`)."""
        return self.want[_final_order(self.theta[self.want], self.s.which)]

    def extract(self) -> EigenResult:
        """The wanted pairs in :func:`eigsh`'s order, with exact residuals."""
        s, engine = self.s, self.engine
        if len(self.want) < s.k:  # the space is exhausted below k: P < k cannot happen
            raise RuntimeError(
                f"eigsh: the budget of {s.budget} products ended before the basis held "
                f"k={s.k} vectors")
        if self.verified is not None:
            sel, X, res = self.verified
        else:
            sel = self._ordered()
            X, res = engine.ritz_pairs(self.theta[sel], self.Y[:, sel])
        vals = self.theta[sel]
        converged = res <= self._bound(vals)
        _fix_signs(X.T)  # in place, on the rows: contiguous, one fast pass each
        # the (P, k) columns as one contiguous tensor (numpy's transposing copy on a CPU)
        X = as_rows(X.to(device=s.device, dtype=s.op_dtype))
        return EigenResult(
            eigenvalues=torch.as_tensor(vals, dtype=torch.float64),
            eigenvectors=X,
            residuals=torch.as_tensor(res, dtype=torch.float64),
            converged=torch.as_tensor(converged),
            num_matvecs=engine.num_matvecs,
            num_restarts=self.restarts,
            which=s.which,
            tol=s.tol,
            plan=s.plan,
        )


DEFAULT_NCV = 50
BASIS_BYTES = 2 * 1024**3


def default_ncv(P: int, k: int, block_size: int, dtype: torch.dtype) -> int:
    """The default basis size of :func:`eigsh`.

    :data:`DEFAULT_NCV` (50) vectors, fewer when the basis and its products
    (``2 * ncv`` vectors of ``P`` entries) would exceed :data:`BASIS_BYTES`
    (2 GiB), but never fewer than ``max(20, 2k + 2b + 4)`` (ARPACK's rule plus
    room for a block). Capped at ``P``. Only the rows in use are ever written,
    so an unused allowance costs no memory traffic.
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    fits = BASIS_BYTES // max(1, 2 * P * itemsize)
    floor = max(20, 2 * k + 2 * block_size + 4)
    return int(min(P, max(floor, min(DEFAULT_NCV, fits))))


def plan_memory(P: int, k: int, ncv: int, block_size: int, dtype: torch.dtype, device: Any,
                max_memory: Any = None, storage: str = "auto", group: Any = None) -> MemoryPlan:
    """Where :func:`eigsh` keeps its basis, and why (see its ``storage`` argument).
    ``group``: the operator's ``process_group``, over whose ranks the budgets are the
    least (every rank plans alike).

    Raises:
        ValueError: a bad ``storage`` or ``max_memory``; the working blocks (start,
            Ritz vectors, a few blocks: ``(2k + 4b) P`` entries) exceeding the device's
            memory; a ``"device"`` basis exceeding it; a ``"disk"`` basis exceeding the
            free space of the temp folder.
    """
    if storage not in ("auto", *STORAGES):
        raise ValueError(f"storage must be one of auto, {', '.join(STORAGES)}, got {storage!r}")
    item = _checks.itemsize(dtype)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    basis = 2 * ncv * P * item
    what = (f"eigsh with k={k} (a Krylov basis and its products: 2 x ncv={ncv} vectors of "
            f"P={P:,} {_checks.dtype_name(dtype)} entries)")
    _checks.fits_in_memory(
        f"eigsh with k={k} (its working blocks: {2 * k + 4 * block_size} vectors of P={P:,} "
        f"{_checks.dtype_name(dtype)} entries)",
        (2 * k + 4 * block_size) * P * item, dev, "lower k (and ncv)")
    limit, said = budget(max_memory, dev, group)
    if storage == "device" or (storage == "auto" and basis <= limit):
        _checks.fits_in_memory(what, basis, dev, "lower k (and ncv), or use storage='disk'")
        why = "requested" if storage == "device" else f"{format_bytes(basis)} fit in the {said}"
        return MemoryPlan("device", why, basis, limit)
    over = f"the basis's {format_bytes(basis)} exceed the {said}"
    if storage == "host" or (storage == "auto" and dev.type != "cpu"
                             and basis <= budget(None, "cpu", group)[0]):
        _checks.fits_in_memory(what, basis, "cpu", "lower k (and ncv), or use storage='disk'")
        return MemoryPlan("host", "requested" if storage == "host" else
                          f"{over}; it fits in host memory", basis, limit)
    import shutil
    import tempfile

    folder = tempfile.gettempdir()
    free = shutil.disk_usage(folder).free
    if basis > free:
        raise ValueError(f"{what} needs {format_bytes(basis)} on disk but {folder} has "
                         f"{format_bytes(free)} free; lower k (and ncv), or set TMPDIR")
    return MemoryPlan("disk", "requested" if storage == "disk" else
                      f"{over}; kept in a memmap in {folder}", basis, limit)


def check_memory(P: int, k: int, ncv: int | None, dtype: torch.dtype, device: Any,
                 max_memory: Any = None) -> MemoryPlan:
    """``ValueError`` when :func:`eigsh` could not run on ``device`` (see
    :func:`plan_memory`; ``ncv`` ``None`` for the default); else the plan it would follow."""
    ncv = default_ncv(P, k, 1, dtype) if ncv is None else ncv
    return plan_memory(P, k, ncv, 1, dtype, device, max_memory)


def power_iteration(
    op: Any,
    k: int = 1,
    tol: float = 1e-3,
    *,
    max_matvecs: int = 1000,
    generator: torch.Generator | None = None,
) -> EigenResult:
    """Baseline: deflated power iteration for the ``k`` largest-magnitude eigenpairs.

    The method of PyHessian, kept for benchmarks only: it converges at the rate
    ``|lambda_{i+1} / lambda_i|`` and stops on a relative change of the
    eigenvalue below ``tol`` (which does not bound the error). Use :func:`eigsh`.
    """
    A, P = checked_operator(op, "power_iteration")
    k = _checks.integer("k", k, 1, P)
    max_matvecs = _checks.integer("max_matvecs", max_matvecs, 1)
    # one stream for every pair's start, not a fresh seed-0 draw each
    generator = _checks.generator("generator", generator, seed=0)
    dtype = work_dtype(A)
    device = A.device
    vecs: list[Tensor] = []
    vals: list[float] = []
    used = 0
    per_pair = max(1, max_matvecs // k)
    for _ in range(k):
        v = random_vectors(P, 1, generator=generator, dtype=dtype, device=device)[:, 0]
        v = v / v.norm()
        lam = None
        for _it in range(per_pair):
            for u in vecs:  # deflate the pairs already found
                v = v - (u @ v) * u
            w = A.matmat(v.unsqueeze(1)).squeeze(1)
            used += 1
            for u, mu in zip(vecs, vals):
                w = w - mu * (u @ v) * u
            new = float(v @ w)
            nrm = w.norm()
            if nrm == 0:
                lam = new
                break
            v = w / nrm
            if lam is not None and abs(new - lam) <= tol * (abs(lam) + 1e-300):
                lam = new
                break
            lam = new
        vecs.append(v)
        vals.append(float(lam))
    X = torch.stack(vecs, dim=1)
    AX = A.matmat(X)
    used += k
    lam_t = torch.as_tensor(vals, dtype=X.dtype, device=X.device)
    res = (AX - X * lam_t).norm(dim=0).to("cpu", torch.float64)
    vals_t = torch.as_tensor(vals, dtype=torch.float64)
    return EigenResult(
        eigenvalues=vals_t,
        eigenvectors=X,
        residuals=res,
        converged=res <= tol * vals_t.abs(),
        num_matvecs=used,
        which="LM",
        tol=float(tol),
    )


# ---------------------------------------------------------------------- helpers
def _start_block(
    P: int,
    b: int,
    v0: Tensor | None,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    if v0 is None:
        return random_vectors(P, b, generator=generator, dtype=dtype, device=device)
    V = torch.as_tensor(v0)
    if not V.is_floating_point():  # integer entries (a list of ints): as numbers
        if V.is_complex():
            raise ValueError(f"v0 must be real, got {V.dtype}")
        V = V.to(dtype)
    if V.dim() == 1:
        V = V.unsqueeze(1)
    if V.dim() != 2 or V.shape[0] != P:
        raise ValueError(f"v0 must have shape ({P},) or ({P}, j), got {tuple(torch.as_tensor(v0).shape)}")
    if not bool(torch.isfinite(V).all()) or float(V.norm()) == 0:
        raise ValueError("v0 must be finite and nonzero")
    V = V.to(device=device, dtype=dtype)
    if V.shape[1] > b:  # more vectors than the block: start from their sum
        V = V.sum(dim=1, keepdim=True)
        if b > 1:
            V = torch.cat([V, random_vectors(P, b - 1, generator=generator, dtype=dtype, device=device)], 1)
    elif V.shape[1] < b:
        extra = random_vectors(P, b - V.shape[1], generator=generator, dtype=dtype, device=device)
        V = torch.cat([V, extra], dim=1)
    return V


def _final_order(vals: np.ndarray, which: str) -> np.ndarray:
    if which == "SA":
        return np.argsort(vals, kind="stable")
    if which == "LM":
        return np.argsort(-np.abs(vals), kind="stable")
    return np.argsort(-vals, kind="stable")


def _fix_signs(X: Tensor) -> Tensor:
    """``X`` (P, k) with each column's sign flipped, in place, so that its
    largest-magnitude entry is positive (the first such entry on a tie).

    Column by column: fast when the columns are contiguous (``X`` the transpose of
    ``(k, P)`` rows, as :meth:`_Search.extract` passes it); ``torch.aminmax`` over
    ``dim=0`` of a ``(P, k)`` tensor is much slower than ``k`` separate passes."""
    for i in range(X.shape[1]):
        col = X[:, i]
        if col.numel() == 0:
            continue
        lo, hi = torch.aminmax(col)  # one pass, no |x| temporary
        lo_f, hi_f = float(lo), float(hi)
        if hi_f == -lo_f:  # equal magnitudes: the first one decides, as argmax of |x| would
            sign = float(torch.sign(col[col.abs().argmax()]))
        else:
            sign = 1.0 if hi_f > -lo_f else -1.0
        if sign < 0:
            col.neg_()
    return X


def _progress_bar(enabled: Progress, total: int) -> Any:
    return progress_bar(enabled, total, "eigsh")


__all__ = ["EigenResult", "default_ncv", "eigsh", "plan_memory", "power_iteration"]
