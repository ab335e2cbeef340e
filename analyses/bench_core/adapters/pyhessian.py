"""PyHessian 0.1, three ways: with ``data=(X, y)`` (the cached gradient graph), with
``torch.eig`` patched back in for its density, and with ``dataloader=[(X, y)]``."""

from __future__ import annotations

import contextlib
import sys

import numpy as np
import torch
from torch import nn

from ..measurement import K_TOP, SLQ_M, SLQ_NV, Counter, Unsupported
from .base import Adapter, Run


def flat_split(v: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    out, o = [], 0
    for p in params:
        out.append(v[o : o + p.numel()].view_as(p))
        o += p.numel()
    return out


def flat_cat(ts) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


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
        big = max(100, self.ctx.budget_matvecs // K_TOP)
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
