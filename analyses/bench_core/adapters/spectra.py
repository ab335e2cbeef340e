"""spectra itself: `HessianOperator`, `eigsh`, `slq` and `trace` (Hutch++)."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ..measurement import K_TOP, SLQ_M, SLQ_NV, TRACE_MATVECS
from .base import Adapter, Run


class SpectraAdapter(Adapter):
    name = "spectra"
    density_how = "slq (4 probes advanced together, full mode: semi reorthogonalization)"

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
            self.counter.num_matvecs += now - self._base
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
