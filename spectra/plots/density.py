"""One smoothed spectral density on a log y axis: of a
:class:`~spectra.linalg.density.SpectralMeasure`, or of one probe of a run with its
Lanczos eigenvalues marked."""

from __future__ import annotations

import math
import os

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spectra.linalg.density import SpectralMeasure
from spectra.linalg.scales import DensityGrid, Rules, smooth_densities
from spectra.plots.axes import (
    DENSITY_LABEL,
    EIGENVALUE_LABEL,
    eigenvalue_range,
    set_eigenvalue_scale,
)
from spectra.plots.data import (
    DensityRows,
    density_rows,
    figure_title,
    measure_rules,
    one_run,
    run_title,
    time_kind,
)
from spectra.plots.style import FONT, SINGLE, new_figure, style
from spectra.runs import RunData

# (eigenvalues, colour, legend label) of vertical lines
_Marks = list[tuple[np.ndarray, str, str]]


def plot_density(
    source: SpectralMeasure | RunData | str | os.PathLike,
    name: str | None = None,
    *,
    probe: int = -1,
    sigma: float | None = None,
    grid: int | np.ndarray = 1000,
    xscale: str = "symlog",
    linthresh: float | None = None,
    decades: float = 8.0,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """One smoothed spectral density on a log y axis.

    Args:
        source: a :class:`~spectra.linalg.density.SpectralMeasure`, a run, or a ``.h5`` path
            (with ``name`` when the file holds several runs).
        probe: which probe of a run: an index into the probes that have a density
            (``-1``, the default: the last one).
        sigma, grid, xscale, linthresh, decades: as in
            :func:`~spectra.plots.evolution.plot_evolution`.

    For a run, its top eigenvalues and smallest eigenvalue of that probe (Lanczos)
    are marked with vertical lines.
    """
    if not (math.isfinite(decades) and decades > 0):
        raise ValueError(f"decades must be a positive number, got {decades!r}")
    if isinstance(source, SpectralMeasure):
        rules = measure_rules(source)
        base, run_list, marks = "Hessian eigenvalue density", [], []
    else:
        run = one_run(source, name)
        rows = density_rows(run, time_kind("auto", [(run.probes.step, run.probes.epoch)]))
        rules, base, marks = _probe(rows, probe)
        run_list = [run]
    sd = smooth_densities([rules], xscale=xscale, linthresh=linthresh, grid=grid, sigma=sigma)
    dgrid, (y,) = sd.grid, sd.values
    peak = float(np.max(y))
    if not (math.isfinite(peak) and peak > 0):
        raise ValueError("the density is zero or not finite everywhere; nothing to draw")
    floor = peak * 10.0**-decades
    with style():
        fig = new_figure(figsize, SINGLE)
        ax = fig.subplots()
        _draw(ax, dgrid, y, floor, marks)
        set_eigenvalue_scale(ax, sd.scale)
        ax.set_yscale("log")
        ax.set_ylim(floor, peak * 2.0)
        eigenvalue_range(fig, [ax], sd.scale, dgrid.edges[0], dgrid.edges[-1])
        ax.set_xlabel(EIGENVALUE_LABEL)
        ax.set_ylabel(DENSITY_LABEL)
        ax.tick_params(labelsize=FONT)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(marks) + 1,
                  frameon=False, handlelength=1.8, columnspacing=1.2)
        fig.suptitle(title if title is not None else figure_title(base, run_list))
    return fig


def _probe(rows: DensityRows, probe: int) -> tuple[Rules, str, _Marks]:
    """The rules of probe number ``probe`` among ``rows``, the figure's title, and its
    Lanczos eigenvalues to mark (top-k, smallest) where they are finite."""
    run, n = rows.run, len(rows.measures)
    if not -n <= probe < n:
        raise ValueError(
            f"probe={probe} is out of range: run {run.name!r} has {n} probes with a density"
        )
    row = int(rows.index[probe])
    p = run.probes
    epoch = float(p.epoch[row])
    when = f"epoch {epoch:g}" if math.isfinite(epoch) else f"step {int(p.step[row])}"
    base = f"Hessian eigenvalue density: {run_title(run)} at {when}"
    marks: _Marks = []
    if p.top_eigenvalues is not None:
        top = np.asarray(p.top_eigenvalues[row], dtype=np.float64)
        top = top[np.isfinite(top)]
        if top.size:
            marks.append((top, "C3", f"top-{top.size} eigenvalues (Lanczos)"))
    bottom = float(p.bottom_eigenvalue[row])
    if math.isfinite(bottom):
        marks.append((np.array([bottom]), "C0", "smallest eigenvalue (Lanczos)"))
    return rows.measures[probe], base, marks


def _draw(ax: Axes, dgrid: DensityGrid, y: np.ndarray, floor: float, marks: _Marks) -> None:
    """The density (shaded down to ``floor``) and the marked eigenvalues."""
    ax.fill_between(dgrid.centers, floor, np.maximum(y, floor), color="C0", alpha=0.15, lw=0)
    ax.plot(dgrid.centers, np.maximum(y, 0.5 * floor), color="C0", lw=1.3, label="SLQ density")
    for values, color, label in marks:
        for j, v in enumerate(values):
            ax.axvline(v, color=color, lw=0.8, ls="--", alpha=0.8,
                       label=label if j == 0 else None)
