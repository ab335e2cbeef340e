"""spectra.utils.progress: every solver counts its products on the caller's own bar."""

from __future__ import annotations

import torch

from spectra import DenseOperator, eigsh, slq, trace


class Recorder:
    """A bar factory that keeps what each bar was told."""

    def __init__(self) -> None:
        self.bars: list[dict] = []

    def __call__(self, *, total: int, desc: str, unit: str) -> Recorder:
        self.bars.append({"total": total, "desc": desc, "unit": unit, "done": 0, "closed": 0})
        return self

    def update(self, n: int) -> None:
        self.bars[-1]["done"] += n

    def close(self) -> None:
        self.bars[-1]["closed"] += 1


class Counting(DenseOperator):
    """A dense operator that counts its products (columns of matmat)."""

    products = 0

    def matmat(self, V):
        self.products += V.shape[1]
        return super().matmat(V)

    def matvec(self, v):
        self.products += 1
        return super().matvec(v)


def _operator(P: int = 40) -> Counting:
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=torch.float64))
    return Counting(Q @ torch.diag(torch.linspace(-1.0, 10.0, P, dtype=torch.float64)) @ Q.T)


def test_each_solver_counts_its_products_on_a_callers_bar():
    for run, desc in ((lambda op, p: eigsh(op, k=3, progress=p), "eigsh"),
                      (lambda op, p: slq(op, num_vectors=3, num_steps=12, progress=p), "slq"),
                      (lambda op, p: trace(op, num_matvecs=20, progress=p), "trace")):
        op, rec = _operator(), Recorder()
        run(op, rec)
        (bar,) = rec.bars
        assert bar["desc"] == desc and bar["unit"] == "Hv" and bar["closed"] == 1
        assert bar["done"] == op.products <= bar["total"]  # products, within the budget


def test_no_progress_makes_no_bar():
    op = _operator()
    assert eigsh(op, k=2, progress=False).eigenvalues.shape == (2,)
