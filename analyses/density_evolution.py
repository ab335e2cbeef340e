"""Study 1 of issue #12: the Hessian eigenvalue density over training, every optimizer.

Claims tested (sources in the results file): early in training the spectrum has large
outliers and negative eigenvalues; later it concentrates near zero and the negative mass
shrinks (Ghorbani, Krishnan & Xiao 2019; Sagun et al. 2017); the number of outliers is
about the number of classes minus one (Papyan 2019; Sagun et al. 2017); batch norm
suppresses the outliers (Ghorbani et al. 2019, Sec. 4); LPSGD's motivation (its Fig. 1):
the anisotropy of the spectrum is strong early and weak late.

What runs: ``spectra compare`` itself (the CLI's code path: ``cli.main``, the trainer and
its ``SpectralMonitor``), one run file per (model variant, seed) holding one run per
optimizer, with each optimizer's registry default lr; the probes are read back with
``spectra.runs.read_runs`` and drawn with ``spectra.plots`` (``plot_evolution``, and its
``probe_curve``/``draw_lines`` for the small multiples). The run files are kept beside
the results (``<out>/density_evolution_runs/``) so ``--replot`` and study 6
(``analyses.spectra_cost``) read them.

    python -m analyses.density_evolution [--quick] [--data-dir DIR] [--out-dir DIR] [--jobs N]

With ``--data-dir`` holding MNIST or CIFAR-10 files (the data registry's standard
formats), the same protocol also runs on a seeded subset of each (``extra_subset``
training / test images; run files ``<set>_<variant>_seed<s>.h5``), reported in a
section of its own with its figure ``density_evolution_<set>.png``. CIFAR-100 is not
used: its C - 1 = 99 outliers are beyond the top-12 that test the C - 1 claim.

Definitions used in the table (per probe; each mean ± std over seeds):

* negative mass: the SLQ measure's weight on nodes below 0, and below ``-X_NEG``, averaged
  over the SLQ vectors (each vector's weights sum to 1: a fraction of the P eigenvalues);
* bulk edge and outliers: among the top-k Lanczos eigenvalues l_1 >= ... >= l_k, the last
  index j < k with l_j / l_{j+1} >= ``GAP`` (a gap of at least 50 %); the outliers are
  l_1..l_j (j of them; 0 when there is no such gap) and the bulk edge is l_{j+1}
  (l_1 when j = 0);
* anisotropy: l_1 / bulk edge, and l_1 / (trace / P) (the top eigenvalue over the mean
  eigenvalue, trace by Hutch++).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analyses import _study

NAME = "density_evolution"
TITLE = "Eigenvalue-density evolution: a small CNN on digits, every optimizer"

OPTIMIZERS = ("sgd", "sgdm", "adam", "lpsgd", "lpsgdm", "dcao", "calr", "smaran")
GAP = 1.5  # ratio l_j / l_{j+1} that separates the outliers from the bulk
X_NEG = 0.1  # the second negative-mass threshold: weight below -X_NEG
NUM_CLASSES = 10
# the --data-dir sets of this study: 10 classes, as digits (the C - 1 claim, top-12)
EXTRA = ("mnist", "cifar10")


@dataclass(frozen=True)
class Setting:
    """One study configuration (the full one, or ``--quick``'s)."""

    optimizers: tuple[str, ...]
    bn_optimizers: tuple[str, ...]  # also trained with batchnorm=true
    seeds: tuple[int, ...]
    epochs: int
    probe_samples: int
    top_k: int
    density: tuple[int, int]
    trace_matvecs: int
    table_epochs: tuple[int, ...]
    extra_subset: tuple[int, int] = (2000, 500)  # --data-dir sets: training / test images


FULL = Setting(OPTIMIZERS, ("sgdm", "adam"), (0, 1, 2), 6, 128, 12, (2, 40), 30, (0, 1, 2, 4, 6))
QUICK = Setting(("sgd", "adam"), ("sgd",), (0, 1, 2), 1, 64, 12, (2, 20), 10, (0, 1), (300, 100))

VARIANTS = {"plain": "false", "bn": "true"}  # model variant -> the cnn's batchnorm option


def run_file(runs_dir: Path, variant: str, seed: int, data: str = "digits") -> Path:
    prefix = "" if data == "digits" else f"{data}_"
    return runs_dir / f"{prefix}{variant}_seed{seed}.h5"


def data_args(data: str, sizes: tuple[int, int] | None) -> list[str]:
    """``--data`` and its options: digits as 1x8x8 images, or a ``--data-dir`` set (images
    by default) on its ``sizes`` = (training, test) subset."""
    if data == "digits":
        return ["--data", "digits", "--data-arg", "image=true"]
    if sizes is None:
        raise ValueError(f"{data}: the subset sizes are needed")
    return ["--data", data, "--data-arg", f"n_train={sizes[0]}", "--data-arg", f"n_test={sizes[1]}"]


def compare_args(setting: Setting, variant: str, seed: int, path: Path,
                 data_dir: Path | None, data: str = "digits",
                 sizes: tuple[int, int] | None = None) -> list[str]:
    """The ``spectra compare`` command line of one (variant, seed) on ``data``."""
    names = setting.optimizers if variant == "plain" else setting.bn_optimizers
    args = ["--threads", "1", "--quiet", "compare", "--optimizers", ",".join(names),
            "--model", "cnn", "--model-arg", f"batchnorm={VARIANTS[variant]}",
            *data_args(data, sizes), "--seed", str(seed),
            "--epochs", str(setting.epochs), "--probe-samples", str(setting.probe_samples),
            "--top-k", str(setting.top_k), "--density-vectors", str(setting.density[0]),
            "--density-steps", str(setting.density[1]),
            "--trace-matvecs", str(setting.trace_matvecs), "--checkpoint-every", "0",
            "-o", str(path)]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    return args


def train_all(setting: Setting, runs_dir: Path, data_dir: Path | None, jobs: int,
              data: str = "digits", sizes: tuple[int, int] | None = None) -> None:
    """Every (variant, seed) on ``data`` as its own ``spectra compare`` process, ``jobs``
    at a time (each with one torch thread); a failure stops the study with that
    process's error."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    todo = [(v, s) for v in VARIANTS for s in setting.seeds
            if (setting.optimizers if v == "plain" else setting.bn_optimizers)]
    running: list[tuple[str, int, subprocess.Popen, float]] = []
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    while todo or running:
        while todo and len(running) < jobs:
            v, s = todo.pop(0)
            path = run_file(runs_dir, v, s, data)
            path.unlink(missing_ok=True)
            cmd = [sys.executable, "-m", "cli.main",
                   *compare_args(setting, v, s, path, data_dir, data, sizes)]
            print("$ spectra " + " ".join(cmd[3:]), file=sys.stderr, flush=True)
            running.append((v, s, subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE,
                                                   stdout=subprocess.DEVNULL, text=True),
                            time.perf_counter()))
        time.sleep(0.5)
        for item in list(running):
            v, s, proc, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            err = proc.stderr.read() if proc.stderr else ""
            if proc.returncode != 0:
                for _, _, other, _ in running:
                    other.kill()
                raise SystemExit(f"spectra compare ({v}, seed {s}) failed:\n{err[-2000:]}")
            print(f"  done {v} seed {s} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
                  flush=True)


# ---------------------------------------------------------------------- quantities


def slq_mass_below(nodes: np.ndarray, weights: np.ndarray, x: float) -> float:
    """The SLQ measure's weight on nodes ``< x``, averaged over the vectors.

    ``nodes``, ``weights``: ``(n_v, m)``; NaN padding counts as no weight."""
    w = np.where(np.isfinite(weights) & np.isfinite(nodes), weights, 0.0)
    return float(np.mean(np.sum(w * (np.nan_to_num(nodes, nan=np.inf) < x), axis=1)))


def outliers(top: np.ndarray, gap: float = GAP) -> tuple[int, float]:
    """``(j, bulk edge)`` from the top-k eigenvalues (see the module docstring).

    ``top``: ``(k,)``, any order, NaN allowed (dropped)."""
    lam = np.sort(top[np.isfinite(top)])[::-1]
    if lam.size == 0:
        return 0, math.nan
    j = 0
    for i in range(lam.size - 1):
        if lam[i + 1] > 0 and lam[i] / lam[i + 1] >= gap:
            j = i + 1
    return j, float(lam[j] if j < lam.size else lam[-1])


@dataclass
class Row:
    """The quantities of one probe of one run."""

    optimizer: str
    variant: str
    seed: int
    epoch: float
    lam1: float
    lam_min: float
    trace: float
    neg0: float
    negx: float
    n_out: int
    edge: float
    aniso_edge: float
    aniso_mean: float
    probe_seconds: float
    matvecs: float


def rows_of(run, variant: str, seed: int) -> list[Row]:
    """:class:`Row` per probe of ``run`` (a :class:`spectra.runs.RunData`)."""
    p = run.probes
    P = int(run.config["num_params"])
    out = []
    for i in range(len(p)):
        top = np.asarray(p.top_eigenvalues[i], dtype=float)
        lam1 = float(np.nanmax(top))
        j, edge = outliers(top)
        tr = float(p.trace[i])
        nodes, weights = np.asarray(p.ritz_nodes[i]), np.asarray(p.ritz_weights[i])
        out.append(Row(
            optimizer=run.name, variant=variant, seed=seed, epoch=float(p.epoch[i]), lam1=lam1,
            lam_min=float(p.bottom_eigenvalue[i]), trace=tr,
            neg0=slq_mass_below(nodes, weights, 0.0), negx=slq_mass_below(nodes, weights, -X_NEG),
            n_out=j, edge=edge, aniso_edge=lam1 / edge if edge > 0 else math.nan,
            aniso_mean=lam1 / (tr / P) if tr > 0 else math.nan,
            probe_seconds=float(p.seconds[i]), matvecs=float(p.num_matvecs[i])))
    return out


def load(setting: Setting, runs_dir: Path, data: str = "digits") -> tuple[dict, list[Row]]:
    """``{(variant, seed): {optimizer: RunData}}`` and every probe's :class:`Row` (on
    ``data``)."""
    from spectra.runs import read_runs

    runs: dict = {}
    rows: list[Row] = []
    for v in VARIANTS:
        for s in setting.seeds:
            path = run_file(runs_dir, v, s, data)
            if not path.exists():
                continue
            runs[(v, s)] = read_runs(path)
            for r in runs[(v, s)].values():
                rows += rows_of(r, v, s)
    return runs, rows


def select(rows: list[Row], **kw) -> list[Row]:
    return [r for r in rows if all(getattr(r, k) == v for k, v in kw.items())]


# ---------------------------------------------------------------------- figures


def figure_epochs(setting: Setting) -> tuple[int, ...]:
    """The checkpoints a density figure draws: 0, 1, 3 and the last epoch (those run)."""
    return tuple(sorted({e for e in (0, 1, 3, setting.epochs) if e <= setting.epochs}))


def small_multiples(runs: list, epochs: tuple[float, ...], path: Path, title: str) -> None:
    """Ghorbani Fig. 1 style, one panel per run: log density against a linear eigenvalue
    axis, one curve per checkpoint in ``epochs``, the Lanczos top-k and smallest
    eigenvalues marked (``spectra.plots``' own curve and line helpers)."""
    import matplotlib

    from spectra.plots.data import density_rows
    from spectra.plots.density import probe_curve
    from spectra.plots.lines import draw_lines, sigma_label
    from spectra.plots.style import figure_legend, new_figure, save_figure, style

    ncols = 4 if len(runs) > 3 else len(runs)
    nrows = math.ceil(len(runs) / ncols)
    shades = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, len(epochs)))
    with style():
        fig = new_figure((3.6 * ncols, 3.0 * nrows + 0.8), (10.0, 6.0))
        grid = fig.subplots(nrows, ncols, squeeze=False)
        axes = list(grid.flat)
        for ax in axes[len(runs):]:
            ax.remove()
        for ax, run in zip(axes, runs, strict=False):
            d = density_rows(run, "epoch")
            curves = []
            for e, shade in zip(epochs, shades, strict=True):
                k = int(np.argmin(np.abs(d.time - e)))
                curves.append(probe_curve(d, k, tuple(shade), label=f"epoch {d.time[k]:g}"))
            drawn = draw_lines(fig, ax, curves)
            sigma_label(ax, drawn.sigma, drawn.scale)
            ax.set_title(run.name)
            ax.tick_params(labelsize=8)
        figure_legend(fig, axes[: len(runs)], ncols=len(epochs))
        fig.suptitle(title)
        save_figure(fig, path, dpi=110)


