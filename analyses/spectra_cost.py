"""Study 6 of issue #12: what the spectra themselves cost.

The probe a ``SpectralMonitor`` runs each epoch (:func:`spectra.probe.probe`: top-k and
the smallest eigenvalue by Lanczos, a Hutch++ trace, an SLQ density) timed and its peak
memory measured against the number of parameters (the registry MLP from about 2k to
1.1M parameters, and the registry CNN), an SLQ density against its Lanczos steps, and the
probe against the probe-set size; and what a probe per epoch costs relative to an epoch of
training, measured here (one training epoch in a fresh process beside each probe) and read
from the monitor's own timing in study 1's runs.

Every measurement is ``analyses.scale_bench``'s: a fresh subprocess
(``scale_bench.run_job`` / ``worker``), its peak resident memory above the baseline after
the model, the data and one warm-up product (``ru_maxrss``), its wall time and its CPU
time (the machine these results come from was shared by many processes; CPU time of a
one-thread process is what load disturbs least).

    python -m analyses.spectra_cost [--quick] [--out-dir DIR] [--jobs N]
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from analyses import _study, scale_bench

NAME = "spectra_cost"
TITLE = "The cost of the spectra: probe time, products and memory against model size"


@dataclass(frozen=True)
class Setting:
    """One study configuration (the full one, or ``--quick``'s)."""

    models: tuple[tuple[str, dict], ...]  # registry name, options
    probe: dict  # top_k, trace, density: the probe measured against P
    probe_samples: int
    steps: tuple[int, ...]  # SLQ Lanczos steps (one vector)
    steps_models: tuple[tuple[str, dict], ...]
    sizes: tuple[int, ...]  # probe-set sizes (the CNN)


MLP_WIDTHS = ((24,), (64, 64), (128, 128), (256, 256), (512, 512), (1024, 1024))
FULL = Setting(
    models=tuple(("mlp", {"widths": list(w)}) for w in MLP_WIDTHS) + (("cnn", {}),),
    probe={"top_k": 12, "trace": 30, "density": [2, 40]}, probe_samples=128,
    steps=(10, 40, 160), steps_models=(("cnn", {}), ("mlp", {"widths": [512, 512]})),
    sizes=(64, 256, 1024))
QUICK = Setting(
    models=(("mlp", {"widths": [24]}), ("mlp", {"widths": [64, 64]}), ("cnn", {})),
    probe={"top_k": 3, "trace": 10, "density": [1, 10]}, probe_samples=64,
    steps=(10, 40), steps_models=(("cnn", {}),), sizes=(64, 256))


def label(model: str, kwargs: dict) -> str:
    if model == "mlp":
        return "MLP " + "-".join(str(w) for w in kwargs["widths"])
    return "CNN"


def plan(setting: Setting) -> list[dict]:
    """Every measurement (a ``scale_bench`` job), with a ``study`` key saying which sweep."""
    jobs = []
    for model, kw in setting.models:
        base = {"model": label(model, kw), "mode": "-", "threads": 1}
        jobs.append(base | {"study": "params", "task": "epoch",
                            "spec": {"model": model, "kwargs": kw, "n": None}})
        jobs.append(base | {"study": "params", "task": "probe", **setting.probe,
                            "spec": {"model": model, "kwargs": kw, "n": setting.probe_samples}})
    for model, kw in setting.steps_models:
        for m in setting.steps:
            jobs.append({"study": "steps", "model": label(model, kw), "task": "density",
                         "mode": "full", "n_v": 1, "m": m, "threads": 1,
                         "spec": {"model": model, "kwargs": kw, "n": setting.probe_samples}})
    for n in setting.sizes:
        jobs.append({"study": "sizes", "model": "CNN", "task": "probe", "mode": "-",
                     "threads": 1, **setting.probe, "spec": {"model": "cnn", "kwargs": {}, "n": n}})
    return jobs


def _measurement(job: dict) -> str:
    """What a job measures (all but the sweep it belongs to): two jobs with the same
    key are one measurement (e.g. the CNN's probe against P and, at the same probe-set
    size, against the probe set)."""
    return json.dumps({k: v for k, v in job.items() if k != "study"}, sort_keys=True)


def measure(jobs: list[dict], workers: int) -> list[tuple[dict, dict]]:
    """Each distinct measurement (:func:`_measurement`) through ``scale_bench.run_job``
    (a fresh process), ``workers`` at once; a job that repeats one gets its result."""
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    unique = list({_measurement(j): j for j in jobs}.values())
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda j: scale_bench.run_job(j, log), unique))
    done = {_measurement(j): r for j, r in zip(unique, results, strict=True)}
    return retry_failed([(j, done[_measurement(j)]) for j in jobs], log)


