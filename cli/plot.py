"""``spectra plot KIND``: figures of a run file (or of optimizers on a 2-D test function).

Each kind is a subcommand calling one function of :mod:`spectra.plots`; the format
(PNG, PDF or SVG) follows the output's suffix.
"""

from __future__ import annotations

import functools
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import click

from cli._build import optimizer_keys
from cli._errors import CLIError, first_line, handle_errors, speak_cli
from cli._options import POSITIVE, parse_kv, split_opt_args
from cli._output import quiet
from cli._paths import check_figure_output

BY = click.Choice(("auto", "epoch", "step"))


def _save(fig, path: Path, dpi: int, what: str) -> None:
    from spectra.plots import save_figure

    save_figure(fig, path, dpi=dpi)
    if not quiet():
        click.echo(f"wrote {path} ({what})")


def literal(text: str | None) -> str | None:
    """``text`` (a run name, a --title) drawn as it is: matplotlib reads the text between
    two ``$`` as mathtext (``$\\frac{x$`` failed every plot with "error: \\frac{x
    (ValueError ...)"); an escaped ``\\$`` is drawn as ``$``."""
    return None if text is None else text.replace("$", r"\$")


def _literal_title(fn: Callable) -> Callable:
    """``fn`` given its ``title`` option :func:`literal`."""

    @functools.wraps(fn)
    def wrapper(*args, title: str | None = None, **kwargs):
        return fn(*args, title=literal(title), **kwargs)

    return wrapper


