"""Study 3 of issue #12: optimizers on the 2-D test functions (CALR Figs. 1-3 and 9-12,
SMARAN Fig. 1e).

Every registry optimizer that needs only the parameters runs on Rosenbrock, Himmelblau,
Beale and the saddle x^2 - y^2 from ``optim.testfunctions``' start points, through
``optim.testfunctions.run`` (the registry's optimizer and schedule, the analytic
gradient): once at its *paper default* lr (the class's default, where the registry's
tuned lr differs: CALR 1e-2, SMARAN 0.1, LPSGD 1e-3, Lion 1e-4, torch's 1e-3 for SGD
and Adam ...) and at each lr of ``analyses.testfunctions_table.LRS``, keeping the best.

CALR's two forms. The paper's algorithm (Eq. 5) divides by sqrt(v_hat + alpha H_t) + eps,
which ``optim.calr.CALR`` implements; its convergence proof (Steps 2-3) writes
sqrt(v_hat) + alpha H_t + eps. ``calr-proof`` below is CALR with that denominator,
registered in this process only, so both are shown.

The functions are deterministic and so is every optimizer here: there are no seeds
(a run repeats bit for bit); the study's spread is over lrs, not seeds.

    python -m analyses.synthetic [--quick] [--out-dir DIR]

``analyses.testfunctions_table`` (asserted by tests/optim/test_testfunctions.py) keeps
its own smaller table of the final values; this study adds the steps to a tolerance,
the gradient norms, Beale, the saddle, the proof form and the figures.
"""

from __future__ import annotations

import inspect
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import optim
from analyses import _study
from analyses.testfunctions_table import LRS
from optim import testfunctions
from optim.calr import CALR

NAME = "synthetic"
TITLE = "Optimizers on 2-D test functions: Rosenbrock, Himmelblau, Beale, saddle"
PROOF = "calr-proof"
TOL = 1e-6  # f - f* for the functions with minima
ESCAPE = -1.0  # the saddle: steps until f < -1 (|y| > 1 near x = 0)
MARGIN = 0.1  # "faster": at least 10 % fewer steps to the tolerance
CASES = ("rosenbrock", "himmelblau", "beale", "saddle")
# the paths drawn in the trajectory figures: the papers' comparisons (CALR's Figs. 1-3 and
# 9: Adam, Nadam, RMSProp against the CALR variants; SMARAN's Fig. 1e: SMARAN against them)
DRAWN = ("adam", "nadam", "rmsprop", "sgdm", "calr", "calr-clip", PROOF, "smaran")


class CALRProofForm(CALR):
    """CALR with the denominator of the paper's convergence proof,
    sqrt(v_hat) + alpha H_t + eps, instead of Eq. 5's sqrt(v_hat + alpha H_t) + eps
    (same arguments and state as :class:`optim.calr.CALR`; no clipping variant here)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params, grads, states = self._params_with_grad(group, self._init_state)
            beta1, beta2 = group["betas"]
            for p, g, s in zip(params, grads, states, strict=True):
                s["step"] += 1
                t = s["step"]
                s["exp_avg"].mul_(beta1).add_(g, alpha=1.0 - beta1)
                s["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                m_hat = s["exp_avg"] / (1.0 - beta1**t)
                v_hat = s["exp_avg_sq"] / (1.0 - beta2**t)
                denom = v_hat.sqrt() + group["alpha"] * (g.abs() + group["delta"]) + group["eps"]
                s["denom"] = denom
                p.addcdiv_(m_hat, denom, value=-group["lr"])
        return loss


def register_proof_form() -> None:
    """Register ``calr-proof`` (once per process) so that ``testfunctions.run`` takes it."""
    if PROOF not in optim.available():
        optim.register(PROOF, CALRProofForm,
                       "CALR with the proof's denominator sqrt(v_hat) + alpha H + eps "
                       "(analyses.synthetic)", defaults={"lr": 1e-2})


def names() -> list[str]:
    """The registry names that need only the parameters, CALR's proof form last."""
    register_proof_form()
    return [n for n, info in optim.available().items() if not info.requires]


