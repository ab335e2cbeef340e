"""Driver of the core benchmark: ``python -m analyses.bench_core [options]``.

Parses the command line, picks the models (``--models``) and libraries (``--libs``), and
for each model trains it, loads or computes its float64 reference, sets up every
library's adapter and runs the phases (HVP, top-5, lambda_min, SLQ, trace) across all
libraries back to back; then writes the report.

Usage:
    python -m analyses.bench_core                 # all four models (< 15 min on 2 cores)
    python -m analyses.bench_core --quick         # fewer repeats, tighter budgets
    python -m analyses.bench_core --models mlp-tanh-2k,cnn-38k --out /tmp/b.md
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import __doc__ as PACKAGE_DOC
from . import models as bm
from .adapters import (
    ADAPTERS,
    ANCHOR_TREE,
    Adapter,
    CurvlinopsAdapter,
    EigenthingsAdapter,
    PyHessianAdapter,
    SpectraAdapter,
    import_eigenthings,
)
from .measurement import (
    K_TOP,
    RETRY,
    Ctx,
    Unsupported,
    cell_status,
    cpu_pressure,
    grad_time,
    measure_density,
    measure_trace,
    rel_err_top,
    short_exc,
    sweep,
    time_hvps,
    timed,
    wait_quiet,
)
from .report import report

RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench_core.md"
PHASES = ("hvp", "top", "lmin", "density", "trace")


def set_up(classes: list[type[Adapter]], ctx: Ctx, libs: list[str], log) -> list[dict]:
    """One result row per library (those named in ``libs``, and spectra always), each
    holding its set-up measurement and, when the set-up worked, its adapter (``_ad``)."""
    results: list[dict] = []
    for cls in classes:
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
        log(f"  {cls.name}: set-up {r['seconds']:.2f}s {cell_status(r)}")
        if r["status"] != "ok":
            res["trace_setup"] = r.get("trace")
            continue
        res["_ad"] = ad
    return results


def run_phases(ctx: Ctx, reps: int, grad_s: float, v, href, log, libs,
               classes: list[type[Adapter]]) -> tuple[list, dict]:
    """Set up every adapter, then run each phase across all adapters back to back, so that
    a change in machine load between phases hits every library alike."""
    results = set_up(classes, ctx, libs, log)
    canary: dict[str, float] = {}
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
                time_hvps([r["_ad"] for r in sel], sel, ctx, reps, grad_s, v, href, log)
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
                            res["density"] = measure_density(ad, ctx, log)
                    elif phase == "trace":
                        res["trace"] = measure_trace(ad, ctx, log)
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
        f"({ref['seconds']:.1f}s, {ref.get('num_matvecs', 0)} f64 HVPs)")
    return ref


def bench_model(name: str, args, X, y, log, classes: list[type[Adapter]]) -> dict:
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
        budget_matvecs, budget_s, reps = (600, 15.0, 5) if expensive else (2000, 8.0, 5)
    else:
        budget_matvecs, budget_s, reps = (1000, 30.0, 25) if expensive else (4000, 20.0, 25)
    ctx = Ctx(model, X, y, P, ref, budget_matvecs, budget_s, expensive, args.wait_quiet,
              args.quiet_psi)
    log(f"  gradient (1000 samples): {g_s*1e3:.2f} ms")
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(P, generator=gen)
    href = torch.as_tensor(bm.Float64Hvp(model, X, y).matvec(v.double().numpy()))
    load0 = os.getloadavg()
    results, canary = run_phases(ctx, reps, g_s, v, href, log, args.libs, classes)
    return {"name": name, "spec": spec.description, "P": P, "train": info, "ref": ref,
            "grad_s": g_s, "results": results, "budget_matvecs": budget_matvecs, "budget_s": budget_s,
            "load": (load0, os.getloadavg()), "canary": canary}


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


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m analyses.bench_core",
                                 description=PACKAGE_DOC.split("\n")[0])
    ap.add_argument("--models", default=",".join(bm.MODELS),
                    help=f"comma-separated subset of {', '.join(bm.MODELS)}")
    ap.add_argument("--libs", default="", help="comma-separated substrings of library names "
                    "to run (default: all; spectra is always needed for the ratios)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, smaller budgets")
    ap.add_argument("--out", type=Path, default=RESULTS)
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
    return ap


def available_adapters(vers: dict, log) -> list[type[Adapter]]:
    """The adapters whose library imports, in the order of `ADAPTERS`."""
    classes = list(ADAPTERS)
    if not vers["hessian-eigenthings"][0].isdigit():
        log(f"hessian-eigenthings skipped: {vers['hessian-eigenthings']}")
        classes.remove(EigenthingsAdapter)
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
            classes = [c for c in classes if not issubclass(c, cls)]
    return classes


def main(argv=None) -> int:
    ap = parser()
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
    classes = available_adapters(vers, log)
    X, y = bm.load_digits_data()
    names = [s for s in args.models.split(",") if s]
    bad = [n for n in names if n not in bm.MODELS]
    if bad:
        ap.error(f"unknown model(s) {bad}; choose from {list(bm.MODELS)}")
    all_res = [bench_model(n, args, X, y, log, classes) for n in names]
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
