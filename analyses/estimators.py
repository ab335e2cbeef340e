"""Trace and diagonal estimators: error against operator products.

Estimators of ``tr(A)``: spectra's XTrace, XNysTrace (PSD operators only),
Hutch++ and Hutchinson (:func:`spectra.trace`), curvlinops' ``xtrace``,
``hutchpp_trace`` and ``hutchinson_trace``, and hessian-eigenthings' ``trace``
(Hutch++ and Hutchinson; it has no XTrace). Estimators of ``diag(A)``: spectra's
Hutchinson and XDiag (:func:`spectra.diagonal`) and curvlinops' ``hutchinson_diag``
and ``xdiag`` (hessian-eigenthings has none).

Matrices, each with its exact trace and diagonal:

* five dense symmetric matrices ``Q diag(lambda) Q^T`` (random orthogonal ``Q``)
  with known spectra: flat, power-law decays ``i^-1`` and ``i^-2``, ten outliers
  over a bulk near 0 (PSD, the GGN's shape) and the same with a bulk reaching
  below 0 (indefinite, the Hessian's shape);
* the Hessian and the GGN of an MLP trained on scikit-learn's digits with
  :func:`spectra.train` (cross-entropy, whole training set, float64), made dense
  through the library's own path: the operator's products with the identity.

Every estimator sees the same dense float64 matrix (for the model, the dense
Hessian or GGN; one check compares spectra's XTrace through the
``HessianOperator`` with the same seed on the dense matrix) at the same budgets
of products, over seeded trials (curvlinops draws from torch's global generator,
which is seeded before each call). Budgets that an estimator cannot spend
exactly are rounded down: Hutch++ in curvlinops and hessian-eigenthings spends
a multiple of 3, XTrace an even number; the tables give what each spent.

The relative error is ``|t - tr(A)| / |tr(A)|`` (trace) and
``||d - diag(A)|| / ||diag(A)||`` (diagonal), mean ± standard deviation over
seeds. spectra's error estimates are checked too: the fraction of trials whose
true error is within 2 (3) error estimates, and the median of error / estimate
(0.67 for an exact Gaussian standard error).

Run: ``python -m analyses.estimators`` (P = 1000, MLP 64-16-16-10 with 1,482
parameters, 30 seeds; 25 minutes on 2 cores shared with other jobs, load ~19) or ``--quick`` (P = 300,
MLP 64-10-10 with 870 parameters, 8 seeds; 85 to 96 s at load ~14); writes
``analyses/results/estimators.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

import spectra

RESULTS = Path(__file__).parent / "results" / "estimators.md"
BUDGETS = (20, 40, 80, 160)


# --------------------------------------------------------------------------- matrices


@dataclass
class Matrix:
    name: str
    A: torch.Tensor            # (P, P) float64, symmetric
    psd: bool
    note: str = ""

    @property
    def P(self) -> int:
        return int(self.A.shape[0])


def with_spectrum(ev: np.ndarray, seed: int = 0) -> torch.Tensor:
    """Dense float64 ``Q diag(ev) Q^T`` with a random orthogonal ``Q``."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(ev), len(ev), generator=g, dtype=torch.float64))
    A = (Q * torch.as_tensor(ev, dtype=torch.float64)) @ Q.T
    return 0.5 * (A + A.T)


def synthetic(P: int) -> list[Matrix]:
    i = np.arange(1, P + 1, dtype=np.float64)
    outliers = np.array([100.0, 60, 40, 30, 20, 15, 12, 10, 8, 6])
    bulk = np.linspace(0.0, 1.0, P - 10) ** 2
    return [
        Matrix("flat", with_spectrum(np.linspace(1.0, 2.0, P)), True, "eigenvalues evenly in [1, 2]"),
        Matrix("power-law i^-1", with_spectrum(1.0 / i), True, "lambda_i = 1/i"),
        Matrix("power-law i^-2", with_spectrum(1.0 / i**2), True, "lambda_i = 1/i^2"),
        Matrix("outliers + bulk (PSD)", with_spectrum(np.concatenate([outliers, bulk])), True,
               "10 outliers 100..6 over a bulk in [0, 1] crowded at 0 (the GGN's shape)"),
        Matrix("outliers + bulk (indefinite)",
               with_spectrum(np.concatenate([outliers, np.linspace(-0.3, 1.0, P - 10)])), False,
               "the same outliers over a bulk in [-0.3, 1] (the Hessian's shape)"),
    ]