def paper_lr(name: str) -> float:
    """The lr of the optimizer's class signature (its paper's, or torch's default)."""
    opt = optim.create(name, [torch.nn.Parameter(torch.zeros(2))])
    default = inspect.signature(type(opt)).parameters["lr"].default
    return float(default) if default is not inspect.Parameter.empty else float(
        optim.available()[name].defaults["lr"])


@dataclass(frozen=True)
class Result:
    """One run's summary: final value, distance (nan: saddle), steps to the tolerance
    (None: not reached), its trajectory and gradient norms per step."""

    name: str
    lr: float
    final: float
    distance: float
    steps_to_tol: int | None
    trajectory: testfunctions.Trajectory
    grad_norm: np.ndarray


def evaluate(name: str, function: str, steps: int, lr: float) -> Result:
    traj = testfunctions.run(name, function, steps=steps, lr=lr)
    fn = traj.function
    values = traj.values.numpy()
    grad = fn.gradient(traj.points).norm(dim=-1).numpy()
    if fn.minima:
        hit = np.flatnonzero(values < TOL)
    else:
        hit = np.flatnonzero(values < ESCAPE)
    final = float(values[-1])
    dist = traj.final_distance if fn.minima else math.nan
    if not math.isfinite(final):
        final, dist = math.inf, math.inf
    return Result(name, lr, final, dist, int(hit[0]) if hit.size else None, traj, grad)


def _key(r: Result, saddle: bool) -> tuple:
    """Best run: saddle: the lowest final value; others: smallest distance, then loss."""
    if saddle:
        return (r.final if math.isfinite(r.final) else math.inf, r.lr)
    return (r.distance, r.final, r.lr)


def study(function: str, steps: int, lrs: tuple[float, ...], which: list[str]
          ) -> dict[str, tuple[Result, Result]]:
    """Per optimizer: (run at the paper lr, best run of the sweep)."""
    out = {}
    saddle = function == "saddle"
    for name in which:
        at_paper = evaluate(name, function, steps, paper_lr(name))
        sweep = [evaluate(name, function, steps, lr) for lr in lrs]
        out[name] = (at_paper, min(sweep, key=lambda r: _key(r, saddle)))
    return out


def _fmt(x: float) -> str:
    return "diverged" if math.isinf(x) else ("—" if math.isnan(x) else f"{x:.2e}")


def _steps(n: int | None) -> str:
    return "not reached" if n is None else str(n)


def table(function: str, res: dict[str, tuple[Result, Result]]) -> str:
    saddle = function == "saddle"
    crit = f"steps to f < {ESCAPE:g}" if saddle else f"steps to f < {TOL:g}"
    dist = "" if saddle else " distance |"
    lines = [f"| optimizer | paper lr | final f |{dist} {crit} | tuned lr | final f |{dist} {crit} |",
             "|---|---|---|" + ("" if saddle else "---|") + "---|---|---|" + ("" if saddle else "---|") + "---|"]
    for name, (a, b) in res.items():
        cells = [name]
        for r in (a, b):
            cells += [f"{r.lr:g}", _fmt(r.final)] + ([] if saddle else [_fmt(r.distance)])
            cells.append(_steps(r.steps_to_tol))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# the curves figure's columns: one family of optimizers each (others join the last)
FAMILIES = (("CALR (Eq. 5 and the proof form)",
             ("calr", "calr-clip", "calr-cosine", "calr-clip-cosine", PROOF)),
            ("Adam family", ("adam", "adamw", "nadam", "radam", "rmsprop")),
            ("SGD family", ("sgd", "sgdm", "lpsgd", "lpsgdm")),
            ("SMARAN and Lion", ("smaran", "lion")))
OSCILLATES = 4.0  # roughness / net change of log10 f above which a curve oscillates
WINDOW = 25  # steps of the rolling min and max that stand for an oscillating curve


