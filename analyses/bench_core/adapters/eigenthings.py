"""hessian-eigenthings (v1), installed or as a source tree in .anchors/hessian-eigenthings.

It is not on PyPI. When it is not installed, `import_eigenthings` loads it from the
source tree by path (no ``sys.path`` change).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from torch.nn import functional as F

from ..measurement import K_TOP, SLQ_M, SLQ_NV, TRACE_MATVECS
from .base import Adapter, Run

ANCHOR_TREE = Path(__file__).resolve().parents[3] / ".anchors" / "hessian-eigenthings"


def import_eigenthings():
    """The ``hessian_eigenthings`` module: the installed one, else the source tree's.

    Raises:
        ImportError: neither installed nor in `ANCHOR_TREE`.
    """
    try:
        import hessian_eigenthings
    except ImportError:
        init = ANCHOR_TREE / "hessian_eigenthings" / "__init__.py"
        if not init.is_file():
            raise
    else:
        return hessian_eigenthings
    # register the package under its own name first: its modules import each other by it
    spec = importlib.util.spec_from_file_location(
        "hessian_eigenthings", init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["hessian_eigenthings"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["hessian_eigenthings"]
        raise
    return module


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
        big = max(100, self.ctx.budget_matvecs // K_TOP)
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