def trained_model(widths: tuple[int, ...], epochs: int) -> tuple[list[Matrix], dict]:
    """Dense Hessian and GGN of an MLP trained on digits with :func:`spectra.train`."""
    data = spectra.load_dataset("digits", seed=0)
    model = spectra.build_model("mlp", input_shape=data.input_shape, num_classes=data.num_classes,
                                seed=0, widths=widths, activation="tanh")
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    t0 = time.perf_counter()
    spectra.train(model, opt, (data.train_x, data.train_y), loss_fn=loss_fn, epochs=epochs,
                  batch_size=64, seed=0)
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        acc = float((model(data.test_x).argmax(1) == data.test_y).float().mean())
    batch = (data.train_x, data.train_y)
    out, info = [], {}
    t0 = time.perf_counter()
    for kind, cls in (("Hessian", spectra.HessianOperator), ("GGN", spectra.GGNOperator)):
        op = cls(model, loss_fn, batch, dtype=torch.float64, eval_mode=True)
        P = op.shape[0]
        A = torch.cat([op.matmat(E) for E in torch.eye(P, dtype=torch.float64).split(64, dim=1)], dim=1)
        asym = float((A - A.T).abs().max() / A.abs().max())
        A = 0.5 * (A + A.T)
        ev = torch.linalg.eigvalsh(A)
        psd = kind == "GGN"
        out.append(Matrix(f"digits MLP {kind}", A, psd,
                          f"{kind} of the trained MLP, eigenvalues in [{float(ev[0]):.3g}, {float(ev[-1]):.3g}], "
                          f"{int((ev < 0).sum())} negative (relative asymmetry of the dense matrix {asym:.1e})"))
        if kind == "Hessian":
            info["operator"] = op
    info.update(P=out[0].P, widths=widths, epochs=epochs, test_acc=acc, train_s=train_s,
                dense_s=time.perf_counter() - t0, n_train=len(data.train_y))
    return out, info


# --------------------------------------------------------------------------- estimators


@dataclass
class Estimator:
    library: str
    method: str
    spent: Callable[[int, int], int]                     # (budget, P) -> products spent
    run: Callable[[torch.Tensor, int, int], tuple]       # (A, budget, seed) -> (value, error estimate)
    psd_only: bool = False
    results: dict = field(default_factory=dict)


def ours_trace(method: str) -> Callable:
    def run(A, budget, seed):
        e = spectra.trace(A, method=method, num_matvecs=budget, generator=torch.Generator().manual_seed(seed))
        return e.value, e.stderr
    return run


def ours_diag(method: str) -> Callable:
    def run(A, budget, seed):
        e = spectra.diagonal(A, method, num_matvecs=budget, generator=torch.Generator().manual_seed(seed))
        return e.values, e.stderr
    return run