def families(names: list[str]) -> list[tuple[str, list[str]]]:
    """``names`` grouped by :data:`FAMILIES` (in that order; empty groups dropped, names
    in no family added to the last group)."""
    known = {n for _, members in FAMILIES for n in members}
    groups = [(title, [n for n in members if n in names]) for title, members in FAMILIES]
    groups[-1][1].extend(n for n in names if n not in known)
    return [(t, g) for t, g in groups if g]


def oscillates(values: np.ndarray) -> bool:
    """Whether a loss curve oscillates: its :func:`roughness` (total variation of log10 f)
    is more than :data:`OSCILLATES` times its net range (max - min of log10 f); a
    diverged run does not count (it is drawn as it is)."""
    v = np.log10(np.maximum(np.abs(values), 1e-30))
    if not np.all(np.isfinite(v)):
        return False
    return roughness(values) > OSCILLATES * max(float(v.max() - v.min()), 1e-12)


def rolling_range(values: np.ndarray, window: int = WINDOW
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, min, max)`` of ``values`` ``(n,)`` over the ``window`` steps centred on
    each step (fewer at the two ends, where the window is cut at the run's first and
    last step); all three ``(n,)``."""
    from numpy.lib.stride_tricks import sliding_window_view

    half = window // 2
    padded = np.pad(np.asarray(values, dtype=float), (half, window - 1 - half),
                    constant_values=np.nan)
    w = sliding_window_view(padded, window)
    return np.arange(len(values)), np.nanmin(w, axis=1), np.nanmax(w, axis=1)


def curves_figure(function: str, res: dict[str, tuple[Result, Result]], path: Path) -> None:
    """Loss (f - f*, log; the saddle: f, symlog) and gradient norm against steps, each
    optimizer at its tuned lr (CALR Figs. 1-3, 10-11), one column per family of
    optimizers (:data:`FAMILIES`) on shared axes. A curve (loss or gradient norm) that
    oscillates (:func:`oscillates`; not on the saddle, whose f crosses 0) is drawn as its
    :data:`WINDOW`-step rolling max (the level it keeps returning to) over a faint band
    down to the rolling min, instead of the raw zigzag."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from spectra.plots.style import style

    saddle = function == "saddle"
    groups = families(list(res))
    colours = plt.get_cmap("tab10")
    lines = ["-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1))]
    any_rough = False
    with style():
        fig, axes = plt.subplots(2, len(groups), figsize=(4.1 * len(groups), 7.8),
                                 sharex=True, sharey="row", squeeze=False, layout="constrained")
        for c, (title, members) in enumerate(groups):
            top, bottom = axes[0, c], axes[1, c]
            for i, name in enumerate(members):
                r = res[name][1]
                v = r.trajectory.values.numpy()
                g = np.maximum(r.grad_norm, 1e-30)
                steps = np.arange(len(v))
                loss = v if saddle else np.maximum(v, 1e-30)
                kw = {"color": colours(i % 10), "ls": lines[i % len(lines)]}
                rough = {ax: not saddle and len(y) >= WINDOW and oscillates(y)
                         for ax, y in ((top, v), (bottom, g))}
                any_rough |= any(rough.values())
                label = f"{name} (lr {r.lr:g})" + (", oscillates *" if any(rough.values()) else "")
                for ax, y in ((top, loss), (bottom, g)):
                    lab = label if ax is top else None
                    if rough[ax]:
                        x, lo, hi = rolling_range(y)
                        ax.fill_between(x, lo, hi, color=kw["color"], alpha=0.12, lw=0)
                        ax.plot(x, hi, lw=1.5, **kw, label=lab)
                    else:
                        ax.plot(steps, y, lw=1.5, **kw, label=lab)
            top.set_title(title, fontsize=10)
            bottom.set_xlabel("step")
            bottom.legend(*top.get_legend_handles_labels(), loc="upper center",
                          bbox_to_anchor=(0.5, -0.16), fontsize=7.5, frameon=False,
                          handlelength=3.0)
        if saddle:  # runs that escape exponentially would squash the others: clip
            axes[0, 0].set_yscale("symlog", linthresh=1e-2)
            axes[0, 0].set_ylim(-1e6, 10)
            axes[0, 0].set_ylabel("f(x, y) = x² − y²  (axis clipped at −1e6)")
            axes[1, 0].set_ylim(1e-3, 1e6)
            axes[1, 0].set_ylabel("‖∇f‖  (axis clipped at 1e6)")
        else:
            axes[0, 0].set_yscale("log")
            axes[0, 0].set_ylabel("f(x, y) − f*  (floored at 1e-30)")
            axes[1, 0].set_ylabel("‖∇f‖  (floored at 1e-30)")
        axes[1, 0].set_yscale("log")
        if any_rough:
            fig.supxlabel(f"* a curve that oscillates is drawn as its maximum over the {WINDOW} "
                          "steps around each step (line) above a band down to its minimum over "
                          "the same steps", fontsize=8)
        pretty = function[:1].upper() + function[1:]
        fig.suptitle(f"{pretty} from {res[next(iter(res))][1].trajectory.points[0].tolist()}: "
                     "every optimizer at its best lr of the sweep; loss (top) and gradient "
                     "norm (bottom) against steps")
        fig.savefig(path, dpi=110)
        plt.close(fig)


def roughness(values: np.ndarray) -> float:
    """Total variation of log10 (f - f*), floored at 1e-30: how much a loss curve
    oscillates; inf for a run that diverged."""
    v = np.log10(np.maximum(np.abs(values), 1e-30))
    return float(np.abs(np.diff(v)).sum()) if np.all(np.isfinite(v)) else math.inf


def trajectories_figure(function: str, res: dict[str, tuple[Result, Result]], path: Path) -> None:
    """``spectra.plots.plot_trajectories`` of the papers' comparison set at the tuned lrs."""
    from spectra.plots import plot_trajectories

    drawn = {n: res[n][1] for n in DRAWN if n in res}
    fig = plot_trajectories(testfunctions.get_function(function),
                            {n: r.trajectory for n, r in drawn.items()},
                            lr={n: r.lr for n, r in drawn.items()}, figsize=(10.0, 6.5))
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args = _study.parser(f"analyses.{NAME}", TITLE).parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    out = _study.out_dir(args)
    steps = 100 if args.quick else 1000
    lrs = (1e-3, 1e-2, 1e-1) if args.quick else LRS
    which = names()
    if args.quick:
        which = [n for n in which if n in DRAWN]
    results = {}
    for function in CASES:
        results[function] = study(function, steps, lrs, which)
        curves_figure(function, results[function], out / f"{NAME}_{function}.png")
        trajectories_figure(function, results[function], out / f"{NAME}_{function}_paths.png")
        print(f"{function}: done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    _study.write_results(out / f"{NAME}.md", TITLE, started,
                         report(results, steps, lrs), quick=args.quick)


def report(results: dict, steps: int, lrs: tuple[float, ...]) -> str:
    grid = ", ".join(f"{lr:g}" for lr in lrs)
    starts = {f: testfunctions.get_function(f).starts[0] for f in CASES}
    parts = [
        "## Claims", "",
        ("- CALR (calr.txt, Figs. 1-3 and 9-11): on Rosenbrock, Himmelblau and the saddle "
        "x² − y², CALR converges faster and more stably than Adam, Nadam and RMSProp."),
        ("- SMARAN (smaran.txt, Sec. 3 and Fig. 1e): on Beale, in 100 steps, SMARAN's loss-driven "
        "step size converges faster than the gradient-normalizing optimizers."), "",
        "## What we measured", "",
        "- Start points (`optim.testfunctions`): " + ", ".join(
            f"{f} {tuple(starts[f])}" for f in CASES) + ". The CALR paper gives none (its "
        "code's Rosenbrock start is (-1.2, 1)); SMARAN's Fig. 1e does not state Beale's.",
        (f"- {steps} steps per run; every optimizer at its paper lr (the class default) and "
        f"at each lr of {{{grid}}}, other hyperparameters at the papers' values; tuned = "
        "the smallest final distance to the nearest minimum (then lower f), on the saddle the "
        "lowest final f."),
        (f"- Steps to a tolerance: the first step with f < {TOL:g} (f* = 0), on the saddle "
        f"with f < {ESCAPE:g} (escaped along y)."),
        ("- CALR's proof form (`calr-proof`: sqrt(v̂) + αH + ε) beside Eq. 5 (`calr`: "
        "sqrt(v̂ + αH) + ε), both with α = 0.1."),
        "- Deterministic: no seeds (every run repeats bit for bit).", "",
    ]
    for f in CASES:
        parts += [f"## {f}", "", f"![{f} loss and gradient norm]({NAME}_{f}.png)",
                  f"![{f} trajectories]({NAME}_{f}_paths.png)", "", table(f, results[f]), ""]
    parts += [verdicts(results)]
    return "\n".join(parts)


def _steps_key(r: Result) -> float:
    return math.inf if r.steps_to_tol is None else r.steps_to_tol


def verdicts(results: dict) -> str:
    """Computed from the tables: CALR (best of calr's two lrs runs: tuned) against the
    best of Adam, Nadam, RMSProp (tuned) in steps to the tolerance, per function."""
    lines = ["## Verdicts", ""]
    rivals = ("adam", "nadam", "rmsprop")
    wins = []
    for f in ("rosenbrock", "himmelblau", "saddle"):
        res = results[f]
        if "calr" not in res or not all(n in res for n in rivals):
            continue
        calr = min((res[n][1] for n in ("calr", "calr-clip", "calr-cosine", "calr-clip-cosine",
                                          PROOF) if n in res), key=_steps_key)
        best = min((res[n][1] for n in rivals), key=_steps_key)
        # faster: at least MARGIN fewer steps; a closer finish is a tie, not a win
        won = _steps_key(calr) < (1.0 - MARGIN) * _steps_key(best)
        wins.append(won)
        eq5 = res["calr"][1]
        paper = {n: res[n][0] for n in ("calr", *rivals)}
        lines.append(
            f"- {f}: fastest CALR variant {calr.name} (lr {calr.lr:g}) "
            f"{_steps(calr.steps_to_tol)} steps vs the fastest of Adam/Nadam/RMSProp "
            f"{best.name} (lr {best.lr:g}) {_steps(best.steps_to_tol)} (Eq. 5's calr alone: lr "
            f"{eq5.lr:g}, {_steps(eq5.steps_to_tol)}); at the paper lrs: "
            + ", ".join(f"{n} {_steps(r.steps_to_tol)}" for n, r in paper.items())
            + f" → CALR {'faster' if won else 'not faster'}.")
    word = ("reproduced" if wins and all(wins) else "partly reproduced" if any(wins)
            else "not reproduced")
    lines += ["", (f"**CALR claim: {word}** (CALR counted faster when some CALR variant, at its "
              f"tuned lr, reaches the tolerance in at least {MARGIN:.0%} fewer steps than each "
              "of Adam, Nadam, RMSProp at theirs; reproduced = on all three functions)."), ""]
    if "beale" in results and "smaran" in results["beale"]:
        res = results["beale"]
        at100 = {n: float(r[1].trajectory.values[min(100, len(r[1].trajectory.values) - 1)])
                 for n, r in res.items()}
        order = sorted((v, n) for n, v in at100.items() if math.isfinite(v))
        rank = 1 + sum(v < at100["smaran"] for v, _ in order)
        word = "reproduced" if rank == 1 else "partly reproduced" if rank <= 3 else "not reproduced"
        lines += [f"**SMARAN claim (Beale, 100 steps): {word}**: f after 100 steps at the "
                  f"tuned lrs: SMARAN {at100['smaran']:.2e}, rank {rank} of {len(order)}; best "
                  + ", ".join(f"{n} {v:.2e}" for v, n in order[:3])
                  + " (reproduced = first; partly = top 3).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