def retry_failed(rows: list[tuple[dict, dict]], log) -> list[tuple[dict, dict]]:
    """Measure each failed job once more (one at a time)."""
    return [(j, scale_bench.run_job(j, log) if "error" in r else r) for j, r in rows]


# ---------------------------------------------------------------------- the runs of study 1


def monitor_ratios(runs_dir: Path) -> list[tuple[str, float, float, float, float]]:
    """Per run of study 1 (``density_evolution``): ``(name, median probe seconds, median
    epoch seconds, their ratio, median products per probe)`` from the run's own probes
    and metrics tables."""
    from spectra.runs import read_runs

    out = []
    for path in sorted(runs_dir.glob("*.h5")):
        for name, run in read_runs(path).items():
            probe = np.asarray(run.probes.seconds, dtype=float)
            ep = np.asarray(run.metrics.epoch, dtype=float)
            train = np.asarray(run.metrics.seconds, dtype=float)[ep >= 1]
            if probe.size and train.size:
                p, t = float(np.median(probe)), float(np.median(train))
                mv = float(np.median(np.asarray(run.probes.num_matvecs, dtype=float)))
                out.append((f"{path.stem}/{name}", p, t, p / t, mv))
    return out


# ---------------------------------------------------------------------- report


MODEL_COLOURS = {"MLP": "tab:blue", "CNN": "tab:orange"}  # one colour per model in every panel


def _colour(model: str) -> str:
    """The colour of a model label ("MLP 64-64", "CNN") in every panel of the figure."""
    return MODEL_COLOURS[model.split(" ", 1)[0]]


