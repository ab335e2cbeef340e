"""curvlinops: its `HessianLinearOperator`, exported to scipy for `eigsh`; the
papyan2020 `fast_lanczos` for the density and `hutchpp_trace` for the trace."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..measurement import K_TOP, SLQ_M, SLQ_NV, TRACE_MATVECS, Counter
from .base import Adapter, Run


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
