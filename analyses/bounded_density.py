"""SLQ's memory-bounded mode against its full mode: the density they give.

Issue 14 asks for proof that SLQ without a stored basis (``slq(mode="bounded")``, the
three-term recurrence: a few vectors of length P whatever the number of steps) gives
the density of full reorthogonalization (``mode="full"``). In finite precision the
recurrence loses orthogonality once a Ritz value converges and the converged value
comes back as "ghost" copies; Greenbaum (1989) and Knizhnerman (1996) show that the
quadrature rule stays accurate, the copies sharing the outlier's weight, and Ghorbani
et al. (2019) rely on it. Here both modes run from the same seeded start vectors on
matrices with known spectra (float64 and float32), on the dense Hessian and GGN of a
digits MLP, and on the 1.13M-parameter MLP of the benchmarks (float32), and the table
gives their moments, the Wasserstein-1 distance between the two measures, SLQ's own
distance to the true spectrum where it is known, the extreme nodes against
[lambda_min, lambda_max], and the ghosts: the nodes at the top eigenvalue and their
weight.

    python -m analyses.bounded_density [--quick]

writes ``analyses/results/bounded_density.md``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import wasserstein_distance

from analyses._study import out_dir, parser, write_results
from analyses.estimators import synthetic, trained_model
from spectra import HessianOperator, eigsh, slq
from spectra.linalg.density import SpectralMeasure

# the verdict's bounds (see ``judge``); float32's are float64's scaled by nothing but
# the arithmetic: moments to 1e-5 relative (float64: 1e-9), both W1 bounds the same
MOMENT_TOL = {torch.float64: 1e-9, torch.float32: 1e-5}
W1_OF_WIDTH = 1e-3       # W1(full, bounded) at most this fraction of the spectrum's width
W1_OF_SAMPLING = 0.2     # ... and this fraction of W1(full, true spectrum), where known
OUTSIDE = {torch.float64: 1e-9, torch.float32: 1e-5}  # nodes past [lmin, lmax], of the width
GHOST = 1e-4             # a node within this fraction of the width of lambda_max is a copy


@dataclass
class Case:
    """One operator: its name, ``A`` (a dense tensor or an operator), its dtype, its
    extreme eigenvalues and, when known, all of them."""

    name: str
    A: object
    dtype: torch.dtype
    lo: float
    hi: float
    truth: np.ndarray | None = None


@dataclass
class Row:
    case: Case
    P: int
    moments: float      # max over p = 1..4 of |m_p(bounded) - m_p(full)| / sum w |x|^p
    w1: float           # W1(full, bounded) / width
    w1_truth: float     # W1(full, true spectrum) / width (nan: unknown)
    outside: float      # how far the bounded nodes go past [lo, hi], / width
    copies: tuple[int, int]       # nodes at lambda_max: full, bounded
    weight: tuple[float, float]   # their total weight (over the runs, / n_v)
    seconds: tuple[float, float]  # full, bounded


def _w1(a: SpectralMeasure, b: SpectralMeasure) -> float:
    return wasserstein_distance(a.nodes.ravel(), b.nodes.ravel(), a.weights.ravel(),
                                b.weights.ravel())


def measure(case: Case, n_v: int, m: int) -> Row:
    """Both modes from the same seeded start vectors, and the comparison."""
    out = {}
    for mode in ("full", "bounded"):
        t = time.perf_counter()
        out[mode] = slq(case.A, num_vectors=n_v, num_steps=m, mode=mode,
                        generator=torch.Generator().manual_seed(0))
        out[mode + "_s"] = time.perf_counter() - t
    full, bnd = out["full"], out["bounded"]
    width = case.hi - case.lo
    moments = max(abs(bnd.moment(p) - full.moment(p))
                  / float(np.mean(np.sum(full.weights * np.abs(full.nodes) ** p, axis=1)))
                  for p in (1, 2, 3, 4))
    truth = (wasserstein_distance(full.nodes.ravel(), case.truth, full.weights.ravel())
             / width if case.truth is not None else float("nan"))
    live = bnd.weights > 0
    outside = max(0.0, case.lo - float(bnd.nodes[live].min()),
                  float(bnd.nodes[live].max()) - case.hi) / width

    def at_top(s: SpectralMeasure) -> tuple[int, float]:
        near = (np.abs(s.nodes - case.hi) <= GHOST * width) & (s.weights > 0)
        return int(near.sum()), float(s.weights[near].sum()) / s.num_vectors

    (cf, wf), (cb, wb) = at_top(full), at_top(bnd)
    return Row(case, full.dim, moments, _w1(full, bnd) / width, truth, outside, (cf, cb),
               (wf, wb), (out["full_s"], out["bounded_s"]))


def judge(row: Row) -> bool:
    """The density of the bounded mode is the full mode's: moments equal to the dtype's
    bound, W1 between the measures within :data:`W1_OF_WIDTH` of the width and
    :data:`W1_OF_SAMPLING` of SLQ's own distance to the spectrum (where known), and no
    node past [lambda_min, lambda_max] beyond :data:`OUTSIDE`."""
    dtype = row.case.dtype
    sampling = row.w1_truth != row.w1_truth or row.w1 <= W1_OF_SAMPLING * row.w1_truth
    return (row.moments <= MOMENT_TOL[dtype] and row.w1 <= W1_OF_WIDTH and sampling
            and row.outside <= OUTSIDE[dtype])


def summary(rows: list[Row], n_v: int) -> list[str]:
    """The table in sentences: the largest differences, by dtype, and where they are."""
    out = []
    for dtype in (torch.float64, torch.float32):
        mine = [r for r in rows if r.case.dtype == dtype]
        if not mine:
            continue
        name = str(dtype).replace("torch.", "")
        worst = max(mine, key=lambda r: r.moments)
        far = max(mine, key=lambda r: r.outside)
        out.append(f"{name}: the first four moments of the two modes agree to "
                   f"{worst.moments:.1e} relative at worst ({worst.case.name}); the bounded "
                   f"nodes reach at most {far.outside:.1e} of the width past [λmin, λmax] "
                   f"({far.case.name}).")
    known = [r for r in rows if r.w1_truth == r.w1_truth]
    if known:
        ratio = max(known, key=lambda r: r.w1 / r.w1_truth)
        r = ratio.w1 / ratio.w1_truth
        where = (f"well inside the sampling error of {n_v} random vectors"
                 + ("" if r <= W1_OF_SAMPLING else " but not always below the verdict's fifth of it")
                 if r < 1 else f"beyond the sampling error of {n_v} random vectors")
        out.append(f"W1(full, bounded) is at most {r:.2f} of SLQ's own W1 distance to the spectrum "
                   f"({ratio.case.name}, {str(ratio.case.dtype).replace('torch.', '')}): the "
                   f"bounded mode's measure places the bulk's nodes a little differently, {where}.")
    ghosts = [r for r in rows if r.copies[1] > r.copies[0]]
    if ghosts:
        rel = max(abs(r.weight[1] - r.weight[0]) / r.weight[0] for r in ghosts if r.weight[0] > 0)
        most = max(ghosts, key=lambda r: r.copies[1])
        out.append(f"Ghosts: in {len(ghosts)} of {len(rows)} rows the bounded mode has more nodes "
                   f"at λmax than the full mode (up to {most.copies[1]} against "
                   f"{most.copies[0]}, {most.case.name}), and their total weight is the full "
                   f"mode's to {rel:.1e} relative: the copies share the outlier's weight "
                   "(Greenbaum 1989).")
    return out


def dense_cases(P: int, widths: tuple[int, ...], epochs: int) -> tuple[list[Case], dict]:
    """The known spectra of :func:`analyses.estimators.synthetic` and the digits MLP's
    dense Hessian and GGN, each in float64 and float32."""
    mats = synthetic(P)
    model_mats, info = trained_model(widths, epochs)
    cases = []
    for mat in mats + model_mats:
        ev = torch.linalg.eigvalsh(mat.A).numpy()
        for dtype in (torch.float64, torch.float32):
            cases.append(Case(mat.name, mat.A.to(dtype), dtype, float(ev[0]), float(ev[-1]), ev))
    return cases, info


def mlp_case() -> Case:
    """The 1.13M-parameter MLP of ``analyses.scale_bench`` (float32, products over its
    1,000 training samples); its extreme eigenvalues by eigsh (tol 1e-6)."""
    from analyses.scale_bench import build

    model, data = build("mlp-1.1m", None, None, None)
    op = HessianOperator(model, F.cross_entropy, data)
    g = torch.Generator().manual_seed(1)
    hi = float(eigsh(op, k=1, which="LA", tol=1e-6, generator=g, warn=False).eigenvalues[0])
    lo = float(eigsh(op, k=1, which="SA", tol=1e-6, atol=1e-6 * hi, generator=g,
                     warn=False).eigenvalues[0])
    return Case("1.13M MLP Hessian", op, torch.float32, lo, hi)


def table(rows: list[Row]) -> list[str]:
    lines = [
        ("| operator | dtype | P | max rel. moment diff. (p=1..4) | W1(full, bounded) / width "
         "| W1(full, spectrum) / width | bounded nodes past [λmin, λmax] / width "
         "| nodes at λmax: full, bounded | their weight: full, bounded | time full, bounded "
         "| verdict |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        truth = "n/a" if r.w1_truth != r.w1_truth else f"{r.w1_truth:.2e}"
        lines.append(
            f"| {r.case.name} | {str(r.case.dtype).replace('torch.', '')} | {r.P:,} "
            f"| {r.moments:.1e} | {r.w1:.1e} | {truth} | {r.outside:.1e} "
            f"| {r.copies[0]}, {r.copies[1]} | {r.weight[0]:.4g}, {r.weight[1]:.4g} "
            f"| {r.seconds[0]:.2f} s, {r.seconds[1]:.2f} s | {'met' if judge(r) else 'missed'} |")
    return lines


def main() -> None:
    args = parser("analyses.bounded_density", __doc__.splitlines()[0]).parse_args()
    started = time.perf_counter()
    torch.set_num_threads(1)
    n_v, m = 4, (30 if args.quick else 80)
    cases, info = dense_cases(120 if args.quick else 400, (8,) if args.quick else (16, 16),
                              5 if args.quick else 30)
    if not args.quick:
        cases.append(mlp_case())
    rows = [measure(c, n_v, m) for c in cases]
    met = sum(judge(r) for r in rows)
    findings = summary(rows, n_v)
    body = [
        (f"Both modes of `spectra.slq` with n_v = {n_v} Rademacher start vectors (seed 0, "
         f"the same in both) and m = {m} Lanczos steps, torch threads 1. *Full*: the stored "
         "basis, semi-orthogonal by measurement (the default full mode); *bounded*: the "
         "three-term recurrence, no basis. The synthetic spectra are those of "
         "`analyses.estimators` (known eigenvalues, random eigenvectors); the digits MLP "
         f"{info['widths']} ({info['P']:,} parameters, tanh, SGD-momentum {info['epochs']} "
         f"epochs, test accuracy {info['test_acc']:.3f}) gives its dense float64 Hessian and "
         "GGN; the float32 rows are the same matrices rounded. The 1.13M MLP "
         "(`analyses.scale_bench`'s 64-1024-1024-10) runs through its `HessianOperator`: "
         "its spectrum is not known, its extreme eigenvalues come from eigsh (tol 1e-6)."
         if not args.quick else
         f"Quick mode: n_v = {n_v}, m = {m}, the synthetic spectra at P = 120 and a small "
         "digits MLP; no 1.13M MLP."),
        "",
        ("Columns: the largest relative difference of the first four moments (relative to "
         "sum w |x|^p); the Wasserstein-1 distance between the two measures and, for "
         "scale, SLQ's own W1 distance to the true spectrum (its sampling error), both over "
         "the width λmax − λmin; how far the bounded nodes reach past [λmin, λmax]; the "
         f"nodes within {GHOST:g} of the width of λmax (summed over the {n_v} runs) and "
         "their weight (the mean over runs): the full mode has at most one per run, the "
         "bounded one may have ghost copies that share the same weight."),
        "",
        *table(rows),
        "",
        (f"Verdict per row: moments within {MOMENT_TOL[torch.float64]:g} (float64) or "
         f"{MOMENT_TOL[torch.float32]:g} (float32), W1(full, bounded) within "
         f"{W1_OF_WIDTH:g} of the width and {W1_OF_SAMPLING:g} of SLQ's own distance to the "
         f"spectrum, nodes past the extremes within {OUTSIDE[torch.float64]:g} (float64) or "
         f"{OUTSIDE[torch.float32]:g} (float32) of the width. **{met} of {len(rows)} rows "
         "met.**"),
        "",
        "Findings:",
        "",
        *(f"- {line}" for line in findings),
    ]
    write_results(out_dir(args) / "bounded_density.md",
                  "SLQ bounded mode against full reorthogonalization", started,
                  "\n".join(body), quick=args.quick)


if __name__ == "__main__":
    main()