def summary_figure(rows: list[Row], setting: Setting, path: Path) -> None:
    """λ1, outliers, negative mass below -X_NEG and λ1/bulk edge against epoch, per
    optimizer (plain CNN; mean over seeds, the band ± std)."""
    import matplotlib

    from spectra.plots.style import figure_legend, new_figure, save_figure, style

    plain = select(rows, variant="plain")
    panels = [("lam1", "λ₁ (top eigenvalue)", "log"), ("n_out", "outliers (gap ≥ 1.5×)", "linear"),
              ("negx", f"SLQ mass below −{X_NEG:g}", "linear"),
              ("aniso_edge", "anisotropy λ₁ / bulk edge", "log")]
    colours = matplotlib.colormaps["tab10"](np.arange(len(setting.optimizers)))
    with style():
        fig = new_figure((11.0, 7.0), (11.0, 7.0))
        axes = list(fig.subplots(2, 2).flat)
        for ax, (key, label, scale) in zip(axes, panels, strict=True):
            for name, c in zip(setting.optimizers, colours, strict=True):
                group = select(plain, optimizer=name)
                epochs = sorted({r.epoch for r in group})
                vals = np.array([[getattr(r, key) for r in group if r.epoch == e] for e in epochs],
                                dtype=float)
                m, s = np.nanmean(vals, axis=1), np.nanstd(vals, axis=1, ddof=1)
                ax.plot(epochs, m, color=c, lw=1.4, marker="o", ms=3, label=name)
                lo = np.maximum(m - s, m / 3) if scale == "log" else m - s  # log: no band to 0
                ax.fill_between(epochs, lo, m + s, color=c, alpha=0.15, lw=0)
            if key == "n_out":
                ax.axhline(NUM_CLASSES - 1, color="k", ls=":", lw=1.0, label="C − 1 = 9")
            ax.set_yscale(scale)
            ax.set_ylabel(label)
            ax.set_xlabel("epoch")
        figure_legend(fig, axes, ncols=9)
        fig.suptitle(f"Spectral quantities over training, CNN on digits "
                     f"(mean ± std over {len(setting.seeds)} seeds)")
        save_figure(fig, path, dpi=110)