def curvlinops_fn(fn: Callable, multiple: int) -> Callable:
    def run(A, budget, seed):
        torch.manual_seed(seed)
        return fn(A, multiple * (budget // multiple)), None
    return run


def eigenthings_fn(he, method: str) -> Callable:
    def run(A, budget, seed):
        op = he.LambdaOperator(lambda v: A @ v, A.shape[0], dtype=torch.float64)
        r = he.trace(op, num_matvecs=budget, method=method, seed=seed)
        return r.estimate, r.stderr
    return run


def estimators(he) -> tuple[list[Estimator], list[Estimator]]:
    from curvlinops import hutchinson_diag, hutchinson_trace, hutchpp_trace, xdiag, xtrace

    def even(b, P):
        return 2 * min(b // 2, P)

    def three(b, P):
        return 3 * (b // 3)

    def same(b, P):
        return b

    trace_ests = [
        Estimator("spectra", "xtrace", even, ours_trace("xtrace")),
        Estimator("spectra", "xnystrace", lambda b, P: min(b, P), ours_trace("xnystrace"), psd_only=True),
        Estimator("spectra", "hutch++", same, ours_trace("hutch++")),
        Estimator("spectra", "hutchinson", same, ours_trace("hutchinson")),
        Estimator("curvlinops", "xtrace", even, curvlinops_fn(xtrace, 2)),
        Estimator("curvlinops", "hutchpp_trace", three, curvlinops_fn(hutchpp_trace, 3)),
        Estimator("curvlinops", "hutchinson_trace", same, curvlinops_fn(hutchinson_trace, 1)),
    ]
    if he is not None:
        trace_ests += [
            Estimator("hessian-eigenthings", "trace hutch++", three, eigenthings_fn(he, "hutch++")),
            Estimator("hessian-eigenthings", "trace hutchinson", same, eigenthings_fn(he, "hutchinson")),
        ]
    diag_ests = [
        Estimator("spectra", "hutchinson", same, ours_diag("hutchinson")),
        Estimator("spectra", "xdiag", even, ours_diag("xdiag")),
        Estimator("curvlinops", "hutchinson_diag", same, curvlinops_fn(hutchinson_diag, 1)),
        Estimator("curvlinops", "xdiag", even, curvlinops_fn(xdiag, 2)),
    ]
    return trace_ests, diag_ests


def measure(m: Matrix, est: Estimator, seeds: int, diag: bool) -> None:
    """Fill ``est.results[(m.name, budget)]`` with per-seed errors, error estimates, refusals."""
    true = torch.diagonal(m.A) if diag else float(torch.trace(m.A))
    for b in BUDGETS:
        errs, ratios, refused = [], [], 0
        for s in range(seeds):
            try:
                value, se = est.run(m.A, b, s)
            except ValueError:
                refused += 1
                continue
            if diag:
                d = torch.as_tensor(value, dtype=torch.float64) - true
                errs.append(float(d.norm() / true.norm()))
                if se is not None:
                    ratios.append((d.abs() / se).numpy())
            else:
                errs.append(abs(float(value) - true) / abs(true))
                if se is not None and se > 0:
                    ratios.append(np.array([abs(float(value) - true) / se]))
        est.results[(m.name, b)] = (np.array(errs), np.concatenate(ratios) if ratios else None, refused)


# --------------------------------------------------------------------------- report


def cell(errs: np.ndarray, refused: int, seeds: int) -> str:
    if refused == seeds:
        return "refused"
    s = f"{100 * errs.mean():.3g} ± {100 * errs.std(ddof=1):.2g}" if len(errs) > 1 else f"{100 * errs.mean():.3g}"
    return s + (f" ({refused} refused)" if refused else "")


def table(w, matrices, ests, seeds, what) -> dict:
    """Per matrix: a table of relative error (%) against budget; returns the best per cell."""
    best = {}
    for m in matrices:
        w(f"\n### {m.name} (P = {m.P:,}; {m.note})\n\n")
        w("| library | method | " + " | ".join(f"{b} products" for b in BUDGETS) + " |\n")
        w("| --- | --- | " + " | ".join("---:" for _ in BUDGETS) + " |\n")
        for e in ests:
            if e.psd_only and not m.psd and (m.name, BUDGETS[0]) not in e.results:
                continue
            cells = []
            for b in BUDGETS:
                errs, _, refused = e.results[(m.name, b)]
                spent = e.spent(b, m.P)
                cells.append(cell(errs, refused, seeds) + ("" if spent == b else f" [{spent}]"))
                if refused == 0 and len(errs) and (m.psd or not e.psd_only):
                    key = (m.name, b)
                    if key not in best or errs.mean() < best[key][1]:
                        best[key] = (f"{e.library} {e.method}", errs.mean())
            w(f"| {e.library} | {e.method} | " + " | ".join(cells) + " |\n")
    return best


def calibration(w, matrices, ests, what) -> None:
    w(f"\n### spectra's error estimates ({what})\n\n"
      "Over all budgets and seeds" + (" and all entries" if what == "diagonal" else "") +
      ": the fraction of estimates whose true error is within 2 and 3 error estimates "
      "(95.4% and 99.7% for an exact Gaussian standard error), and the median of "
      "|error| / error estimate (0.67 for an exact one).\n\n")
    ours = [e for e in ests if e.library == "spectra"]
    w("| matrix | " + " | ".join(f"{e.method}: ≤2σ / ≤3σ / median" for e in ours) + " |\n")
    w("| --- | " + " | ".join("---:" for _ in ours) + " |\n")
    for m in matrices:
        cells = []
        for e in ours:
            r = [e.results[(m.name, b)][1] for b in BUDGETS if (m.name, b) in e.results]
            r = [x for x in r if x is not None]
            if not r:
                cells.append("-")
                continue
            z = np.concatenate(r)
            z = z[np.isfinite(z)]
            cells.append(f"{100 * np.mean(z <= 2):.0f}% / {100 * np.mean(z <= 3):.0f}% / {np.median(z):.2f}")
        w(f"| {m.name} | " + " | ".join(cells) + " |\n")


def verdict(w, matrices, trace_ests, diag_ests, best_trace, best_diag) -> None:
    """The winners per cell, spectra's estimators against each other at the two largest
    budgets, and a verdict whose every claim is counted from these tables."""
    from collections import Counter

    def mean_err(ests, lib, method, m, b):
        e = next(x for x in ests if x.library == lib and x.method == method)
        errs, _, refused = e.results.get((m.name, b), (np.array([]), None, 1))
        return float(errs.mean()) if len(errs) and not refused else math.nan

    w("\n## Verdict\n\n")
    w("Lowest mean error per (matrix, budget), counting XNysTrace on PSD matrices only: trace: "
      + ", ".join(f"{k} {n}" for k, n in Counter(v[0] for v in best_trace.values()).most_common())
      + f" (of {len(best_trace)}); diagonal: "
      + ", ".join(f"{k} {n}" for k, n in Counter(v[0] for v in best_diag.values()).most_common())
      + f" (of {len(best_diag)}).\n\n")
    big = BUDGETS[-2:]
    w(f"spectra's estimators, ratio of mean errors at {' and '.join(map(str, big))} products "
      "(> 1: the second is better):\n\n")
    w("| matrix | " + " | ".join(f"hutch++ / xtrace @{b}" for b in big) + " | "
      + " | ".join(f"hutchinson / xtrace @{b}" for b in big) + " | "
      + " | ".join(f"xtrace / xnystrace @{b}" for b in big) + " | "
      + " | ".join(f"hutchinson / xdiag @{b}" for b in big) + " |\n")
    w("| --- |" + " ---: |" * (4 * len(big)) + "\n")
    counts = Counter()
    for m in matrices:
        row = []
        for num, den, ests, key in (("hutch++", "xtrace", trace_ests, "pp"), ("hutchinson", "xtrace", trace_ests, "h"),
                                    ("xtrace", "xnystrace", trace_ests, "nys"), ("hutchinson", "xdiag", diag_ests, "d")):
            for b in big:
                r = mean_err(ests, "spectra", num, m, b) / mean_err(ests, "spectra", den, m, b)
                if key == "nys" and not m.psd:
                    row.append("- (indefinite)")
                    continue
                row.append(f"{r:.2f}")
                counts[key, r > 1] += b == big[-1]
        w(f"| {m.name} | " + " | ".join(row) + " |\n")
    n = len(matrices)
    n_psd = sum(m.psd for m in matrices)
    medians = []
    for e in trace_ests:
        if e.library == "spectra" and e.method in ("xtrace", "xnystrace"):
            for m in matrices:
                z = [e.results[(m.name, b)][1] for b in BUDGETS]
                z = [x for x in z if x is not None]
                if z and (m.psd or not e.psd_only):
                    medians.append(float(np.median(np.concatenate(z))))
    lo, hi = min(medians), max(medians)
    hessians = [m for m in matrices if "Hessian" in m.name]
    close = "; ".join(
        f"{m.name}: " + ", ".join(
            f"{mean_err(trace_ests, 'spectra', 'hutch++', m, b) / mean_err(trace_ests, 'spectra', 'xtrace', m, b):.2f}"
            f" at {b}" for b in big)
        for m in hessians)
    w(f"\nAt {big[-1]} products XTrace beat Hutch++ on {counts['pp', True]} of {n} matrices and "
      f"Hutchinson on {counts['h', True]} of {n}; XNysTrace beat XTrace on {counts['nys', True]} of the "
      f"{n_psd} PSD matrices; XDiag beat Hutchinson's diagonal on {counts['d', True]} of {n}. These "
      "count lower means: a ratio within about 30% of 1 in the table above is not resolved by the "
      "seeds (the errors' std is close to their mean). "
      "For a model's Hessian, XTrace and Hutch++ are close (Hutch++'s mean error over XTrace's, "
      f"{close}), so either serves. XNysTrace assumes a PSD matrix: on an indefinite one it may be "
      "refused or far off (the digits MLP Hessian's rows above; on the synthetic indefinite matrix "
      "it happened to do well), so it is for a GGN (a Fisher was not measured here); Hutchinson "
      "only for a flat spectrum, where a sketch finds nothing to remove; XDiag for diagonals "
      "unless the spectrum is flat. The error estimates of XTrace and XNysTrace (PSD matrices) "
      f"run small: median |error| / estimate {lo:.2f} to {hi:.2f} over the matrices, where an "
      "exact standard error gives 0.67, so an interval of two estimates covers less than 95% "
      "(the calibration table above gives each estimator's coverage).\n")


def versions(he) -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "torch": torch.__version__, "spectra": spectra.__version__}
    for dist in ("curvlinops-for-pytorch", "numpy", "scikit-learn"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    out["hessian-eigenthings"] = (f"{getattr(he, '__version__', '?')} (source tree .anchors/)"
                                  if he is not None else "not importable")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m analyses.estimators", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="P = 300, a smaller MLP, 8 seeds (under 2 minutes)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    P, widths, epochs, seeds = (300, (10, 10), 20, 8) if args.quick else (1000, (16, 16), 30, 30)
    torch.set_num_threads(1)  # a shared machine: one thread is fastest and steadiest
    try:
        from analyses.bench_core.adapters.eigenthings import import_eigenthings

        he = import_eigenthings()
    except Exception:  # noqa: BLE001 (reported as not importable)
        he = None

    matrices = synthetic(P)
    model_mats, info = trained_model(widths, epochs)
    matrices += model_mats
    # the dense path against the operator itself: same seed, same estimator
    H = model_mats[0].A
    via_op = spectra.trace(info.pop("operator"), method="xtrace", num_matvecs=40,
                           generator=torch.Generator().manual_seed(0)).value
    via_dense = spectra.trace(H, method="xtrace", num_matvecs=40, generator=torch.Generator().manual_seed(0)).value
    agree = abs(via_op - via_dense) / abs(via_dense)

    trace_ests, diag_ests = estimators(he)
    for m in matrices:
        print(f"{m.name} (P={m.P})", flush=True)
        for e in trace_ests:
            measure(m, e, seeds, diag=False)
        for e in diag_ests:
            measure(m, e, seeds, diag=True)
    wall = time.perf_counter() - start

    lines: list[str] = []
    w = lines.append
    cmd = "python -m analyses.estimators" + (" --quick" if args.quick else "")
    w("# Trace and diagonal estimators: error against products\n\n")
    w(f"`{cmd}`: wall time {wall:.0f} s on {os.cpu_count()} CPU cores ({platform.machine()}, "
      f"load average {os.getloadavg()[0]:.1f} at the end, shared with other jobs), torch threads "
      f"{torch.get_num_threads()}.\n\n")
    w("Versions: " + ", ".join(f"{k} {v}" for k, v in versions(he).items()) + ".\n\n")
    w(f"Relative error in % (mean ± std over {seeds} seeds) of each estimator at each budget of "
      "operator products; `[n]`: the products an estimator actually spent where it differs from the "
      "budget (Hutch++ in curvlinops and hessian-eigenthings spends a multiple of 3, XTrace an even "
      "number). XNysTrace is for PSD operators: it runs on the PSD matrices, and on the indefinite ones "
      "the table says how often it refused (it raises when its sketch shows a negative direction). "
      "Every estimator sees the same dense float64 matrix; see the module docstring of "
      "`analyses/estimators.py` for the method.\n\n")
    w(f"Digits model: MLP 64-{'-'.join(map(str, widths))}-10 (tanh), {info['P']:,} parameters, trained "
      f"with `spectra.train` (SGD lr 0.1, momentum 0.9, batch 64, {epochs} epochs, "
      f"{info['train_s']:.1f} s; test accuracy {info['test_acc']:.3f}); Hessian and GGN of the "
      f"cross-entropy over the {info['n_train']:,} training samples in float64, made dense from "
      f"{info['P']:,} products with the identity ({info['dense_s']:.1f} s for both). spectra's XTrace "
      f"(40 products, seed 0) through the `HessianOperator` and through the dense matrix agree to a "
      f"relative {agree:.1e}.\n")
    w("\n## Trace\n")
    best_trace = table(w, matrices, trace_ests, seeds, "trace")
    calibration(w, matrices, trace_ests, "trace")
    w("\n## Diagonal\n")
    best_diag = table(w, matrices, diag_ests, seeds, "diagonal")
    calibration(w, matrices, diag_ests, "diagonal")
    verdict(w, matrices, trace_ests, diag_ests, best_trace, best_diag)
    text = "".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out} in {wall:.0f} s")


if __name__ == "__main__":
    main()
