"""The Hessian eigenvalue density over training: a heat map (eigenvalue on x, epoch on
y, log density as colour) or one curve per probe, one panel per run."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from spectra.linalg.scales import DensityGrid, EigenvalueScale, smooth_densities
from spectra.plots.axes import (
    DENSITY_LABEL,
    EIGENVALUE_LABEL,
    eigenvalue_range,
    set_eigenvalue_scale,
)
from spectra.plots.data import (
    DensityRows,
    RunsLike,
    density_rows,
    figure_title,
    resolve_runs,
    row_edges,
    run_title,
    time_kind,
)
from spectra.plots.style import FONT, grid_shape, new_figure, panels, panels_figsize, style

_DENSITY_CBAR = "log10 density (per unit eigenvalue)"


@dataclass(frozen=True)
class _Panels:
    """What the panels draw: per run, its density rows and their densities."""

    data: list[DensityRows]
    dens: list[np.ndarray]  # per run, (r, g): one density per row
    grid: DensityGrid
    vmin: float  # log10 density: the colour (or y) range
    vmax: float


def plot_evolution(
    runs: RunsLike,
    names: str | Iterable[str] | None = None,
    *,
    kind: str = "heatmap",
    sigma: float | None = None,
    grid: int | np.ndarray = 600,
    by: str = "auto",
    xscale: str = "symlog",
    linthresh: float | None = None,
    decades: float = 8.0,
    cmap: str | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Evolution of the Hessian eigenvalue density over training, one panel per run.

    ``kind="heatmap"``: ``log10`` density as colour, eigenvalue on x, epoch (or step)
    on y, one row per probe with a density (as in LPSGD's Fig. 1). ``kind="curves"``:
    one density curve per probe, coloured by epoch (colour bar), on a log y axis.
    Panels share both axes and the colour scale.

    Args:
        runs, names: the runs (see :mod:`spectra.plots`).
        kind: ``"heatmap"`` or ``"curves"``.
        sigma: smoothing width in eigenvalue units (see :mod:`spectra.linalg.scales`;
            default: 1/150 of the axis, 1/100 for curves).
        grid: number of grid points, or an increasing 1-D array of eigenvalues.
        by: ``"auto"``, ``"epoch"`` or ``"step"``: the time axis.
        xscale: ``"symlog"`` (default) or ``"linear"`` eigenvalue axis.
        linthresh: half-width of the symlog axis's linear region (default: from the data).
        decades: orders of magnitude of density shown below the maximum.
        cmap: colour map (default ``"magma"`` for heat maps, ``"viridis"`` for curves).

    Raises:
        ValueError: a run without density probes, a bad ``kind``/``sigma``/``grid``.
    """
    if kind not in ("heatmap", "curves"):
        raise ValueError(f"kind must be 'heatmap' or 'curves', got {kind!r}")
    if not (math.isfinite(decades) and decades > 0):
        raise ValueError(f"decades must be a positive number, got {decades!r}")
    run_list = resolve_runs(runs, names)
    tkind = time_kind(by, [(r.probes.step, r.probes.epoch) for r in run_list])
    data: list[DensityRows] = []
    for r in run_list:  # a loop: before Python 3.12 a comprehension is a frame of its own,
        # and the warnings of density_rows would name it instead of the caller
        data.append(density_rows(r, tkind))
    sd = smooth_densities(
        [m for d in data for m in d.measures], xscale=xscale, linthresh=linthresh, grid=grid,
        sigma=sigma, resolution=150.0 if kind == "heatmap" else 100.0,
    )
    values = iter(sd.values)
    dens = [np.array([next(values) for _ in d.measures]) for d in data]
    vmax = _log_peak(dens)
    p = _Panels(data=data, dens=dens, grid=sd.grid, vmin=vmax - decades, vmax=vmax)

    nrows, ncols = grid_shape(len(data))
    with style():
        fig = new_figure(figsize, panels_figsize(nrows, ncols))
        axes = panels(fig, len(data))
        if kind == "heatmap":
            _draw_heatmaps(fig, axes, p, cmap or "magma")
            base = "Hessian eigenvalue density over training"
        else:
            _draw_curves(fig, axes, p, cmap or "viridis", tkind)
            base = "Hessian eigenvalue density by " + tkind
        _label_panels(axes, data, sd.scale, tkind if kind == "heatmap" else DENSITY_LABEL, ncols)
        if sd.scale.linthresh is not None:
            fig.suptitle(" ")  # reserve the title's room before the ticks measure the panels
        eigenvalue_range(fig, axes, sd.scale, sd.grid.edges[0], sd.grid.edges[-1])
        if len(data) == 1:
            base = f"{base}: {run_title(data[0].run)}"
        fig.suptitle(title if title is not None else figure_title(base, run_list))
    return fig