# ---------------------------------------------------------------------- tables and verdicts


def table(rows: list[Row], setting: Setting, variant: str, names: tuple[str, ...]) -> str:
    lines = [(f"| optimizer | epoch | λ₁ | λmin | trace | mass < 0 | mass < −{X_NEG:g} | bulk edge "
              "| outliers | λ₁ / edge | λ₁ / (trace/P) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    f = _study.fmt_mean_std
    for name in names:
        for e in setting.table_epochs:
            g = select(rows, variant=variant, optimizer=name, epoch=float(e))
            if not g:
                continue
            lines.append(
                f"| {name} | {e} | {f(r.lam1 for r in g)} | {f(r.lam_min for r in g)} "
                f"| {f(r.trace for r in g)} | {f(r.neg0 for r in g)} | {f(r.negx for r in g)} "
                f"| {f(r.edge for r in g)} | {f((r.n_out for r in g), digits=1, fixed=True)} "
                f"| {f(r.aniso_edge for r in g)} | {f(r.aniso_mean for r in g)} |")
    return "\n".join(lines)


def _mean(rows: list[Row], key: str) -> float:
    return _study.mean_std(getattr(r, key) for r in rows)[0]


def verdicts(rows: list[Row], setting: Setting) -> str:
    """The claims' verdicts with their numbers (per optimizer, plain CNN, seeds' means)."""
    plain = select(rows, variant="plain")
    last = float(setting.epochs)
    early = 1.0
    names = setting.optimizers
    f = _study.fmt_mean_std
    out = []

    # 1. early: large outliers and negative eigenvalues
    e_out = {n: [r.n_out for r in select(plain, optimizer=n, epoch=early)] for n in names}
    e_neg = {n: [r.lam_min for r in select(plain, optimizer=n, epoch=early)] for n in names}
    e_ratio = {n: [abs(r.lam_min) / r.lam1 for r in select(plain, optimizer=n, epoch=early)]
               for n in names}
    with_out = [n for n in names if np.mean(e_out[n]) >= 1]
    all_neg = all(max(v) < 0 for v in e_neg.values())
    w1 = ("reproduced" if len(with_out) == len(names) and all_neg else
          "partly" if with_out or all_neg else "not reproduced")
    out.append(
        f"1. **Early training has large outliers and negative eigenvalues** (Ghorbani et al. "
        f"2019, Fig. 1; Sagun et al. 2017). At epoch {early:g}, optimizers with ≥ 1 outlier "
        f"on average: {len(with_out)} of {len(names)} ({', '.join(with_out) or 'none'}); "
        f"λmin < 0 in every run: {'yes' if all_neg else 'no'}; |λmin|/λ₁ per optimizer: "
        + ", ".join(f"{n} {f(e_ratio[n], digits=2)}" for n in names) + f". **Verdict: {w1}.**")

    # 2. later: concentrates near zero, negative mass shrinks
    shrink_neg, shrink_ratio = [], []
    parts = []
    for n in names:
        a, b = select(plain, optimizer=n, epoch=early), select(plain, optimizer=n, epoch=last)
        na, nb = _mean(a, "negx"), _mean(b, "negx")
        ra = _study.mean_std(abs(r.lam_min) / r.lam1 for r in a)[0]
        rb = _study.mean_std(abs(r.lam_min) / r.lam1 for r in b)[0]
        shrink_neg.append(nb < na)
        shrink_ratio.append(rb < ra)
        parts.append(f"{n} {na:.3g} → {nb:.3g} (|λmin|/λ₁ {ra:.2g} → {rb:.2g})")
    k = sum(a and b for a, b in zip(shrink_neg, shrink_ratio, strict=True))
    w2 = "reproduced" if k == len(names) else "partly" if k or any(shrink_neg) else "not reproduced"
    out.append(
        f"2. **Later the spectrum concentrates near zero and the negative mass shrinks** "
        f"(Ghorbani et al. 2019; Sagun et al. 2017). SLQ mass below −{X_NEG:g} from epoch "
        f"{early:g} to {last:g}: " + "; ".join(parts)
        + f". Both shrink for {k} of {len(names)} optimizers. **Verdict: {w2}.**")

    # 3. outliers ~ C - 1
    at = {n: [r.n_out for r in select(plain, optimizer=n) if r.epoch >= 1] for n in names}
    med = {n: float(np.median(v)) for n, v in at.items() if v}
    near = [n for n, m in med.items() if abs(m - (NUM_CLASSES - 1)) <= 1]
    # an epoch at which every seed counts C - 1 +- 1 outliers
    sometimes = {}
    for n in names:
        for e in sorted({r.epoch for r in select(plain, optimizer=n) if r.epoch >= 1}):
            g = select(plain, optimizer=n, epoch=e)
            if g and all(abs(r.n_out - (NUM_CLASSES - 1)) <= 1 for r in g):
                sometimes[n] = e
                break
    w3 = ("reproduced" if len(near) == len(names) else "partly" if near or sometimes
          else "not reproduced")
    out.append(
        f"3. **About C − 1 = {NUM_CLASSES - 1} outliers** (Papyan 2019; Sagun et al. 2017). "
        f"Median outlier count over epochs ≥ 1 and seeds: "
        + ", ".join(f"{n} {m:g}" for n, m in med.items())
        + f"; within 9 ± 1 for {len(near)} of {len(names)}. Every seed within 9 ± 1 at some "
        "epoch: " + (", ".join(f"{n} (epoch {e:g})" for n, e in sometimes.items()) or "none")
        + f". **Verdict: {w3}.**")

    # 4. batch norm suppresses the outliers
    bn_parts, bn_names, lower, fewer = [], [], [], []
    for n in setting.bn_optimizers:
        a = [r for r in select(plain, optimizer=n) if r.epoch >= 1]
        b = [r for r in select(rows, variant="bn", optimizer=n) if r.epoch >= 1]
        if not b:
            continue
        bn_names.append(n)
        lower.append(_mean(b, "aniso_edge") < _mean(a, "aniso_edge"))
        fewer.append(_mean(b, "n_out") < _mean(a, "n_out"))
        bn_parts.append(f"{n}: λ₁/edge {_mean(a, 'aniso_edge'):.3g} → {_mean(b, 'aniso_edge'):.3g}, "
                        f"outliers {_mean(a, 'n_out'):.2g} → {_mean(b, 'n_out'):.2g}, "
                        f"λ₁ {_mean(a, 'lam1'):.3g} → {_mean(b, 'lam1'):.3g}")
    # the outliers' size (how far lambda_1 stands from the bulk) and their number: both
    # lower for every optimizer reproduces it, either lower for any, partly
    both = [x and y for x, y in zip(lower, fewer)]
    w4 = ("reproduced" if both and all(both) else "partly" if any(lower) or any(fewer)
          else "not reproduced")
    out.append(
        "4. **Batch norm suppresses the outliers** (Ghorbani et al. 2019, Sec. 4). Means over "
        "epochs ≥ 1 and seeds, without → with batch norm: " + "; ".join(bn_parts)
        + f". With batch norm, λ₁/edge (the outliers' size) is lower for {sum(lower)} of "
        f"{len(lower)} and the outlier count lower for {sum(fewer)} of {len(fewer)}"
        + (" (" + ", ".join(n for n, f in zip(bn_names, fewer) if f) + ")"
           if any(fewer) else "")
        + "; measured on the eval-mode Hessian (see the protocol), not the training-mode "
        f"one the optimizer follows. **Verdict: {w4}.**")

    # 5. anisotropy strong early, weak late
    parts, weaker = [], []
    for n in names:
        a, b = select(plain, optimizer=n, epoch=early), select(plain, optimizer=n, epoch=last)
        ea, eb = _mean(a, "aniso_edge"), _mean(b, "aniso_edge")
        ma, mb = _mean(a, "aniso_mean"), _mean(b, "aniso_mean")
        weaker.append(eb < ea and mb < ma)
        parts.append(f"{n} λ₁/edge {ea:.3g} → {eb:.3g}, λ₁/(tr/P) {ma:.3g} → {mb:.3g}")
    w5 = ("reproduced" if all(weaker) else "partly" if any(weaker) else "not reproduced")
    out.append(
        f"5. **Anisotropy is strong early and weak late** (LPSGD paper, Fig. 1 and its "
        f"motivation). Epoch {early:g} → {last:g}: " + "; ".join(parts)
        + f". Both ratios fall for {sum(weaker)} of {len(names)}. **Verdict: {w5}.**")
    return "\n\n".join(out)


def timing_note(rows: list[Row], runs: dict) -> str:
    """Probe seconds against an epoch's training seconds, from the runs' own tables."""
    probe = [r.probe_seconds for r in rows]
    mv = [r.matvecs for r in rows]
    train = [float(s) for rr in runs.values() for run in rr.values()
             for s, e in zip(run.metrics.seconds, run.metrics.epoch, strict=True) if e >= 1]
    return (f"Probe cost (the monitor's own timing, every probe of every run): "
            f"{_study.fmt_mean_std(probe)} s and {_study.fmt_mean_std(mv)} Hessian-vector "
            f"products per probe, against {_study.fmt_mean_std(train)} s per training epoch "
            f"(processes running side by side on a loaded machine; study 6, "
            f"`analyses.spectra_cost`, measures the ratio on its own).")


def main(argv: list[str] | None = None) -> None:
    p = _study.parser(f"analyses.{NAME}", TITLE)
    p.add_argument("--jobs", type=int, default=6,
                   help="spectra compare processes at once (one torch thread each)")
    p.add_argument("--replot", action="store_true",
                   help="redraw figures and tables from the run files already there")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    torch.set_num_threads(1)
    started = time.perf_counter()
    setting = QUICK if args.quick else FULL
    out = _study.out_dir(args)
    runs_dir = out / f"{NAME}_runs"
    made = runs_dir / "made_by.json"  # the command and training wall time behind the runs
    if not args.replot:
        train_all(setting, runs_dir, args.data_dir, args.jobs)
        made.write_text(json.dumps({"command": _study.command_line(),
                                    "train_seconds": round(time.perf_counter() - started)}))
    origin = ""
    if args.replot and made.exists():
        info = json.loads(made.read_text())
        origin = (f"- Tables and figures redrawn with `--replot` from the run files made by "
                  f"`{info['command']}` (training wall time {info['train_seconds']} s).\n")
    found = _study.study_datasets(args, out, NAME)
    extra = [n for n in found if n in EXTRA]
    sections = [extra_section(setting, args, out, runs_dir, name) for name in extra]
    runs, rows = load(setting, runs_dir)
    s0 = setting.seeds[0]
    ep = figure_epochs(setting)
    fig1 = out / f"{NAME}.png"
    small_multiples([runs[("plain", s0)][n] for n in setting.optimizers], ep, fig1,
                    f"Hessian eigenvalue density over training, CNN on digits (seed {s0})")
    fig_bn = out / f"{NAME}_batchnorm.png"
    bn_runs = [dataclasses.replace(runs[(v, s0)][n], name=f"{n}, {'batch norm' if v == 'bn' else 'no batch norm'}")
               for n in setting.bn_optimizers for v in VARIANTS]
    small_multiples(bn_runs, ep, fig_bn,
                    f"Without and with batch norm, CNN on digits (seed {s0})")
    from spectra.plots import plot_evolution
    from spectra.plots.style import save_figure

    heat_name = "sgdm" if "sgdm" in setting.optimizers else setting.optimizers[0]
    fig_heat = out / f"{NAME}_heatmap.png"
    save_figure(plot_evolution(runs[("plain", s0)][heat_name], kind="heatmap"), fig_heat, dpi=110)
    fig_sum = out / f"{NAME}_summary.png"
    summary_figure(rows, setting, fig_sum)

    cfg = next(iter(runs[("plain", s0)].values())).config
    lrs = ", ".join(f"{n} {runs[('plain', s0)][n].config['optimizer']['hyperparameters']['lr']:g}"
                    for n in setting.optimizers)
    cmds = "\n".join(f"    spectra {' '.join(compare_args(setting, v, s, run_file(Path(runs_dir.name), v, s), args.data_dir)[3:])}"
                     for v in VARIANTS for s in setting.seeds[:1])
    data_line = _study.data_note(args, found) + (
        " (This study takes MNIST and CIFAR-10 from `--data-dir`, not CIFAR-100: its "
        "C − 1 = 99 outliers are beyond the top-12 that test claim 3.)")
    body = f"""{data_line}

## Claims

1. Early in training the Hessian has large outliers and negative eigenvalues (Ghorbani,
   Krishnan & Xiao 2019, "An investigation into neural net optimization via Hessian
   eigenvalue density", Fig. 1; Sagun, Evci, Güney, Dauphin & Bottou 2017).
2. Later the spectrum concentrates near zero and the negative mass shrinks (same sources).
3. The number of outliers is about the number of classes minus one, C − 1 = 9 (Papyan
   2019, "Measurements of three-level hierarchical structure in the outliers in the
   spectrum of deepnet Hessians"; Sagun et al. 2017).
4. Batch norm suppresses the outliers (Ghorbani et al. 2019, Sec. 4).
5. The spectrum's anisotropy is strong early in training and weak late (the LPSGD
   paper's motivation, its Fig. 1).

## What we measured

- `spectra compare` (the CLI's own code path) on the registry `cnn` ({cfg['num_params']:,}
  parameters without batch norm; conv 16, conv 32, hidden 64) on digits as 1×8×8 images
  ({cfg['num_train']} training samples), {setting.epochs} epochs of batch 64, seeds
  {list(setting.seeds)} (initialization, batch order, probes); every optimizer at its
  registry default lr ({lrs}). With `batchnorm=true` (BatchNorm before each hidden
  activation): {', '.join(setting.bn_optimizers)}.
{origin}- Each epoch (and at initialization) the monitor probes the Hessian of the cross-entropy
  on the first {setting.probe_samples} training samples, in eval mode (batch norm on its
  running statistics): top-{setting.top_k} and the smallest eigenvalue (Lanczos, tol
  1e-3), the Hutch++ trace ({setting.trace_matvecs} products) and SLQ
  ({setting.density[0]} vectors × {setting.density[1]} steps).
- Seed {s0}'s commands (the other seeds differ only in `--seed` and the file):

{cmds}

- Batch norm: the monitor probes in eval mode, so its Hessian is that of the network with
  batch norm on its running statistics (a fixed affine map per feature), not the Hessian
  of the training loss computed with each batch's statistics that the optimizer follows.
- Definitions: negative mass = SLQ weight on nodes < 0 and < −{X_NEG:g} (fraction of the
  P eigenvalues, mean over the SLQ vectors; below 0 it is dominated by the quadrature's
  nodes around 0, so −{X_NEG:g} is the reading we use); outliers = among the top-{setting.top_k}
  Lanczos eigenvalues l₁ ≥ … ≥ l_k, the count j before the last gap l_j / l_(j+1) ≥ {GAP:g}
  (0 when there is none; at most k − 1 = {setting.top_k - 1}); bulk edge = l_(j+1) (l₁
  when j = 0); anisotropy = l₁ / bulk edge and l₁ / (trace / P).
- {timing_note(rows, runs)}

![density over epochs, one panel per optimizer]({fig1.name})

![with and without batch norm]({fig_bn.name})

![heat map]({fig_heat.name})

![summary]({fig_sum.name})

## Results: CNN without batch norm (mean ± std over {len(setting.seeds)} seeds)

{table(rows, setting, "plain", setting.optimizers)}

## Results: CNN with batch norm

{table(rows, setting, "bn", setting.bn_optimizers)}

## Verdicts

Each verdict is read from means over {len(setting.seeds)} seeds; several cells of the tables
above have a seed std as large as their mean, and a change smaller than the std is not
resolved by these runs.

{verdicts(rows, setting)}
""" + "".join(sections)
    _study.write_results(out / f"{NAME}.md", TITLE, started, body, quick=args.quick)


def extra_section(setting: Setting, args: Any, out: Path, runs_dir: Path, name: str) -> str:
    """Train (unless ``--replot``) and report the protocol on the ``--data-dir`` set
    ``name``: its runs, figure ``<NAME>_<name>.png``, tables and verdicts."""
    label = _study.EXTRA_DATA[name]
    marker = out / f"{NAME}_{name}.json"  # what made the runs (and that they exist)
    s0 = setting.seeds[0]
    if not args.replot:
        t0 = time.perf_counter()
        ds = _study.load_subset(name, args.data_dir, *setting.extra_subset)
        sizes = (len(ds.train_y), len(ds.test_y))
        train_all(setting, runs_dir, args.data_dir, args.jobs, name, sizes)
        first = compare_args(setting, "plain", s0, run_file(Path(runs_dir.name), "plain", s0, name),
                             args.data_dir, name, sizes)[3:]
        marker.write_text(json.dumps({"command": _study.command_line(), "sizes": sizes,
                                      "first": "spectra " + " ".join(first),
                                      "train_seconds": round(time.perf_counter() - t0)}))
    info = json.loads(marker.read_text())
    sizes = tuple(info["sizes"])
    runs, rows = load(setting, runs_dir, name)
    ep = figure_epochs(setting)
    fig = out / f"{NAME}_{name}.png"
    small_multiples([runs[("plain", s0)][n] for n in setting.optimizers], ep, fig,
                    f"Hessian eigenvalue density over training, CNN on {label} (seed {s0})")
    cfg = next(iter(runs[("plain", s0)].values())).config
    return f"""
## {label} (from `--data-dir`)

The same protocol on a seeded subset of {label}: {sizes[0]} training and {sizes[1]} test
images (the registry CNN has {cfg['num_params']:,} parameters on them without batch norm;
training {info['train_seconds']} s). Seed {s0}'s first command:

    {info['first']}

![density over epochs on {label}]({fig.name})

### Results: CNN without batch norm (mean ± std over {len(setting.seeds)} seeds)

{table(rows, setting, "plain", setting.optimizers)}

### Results: CNN with batch norm

{table(rows, setting, "bn", setting.bn_optimizers)}

### Verdicts

{verdicts(rows, setting)}
"""


if __name__ == "__main__":
    main()
