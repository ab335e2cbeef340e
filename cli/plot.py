"""``spectra plot KIND``: figures of a run file (or of optimizers on a 2-D test function).

Each kind is a subcommand calling one function of :mod:`spectra.plots`; the format
(PNG, PDF or SVG) follows the output's suffix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from cli._build import optimizer_keys
from cli._errors import CLIError, first_line, handle_errors
from cli._options import parse_kv, split_opt_args
from cli._output import quiet
from cli._paths import check_figure_output

BY = click.Choice(("auto", "epoch", "step"))


def _save(fig, path: Path, dpi: int, what: str) -> None:
    from spectra.plots import save_figure

    save_figure(fig, path, dpi=dpi)
    if not quiet():
        click.echo(f"wrote {path} ({what})")


def _run_file_command(kind: str, help_text: str) -> Callable:
    """Decorator of a subcommand taking RUN_FILE, -o, --run, --title, --dpi."""

    def deco(fn: Callable) -> Callable:
        fn = click.option("--dpi", default=200, show_default=True, type=click.IntRange(min=20),
                          help="Resolution of PNGs (and of heat maps in PDF/SVG).")(fn)
        fn = click.option("--title", help="Figure title instead of the default.")(fn)
        fn = click.option("--run", "runs", multiple=True, metavar="NAME",
                          help="Run(s) to plot (repeatable)  [default: all runs of the file].")(fn)
        fn = click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
                          help="Figure file: .png, .pdf or .svg.")(fn)
        fn = click.argument("run_file", type=click.Path(exists=True, dir_okay=False))(fn)
        fn = handle_errors(fn)
        return plot.command(kind, help=help_text)(fn)

    return deco


@click.group()
def plot() -> None:
    """Figures of a run file: density evolution, sharpness, curves, hyperparameters.

    \b
    Examples:
      spectra plot evolution runs/demo.h5 -o figures/evolution.png
      spectra plot sharpness runs/cmp.h5 -o sharpness.pdf --run sgd --run dcao
      spectra plot curves runs/cmp.h5 -o curves.svg
      spectra plot trajectories rosenbrock -o rosenbrock.png --optimizers sgd,adam,calr
    """


@_run_file_command(
    "evolution",
    "Eigenvalue density over training: log-density heat map, eigenvalue (symlog) on x, "
    "epoch on y; one panel per run. Needs runs trained with --density.",
)
@click.option("--kind", type=click.Choice(("heatmap", "curves")), default="heatmap",
              show_default=True, help="Heat map, or one density curve per probe.")
@click.option("--by", type=BY, default="auto", show_default=True, help="Time axis.")
@click.option("--xscale", type=click.Choice(("symlog", "linear")), default="symlog",
              show_default=True, help="Eigenvalue axis.")
@click.option("--sigma", type=click.FloatRange(min=0, min_open=True),
              help="Smoothing width in eigenvalue units  [default: from the axis].")
def evolution(run_file, output, runs, title, dpi, kind, by, xscale, sigma):
    from spectra.plots import plot_evolution

    path = check_figure_output(output)
    fig = plot_evolution(run_file, list(runs) or None, kind=kind, by=by, xscale=xscale,
                         sigma=sigma, title=title)
    _save(fig, path, dpi, "eigenvalue density evolution")


@_run_file_command(
    "sharpness",
    "Top-k eigenvalues and the smallest one over training, with the 2/lr edge-of-stability "
    "line; one panel per run.",
)
@click.option("--by", type=BY, default="auto", show_default=True, help="Time axis.")
@click.option("--stability/--no-stability", default=True, show_default=True,
              help="Draw the 2/lr threshold.")
def sharpness(run_file, output, runs, title, dpi, by, stability):
    from spectra.plots import plot_sharpness

    path = check_figure_output(output)
    fig = plot_sharpness(run_file, list(runs) or None, by=by, stability=stability, title=title)
    _save(fig, path, dpi, "sharpness")


@_run_file_command(
    "curves", "Train and test loss and accuracy, one line per run (optimizer).")
@click.option("--by", type=BY, default="auto", show_default=True, help="Time axis.")
def curves(run_file, output, runs, title, dpi, by):
    from spectra.plots import plot_curves

    path = check_figure_output(output)
    fig = plot_curves(run_file, list(runs) or None, by=by, title=title)
    _save(fig, path, dpi, "loss and accuracy curves")


@_run_file_command(
    "hparams",
    "Learning rate, momentum and weight decay over training, with the curvature (λ1, gap) "
    "and DCAO's multipliers when recorded. One run: pass --run when the file has several.",
)
@click.option("--by", type=BY, default="step", show_default=True, help="Time axis.")
def hparams(run_file, output, runs, title, dpi, by):
    from spectra.plots import plot_hparams

    if len(runs) > 1:
        raise CLIError(f"hparams plots one run; got --run {', '.join(runs)}")
    path = check_figure_output(output)
    fig = plot_hparams(run_file, runs[0] if runs else None, by=by, title=title)
    _save(fig, path, dpi, "hyperparameters")


@_run_file_command(
    "density",
    "One probe's smoothed spectral density, with its Lanczos eigenvalues marked. One run: "
    "pass --run when the file has several.",
)
@click.option("--probe", "probe_index", default=-1, show_default=True, type=int,
              help="Which probe with a density (0: the first, -1: the last).")
@click.option("--xscale", type=click.Choice(("symlog", "linear")), default="symlog",
              show_default=True, help="Eigenvalue axis.")
@click.option("--sigma", type=click.FloatRange(min=0, min_open=True),
              help="Smoothing width in eigenvalue units  [default: from the axis].")
def density(run_file, output, runs, title, dpi, probe_index, xscale, sigma):
    from spectra.plots import plot_density

    if len(runs) > 1:
        raise CLIError(f"density plots one run; got --run {', '.join(runs)}")
    path = check_figure_output(output)
    fig = plot_density(run_file, runs[0] if runs else None, probe=probe_index, xscale=xscale,
                       sigma=sigma, title=title)
    _save(fig, path, dpi, "spectral density")


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
    import optim

    paths = {}
    for key in keys:
        if optim.available()[key].requires:
            raise CLIError(f"{key} needs a model ({', '.join(optim.available()[key].requires)}); "
                           "it cannot run on a test function")
        try:
            paths[key] = run(key, fn, steps=steps, start=point, **overrides[key])
        except Exception as exc:
            raise CLIError(f"{key}: {first_line(exc)}") from exc
    fig = plot_trajectories(fn, paths, title=title)
    _save(fig, path, dpi, f"{len(paths)} trajectories on {fn.name}")
    if not quiet():
        for key, t in paths.items():
            click.echo(f"  {key:<12} final f = {t.final_value:.4g}, distance to minimum "
                       f"{t.final_distance:.3g}")