def _log_peak(dens: Sequence[np.ndarray]) -> float:
    """``log10`` of the largest density of all panels."""
    peak = max(float(np.max(D)) for D in dens)
    if not (math.isfinite(peak) and peak > 0):
        raise ValueError("the stored densities are all zero or not finite; nothing to draw")
    return math.log10(peak)


def _draw_heatmaps(fig: Figure, axes: Sequence[Axes], p: _Panels, cmap: str) -> None:
    """One heat map per panel, rows at the probes' times, and their shared colour bar."""
    cm = matplotlib.colormaps[cmap]
    mesh = None
    for ax, d, D in zip(axes, p.data, p.dens):
        logd = np.log10(np.maximum(D, 10.0 ** (p.vmin - 1)))
        mesh = ax.pcolormesh(
            p.grid.edges, row_edges(d.time), logd, cmap=cm, vmin=p.vmin, vmax=p.vmax,
            shading="flat", rasterized=True,
        )
        ax.axvline(0.0, color="white", lw=0.6, ls=":", alpha=0.8)
    edges = [row_edges(d.time) for d in p.data]
    axes[0].set_ylim(min(e[0] for e in edges), max(e[-1] for e in edges))
    cbar = fig.colorbar(mesh, ax=axes, pad=0.02, aspect=30)
    cbar.set_label(_DENSITY_CBAR)
    cbar.ax.tick_params(labelsize=FONT)


def _draw_curves(fig: Figure, axes: Sequence[Axes], p: _Panels, cmap: str, tkind: str) -> None:
    """One density curve per probe, coloured by its time, and the time's colour bar."""
    tmin = min(float(d.time[0]) for d in p.data)
    tmax = max(float(d.time[-1]) for d in p.data)
    cm = matplotlib.colormaps[cmap]
    norm = mcolors.Normalize(vmin=tmin, vmax=tmax if tmax > tmin else tmin + 1)
    floor = 10.0**p.vmin
    for ax, d, D in zip(axes, p.data, p.dens):
        for t, y in zip(d.time, D):
            ax.plot(p.grid.centers, np.maximum(y, 0.5 * floor), color=cm(norm(t)), lw=1.0)
        ax.axvline(0.0, color="0.6", lw=0.6, ls=":")
        ax.set_yscale("log")
    axes[0].set_ylim(floor, 10.0 ** (p.vmax + 0.3))
    cbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cm), ax=axes, pad=0.02, aspect=30)
    cbar.set_label(tkind)
    cbar.ax.tick_params(labelsize=FONT)


def _label_panels(
    axes: Sequence[Axes], data: Sequence[DensityRows], scale: EigenvalueScale, ylabel: str,
    ncols: int,
) -> None:
    """Axis labels (y on the first column only), the eigenvalue scale, and run titles
    when there are several panels."""
    for i, (ax, d) in enumerate(zip(axes, data)):
        if i % ncols == 0:
            ax.set_ylabel(ylabel)
        set_eigenvalue_scale(ax, scale)
        ax.set_xlabel(EIGENVALUE_LABEL)
        if len(data) > 1:
            ax.set_title(run_title(d.run))