def _warnings_as_lines(fn: Callable) -> Callable:
    """``fn`` with the warnings of the figure functions (rows skipped, ...) printed as
    ``warning: ...`` lines on stderr, instead of Python's file:line and source form."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings(record=True) as caught:
            try:
                return fn(*args, **kwargs)
            finally:
                for w in caught:
                    click.echo(f"warning: {speak_cli(str(w.message))}", err=True)

    return wrapper


def _run_file_command(kind: str, help_text: str) -> Callable:
    """Decorator of a subcommand taking RUN_FILE..., -o, --run, --title, --dpi."""

    def deco(fn: Callable) -> Callable:
        fn = _literal_title(_warnings_as_lines(fn))
        fn = click.option("--dpi", default=200, show_default=True, type=click.IntRange(min=20),
                          help="Resolution of PNGs (and of heat maps in PDF/SVG).")(fn)
        fn = click.option("--title", help="Figure title instead of the default.")(fn)
        fn = click.option("--run", "runs", multiple=True, metavar="NAME",
                          help="Run(s) to plot (repeatable)  [default: all runs of the files].")(fn)
        fn = click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
                          help="Figure file: .png, .pdf or .svg.")(fn)
        fn = click.argument("run_files", metavar="RUN_FILE...", nargs=-1, required=True,
                            type=click.Path(exists=True, dir_okay=False))(fn)
        fn = handle_errors(fn)
        return plot.command(kind, help=help_text)(fn)

    return deco


def _load_runs(files: tuple[str, ...], names: tuple[str, ...]) -> list:
    """The runs of ``files`` (in order; a file given twice counts once), those named by
    ``--run`` when given. Runs of several files that share a name are told apart as
    ``FILE/NAME``, ``FILE`` the file's stem with as many of its folders as it takes to
    tell the files apart (:func:`file_labels`). The names are :func:`literal` (a ``$``
    in a name is drawn as it is, not as mathtext)."""
    from dataclasses import replace

    from spectra.runs import read_runs
    from spectra.utils.checks import did_you_mean

    unique = list(dict.fromkeys(Path(f).resolve() for f in files))  # a file given twice: once
    label = dict(zip(unique, file_labels(unique)))
    found = [(p, r) for p in unique for r in read_runs(p).values()]
    have = [r.name for _, r in found]
    for n in names:
        if n not in have:
            where = files[0] if len(files) == 1 else f"any of {', '.join(files)}"
            raise CLIError(f"--run {n}: no run of that name in {where}.{did_you_mean(n, have)} "
                           f"Runs: {', '.join(have) or 'none'}")
    if names:
        found = [(f, r) for f, r in found if r.name in names]
    if not found:
        raise CLIError(f"{', '.join(files)} hold{'s' if len(files) == 1 else ''} no runs; "
                       "nothing to plot")
    if len(unique) > 1:
        counts = Counter(r.name for _, r in found)
        found = [(f, replace(r, name=f"{label[f]}/{r.name}") if counts[r.name] > 1 else r)
                 for f, r in found]
    return [replace(r, name=literal(r.name)) if "$" in r.name else r for _, r in found]


def file_labels(paths: list[Path]) -> list[str]:
    """A short name for each of ``paths`` (distinct files) that tells it from the others:
    its stem, with as many of its folders in front as that takes (``seed0/cmp`` and
    ``seed1/cmp`` for ``runs/seed0/cmp.h5`` and ``runs/seed1/cmp.h5``)."""
    def labels(parts: list[tuple[str, ...]]) -> list[str]:
        out = []
        for i, mine in enumerate(parts):
            k = 1
            while k < len(mine) and any(j != i and other[-k:] == mine[-k:]
                                        for j, other in enumerate(parts)):
                k += 1
            out.append("/".join(mine[-k:]))
        return out

    # the folders and the stem, without the root ("/" would join in as "//")
    out = labels([p.with_suffix("").parts[1 if p.anchor else 0:] for p in paths])
    if len(set(out)) < len(out):  # files that differ by their suffix only: keep it
        out = labels([p.parts[1 if p.anchor else 0:] for p in paths])
    return out


def _one_run(files: tuple[str, ...], names: tuple[str, ...], kind: str):
    runs = _load_runs(files, names)
    if len(runs) > 1:
        raise CLIError(f"{kind} plots one run; {', '.join(files)} hold "
                       f"{', '.join(r.name for r in runs)}: pick one with --run NAME")
    return runs[0]


def _epochs(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CLIError(f"--epochs must be comma-separated numbers such as 0,2,12; got {text!r}") from None
    if not out:
        raise CLIError(f"--epochs names no epoch: {text!r}")
    return out


@click.group()
def plot() -> None:
    """Figures of run files: density evolution, density, sharpness, curves, hyperparameters.

    \b
    Examples:
      spectra plot evolution runs/demo.h5 -o figures/evolution.png --epochs 0,2,12
      spectra plot evolution runs/cmp.h5 --run sgdm --run dcao -o evolution.pdf
      spectra plot density runs/a.h5 runs/b.h5 -o density.png
      spectra plot sharpness runs/cmp.h5 -o sharpness.pdf --run sgd --run dcao
      spectra plot curves runs/cmp.h5 -o curves.svg
      spectra plot trajectories rosenbrock -o rosenbrock.png --optimizers sgd,adam,calr
    """


@_run_file_command(
    "evolution",
    "Eigenvalue density over training: log density against a linear eigenvalue axis, one "
    "curve per checkpoint (--epochs), every run of the files on one axis, the Lanczos "
    "eigenvalues marked; or (--kind heatmap) one heat map per run. Needs runs trained "
    "with --density.",
)
@click.option("--kind", "--style", "kind", type=click.Choice(("lines", "heatmap")),
              default="lines", show_default=True,
              help="Curves on one axis, or a heat map per run (eigenvalue x epoch).")
@click.option("--epochs", "epochs", metavar="E1,E2,...",
              help="Checkpoints to draw (lines), in units of --by  [default: the first, "
                   "the last and two between, spaced geometrically].")
@click.option("--by", type=BY, default="auto", show_default=True, help="Time axis.")
@click.option("--xscale", type=click.Choice(("linear", "symlog")),
              help="Eigenvalue axis  [default: linear for lines, symlog for the heat map].")
@click.option("--sigma", type=POSITIVE,
              help="Gaussian smoothing width in eigenvalue units  [default: from the "
                   "spectrum's width; stated on the figure].")
def evolution(run_files, output, runs, title, dpi, kind, epochs, by, xscale, sigma):
    from spectra.plots import plot_evolution

    path = check_figure_output(output)
    fig = plot_evolution(_load_runs(run_files, runs), kind=kind, epochs=_epochs(epochs),
                         by=by, xscale=xscale, sigma=sigma, title=title)
    _save(fig, path, dpi, "eigenvalue density evolution")


@_run_file_command(
    "sharpness",
    "Top-k eigenvalues and the smallest one over training, with the edge-of-stability "
    "line where theory gives one for the optimizer (2/lr for SGD, (2+2β)/lr for "
    "heavy-ball); one panel per run.",
)
@click.option("--by", type=BY, default="auto", show_default=True, help="Time axis.")
@click.option("--stability/--no-stability", default=True, show_default=True,
              help="Draw the stability threshold where there is one.")
def sharpness(run_files, output, runs, title, dpi, by, stability):
    from spectra.plots import plot_sharpness

    path = check_figure_output(output)
    fig = plot_sharpness(_load_runs(run_files, runs), by=by, stability=stability, title=title)
    _save(fig, path, dpi, "sharpness")


@_run_file_command(
    "curves", "Train and test loss and accuracy, one line per run (optimizer).")
@click.option("--by", type=BY, default="auto", show_default=True, help="Time axis.")
def curves(run_files, output, runs, title, dpi, by):
    from spectra.plots import plot_curves

    path = check_figure_output(output)
    fig = plot_curves(_load_runs(run_files, runs), by=by, title=title)
    _save(fig, path, dpi, "loss and accuracy curves")


@_run_file_command(
    "hparams",
    "What the optimizer used, at its own resolution: learning rate, momentum and weight "
    "decay per logged row (each step with `spectra train --log-every 1`), DCAO's "
    "curvature and multipliers per probe with their limits. One run: pass --run when "
    "the files hold several.",
)
@click.option("--by", type=BY, default="step", show_default=True, help="Time axis.")
def hparams(run_files, output, runs, title, dpi, by):
    from spectra.plots import plot_hparams

    path = check_figure_output(output)
    run = _one_run(run_files, runs, "hparams")
    fig = plot_hparams(run, by=by, multiplier_limits=_dcao_clamp(run.config), title=title)
    _save(fig, path, dpi, "hyperparameters")


def _dcao_clamp(config) -> tuple[float, float] | None:
    """The clamp of DCAO's multipliers for a run of DCAO (its controller's, as the
    config sets it or by default); None for other optimizers."""
    opt = config.get("optimizer")
    name = opt.get("name") if isinstance(opt, dict) else opt
    if not (isinstance(name, str) and name.lower().startswith("dcao")):
        return None
    from optim.dcao_controller import DCAOController

    hp = opt.get("hyperparameters", {}) if isinstance(opt, dict) else {}
    lo, hi = hp.get("clip") or DCAOController().clip
    return float(lo), float(hi)


@_run_file_command(
    "density",
    "One probe's smoothed spectral density per run, every run of the files on one axis, "
    "their Lanczos eigenvalues marked.",
)
@click.option("--probe", "probe_index", default=-1, show_default=True, type=int,
              help="Which probe with a density (0: the first, -1: the last).")
@click.option("--xscale", type=click.Choice(("linear", "symlog")), default="linear",
              show_default=True, help="Eigenvalue axis.")
@click.option("--sigma", type=POSITIVE,
              help="Gaussian smoothing width in eigenvalue units  [default: from the "
                   "spectrum's width; stated on the figure].")
def density(run_files, output, runs, title, dpi, probe_index, xscale, sigma):
    from spectra.plots import plot_density

    path = check_figure_output(output)
    fig = plot_density(_load_runs(run_files, runs), probe=probe_index, xscale=xscale,
                       sigma=sigma, title=title)
    _save(fig, path, dpi, "spectral density")


@_run_file_command(
    "layers",
    "Each layer's (diagonal Hessian block's) lambda_1 and trace over training, with the "
    "whole Hessian's dashed; a row per run. Needs runs trained with --layers.",
)
@click.option("--by", type=BY, default="auto", show_default=True, help="Time axis.")
def layers(run_files, output, runs, title, dpi, by):
    from spectra.plots import plot_layers

    path = check_figure_output(output)
    fig = plot_layers(_load_runs(run_files, runs), by=by, title=title)
    _save(fig, path, dpi, "per-layer curvature")


@_run_file_command(
    "alignment",
    "The fraction of the full-batch and minibatch gradients in the top-k eigenspace over "
    "training, and one optimizer step's loss change split onto that space and its "
    "complement. Needs runs trained with --alignment.",
)
@click.option("--by", type=BY, default="auto", show_default=True, help="Time axis.")
def alignment(run_files, output, runs, title, dpi, by):
    from spectra.plots import plot_alignment

    path = check_figure_output(output)
    fig = plot_alignment(_load_runs(run_files, runs), by=by, title=title)
    _save(fig, path, dpi, "gradient alignment")


@plot.command("trajectories")
@click.argument("function", metavar="FUNCTION")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Figure file: .png, .pdf or .svg.")
@click.option("--optimizers", default="sgd,adam,calr", show_default=True,
              help="Comma-separated optimizer registry names.")
@click.option("--steps", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Optimizer steps per trajectory.")
@click.option("--opt-arg", multiple=True, metavar="[NAME.]KEY=VALUE",
              help="Hyperparameter for every optimizer (lr=0.01) or for one (sgd.lr=1e-3).")
@click.option("--start", metavar="X,Y", help="Start point  [default: the function's standard one].")
@click.option("--title", help="Figure title instead of the default.")
@click.option("--dpi", default=200, show_default=True, type=click.IntRange(min=20))
@handle_errors
def trajectories(function, output, optimizers, steps, opt_arg, start, title, dpi):
    """Optimizer trajectories on a 2-D test function over its contours.

    FUNCTION is rosenbrock, himmelblau, beale or saddle. Each optimizer runs
    from the same start point with its registry defaults and any --opt-arg.
    """
    from optim.testfunctions import FUNCTIONS, get_function, run
    from spectra.plots import plot_trajectories

    if function.lower() not in FUNCTIONS:
        raise CLIError(f"unknown test function {function!r}; expected one of "
                       f"{', '.join(FUNCTIONS)} (trajectories takes a function name, not a file)")
    fn = get_function(function)
    keys = optimizer_keys(optimizers)
    overrides = split_opt_args(opt_arg, keys)
    point = None
    if start is not None:
        vals = parse_kv((f"start={start}",), "--start")["start"]
        if not (isinstance(vals, tuple) and len(vals) == 2
                and all(isinstance(v, (int, float)) for v in vals)):
            raise CLIError(f"--start must be two numbers X,Y, got {start!r}")
        point = tuple(float(v) for v in vals)
    path = check_figure_output(output)
    import torch

    import optim

    paths, lrs = {}, {}
    for key in keys:
        if optim.available()[key].requires:
            raise CLIError(f"{key} needs a model ({', '.join(optim.available()[key].requires)}); "
                           "it cannot run on a test function")
        try:
            paths[key] = run(key, fn, steps=steps, start=point, **overrides[key])
            probe = torch.zeros(2, dtype=torch.float64, requires_grad=True)
            lrs[key] = float(optim.create_bundle(key, [probe], total_steps=steps, total_epochs=steps,
                                                 **overrides[key]).optimizer.param_groups[0]["lr"])
        except Exception as exc:
            raise CLIError(f"{key}: {first_line(exc)}") from exc
    fig = plot_trajectories(fn, paths, lr=lrs, title=literal(title))
    _save(fig, path, dpi, f"{len(paths)} trajectories on {fn.name}")
    if not quiet():
        for key, t in paths.items():
            click.echo(f"  {key:<12} lr {lrs[key]:.3g}, {steps} steps: {_outcome(t)}")


def _outcome(t) -> str:
    """How a test-function run ended, in words: diverged (at which step), or the final
    value and the distance to the nearest minimum (none for the saddle)."""
    import math

    finite = t.points.isfinite().all(dim=1)
    if not bool(finite.all()):
        step = int((~finite).nonzero()[0, 0])
        return f"diverged at step {step} (the iterate became NaN or Inf)"
    if not math.isfinite(t.final_value):
        return "diverged (the function value is not finite)"
    dist = t.final_distance
    where = (f", distance to the nearest minimum {dist:.3g}" if math.isfinite(dist)
             else " (the function has no minimum)")
    return f"final f = {t.final_value:.4g}{where}"