def figure(rows: list[tuple[dict, dict]], path: Path) -> None:
    """Log-log: probe and epoch CPU time against P; extra peak memory against P; SLQ time
    and memory against Lanczos steps; probe time against the probe-set size. Colour is
    the model (:data:`MODEL_COLOURS`) in every panel; marker and line style the quantity."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from spectra.plots.axes import log_ticks
    from spectra.plots.style import style

    ok = [(j, r) for j, r in rows if "error" not in r]
    mlp, cnn = MODEL_COLOURS["MLP"], MODEL_COLOURS["CNN"]
    with style():
        fig, axes = plt.subplots(1, 4, figsize=(15.0, 4.6), layout="constrained")
        ax = axes[0]
        for task, ls, mk, lab in (("probe", "-", "o", "probe"), ("epoch", "--", "s", "training epoch")):
            pts = sorted((r["P"], r["cpu_seconds"]) for j, r in ok if j["study"] == "params"
                         and j["task"] == task and j["model"] != "CNN")
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=mk, ls=ls, color=mlp, label=f"MLP {lab}")
            pts = [(r["P"], r["cpu_seconds"]) for j, r in ok if j["study"] == "params"
                   and j["task"] == task and j["model"] == "CNN"]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="*", ms=12, ls="none", color=cnn,
                        mfc=cnn if task == "probe" else "white", label=f"CNN {lab}")
        ax.set_title("CPU time against parameters")
        ax.set_xlabel("parameters P")
        ax.set_ylabel("CPU seconds")
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
        ax = axes[1]
        for is_cnn, mk, lab in ((False, "o", "MLP probe"), (True, "*", "CNN probe")):
            pts = sorted((r["P"], max(r["extra_maxrss_mib"], 0.1)) for j, r in ok
                         if j["study"] == "params" and j["task"] == "probe"
                         and (j["model"] == "CNN") == is_cnn)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=mk, ms=12 if is_cnn else 6,
                        ls="none" if is_cnn else "-", color=cnn if is_cnn else mlp,
                        label=f"{lab}: extra peak RSS")
        ax.set_title("Peak memory above the baseline")
        ax.set_xlabel("parameters P")
        ax.set_ylabel("MiB")
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
        ax = axes[2]
        for model in sorted({j["model"] for j, _ in ok if j["study"] == "steps"}):
            pts = sorted((j["m"], r["cpu_seconds"], r["extra_maxrss_mib"]) for j, r in ok
                         if j["study"] == "steps" and j["model"] == model)
            m, t, mem = zip(*pts, strict=True)
            ax.plot(m, t, marker="o", color=_colour(model), label=f"{model}: CPU s")
            ax.plot(m, np.maximum(mem, 0.1), marker="^", ls="--", color=_colour(model),
                    label=f"{model}: extra MiB")
        ax.set_title("SLQ (1 vector) against Lanczos steps")
        ax.set_xlabel("Lanczos steps m")
        ax.set_ylabel("CPU seconds / MiB")
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
        ax = axes[3]
        pts = sorted((j["spec"]["n"], r["cpu_seconds"]) for j, r in ok if j["study"] == "sizes")
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="*", ms=10, color=cnn, label="CNN probe")
        ax.set_title("Probe against the probe set")
        ax.set_xlabel("probe samples")
        ax.set_ylabel("CPU seconds")
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
        for ax in axes:
            ax.set_xscale("log")
            ax.set_yscale("log")
            log_ticks(ax, "y")  # no 6x10^0 minor labels on a narrow axis
            log_ticks(ax, "x")
        fig.suptitle("The cost of the spectra on one CPU thread (fresh process per point); "
                     "colour: the model (MLP blue, CNN orange), marker and line: the quantity")
        fig.savefig(path, dpi=110)
        plt.close(fig)


def _find(rows: list[tuple[dict, dict]], **kw) -> list[tuple[dict, dict]]:
    return [(j, r) for j, r in rows if all(j.get(k) == v for k, v in kw.items())]


def tables(rows: list[tuple[dict, dict]], setting: Setting) -> str:
    out = ["### Against the number of parameters", "",
           (f"Probe: top-{setting.probe['top_k']} and λmin (Lanczos, tol 1e-3), Hutch++ trace "
            f"({setting.probe['trace']} products), SLQ {setting.probe['density'][0]} × "
            f"{setting.probe['density'][1]}, on {setting.probe_samples} digits; training epoch: "
            "SGD, batch 64, the 1438 training digits."), "",
           ("| model | P | probe CPU s | probe wall s | products | extra peak RSS | epoch CPU s "
            "| probe / epoch (CPU) |"), "|---|---|---|---|---|---|---|---|"]
    for model, kw in setting.models:
        name = label(model, kw)
        pr = _find(rows, study="params", task="probe", model=name)
        ep = _find(rows, study="params", task="epoch", model=name)
        r = pr[0][1] if pr else {"error": "missing"}
        e = ep[0][1] if ep else {"error": "missing"}
        if "error" in r:
            out.append(f"| {name} | | FAILED {r['error']} | | | | | |")
            continue
        ecpu = e.get("cpu_seconds", math.nan)
        out.append(f"| {name} | {r['P']:,} | {r['cpu_seconds']:.2f} | {r['seconds']:.1f} "
                   f"| {r['probe_matvecs']} | {r['extra_maxrss_mib']:.1f} MiB | {ecpu:.3g} "
                   f"| {r['cpu_seconds'] / ecpu:.0f} |")
    out += ["", "### SLQ against Lanczos steps (one vector, full mode)", "",
            "| model | P | m | CPU s | wall s | products | extra peak RSS |", "|---|---|---|---|---|---|---|"]
    for j, r in _find(rows, study="steps"):
        if "error" in r:
            out.append(f"| {j['model']} | | {j['m']} | FAILED {r['error']} | | | |")
            continue
        out.append(f"| {j['model']} | {r['P']:,} | {j['m']} | {r['cpu_seconds']:.2f} "
                   f"| {r['seconds']:.1f} | {r['num_matvecs']} | {r['extra_maxrss_mib']:.1f} MiB |")
    out += ["", "### The CNN's probe against the probe-set size", "",
            "| samples | CPU s | wall s | products | extra peak RSS |", "|---|---|---|---|---|"]
    for j, r in _find(rows, study="sizes"):
        if "error" in r:
            out.append(f"| {j['spec']['n']} | FAILED {r['error']} | | | |")
            continue
        out.append(f"| {j['spec']['n']} | {r['cpu_seconds']:.2f} | {r['seconds']:.1f} "
                   f"| {r['probe_matvecs']} | {r['extra_maxrss_mib']:.1f} MiB |")
    return "\n".join(out)


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y against log x (NaN with fewer than 2 points)."""
    x, y = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(x[ok], y[ok], 1)[0])


