#!/usr/bin/env python
"""Benchmark spectra's core against PyHessian, curvlinops and hessian-eigenthings.

One run, one process, same models, same data, same threads (2). Every library is wrapped
in an adapter with the same small interface (HVP, top-k, lambda_min, SLQ density, trace);
anything an adapter raises becomes a table cell, never a crash.

Setting: scikit-learn digits (first 1000 of a seeded permutation, features / 16),
mean cross-entropy, four models briefly trained with Adam to a loss of about 0.3, then
frozen. Accuracy is graded against float64 references computed by our own double-backward
HVP (analyses/_bench_models.py): a dense Hessian for the 2,410-parameter model, ARPACK with
tol=1e-10 for the others (cached on disk, keyed by the trained weights).

Memory: peak resident-set increase. Before each measurement we garbage-collect, call
glibc malloc_trim(0), read VmRSS, and reset the kernel's high-water mark by writing 5 to
/proc/self/clear_refs; after it we read VmHWM. The cell is VmHWM - VmRSS(before), i.e. the
extra resident memory the measurement needed at its peak (tensors, autograd graphs, Krylov
bases, allocator slack). tracemalloc does not see torch's allocations; torch has no CPU
allocator statistics.

Usage:
    python analyses/bench_core.py                 # all four models (< 15 min on 2 cores)
    python analyses/bench_core.py --quick         # fewer repeats, tighter budgets
    python analyses/bench_core.py --models mlp-tanh-2k,cnn-38k --out /tmp/b.md

hessian-eigenthings is not on PyPI. It is used when importable, either installed or as a
source tree in .anchors/hessian-eigenthings (put on sys.path here only when present).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "analyses"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import _bench_models as bm

if TYPE_CHECKING:
    from typing import Self

ANCHOR_TREE = ROOT / ".anchors" / "hessian-eigenthings"
REL_TOL = 1e-3
K_TOP = 5
SLQ_NV, SLQ_M = 4, 80
TRACE_MATVECS = 30


# --------------------------------------------------------------------------------------
# measurement helpers
# --------------------------------------------------------------------------------------


class Unsupported(Exception):
    """The library has no API for this measurement."""


class BudgetExceeded(Exception):
    pass


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _can_reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status_kb("VmHWM") is not None
    except OSError:
        return False


MEM_OK = _can_reset_hwm()


def cpu_pressure() -> float | None:
    """Linux PSI: % of the last 10 s in which some runnable task waited for a CPU."""
    try:
        with open("/proc/pressure/cpu") as fh:
            first = fh.readline().split()
        return float(first[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent (busy + stolen) since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
        return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    except (OSError, ValueError, IndexError):
        return None


class Stall:
    """Share of the machine's CPU capacity that *other* processes used during a block:
    (all busy CPU time - this process's CPU time) / (cores x wall time). ~0 when this
    process had the cores to itself. (/proc/stat ticks are 10 ms: judged on blocks of half
    a second or more only.)"""

    def __enter__(self) -> Self:
        self.frac: float | None = None
        self._t, self._c, self._b = time.perf_counter(), time.process_time(), _busy_cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        b1, c1, dt = _busy_cpu_seconds(), time.process_time(), time.perf_counter() - self._t
        if self._b is not None and b1 is not None and dt >= 0.5:
            others = (b1 - self._b) - (c1 - self._c)
            self.frac = min(1.0, max(0.0, others / ((os.cpu_count() or 1) * dt)))


# set from the command line: retry a measurement whose stall exceeds MAX_STALL
RETRY = {"retries": 0, "max_stall": 0.15, "wait_s": 0.0, "wait_psi": 10.0, "log": print}


def wait_quiet(max_wait: float, threshold: float, log) -> None:
    """Sleep (up to max_wait s) until CPU pressure from other processes drops."""
    if max_wait <= 0:
        return
    t0 = time.time()
    p = cpu_pressure()
    while p is not None and p > threshold and time.time() - t0 < max_wait:
        time.sleep(5)
        p = cpu_pressure()
    if p is not None and p > threshold:
        log(f"  (still busy after waiting {max_wait:.0f}s: CPU pressure {p:.0f}%)")
    elif time.time() - t0 > 1:
        log(f"  (waited {time.time() - t0:.0f}s for a quiet machine)")


class MemProbe:
    """Peak RSS increase (MiB) over a block; None where the kernel interface is missing."""

    def __init__(self) -> None:
        self.mib: float | None = None

    def __enter__(self) -> Self:
        gc.collect()
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
        self._base = _status_kb("VmRSS")
        if MEM_OK:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        return self

    def __exit__(self, *exc) -> None:
        if MEM_OK and self._base is not None:
            hwm = _status_kb("VmHWM")
            if hwm is not None:
                self.mib = max(0, hwm - self._base) / 1024.0


@dataclass
class Counter:
    """Counts HVPs (columns) and enforces a per-run budget in HVPs and seconds."""

    n: int = 0
    limit_n: int | None = None
    limit_s: float | None = None
    t0: float = 0.0

    def arm(self, limit_n: int | None, limit_s: float | None) -> None:
        self.limit_n, self.limit_s, self.t0 = limit_n, limit_s, time.perf_counter()

    def disarm(self) -> None:
        self.limit_n = self.limit_s = None

    def add(self, k: int = 1) -> None:
        self.n += k
        if self.limit_n is not None and self.n > self.limit_n:
            raise BudgetExceeded(f"HVP budget {self.limit_n} exhausted")
        if self.limit_s is not None and time.perf_counter() - self.t0 > self.limit_s:
            raise BudgetExceeded(f"time budget {self.limit_s:.0f}s exhausted")


def flat_split(v: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    out, o = [], 0
    for p in params:
        out.append(v[o : o + p.numel()].view_as(p))
        o += p.numel()
    return out


def flat_cat(ts) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def short_exc(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")
    return msg[:140]


# --------------------------------------------------------------------------------------
# adapters
# --------------------------------------------------------------------------------------


@dataclass
class Ctx:
    model: nn.Module
    X: torch.Tensor
    y: torch.Tensor
    P: int
    ref: dict
    budget_n: int
    budget_s: float
    expensive: bool  # one HVP costs ~0.1 s or more: trim optional extras
    wait_s: float = 0.0
    wait_psi: float = 25.0


@dataclass
class Run:
    """One call of an eigen-solver at one setting."""

    label: str
    fn: Callable[[], Any]


class Adapter:
    name = "?"
    hvp_note = ""
    phases: tuple[str, ...] = ("hvp", "top", "lmin", "density", "trace")
    density_how = ""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.model = ctx.model
        self.params = [p for p in ctx.model.parameters() if p.requires_grad]
        self.counter = Counter()

    # one-time construction of the operator
    def setup(self) -> None:
        pass

    def teardown(self) -> None:
        for p in self.params:
            p.grad = None

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        raise Unsupported("no HVP API")

    # each: {method_name: [Run(label, fn -> eigenvalues or float), ...]}
    def top_runs(self) -> dict[str, list[Run]]:
        raise Unsupported("no top-k API")

    def lmin_runs(self) -> dict[str, list[Run]]:
        raise Unsupported("no lambda_min API")

    def density(self) -> Any:
        raise Unsupported("no density API")

    def trace(self) -> float:
        raise Unsupported("no trace API")

    def skip_density(self, ctx: Ctx) -> str:
        return ""


# ---- spectra (ours) -------------------------------------------------------------------


class SpectraAdapter(Adapter):
    name = "spectra"
    density_how = "slq (4 probes advanced together, full reorth)"

    def setup(self) -> None:
        import spectra

        self.sp = spectra
        self.op = spectra.HessianOperator(self.model, F.cross_entropy, (self.ctx.X, self.ctx.y))
        self._base = getattr(self.op, "num_matvecs", None)
        if self._base is None:  # wrap if the counter is missing
            inner = self.op.matvec
            self.op.matvec = lambda v: (self.counter.add(1), inner(v))[1]
        assert tuple(self.op.shape) == (self.ctx.P, self.ctx.P), self.op.shape

    def _sync(self) -> None:
        # our calls are not interrupted by the budget (eigsh has its own max_matvecs)
        if self._base is not None:
            now = int(self.op.num_matvecs)
            self.counter.n += now - self._base
            self._base = now

    def hvp(self, v):
        out = self.op.matvec(v)
        self._sync()
        return out

    def _eig(self, k, which, tol):
        res = self.sp.eigsh(self.op, k=k, which=which, tol=tol,
                            generator=torch.Generator().manual_seed(0))
        self._sync()
        return np.asarray(res.eigenvalues.detach().double().cpu().numpy())

    def top_runs(self):
        return {"eigsh LA": [Run(f"tol={t:g}", lambda t=t: self._eig(K_TOP, "LA", t))
                             for t in (1e-3, 1e-4, 1e-5, 1e-6)]}

    def lmin_runs(self):
        return {"eigsh SA": [Run(f"tol={t:g}", lambda t=t: float(self._eig(1, "SA", t)[0]))
                             for t in (1e-3, 1e-4, 1e-5, 1e-6)]}

    def density(self):
        m = self.sp.slq(self.op, num_vectors=SLQ_NV, num_steps=SLQ_M,
                        generator=torch.Generator().manual_seed(0))
        self._sync()
        return np.asarray(m.nodes, dtype=np.float64), self.density_how

    def trace(self):
        t = self.sp.trace(self.op, method="hutch++", num_matvecs=TRACE_MATVECS,
                          generator=torch.Generator().manual_seed(0))
        self._sync()
        return float(t.value), f"hutch++ {TRACE_MATVECS}"


# ---- curvlinops -----------------------------------------------------------------------


class CurvlinopsAdapter(Adapter):
    name = "curvlinops+scipy"
    density_how = "papyan2020 fast_lanczos (no reorth) x4"

    def setup(self) -> None:
        from curvlinops import HessianLinearOperator
        from scipy.sparse.linalg import LinearOperator

        self.op = HessianLinearOperator(
            self.model, nn.CrossEntropyLoss(), self.params, [(self.ctx.X, self.ctx.y)]
        )
        A = self.op.to_scipy()

        def mv(x):
            self.counter.add(1)
            return A.matvec(x)

        def mm(X):
            self.counter.add(X.shape[1])
            return A.matmat(X)

        self.A = LinearOperator(A.shape, matvec=mv, rmatvec=mv, matmat=mm, dtype=np.float64)

    def hvp(self, v):
        self.counter.add(1)
        return self.op @ v

    def _eigsh(self, k, which, tol):
        from scipy.sparse.linalg import eigsh

        v0 = np.random.default_rng(0).standard_normal(self.ctx.P)
        return eigsh(self.A, k=k, which=which, tol=tol, v0=v0, return_eigenvectors=False)

    def top_runs(self):
        return {"scipy eigsh LA": [Run(f"tol={t:g}", lambda t=t: self._eigsh(K_TOP, "LA", t))
                                   for t in (1e-3, 1e-4, 1e-5)]}

    def lmin_runs(self):
        return {"scipy eigsh SA": [
            Run(f"tol={t:g}", lambda t=t: float(self._eigsh(1, "SA", t)[0]))
            for t in (1e-3, 1e-4, 1e-5)]}

    def skip_density(self, ctx):
        return "skipped on the two expensive models to save time" if ctx.expensive else ""

    def density(self):
        from curvlinops.papyan2020traces.spectrum import fast_lanczos

        torch.manual_seed(0)
        op = _CountingTorchOp(self.op, self.counter)
        nodes = [fast_lanczos(op, SLQ_M)[0].double().numpy() for _ in range(SLQ_NV)]
        return np.stack(nodes), self.density_how

    def trace(self):
        from curvlinops import hutchpp_trace

        torch.manual_seed(0)
        op = _CountingTorchOp(self.op, self.counter)
        return float(hutchpp_trace(op, TRACE_MATVECS)), f"hutchpp_trace {TRACE_MATVECS}"


class _CountingTorchOp:
    """Duck-typed proxy of a curvlinops PyTorchLinearOperator that counts columns."""

    def __init__(self, op, counter: Counter) -> None:
        self._op, self._c = op, counter
        self.shape, self.device, self.dtype = op.shape, op.device, op.dtype

    def __matmul__(self, X):
        self._c.add(1 if X.ndim == 1 else X.shape[1])
        return self._op @ X


# ---- PyHessian ------------------------------------------------------------------------


@contextlib.contextmanager
def _count_pyhessian(counter: Counter):
    ph = sys.modules["pyhessian.hessian"]  # the package re-binds .hessian to the class

    orig_hvp, orig_dl = ph.hessian_vector_product, ph.hessian.dataloader_hv_product

    def hvp(*a, **kw):
        counter.add(1)
        return orig_hvp(*a, **kw)

    def dl(self, v):
        counter.add(1)
        return orig_dl(self, v)

    ph.hessian_vector_product, ph.hessian.dataloader_hv_product = hvp, dl
    try:
        yield
    finally:
        ph.hessian_vector_product, ph.hessian.dataloader_hv_product = orig_hvp, orig_dl


class PyHessianAdapter(Adapter):
    """PyHessian 0.1 with ``data=(X, y)``: it keeps the gradient graph of the one batch and
    each HVP is a single extra backward through it (no forward)."""

    name = "pyhessian"
    density_how = "density(iter=80, n_v=4)"
    hvp_note = "data=(X,y): reuses the cached gradient graph (no forward per HVP)"

    def setup(self) -> None:
        from pyhessian import hessian

        for p in self.params:
            p.grad = None
        self.h = hessian(self.model, nn.CrossEntropyLoss(), data=(self.ctx.X, self.ctx.y),
                         cuda=False)

    def teardown(self) -> None:
        self.h = None
        super().teardown()

    def hvp(self, v):
        ph = sys.modules["pyhessian.hessian"]
        with _count_pyhessian(self.counter):
            hv = ph.hessian_vector_product(self.h.gradsH, self.h.params,
                                           flat_split(v, self.h.params))
        return flat_cat(hv)

    def _eig(self, tol, max_iter):
        torch.manual_seed(0)
        with _count_pyhessian(self.counter):
            vals, _ = self.h.eigenvalues(maxIter=max_iter, tol=tol, top_n=K_TOP)
        return np.asarray(vals, dtype=np.float64)

    def top_runs(self):
        big = max(100, self.ctx.budget_n // K_TOP)
        runs = [Run("tol=1e-3 maxIter=100 (default)", lambda: self._eig(1e-3, 100))]
        runs += [Run(f"tol={t:g} maxIter={big}", lambda t=t: self._eig(t, big))
                 for t in (1e-4, 1e-5, 1e-6, 1e-7)]
        return {"power iteration": runs}

    def lmin_runs(self):
        raise Unsupported("no API (power iteration finds the largest |lambda| only)")

    def density(self):
        torch.manual_seed(0)
        with _count_pyhessian(self.counter):
            nodes, _ = self.h.density(iter=SLQ_M, n_v=SLQ_NV)
        return np.asarray(nodes, dtype=np.float64), self.density_how

    def trace(self):
        torch.manual_seed(0)
        with _count_pyhessian(self.counter):
            samples = self.h.trace()  # defaults: maxIter=100, tol=1e-3
        return float(np.mean(samples)), "trace() defaults"


def _eig_shim(T, eigenvectors=False):
    """Stand-in for the removed ``torch.eig`` (real symmetric input): (n,2) values, vectors."""
    w, V = torch.linalg.eigh(T)
    return torch.stack([w, torch.zeros_like(w)], 1), V


class PyHessianShimAdapter(PyHessianAdapter):
    """PyHessian's density() with ``torch.eig`` patched back in for the call only, to time
    its Lanczos (the unpatched call fails on torch >= 2)."""

    name = "pyhessian (torch.eig shim)"
    density_how = "density(iter=80, n_v=4) with torch.eig patched in"
    hvp_note = ""
    phases = ("density",)

    def skip_density(self, ctx):
        return "skipped on the two expensive models to save time" if ctx.expensive else ""

    def hvp(self, v):
        raise Unsupported("see pyhessian row")

    def top_runs(self):
        raise Unsupported("see pyhessian row")

    def lmin_runs(self):
        raise Unsupported("see pyhessian row")

    def trace(self):
        raise Unsupported("see pyhessian row")

    def density(self):
        had = hasattr(torch, "eig")
        old = getattr(torch, "eig", None)
        torch.eig = _eig_shim
        try:
            nodes, _ = super().density()
        finally:
            if had:
                torch.eig = old
            else:
                del torch.eig
        return nodes, self.density_how


class PyHessianLoaderAdapter(PyHessianAdapter):
    """PyHessian with ``dataloader=[(X, y)]``: forward + backward + double backward per HVP."""

    name = "pyhessian (dataloader)"
    hvp_note = "dataloader=[(X,y)]: forward+backward+double-backward per HVP"
    phases = ("hvp",)

    def setup(self) -> None:
        from pyhessian import hessian

        for p in self.params:
            p.grad = None
        self.h = hessian(self.model, nn.CrossEntropyLoss(),
                         dataloader=[(self.ctx.X, self.ctx.y)], cuda=False)

    def hvp(self, v):
        with _count_pyhessian(self.counter):
            _, hv = self.h.dataloader_hv_product(flat_split(v, self.h.params))
        return flat_cat(hv)

    def top_runs(self):
        raise Unsupported("HVP only (see pyhessian row)")

    def density(self):
        raise Unsupported("HVP only")

    def trace(self):
        raise Unsupported("HVP only")


# ---- hessian-eigenthings ----------------------------------------------------------------


def import_eigenthings():
    try:
        import hessian_eigenthings
    except ImportError:
        if (ANCHOR_TREE / "hessian_eigenthings").is_dir():
            sys.path.insert(0, str(ANCHOR_TREE))
    import hessian_eigenthings

    return hessian_eigenthings


class EigenthingsAdapter(Adapter):
    name = "hessian-eigenthings"
    density_how = "spectral_density(num_runs=4, lanczos_steps=80), full reorth"

    def setup(self) -> None:
        he = import_eigenthings()
        self.he = he
        self.op = he.HessianOperator(self.model, [(self.ctx.X, self.ctx.y)],
                                     he.supervised_loss(F.cross_entropy))
        inner = self.op.matvec

        def mv(v):
            self.counter.add(1)
            return inner(v)

        self.op.matvec = mv  # instance attribute: the algorithms call operator.matvec

    def hvp(self, v):
        return self.op.matvec(v)

    def _lanczos(self, k, which, max_iter):
        res = self.he.lanczos(self.op, k=k, which=which, max_iter=max_iter, seed=0)
        return res.eigenvalues.double().numpy()

    def _power(self, tol, max_iter):
        res = self.he.deflated_power_iteration(self.op, k=K_TOP, tol=tol, max_iter=max_iter,
                                               seed=0)
        return res.eigenvalues.double().numpy()

    def top_runs(self):
        lz = [Run("max_iter=10 (default 2k)", lambda: self._lanczos(K_TOP, "LA", None))]
        lz += [Run(f"max_iter={m}", lambda m=m: self._lanczos(K_TOP, "LA", m))
               for m in (20, 40, 80, 160)]
        big = max(100, self.ctx.budget_n // K_TOP)
        pw = [Run("tol=1e-4 max_iter=100 (default)", lambda: self._power(1e-4, 100))]
        if not self.ctx.expensive:  # on the big models its default run alone takes ~1 min
            pw += [Run(f"tol={t:g} max_iter={big}", lambda t=t: self._power(t, big))
                   for t in (1e-5, 1e-6, 1e-7)]
        return {"lanczos LA": lz, "deflated power iteration": pw}

    def lmin_runs(self):
        lz = [Run("max_iter=2 (default 2k)", lambda: float(self._lanczos(1, "SA", None)[0]))]
        lz += [Run(f"max_iter={m}", lambda m=m: float(self._lanczos(1, "SA", m)[0]))
               for m in (40, 80, 160, 320)]
        return {"lanczos SA": lz}

    def density(self):
        r = self.he.spectral_density(self.op, num_runs=SLQ_NV, lanczos_steps=SLQ_M, seed=0)
        return r.raw_eigenvalues.double().numpy(), self.density_how

    def trace(self):
        r = self.he.trace(self.op, num_matvecs=TRACE_MATVECS, method="hutch++", seed=0)
        return float(r.estimate), f"trace hutch++ {TRACE_MATVECS}"


ADAPTERS: list[type[Adapter]] = [
    SpectraAdapter,
    CurvlinopsAdapter,
    PyHessianAdapter,
    PyHessianShimAdapter,
    PyHessianLoaderAdapter,
    EigenthingsAdapter,
]


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------


def timed(fn, counter: Counter, budget_n=None, budget_s=None, *, retry: bool = True) -> dict:
    """One measurement; re-run (up to RETRY['retries'] times, after waiting for a quiet
    machine) when other processes took more than RETRY['max_stall'] of its wall time. The
    least-disturbed attempt is kept; ``attempts`` records how many were made."""
    best: dict | None = None
    attempts = 1 + (RETRY["retries"] if retry else 0)
    for i in range(attempts):
        r = _timed_once(fn, counter, budget_n, budget_s)
        r["attempts"] = i + 1
        if best is None or (r["stall"] or 0.0) < (best["stall"] or 0.0):
            best = r
        if r["stall"] is None or r["stall"] <= RETRY["max_stall"] or i == attempts - 1:
            break
        RETRY["log"](f"      (other processes used {r['stall']:.0%} of the CPUs: measuring again)")
        wait_quiet(RETRY["wait_s"], RETRY["wait_psi"], RETRY["log"])
    best["attempts"] = r["attempts"]
    return best


def _timed_once(fn, counter: Counter, budget_n=None, budget_s=None) -> dict:
    n0 = counter.n
    counter.arm(budget_n, budget_s)
    out: dict = {}
    with MemProbe() as mem, Stall() as stall:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            out["value"] = fn()
            out["status"] = "ok"
        except BudgetExceeded as e:
            out["status"] = f"stopped: {e}"
        except Unsupported:
            counter.disarm()
            raise
        except Exception as e:  # noqa: BLE001 - every failure becomes a cell
            out["status"] = "FAILED " + short_exc(e)
            out["trace"] = traceback.format_exc(limit=4)
        out["seconds"] = time.perf_counter() - t0
        out["cpu"] = time.process_time() - c0
    counter.disarm()
    out["hvps"] = counter.n - n0
    out["mem"] = mem.mib
    out["stall"] = stall.frac
    return out


def rel_err_top(vals, ref_top) -> float:
    v = np.sort(np.asarray(vals, dtype=np.float64).reshape(-1))[::-1][: len(ref_top)]
    r = np.asarray(ref_top, dtype=np.float64)
    if v.shape != r.shape:
        return float("inf")
    return float(np.max(np.abs(v - r) / np.abs(r)))


def grad_time(ctx: Ctx, reps: int) -> float:
    params = [p for p in ctx.model.parameters() if p.requires_grad]

    def g():
        return torch.autograd.grad(F.cross_entropy(ctx.model(ctx.X), ctx.y), params)

    g()
    ts = []
    for _ in range(max(reps, 5)):
        t0 = time.perf_counter()
        g()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def sweep(adapter: Adapter, runs: dict[str, list[Run]], err_fn, ctx: Ctx, log) -> list[dict]:
    rows = []
    for method, lst in runs.items():
        for i, run in enumerate(lst):
            # a library's default setting gets twice the budget: its answer is of interest
            r = timed(run.fn, adapter.counter, ctx.budget_n,
                      ctx.budget_s * (2 if i == 0 else 1))
            r.update(method=method, label=run.label, default=(i == 0))
            if r["status"] == "ok":
                try:
                    r["err"] = err_fn(r["value"])
                except Exception as e:  # noqa: BLE001
                    r["err"] = float("inf")
                    r["status"] = "FAILED " + short_exc(e)
            else:
                r["err"] = None
            r["reached"] = r.get("err") is not None and r["err"] <= REL_TOL
            rows.append(r)
            log(f"    {adapter.name:28s} {method:26s} {run.label:30s} "
                f"{r['seconds']:8.2f}s {r['hvps']:5d} HVPs  err={_fmt_err(r.get('err'))} "
                f"{'' if r['status'] == 'ok' else r['status']}")
            if r["reached"]:
                break
            if r["status"].startswith("stopped") and i > 0:
                break  # tighter settings only cost more
    return rows


PHASES = ("hvp", "top", "lmin", "density", "trace")


def _phase_hvp(ads: list[Adapter], results: list[dict], ctx: Ctx, reps: int, grad_s: float,
               v, href, log) -> None:
    """First (warm-up) HVP of each library, checked against float64; then ``reps`` rounds
    that time one HVP of every library in turn, so that a burst of load hits all alike."""
    live = []
    for ad, res in zip(ads, results, strict=True):
        try:
            first = timed(lambda ad=ad: ad.hvp(v), ad.counter, retry=False)
        except Unsupported as e:
            res["hvp"] = {"status": f"n/a ({e})"}
            continue
        res["hvp"] = first
        if first["status"] == "ok":
            hv = first.pop("value").detach().double()
            first["rel_err"] = float((hv - href).norm() / href.norm())
            first["_ts"], first["_cs"] = [], []
            live.append((ad, first))
    for attempt in range(1 + RETRY["retries"]):
        for _, first in live:
            first["_ts"], first["_cs"] = [], []
        with Stall() as stall:
            for _ in range(reps):
                for ad, first in live:
                    t0, c0 = time.perf_counter(), time.process_time()
                    ad.hvp(v)
                    first["_ts"].append(time.perf_counter() - t0)
                    first["_cs"].append(time.process_time() - c0)
        if stall.frac is None or stall.frac <= RETRY["max_stall"] or attempt == RETRY["retries"]:
            break
        log(f"      (other processes used {stall.frac:.0%} of the CPUs: measuring again)")
        wait_quiet(RETRY["wait_s"], RETRY["wait_psi"], log)
    for ad, first in live:
        ts, cs = first.pop("_ts"), first.pop("_cs")
        first["times"] = ts  # per round, in the same order for every library: paired
        first["stall"] = stall.frac
        first["median"] = statistics.median(ts)
        first["min"] = min(ts)
        first["median_cpu"] = statistics.median(cs)
        first["ratio"] = first["median"] / grad_s
        log(f"    {ad.name:28s} HVP: first {first['seconds']*1e3:.1f} ms, median "
            f"{first['median']*1e3:.1f} ms, min {first['min']*1e3:.1f} ms, rel err "
            f"{first['rel_err']:.1e}")


def _phase_density(ad: Adapter, ctx: Ctx, log) -> dict:
    r = timed(ad.density, ad.counter, None, ctx.budget_s * 3)
    if r["status"] == "ok":
        nodes, how = r.pop("value")
        nodes = np.asarray(nodes, dtype=np.float64)
        r["how"] = how
        r["node_max_err"] = abs(np.nanmax(nodes) - ctx.ref["top"][0]) / abs(ctx.ref["top"][0])
        r["node_min_err"] = abs(np.nanmin(nodes) - ctx.ref["lmin"]) / abs(ctx.ref["lmin"])
    log(f"    {ad.name:28s} density: {r['seconds']:.2f}s {r['hvps']} HVPs {_cell_status(r)}")
    return r


def _phase_trace(ad: Adapter, ctx: Ctx, log) -> dict:
    r = timed(ad.trace, ad.counter, None, ctx.budget_s * 2)
    if r["status"] == "ok":
        r["estimate"], r["how"] = r.pop("value")
    log(f"    {ad.name:28s} trace: {r['seconds']:.2f}s {r['hvps']} HVPs {_cell_status(r)}")
    return r


def run_phases(ctx: Ctx, reps: int, grad_s: float, v, href, log, libs) -> tuple[list, dict]:
    """Set up every adapter, then run each phase across all adapters back to back, so that
    a change in machine load between phases hits every library alike."""
    adapters: list[Adapter] = []
    results: list[dict] = []
    canary: dict[str, float] = {}
    for cls in ADAPTERS:
        if libs and not any(s in cls.name for s in libs) and cls is not SpectraAdapter:
            continue
        res: dict = {"name": cls.name, "hvp_note": cls.hvp_note,
                     "density_how": cls.density_how}
        results.append(res)
        try:
            ad = cls(ctx)
        except Exception as e:  # noqa: BLE001
            res["setup"] = {"status": "FAILED " + short_exc(e)}
            continue
        for p in ad.params:
            p.grad = None
        r = timed(ad.setup, ad.counter, retry=False)
        res["setup"] = r
        log(f"  {cls.name}: set-up {r['seconds']:.2f}s {_cell_status(r)}")
        if r["status"] != "ok":
            res["trace_setup"] = r.get("trace")
            continue
        res["_ad"] = ad
        adapters.append(ad)
    try:
        for phase in PHASES:
            wait_quiet(ctx.wait_s, ctx.wait_psi, log)
            psi = cpu_pressure()
            canary[phase] = (grad_time(ctx, 5), psi)
            log(f"  -- phase {phase} (gradient canary {canary[phase][0]*1e3:.1f} ms, load "
                f"{os.getloadavg()[0]:.1f}, CPU pressure {psi}%)")
            if phase == "hvp":
                sel = [r for r in results if r.get("_ad") is not None
                       and "hvp" in r["_ad"].phases]
                _phase_hvp([r["_ad"] for r in sel], sel, ctx, reps, grad_s, v, href, log)
                continue
            for res in results:
                ad = res.get("_ad")
                if ad is None or phase not in ad.phases:
                    continue
                try:
                    if phase == "top":
                        res["top"] = sweep(ad, ad.top_runs(),
                                           lambda x: rel_err_top(x, ctx.ref["top"]), ctx, log)
                    elif phase == "lmin":
                        lmin = ctx.ref["lmin"]
                        res["lmin"] = sweep(
                            ad, ad.lmin_runs(),
                            lambda x, lmin=lmin: abs(float(x) - lmin) / abs(lmin), ctx, log)
                    elif phase == "density":
                        if ad.skip_density(ctx):
                            res["density"] = {"status": f"n/a ({ad.skip_density(ctx)})"}
                        else:
                            res["density"] = _phase_density(ad, ctx, log)
                    elif phase == "trace":
                        res["trace"] = _phase_trace(ad, ctx, log)
                except Unsupported as e:
                    res[phase] = (f"n/a ({e})" if phase in ("top", "lmin")
                                  else {"status": f"n/a ({e})"})
    finally:
        for res in results:
            ad = res.pop("_ad", None)
            if ad is not None:
                try:
                    ad.teardown()
                except Exception as e:  # noqa: BLE001
                    log(f"  {ad.name}: teardown failed ({short_exc(e)})")
        adapters.clear()
        gc.collect()
    return results, canary


def load_reference(spec, model, X, y, cache_dir: Path | None, log) -> dict:
    key = f"{spec.name}-{bm.state_hash(model)}-torch{torch.__version__}.json"
    path = cache_dir / key if cache_dir else None
    if path is not None and path.exists():
        ref = json.loads(path.read_text())
        ref["cached"] = True
        log(f"  reference from cache {path} (computed in {ref['seconds']:.1f}s)")
        return ref
    log("  computing float64 reference ...")
    ref = bm.reference_spectrum(model, X, y, dense=spec.dense_reference, k=K_TOP, log=log)
    ref["cached"] = False
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ref))
    log(f"  reference: top={np.round(ref['top'], 5).tolist()} lmin={ref['lmin']:.5g} "
        f"({ref['seconds']:.1f}s, {ref.get('matvecs', 0)} f64 HVPs)")
    return ref


def bench_model(name: str, args, X, y, log) -> dict:
    spec = bm.MODELS[name]
    log(f"\n=== {name}: {spec.description}")
    model, info = bm.train(spec, X, y)
    P = bm.num_params(model)
    log(f"  P={P:,}  Adam steps={info['steps']} loss={info['loss']:.4f} acc={info['acc']:.3f}")
    ref = load_reference(spec, model, X, y, args.cache_dir, log)
    if args.refs_only:
        return {"name": name, "ref": ref}
    g_s = grad_time(Ctx(model, X, y, P, ref, 0, 0.0, False), 7)
    # budgets scale with the cost of one gradient, so that they mean the same on every model
    expensive = spec.expensive
    if args.quick:
        budget_n, budget_s, reps = (600, 15.0, 5) if expensive else (2000, 8.0, 5)
    else:
        budget_n, budget_s, reps = (1000, 30.0, 25) if expensive else (4000, 20.0, 25)
    ctx = Ctx(model, X, y, P, ref, budget_n, budget_s, expensive, args.wait_quiet,
              args.quiet_psi)
    log(f"  gradient (1000 samples): {g_s*1e3:.2f} ms")
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(P, generator=gen)
    href = torch.as_tensor(bm.Float64Hvp(model, X, y).matvec(v.double().numpy()))
    load0 = os.getloadavg()
    results, canary = run_phases(ctx, reps, g_s, v, href, log, args.libs)
    return {"name": name, "spec": spec.description, "P": P, "train": info, "ref": ref,
            "grad_s": g_s, "results": results, "budget_n": budget_n, "budget_s": budget_s,
            "load": (load0, os.getloadavg()), "canary": canary}


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


def _fmt_err(e) -> str:
    if e is None:
        return "—"
    if not math.isfinite(e):
        return "inf"
    return f"{e:.1e}"


def _fmt_mem(m) -> str:
    return "—" if m is None else f"{m:.0f}"


def _fmt_s(s) -> str:
    if s is None:
        return "—"
    return f"{s*1e3:.0f} ms" if s < 1 else f"{s:.2f} s"


def _fmt_stall(r: dict) -> str:
    f = r.get("stall")
    if f is None:
        return "—"
    mark = " ⚠" if f > RETRY["max_stall"] else ""
    tries = f" ({r['attempts']} runs)" if r.get("attempts", 1) > 1 else ""
    return f"{f:.0%}{mark}{tries}"


def _cell_status(r: dict) -> str:
    st = r.get("status", "")
    return "" if st == "ok" else st


def first_reached(rows) -> dict | None:
    if not isinstance(rows, list):
        return None
    for r in rows:
        if r.get("reached"):
            return r
    return None


def find(model_res: dict, name: str) -> dict | None:
    for r in model_res["results"]:
        if r["name"] == name:
            return r
    return None


def report(all_res: list[dict], args, versions: dict, wall: float) -> str:
    L: list[str] = []
    w = L.append
    w("# Core benchmark: spectra vs PyHessian, curvlinops, hessian-eigenthings\n")
    w(f"Generated by `analyses/bench_core.py{' --quick' if args.quick else ''}` on "
      f"{time.strftime('%Y-%m-%d %H:%M')} ({platform.machine()}, {os.cpu_count()} CPUs, "
      f"torch threads = {torch.get_num_threads()}), total wall time {wall/60:.1f} min.\n")
    w("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".\n")
    w("Setting: scikit-learn digits, N = 1000 (seeded permutation, features / 16), mean "
      "cross-entropy, float32 models trained with full-batch Adam (seed 0) until the loss "
      "first drops to 0.3, then frozen. An HVP is over all 1000 samples. Times are "
      "`time.perf_counter` wall times of a single call after one warm-up HVP (HVP: median of "
      "repeats taken in rounds that time every library in turn). Errors are relative to "
      "float64 references (dense Hessian for the 2,410-parameter model; ARPACK tol=1e-10 on a float64 double-backward HVP otherwise). "
      f"Top-5 error = max_i |λ_i − λ_i^ref| / |λ_i^ref|; a run *reaches* when error ≤ {REL_TOL:g}."
      " Sweeps go from each library's default to tighter settings and stop at the first "
      "that reaches; per-run budgets stop runaway solves. Memory = peak RSS increase during "
      "the call (VmHWM after resetting it via /proc/self/clear_refs, minus VmRSS before, "
      "after gc + malloc_trim), in MiB"
      + ("" if MEM_OK else " — **unavailable on this kernel, cells show —**") + ".\n")
    w("Machine load matters: the 2 cores may be shared with other work. Each model's "
      "operators are all built first, then every phase (HVP, top-5, λ_min, SLQ, trace) runs "
      "across all libraries back to back, so a change of load between phases hits them "
      "alike. Before each phase a *gradient canary* (median of 5 plain gradients) is timed: "
      "when it is well above the gradient time measured at the start, that phase ran on a "
      "busy machine. The 1-min load average at the start/end of each model is shown too. "
      "The *others* column is the share of the machine's CPU capacity that other processes "
      "used during the measurement (all busy CPU time from /proc/stat minus this process's "
      "CPU time, over 2 cores × wall time; judged for measurements of ≥ 0.5 s only). A "
      f"measurement where others took more than {RETRY['max_stall']:.0%} is re-run (up to "
      f"{RETRY['retries']} times, after waiting for the machine to calm down) and the "
      "least-disturbed run is kept; ⚠ marks cells that stayed "      "above it — read those times as upper bounds.\n")

    for m in all_res:
        ref = m["ref"]
        w(f"\n## {m['name']}: {m['spec']} — P = {m['P']:,}\n")
        w(f"Trained {m['train']['steps']} Adam steps → loss {m['train']['loss']:.4f}, "
          f"accuracy {m['train']['acc']:.3f}. Reference ({ref['method']}"
          f"{', cached' if ref.get('cached') else ''}, {ref['seconds']:.1f} s): top-5 = "
          f"{', '.join(f'{x:.5g}' for x in ref['top'])}; λ_min = {ref['lmin']:.5g}"
          + (f"; trace = {ref['trace']:.5g}" if ref.get("trace") is not None else "")
          + f". Gradient over 1000 samples: {m['grad_s']*1e3:.2f} ms; canary (and CPU "
          "pressure from other processes) before each phase: "
          + ", ".join(f"{k} {v[0]*1e3:.1f} ms ({'?' if v[1] is None else f'{v[1]:.0f}%'})"
                      for k, v in m.get("canary", {}).items())
          + f". Load avg {m['load'][0][0]:.1f} → {m['load'][1][0]:.1f}. Per-run budget: "
          f"{m['budget_n']} HVPs or {m['budget_s']:.0f} s (×2 for a library's default "
          "setting).\n")

        w("\n**(a) HVP cost and set-up** (HVP of a fixed random vector)\n")
        w("| library | set-up | first HVP | HVP (median) | HVP CPU time | HVP / gradient "
          "| rel. err vs f64 | others | mem set-up | mem HVP | note |")
        w("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in m["results"]:
            s, h = r.get("setup", {}), r.get("hvp", {})
            if s.get("status") != "ok":
                w(f"| {r['name']} | {s.get('status')} | | | | | | | | | |")
                continue
            if h.get("status") != "ok":
                w(f"| {r['name']} | {_fmt_s(s['seconds'])} | {h.get('status', '')} | | | | | | "
                  f"{_fmt_mem(s.get('mem'))} | | |")
                continue
            w(f"| {r['name']} | {_fmt_s(s['seconds'])} | {_fmt_s(h['seconds'])} | "
              f"{h['median']*1e3:.1f} ms | {h['median_cpu']*1e3:.1f} ms | {h['ratio']:.2f} | "
              f"{h['rel_err']:.1e} | {_fmt_stall(h)} | "
              f"{_fmt_mem(s.get('mem'))} | {_fmt_mem(h.get('mem'))} | {r.get('hvp_note', '')} |")

        for key, title in (("top", f"(b) top-{K_TOP} eigenvalues (largest algebraic)"),
                           ("lmin", "(c) λ_min (smallest algebraic)")):
            w(f"\n**{title}**\n")
            w("| library | method | setting | time | CPU time | HVPs | HVP share | rel. err "
              "| ≤1e-3 | others | mem | status |")
            w("|---|---|---|---|---|---|---|---|---|---|---|---|")
            for r in m["results"]:
                rows = r.get(key)
                if rows is None:
                    continue
                if isinstance(rows, str):
                    if "see pyhessian" in rows or "HVP only" in rows:
                        continue
                    w(f"| {r['name']} | {rows} | | | | | | | | | | |")
                    continue
                hvp_med = r.get("hvp", {}).get("median")
                for x in rows:
                    share = (f"{min(1.0, x['hvps'] * hvp_med / x['seconds']):.0%}"
                             if hvp_med and x["seconds"] > 0 else "—")
                    w(f"| {r['name']} | {x['method']} | {x['label']} | {_fmt_s(x['seconds'])} | "
                      f"{_fmt_s(x.get('cpu'))} | {x['hvps']} | {share} | {_fmt_err(x.get('err'))} | "
                      f"{'yes' if x['reached'] else 'no'} | {_fmt_stall(x)} | "
                      f"{_fmt_mem(x.get('mem'))} | "
                      f"{_cell_status(x)} |")

        w(f"\n**(d) SLQ spectral density, n_v = {SLQ_NV}, m = {SLQ_M}**\n")
        w("| library | how | time | CPU time | HVPs | HVP share | others | mem | extreme nodes rel. "
          "err (max / min) | status |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for r in m["results"]:
            d = r.get("density")
            if d is None or "see pyhessian" in d.get("status", "") or "HVP only" in d.get(
                    "status", ""):
                continue
            if d.get("status", "").startswith("n/a"):
                w(f"| {r['name']} | {d['status']} | | | | | | | | |")
                continue
            src = find(m, "pyhessian") if r["name"].startswith("pyhessian") else r
            hvp_med = _hvp_med(src)
            share = (f"{min(1.0, d['hvps'] * hvp_med / d['seconds']):.0%}"
                     if hvp_med and d["seconds"] > 0 else "—")
            ext = (f"{d['node_max_err']:.1e} / {d['node_min_err']:.1e}"
                   if "node_max_err" in d else "—")
            w(f"| {r['name']} | {d.get('how', r.get('density_how', ''))} | {_fmt_s(d['seconds'])} | "
              f"{_fmt_s(d.get('cpu'))} | {d['hvps']} | "
              f"{share} | {_fmt_stall(d)} | {_fmt_mem(d.get('mem'))} | {ext} | {_cell_status(d)} |")

        w("\n**Trace (for reference; not a target)**\n")
        w("| library | how | time | HVPs | estimate | others | status |")
        w("|---|---|---|---|---|---|---|")
        for r in m["results"]:
            t = r.get("trace")
            if t is None or "see pyhessian" in t.get("status", "") or "HVP only" in t.get(
                    "status", ""):
                continue
            est = f"{t['estimate']:.5g}" if "estimate" in t else "—"
            w(f"| {r['name']} | {t.get('how', '')} | {_fmt_s(t.get('seconds'))} | "
              f"{t.get('hvps', '—')} | {est} | {_fmt_stall(t)} | {_cell_status(t)} |")
        fails = [(r["name"], r.get("trace_setup")) for r in m["results"] if r.get("trace_setup")]
        for n, tb in fails:
            w(f"\nSet-up traceback of {n}:\n\n```\n{tb}```\n")

    w("\n## Summary: speed-ups of spectra over each anchor\n")
    w("Each ratio is anchor time / spectra time. Top-5 and λ_min use, for both sides, the "
      "first setting of the sweep that reaches 1e-3 (if an anchor never reaches, the ratio "
      "uses the time it spent and is marked ≥, a lower bound); SLQ uses n_v = 4, m = 80.\n")
    w("| model | anchor | HVP | top-5 | λ_min | SLQ |")
    w("|---|---|---|---|---|---|")
    for m in all_res:
        ours = find(m, "spectra")
        for r in m["results"]:
            if r["name"] == "spectra":
                continue
            w(f"| {m['name']} | {r['name']} | {_ratio_hvp(ours, r)} | "
              f"{_ratio_solve(ours, r, 'top')} | {_ratio_solve(ours, r, 'lmin')} | "
              f"{_ratio_density(ours, r)} |")

    w("\n## Targets (1.13M-parameter MLP)\n")
    for line in targets(all_res):
        w(line)
    return "\n".join(L) + "\n"


def _hvp_med(r):
    if r is None:
        return None
    return r.get("hvp", {}).get("median")


def _ratio_hvp(ours, r) -> str:
    a, b = _hvp_med(r), _hvp_med(ours)
    return f"{a / b:.2f}x" if a and b else "—"


def _solve_time(r, key):
    """(seconds, lower_bound) of the first reaching run; (spent, True) if none reached."""
    rows = r.get(key) if r else None
    if not isinstance(rows, list) or not rows:
        return None, False
    hit = first_reached(rows)
    if hit is not None:
        return hit["seconds"], False
    return max(x["seconds"] for x in rows), True


def _ratio_solve(ours, r, key) -> str:
    o, o_lb = _solve_time(ours, key)
    rows = r.get(key)
    if not isinstance(rows, list):
        return "—"
    parts = []
    for method in dict.fromkeys(x["method"] for x in rows):
        sub = [x for x in rows if x["method"] == method]
        hit = first_reached(sub)
        if o is None or o_lb:
            parts.append(f"{method}: spectra did not reach")
            continue
        if hit is not None:
            parts.append(f"{method}: {hit['seconds'] / o:.1f}x")
        else:
            parts.append(f"{method}: ≥{max(x['seconds'] for x in sub) / o:.1f}x (never reached)")
    return "; ".join(parts)


def _ratio_density(ours, r) -> str:
    a = (r.get("density") or {})
    b = (ours or {}).get("density") or {}
    if a.get("status") != "ok" or b.get("status") != "ok":
        return "—" if not a.get("status", "").startswith("FAILED") else "failed"
    return f"{a['seconds'] / b['seconds']:.2f}x"


def targets(all_res) -> list[str]:
    big = next((m for m in all_res if m["name"] == "mlp-relu-1.1m"), None)
    if big is None:
        return ["Not evaluated: the 1.13M model was not in this run (`--models`).\n"]
    ours = find(big, "spectra")
    out = ["| target | measured | verdict |", "|---|---|---|"]

    def verdict(ok):
        return "**met**" if ok else "**missed**"

    def row(text, measured, ok):
        out.append(f"| {text} | {measured} | {verdict(ok) if ok is not None else 'n/a'} |")

    o_top, o_top_lb = _solve_time(ours, "top")
    o_min, o_min_lb = _solve_time(ours, "lmin")
    cl = find(big, "curvlinops+scipy")
    ph = find(big, "pyhessian")
    he = find(big, "hessian-eigenthings")

    def vs_curvlinops(key: str, text: str, ours_s, ours_lb: bool, factor: float) -> None:
        """Our time to 1e-3 against curvlinops' tol=1e-3 run, whatever error it reached."""
        runs = (cl or {}).get(key)
        theirs = next((x for x in runs if x["label"] == "tol=0.001"), None) \
            if isinstance(runs, list) else None
        if ours_s is None or ours_lb or theirs is None or theirs["status"] != "ok":
            row(text, "spectra did not reach 1e-3" if ours_lb or ours_s is None else
                f"curvlinops run: {theirs and theirs['status']}", False if ours_lb else None)
        else:
            x = theirs["seconds"] / ours_s
            row(text, f"{theirs['seconds']:.2f} s / {ours_s:.2f} s = {x:.2f}x (curvlinops err "
                f"{_fmt_err(theirs.get('err'))})", x >= factor)

    vs_curvlinops("top", "top-5 ≥ 2.5x faster than curvlinops + scipy eigsh(tol=1e-3)",
                  o_top, o_top_lb, 2.5)
    # top-5 vs PyHessian at a setting reaching 1e-3
    if ph and isinstance(ph.get("top"), list) and o_top and not o_top_lb:
        hit = first_reached(ph["top"])
        if hit:
            x = hit["seconds"] / o_top
            o_hit = first_reached(ours["top"]) if isinstance(ours.get("top"), list) else None
            bound = (f"; HVPs {hit['hvps']} vs {o_hit['hvps']}: with HVPs of equal cost the "
                     f"speed-up cannot exceed {hit['hvps'] / o_hit['hvps']:.1f}x"
                     if o_hit and hit.get("hvps") and o_hit.get("hvps") else "")
            row("top-5 ≥ 10x faster than PyHessian at a setting reaching 1e-3",
                f"{hit['seconds']:.2f} s ({hit['label']}) / {o_top:.2f} s = {x:.1f}x{bound}",
                x >= 10)
        else:
            spent = max(x["seconds"] for x in ph["top"])
            lb = spent / o_top
            row("top-5 ≥ 10x faster than PyHessian at a setting reaching 1e-3",
                f"PyHessian never reached 1e-3 within budget; ≥ {spent:.1f} s / {o_top:.2f} s "
                f"= ≥{lb:.1f}x", True if lb >= 10 else None)
    else:
        row("top-5 ≥ 10x faster than PyHessian at a setting reaching 1e-3", "not measurable",
            False if o_top_lb else None)
    vs_curvlinops("lmin", "λ_min ≥ 5x faster than curvlinops + scipy eigsh(SA, tol=1e-3)",
                  o_min, o_min_lb, 5)
    # HVP vs PyHessian: rounds time every library in turn, so compare round by round
    a, b = _hvp_med(ph), _hvp_med(ours)
    if a and b:
        phl = _hvp_med(find(big, "pyhessian (dataloader)"))
        measured = (f"spectra {b*1e3:.1f} ms vs PyHessian {a*1e3:.1f} ms (medians; cached-graph "
                    f"mode" + (f"; dataloader mode {phl*1e3:.1f} ms)" if phl else ")"))
        ta, tb = ours["hvp"].get("times"), ph["hvp"].get("times")
        if ta and tb and len(ta) == len(tb) and len(ta) >= 3:
            ratios = np.array(ta) / np.array(tb)
            med = float(np.median(ratios))
            lo, hi = (float(q) for q in np.quantile(ratios, [0.25, 0.75]))
            measured += (f"; paired per-round ratio spectra/PyHessian: median {med:.3f} "
                         f"(quartiles {lo:.3f}–{hi:.3f}, {len(ratios)} rounds)")
            if med <= 1.0 or lo <= 1.0 <= hi:
                # the same backward pass through the same graph: a tie is a tie
                tie = "" if hi < 1.0 else " (a tie: the quartiles straddle 1)"
                out.append(f"| one HVP no dearer than PyHessian's | {measured}{tie} | **met** |")
            else:
                row("one HVP no dearer than PyHessian's", measured, False)
        else:
            row("one HVP no dearer than PyHessian's", measured, b <= a)
    else:
        row("one HVP no dearer than PyHessian's", "not measured", None)
    # SLQ vs hessian-eigenthings
    da = ((he or {}).get("density") or {})
    db = ((ours or {}).get("density") or {})
    if da.get("status") == "ok" and db.get("status") == "ok":
        x = da["seconds"] / db["seconds"]
        row("SLQ ≥ 1.3x faster than hessian-eigenthings (n_v=4, m=80)",
            f"{da['seconds']:.2f} s / {db['seconds']:.2f} s = {x:.2f}x", x >= 1.3)
    else:
        row("SLQ ≥ 1.3x faster than hessian-eigenthings (n_v=4, m=80)",
            f"spectra: {db.get('status', 'not run')}; hessian-eigenthings: "
            f"{da.get('status', 'not run')}", None)
    return out


# --------------------------------------------------------------------------------------


def versions() -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    import importlib.metadata as md

    for dist in ("spectra", "PyHessian", "curvlinops-for-pytorch", "backpack-for-pytorch",
                 "scipy", "numpy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        he = import_eigenthings()
        where = "source tree .anchors/" if str(ANCHOR_TREE) in str(
            getattr(he, "__file__", "")) else "installed"
        out["hessian-eigenthings"] = f"{getattr(he, '__version__', '?')} ({where})"
    except Exception as e:  # noqa: BLE001
        out["hessian-eigenthings"] = f"not importable ({short_exc(e)})"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(bm.MODELS),
                    help=f"comma-separated subset of {', '.join(bm.MODELS)}")
    ap.add_argument("--libs", default="", help="comma-separated substrings of library names "
                    "to run (default: all; spectra is always needed for the ratios)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, smaller budgets")
    ap.add_argument("--out", type=Path, default=ROOT / "analyses" / "results" / "bench_core.md")
    ap.add_argument("--json", type=Path, default=None, help="also dump raw results as JSON")
    ap.add_argument("--cache-dir", type=Path,
                    default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "spectra-bench", help="float64 reference cache")
    ap.add_argument("--no-cache", action="store_true", help="recompute float64 references")
    ap.add_argument("--wait-quiet", type=float, default=60.0, metavar="S",
                    help="before each phase wait up to S seconds until other processes' CPU "
                    "pressure (/proc/pressure/cpu avg10) is below --quiet-psi")
    ap.add_argument("--quiet-psi", type=float, default=10.0, metavar="PCT")
    ap.add_argument("--retries", type=int, default=2, metavar="N",
                    help="re-run a measurement up to N times when other processes stalled "
                    "it for more than --max-stall of its wall time (default 2)")
    ap.add_argument("--max-stall", type=float, default=0.15, metavar="FRAC")
    ap.add_argument("--refs-only", action="store_true",
                    help="only train the models and compute/cache the float64 references")
    args = ap.parse_args(argv)
    args.libs = [s for s in args.libs.split(",") if s]
    RETRY.update(retries=args.retries, max_stall=args.max_stall, wait_s=args.wait_quiet,
                 wait_psi=args.quiet_psi)
    if args.no_cache:
        args.cache_dir = None
    torch.set_num_threads(2)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(2)
    except Exception as e:  # noqa: BLE001
        print(f"threadpoolctl unavailable ({short_exc(e)}); BLAS threads not limited")

    def log(msg):
        print(msg, flush=True)

    t_start = time.perf_counter()
    vers = versions()
    log("versions: " + json.dumps(vers))
    if not vers["hessian-eigenthings"][0].isdigit():
        log(f"hessian-eigenthings skipped: {vers['hessian-eigenthings']}")
        ADAPTERS.remove(EigenthingsAdapter)
    try:
        import spectra  # noqa: F401
        from spectra import HessianOperator, eigsh, slq  # noqa: F401
    except Exception as e:  # noqa: BLE001
        log(f"WARNING: spectra's API does not import ({short_exc(e)}); its cells will fail")
    for mod, cls in (("pyhessian", PyHessianAdapter), ("curvlinops", CurvlinopsAdapter)):
        try:
            __import__(mod)
        except Exception as e:  # noqa: BLE001
            log(f"{mod} skipped: not importable ({short_exc(e)})")
            for c in list(ADAPTERS):
                if issubclass(c, cls):
                    ADAPTERS.remove(c)
    X, y = bm.load_digits_data()
    names = [s for s in args.models.split(",") if s]
    bad = [n for n in names if n not in bm.MODELS]
    if bad:
        ap.error(f"unknown model(s) {bad}; choose from {list(bm.MODELS)}")
    all_res = [bench_model(n, args, X, y, log) for n in names]
    if args.refs_only:
        return 0
    wall = time.perf_counter() - t_start
    text = report(all_res, args, vers, wall)
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(all_res, default=lambda o: repr(o), indent=1))
    log(f"wrote {args.out} ({wall/60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
