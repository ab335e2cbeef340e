"""Smoothed spectral densities on a log y axis against a linear (or symlog) eigenvalue
axis: of a :class:`~spectra.linalg.density.SpectralMeasure`, or of one probe of each of
several runs, overlaid, with their Lanczos eigenvalues marked."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from matplotlib.figure import Figure

from spectra.linalg.density import SpectralMeasure
from spectra.plots.data import (
    DensityRows,
    RunsLike,
    density_rows_of,
    figure_title,
    measure_rules,
    resolve_runs,
    run_title,
    time_kind,
)
from spectra.plots.lines import Curve, draw_lines, legend_below, sigma_label
from spectra.plots.style import SINGLE, line_colors, new_figure, style


def plot_density(
    source: SpectralMeasure | RunsLike,
    name: str | Iterable[str] | None = None,
    *,
    probe: int = -1,
    sigma: float | None = None,
    grid: int | np.ndarray = 1200,
    xscale: str = "linear",
    linthresh: float | None = None,
    decades: float | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Smoothed spectral densities, log density against the eigenvalue.

    Args:
        source: a :class:`~spectra.linalg.density.SpectralMeasure`, a run, several runs,
            or a ``.h5`` path (``name`` picks runs of it; default: all). Several runs
            are overlaid on one axis, one colour each.
        probe: which probe of each run: an index into the probes that have a density
            (``-1``, the default: the last one).
        sigma: the Gaussian's width in eigenvalue units (see ``xscale`` for symlog).
            Default: on a linear axis the range of the nodes and marks over
            :data:`~spectra.plots.lines.RESOLUTION`; on symlog, the width
            :func:`~spectra.linalg.scales.density_grid` chooses. Stated in the x label.
        grid: number of grid points, or an increasing 1-D array of eigenvalues.
        xscale: ``"linear"`` (default) or ``"symlog"`` (see
            :mod:`spectra.linalg.scales`; ``sigma`` is then the width near 0).
        linthresh: the symlog threshold (default: from the data).
        decades: the decades of density shown below the peak (default: down to just
            below the lowest single node's peak, so that every outlier shows).

    A run's top eigenvalues and smallest eigenvalue at that probe (Lanczos) are marked
    by triangles at the top of the axes; the x range holds every one of them.

    A run without density probes, among runs with some, is left out with a warning.

    Raises:
        ValueError: no run with density probes, a probe out of range, bad
            ``sigma``/``grid``/``xscale``/``decades``.
    """
    if isinstance(source, SpectralMeasure):
        curves = [Curve("SLQ density", measure_rules(source), "C0")]
        base, run_list = "Hessian eigenvalue density", []
    else:
        run_list = resolve_runs(source, name)
        tkind = time_kind("auto", [(r.probes.step, r.probes.epoch) for r in run_list])
        data = density_rows_of(run_list, tkind)  # runs without a density: left out, warned
        run_list = [d.run for d in data]
        curves = [probe_curve(d, probe, c) for d, c in zip(data, line_colors(len(data)))]
        if len(run_list) == 1:
            base = f"Hessian eigenvalue density: {curves[0].label}"
            curves = [Curve("SLQ density", curves[0].rules, "C0", top=curves[0].top,
                            bottom=curves[0].bottom)]
        else:
            base = f"Hessian eigenvalue density ({_probe_words(probe)})"
    with style():
        fig = new_figure(figsize, SINGLE)
        ax = fig.subplots()
        drawn = draw_lines(fig, ax, curves, xscale=xscale, linthresh=linthresh, sigma=sigma,
                           grid=grid, decades=decades)
        sigma_label(ax, drawn.sigma, drawn.scale)
        legend_below(fig, ax, 3)
        fig.suptitle(title if title is not None else figure_title(base, run_list))
    return fig


def _probe_words(probe: int) -> str:
    return {-1: "last probe", 0: "first probe"}.get(probe, f"probe {probe}")


def probe_when(rows: DensityRows, index: int) -> str:
    """``epoch E`` (or ``step S``) of density row ``index`` of ``rows``."""
    p, row = rows.run.probes, int(rows.index[index])
    epoch = float(p.epoch[row])
    return f"epoch {epoch:g}" if math.isfinite(epoch) else f"step {int(p.step[row])}"


def probe_curve(rows: DensityRows, probe: int, color: str | tuple, *, with_time: bool = True,
                ls: str = "-", label: str | None = None) -> Curve:
    """The curve of density row number ``probe`` of ``rows``, labelled with the run (and
    its time), and its finite Lanczos eigenvalues (top-k, smallest) to mark.

    Raises:
        ValueError: ``probe`` out of range.
    """
    run, n = rows.run, len(rows.measures)
    if not -n <= probe < n:
        raise ValueError(
            f"probe={probe} is out of range: run {run.name!r} has {n} "
            f"probe{'' if n == 1 else 's'} with a density: use {-n} to {n - 1}"
        )
    row = int(rows.index[probe])
    p = run.probes
    if label is None:
        when = probe_when(rows, probe % n)
        label = f"{run_title(run)} at {when}" if with_time else run_title(run)
    top = np.zeros(0)
    if p.top_eigenvalues is not None:
        top = np.asarray(p.top_eigenvalues[row], dtype=np.float64)
        top = top[np.isfinite(top)]
    return Curve(label, rows.measures[probe], color, ls=ls, top=top,
                 bottom=float(p.bottom_eigenvalue[row]))


__all__ = ["plot_density", "probe_curve", "probe_when"]