def findings(rows: list[tuple[dict, dict]], runs_dir: Path) -> str:
    ok = [(j, r) for j, r in rows if "error" not in r]
    pr = [(r["P"], r["cpu_seconds"], r["extra_maxrss_mib"], r["probe_matvecs"]) for j, r in ok
          if j["study"] == "params" and j["task"] == "probe" and j["model"].startswith("MLP")]
    pr.sort()
    lines = []
    if len(pr) >= 2:
        P, t, mem, mv = zip(*pr, strict=True)
        big = [p for p in pr if p[0] >= 50_000]
        lines.append(
            f"- Probe CPU time grows as P^{slope(P, t):.2f} over the MLPs ({P[0]:,} to "
            f"{P[-1]:,} parameters; {t[0]:.2f} s to {t[-1]:.2f} s); products per probe "
            f"{min(mv)} to {max(mv)} (Lanczos stops at its tolerance, so they vary with "
            "the spectrum, not with P)."
            + (f" Extra peak memory grows as P^{slope([p[0] for p in big], [max(p[2], 0.1) for p in big]):.2f} "
               f"from {big[0][0]:,} parameters on ({big[0][2]:.1f} to {big[-1][2]:.1f} MiB)."
               if len(big) >= 2 else ""))
    ratios = []
    for j, r in ok:
        if j["study"] == "params" and j["task"] == "probe":
            e = _find(rows, study="params", task="epoch", model=j["model"])
            if e and "cpu_seconds" in e[0][1]:
                ratios.append((j["model"], r["cpu_seconds"] / e[0][1]["cpu_seconds"]))
    if ratios:
        lines.append("- One probe per epoch against one training epoch on digits (CPU time, "
                     "same settings): " + ", ".join(f"{m} {x:.1f}×" for m, x in ratios) + ".")
    for model in sorted({j["model"] for j, _ in ok if j["study"] == "steps"}):
        pts = sorted((j["m"], r["cpu_seconds"], r["extra_maxrss_mib"]) for j, r in ok
                     if j["study"] == "steps" and j["model"] == model)
        if len(pts) >= 2:
            m, t, mem = zip(*pts, strict=True)
            lines.append(f"- SLQ on the {model}: CPU time as m^{slope(m, t):.2f} "
                         f"(m {m[0]} → {m[-1]}: {t[0]:.2f} → {t[-1]:.2f} s); extra peak memory "
                         f"{mem[0]:.1f} → {mem[-1]:.1f} MiB (the full mode keeps the m Lanczos "
                         "vectors).")
    sz = sorted((j["spec"]["n"], r["cpu_seconds"]) for j, r in ok if j["study"] == "sizes")
    if len(sz) >= 2:
        n, t = zip(*sz, strict=True)
        mv = [r["probe_matvecs"] for j, r in sorted(
            ((j, r) for j, r in ok if j["study"] == "sizes"), key=lambda x: x[0]["spec"]["n"])]
        per = [x / m for x, m in zip(t, mv, strict=True)]
        steps = ("" if abs(mv[-1] - mv[0]) <= 0.1 * mv[0] else
                 f": its Lanczos runs took {'more' if mv[-1] > mv[0] else 'fewer'} steps to "
                 "converge there")
        lines.append(f"- The CNN's probe against the probe set: CPU time as n^{slope(n, t):.2f} "
                     f"({n[0]} → {n[-1]} samples: {t[0]:.2f} → {t[-1]:.2f} s, with "
                     f"{mv[0]} → {mv[-1]} products{steps}); per product as "
                     f"n^{slope(n, per):.2f} ({per[0] * 1e3:.1f} → {per[-1] * 1e3:.1f} ms).")
    mon = monitor_ratios(runs_dir) if runs_dir.exists() else []
    if mon:
        line = (
            f"- From the monitor's own timing in study 1's runs ({len(mon)} runs of "
            f"`analyses.density_evolution`, CNN, probe on "
            f"{_probe_samples(runs_dir)} samples): median probe / median training epoch = "
            f"{_study.fmt_mean_std(r[3] for r in mon)} (mean ± std over runs; wall times in "
            f"the same process, so load slows both); probe {_study.fmt_mean_std(r[1] for r in mon)} s "
            f"with {_study.fmt_mean_std(r[4] for r in mon)} products, "
            f"epoch {_study.fmt_mean_std(r[2] for r in mon)} s.")
        pr = next((r for _, r in _find(rows, study="params", task="probe", model="CNN")
                   if "error" not in r), None)
        ep = next((r for _, r in _find(rows, study="params", task="epoch", model="CNN")
                   if "error" not in r), None)
        if pr and ep and pr.get("probe_matvecs"):
            here = pr["cpu_seconds"] / ep["cpu_seconds"]
            per_here = here / pr["probe_matvecs"]
            per_mon = float(np.median([r[3] / r[4] for r in mon]))
            line += (
                f" Against the CPU-time ratio above ({here:.0f}): a model in training needs "
                f"fewer products per probe than the untrained one measured here "
                f"({pr['probe_matvecs']}), and one product over one epoch is "
                f"{per_mon:.3f} in the monitor (median over runs) against {per_here:.3f} "
                "here; what is left between the two is what they time (wall under that "
                "study's load against CPU time here, the CLI's epoch with its test "
                "evaluation and row against a bare one).")
        lines.append(line)
    return "\n".join(lines)


def _probe_samples(runs_dir: Path) -> str:
    from spectra.runs import read_runs

    for path in sorted(runs_dir.glob("*.h5")):
        for run in read_runs(path).values():
            return str(run.config["probe"]["samples"])
    return "?"


def main(argv: list[str] | None = None) -> None:
    p = _study.parser(f"analyses.{NAME}", TITLE)
    p.add_argument("--jobs", type=int, default=4, help="measurements at once (one thread each)")
    p.add_argument("--replot", action="store_true",
                   help=f"redraw the figure and tables from {NAME}.json (measuring again "
                        "the points that failed)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    torch.set_num_threads(1)
    started = time.perf_counter()
    setting = QUICK if args.quick else FULL
    out = _study.out_dir(args)
    saved = out / f"{NAME}.json"
    origin = ""
    if args.replot:
        made = json.loads(saved.read_text())
        rows = [tuple(x) for x in made["rows"]]
        if any("error" in r for _, r in rows):
            rows = retry_failed(rows, lambda msg: print(msg, file=sys.stderr, flush=True))
            saved.write_text(json.dumps(made | {"rows": rows}, indent=1))
        jobs, load = made.get("jobs"), made.get("load")
        origin = (f"- Tables and figure redrawn with `--replot` from the measurements of "
                  f"`{made['command']}` (wall time {made['seconds']} s).\n")
    else:
        rows = measure(plan(setting), args.jobs)
        jobs, load = args.jobs, os.getloadavg()[0]
        saved.write_text(json.dumps({"command": _study.command_line(),
                                     "seconds": round(time.perf_counter() - started),
                                     "jobs": jobs, "load": load, "rows": rows}, indent=1))
    at_once = f"{jobs} at a time" if jobs else "several at a time"
    if load is not None:
        at_once += f", 1-min load average {load:.1f} when the last one ended"
    fig = out / f"{NAME}.png"
    figure(rows, fig)
    runs_dir = _study.RESULTS / "density_evolution_runs"
    body = f"""## Question

What does a spectral probe cost, in time, Hessian-vector products and memory, as the
model grows, as the Lanczos runs get longer and as the probe set grows, and what does one
probe per epoch add to an epoch of training?

## What we measured

- Each point is one measurement of `analyses.scale_bench`'s worker in a fresh process
  (one torch thread): CPU and wall time of the call, extra peak RSS (`ru_maxrss` above
  the resident memory after the model, the data and one warm-up product). One
  measurement per point, {at_once}. Wall times
  carry the load; CPU times less so, but they too grow on a busy machine (caches and
  memory bandwidth are shared), so compare points measured in one run.
- Models: the registry `mlp` (ReLU) with widths {', '.join('-'.join(map(str, w)) for w in MLP_WIDTHS) if not args.quick else 'of the quick setting'}
  on the 64 digit pixels, and the registry `cnn` (1×8×8 images); seed 0, untrained.
{origin}
![cost figure]({fig.name})

## Results

{tables(rows, setting)}

## Findings

{findings(rows, runs_dir)}
"""
    _study.write_results(out / f"{NAME}.md", TITLE, started, body, quick=args.quick)


if __name__ == "__main__":
    main()
