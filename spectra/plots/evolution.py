"""The Hessian eigenvalue density over training: one curve per selected checkpoint on a
linear eigenvalue axis (the default, as in Ghorbani et al. 2019, Fig. 1), several runs
on one axis; or a heat map per run (eigenvalue on x, epoch on y, log density as
colour)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spectra.linalg.scales import DensityGrid, EigenvalueScale, smooth_densities
from spectra.plots.axes import EIGENVALUE_LABEL, eigenvalue_range, set_eigenvalue_scale
from spectra.plots.data import (
    DensityRows,
    RunsLike,
    density_rows_of,
    figure_title,
    resolve_runs,
    row_edges,
    run_title,
    time_kind,
    times_text,
)
from spectra.plots.density import probe_curve, probe_when
from spectra.plots.lines import draw_lines, legend_below, sigma_label, symlog_threshold
from spectra.plots.style import (
    FONT,
    SINGLE,
    fit_note,
    grid_shape,
    line_colors,
    new_figure,
    panel_note,
    panels,
    panels_figsize,
    style,
)


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
    kind: str = "lines",
    epochs: Sequence[float] | None = None,
    sigma: float | None = None,
    grid: int | np.ndarray | None = None,
    by: str = "auto",
    xscale: str | None = None,
    linthresh: float | None = None,
    decades: float | None = None,
    cmap: str | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Evolution of the Hessian eigenvalue density over training.

    ``kind="lines"`` (default), as Ghorbani et al. (2019, Fig. 1) and Papyan (2019)
    draw it: log density against a linear eigenvalue axis, one curve per selected
    checkpoint (``epochs``), all on one axis; the Lanczos top-k and smallest
    eigenvalues of each checkpoint are marked by triangles above the curves, and the
    x range holds every one of them. Several runs share the axis: one colour per run,
    one line style per checkpoint. The Gaussian's width is stated in the x label.

    ``kind="heatmap"``: one panel per run, eigenvalue (symlog by default) on x, epoch
    (or step) on y, every probe a row, colour the ``log10`` density per decade of the
    axis (so equal areas on screen hold equal mass); the colour floor is stated on the
    colour bar. A failed probe (Ritz nodes or weights NaN or Inf) keeps its row, blank
    (no colour), and a note in the panel names its time.

    Args:
        runs, names: the runs (see :mod:`spectra.plots`).
        kind: ``"lines"`` or ``"heatmap"``.
        epochs: lines only: the checkpoints to draw, in the time unit of ``by`` (each
            the nearest probe with a density); default: up to four of the first run's
            probes, the first, the last and two spaced geometrically between (the
            spectrum changes fastest early on: 0, 1, 3, 12 of 13 probes). Another run
            without a probe at a default checkpoint (it stopped early) skips that
            curve with a warning; at a checkpoint given here, it is an error.
        sigma: smoothing width in eigenvalue units (on a symlog axis: the width near 0).
            Default: lines, the drawn range over 100; heat map, the axis over 60.
        grid: number of grid points (default 1200 for lines, 600 for the heat map), or
            an increasing 1-D array of eigenvalues.
        by: ``"auto"``, ``"epoch"`` or ``"step"``: the time axis.
        xscale: ``"linear"`` or ``"symlog"`` (default: linear for lines, symlog for the
            heat map).
        linthresh: half-width of the symlog axis's linear region (default: from the data).
        decades: lines: the decades of density shown (default: down to just below the
            lowest single node's peak, so every outlier shows); heat map: the decades of
            the colour scale (default 4).
        cmap: colour map of the checkpoints (lines, one run; default ``"viridis"``) or of
            the heat map (default ``"magma"``).

    A run without density probes, among runs with some, is left out with a warning.

    Raises:
        ValueError: no run with density probes, a checkpoint without a probe near it,
            a bad ``kind``/``sigma``/``grid``/``decades``.
    """
    if kind not in ("lines", "heatmap"):
        raise ValueError(f"kind must be 'lines' or 'heatmap', got {kind!r}")
    if decades is not None and not (math.isfinite(decades) and decades > 0):
        raise ValueError(f"decades must be a positive number, got {decades!r}")
    run_list = resolve_runs(runs, names)
    tkind = time_kind(by, [(r.probes.step, r.probes.epoch) for r in run_list])
    data = density_rows_of(run_list, tkind)  # runs without a density: left out, warned
    run_list = [d.run for d in data]
    if kind == "lines":
        return _lines_figure(data, run_list, tkind, epochs=epochs, sigma=sigma,
                             grid=1200 if grid is None else grid, xscale=xscale or "linear",
                             linthresh=linthresh, decades=decades,
                             cmap=cmap or "viridis", figsize=figsize, title=title)
    measures = [m for d in data for m in d.measures]
    xscale = xscale or "symlog"
    sd = smooth_densities(
        measures, xscale=xscale, linthresh=symlog_threshold(xscale, linthresh, sigma, measures),
        grid=600 if grid is None else grid, sigma=sigma, resolution=60.0,
    )
    per_decade = sd.scale.decade_slope(sd.grid.centers)
    values = iter(sd.values)
    dens = [np.array([next(values) / per_decade for _ in d.measures]) for d in data]
    vmax = _log_peak(dens)
    p = _Panels(data=data, dens=dens, grid=sd.grid, vmin=vmax - (decades or 4.0), vmax=vmax)

    nrows, ncols = grid_shape(len(data))
    with style():
        fig = new_figure(figsize, panels_figsize(nrows, ncols))
        axes = panels(fig, len(data))
        _draw_heatmaps(fig, axes, p, cmap or "magma", sd.scale.linthresh is not None)
        base = "Hessian eigenvalue density over training"
        _label_panels(axes, data, sd.scale, tkind, ncols)
        if sd.scale.linthresh is not None:
            fig.suptitle(" ")  # reserve the title's room before the ticks measure the panels
        eigenvalue_range(fig, axes, sd.scale, sd.grid.edges[0], sd.grid.edges[-1])
        for ax, d in zip(axes, data):  # once the layout has placed the panels: to wrap
            if d.failed.size:
                panel_note(ax, fit_note(ax, f"blank: failed probe (NaN or Inf) at "
                                            f"{times_text(tkind, d.failed)}"))
        if len(data) == 1:
            base = f"{base}: {run_title(data[0].run)}"
        fig.suptitle(title if title is not None else figure_title(base, run_list))
    return fig


_STYLES = ("-", "--", ":", "-.")
_FEW_ROWS = 3  # heat maps of at most this many probe times: y ticks at those times


def _lines_figure(
    data: list[DensityRows], run_list: list, tkind: str, *, epochs: Sequence[float] | None,
    sigma: float | None, grid: int | np.ndarray, xscale: str, linthresh: float | None,
    decades: float | None, cmap: str, figsize: tuple[float, float] | None, title: str | None,
) -> Figure:
    """The default evolution figure: one density curve per checkpoint (and run)."""
    times = _checkpoints(data[0], epochs, tkind)
    curves = []
    shades = matplotlib.colormaps[cmap](np.linspace(0.0, 0.85, len(times)))
    colors = line_colors(len(data))
    tol = _tolerance(data[0])  # one for every run: the checkpoints' own spacing
    whens: dict[int, str] = {}  # checkpoint index -> the first run's time there (the legend's)
    for i, d in enumerate(data):
        missing, used = [], set()
        for j, t in enumerate(times):
            try:
                k = _nearest_row(d, t, tkind, tol)
                if k in used:  # a run probed less often: its one probe is not two checkpoints
                    raise ValueError(f"run {d.run.name!r} has no density probe at {tkind} {t:g} "
                                     f"of its own (its nearest is {float(d.time[k]):g}, drawn "
                                     "already)")
            except ValueError:
                if epochs is not None:  # asked for by the caller: an error
                    raise
                missing.append(f"{t:g}")  # the first run's default: skipped, said below
                continue
            used.add(k)
            when = probe_when(d, k)
            if i == 0:
                whens[j] = when
            if len(data) == 1:
                curves.append(probe_curve(d, k, tuple(shades[j]), label=when))
            else:
                curves.append(probe_curve(d, k, colors[i], ls=_STYLES[j % len(_STYLES)],
                                          label=f"{run_title(d.run)}, {when}"))
        if missing:  # a run shorter than the first (stopped early, diverged)
            warnings.warn(
                f"run {d.run.name!r} has no density probe at {tkind} {', '.join(missing)} (the "
                f"default checkpoints, from run {data[0].run.name!r}); those curves are left out",
                stacklevel=3)  # the caller of plot_evolution
    with style():
        fig = new_figure(figsize, SINGLE)
        ax = fig.subplots()
        drawn = draw_lines(fig, ax, curves, xscale=xscale, linthresh=linthresh, sigma=sigma,
                           grid=grid, decades=decades)
        sigma_label(ax, drawn.sigma, drawn.scale)
        legend_below(fig, ax, 3, None if len(data) == 1 else _factored_legend(
            ax, data, colors, [whens.get(j, f"{tkind} {t:g}") for j, t in enumerate(times)]))
        base = "Hessian eigenvalue density over training"
        if len(data) == 1:
            base = f"{base}: {run_title(data[0].run)}"
        fig.suptitle(title if title is not None else figure_title(base, run_list))
    return fig


def _checkpoints(rows: DensityRows, epochs: Sequence[float] | None, tkind: str) -> list[float]:
    """The times to draw: ``epochs`` as given, else up to four of ``rows``' (the first,
    the last, two spaced geometrically between)."""
    if epochs is None:  # the first, the last, and two spaced geometrically between:
        # the spectrum changes fastest early in training
        n = len(rows.time)
        idx = [0] + ([] if n < 2 else np.geomspace(1, n - 1, min(n - 1, 3)).tolist())
        idx = np.unique(np.round(idx).astype(int))
        return [float(rows.time[i]) for i in idx]
    out = []
    for e in epochs:
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e):
            raise ValueError(f"epochs must be finite numbers (the {tkind}s to draw), got {e!r}")
        out.append(float(e))
    if not out:
        raise ValueError(f"epochs is empty: name at least one {tkind} to draw")
    return out


def _factored_legend(ax: Axes, data: list[DensityRows], colors: list[str],
                     whens: list[str]) -> dict:
    """The legend of several runs' curves, factored: one entry per run (its colour) and
    one per checkpoint (its line style; ``whens``: the checkpoints' times as the first
    run labels them), then the axes' other entries (the eigenvalue marks): runs +
    checkpoints entries where one per curve made runs x checkpoints (8 lines of long
    names squeezed the panel to nothing)."""
    from matplotlib.lines import Line2D

    titles = [run_title(d.run) for d in data]
    curve_labels = {f"{title}, " for title in titles}
    entries: dict = {title: Line2D([], [], color=c, lw=1.4) for title, c in zip(titles, colors)}
    for j, when in enumerate(whens):
        entries[when] = Line2D([], [], color="0.3", lw=1.4, ls=_STYLES[j % len(_STYLES)])
    for handle, label in zip(*ax.get_legend_handles_labels()):
        if not any(label.startswith(p) for p in curve_labels):
            entries.setdefault(label, handle)
    return entries


def _tolerance(rows: DensityRows) -> float | None:
    """How far a run's probe may lie from a checkpoint time and still stand for it: a
    quarter of the typical spacing of the probes of ``rows`` (the run the default
    checkpoints come from), the same for every run, so that a run probed every 5
    epochs does not offer its epoch-5 probe for epoch 4; ``None`` for a run of one
    probe (each run's own probe time then)."""
    gaps = np.diff(rows.time)
    return 0.25 * float(np.median(gaps)) if gaps.size else None


def _nearest_row(rows: DensityRows, t: float, tkind: str, tol: float | None = None) -> int:
    """The density row nearest time ``t``; it must lie within ``tol`` of it (default: a
    quarter of the typical spacing of these probes; for a run of one probe, at ``t``
    itself)."""
    k = int(np.argmin(np.abs(rows.time - t)))
    if tol is None:
        tol = _tolerance(rows)
    if tol is None:
        tol = 1e-9 * max(1.0, abs(t))
    if abs(float(rows.time[k]) - t) > tol:
        have = ", ".join(f"{x:g}" for x in rows.time[:12]) + (" ..." if len(rows.time) > 12 else "")
        raise ValueError(f"run {rows.run.name!r} has no density probe at {tkind} {t:g}; "
                         f"its probes are at {tkind}s {have}")
    return k


def _log_peak(dens: Sequence[np.ndarray]) -> float:
    """``log10`` of the largest density of all panels."""
    peak = max(float(np.max(D)) for D in dens)
    if not (math.isfinite(peak) and peak > 0):
        raise ValueError("the stored densities are all zero or not finite; nothing to draw")
    return math.log10(peak)


def _draw_heatmaps(fig: Figure, axes: Sequence[Axes], p: _Panels, cmap: str,
                   symlog: bool) -> None:
    """One heat map per panel, rows at the probes' times, and their shared colour bar
    (its label states the floor: lower densities share its colour)."""
    cm = matplotlib.colormaps[cmap].with_extremes(bad=(0.0, 0.0, 0.0, 0.0))  # masked: none
    mesh = None
    edges = []
    for ax, d, D in zip(axes, p.data, p.dens):
        logd = np.log10(np.maximum(D, 10.0 ** (p.vmin - 1)))
        times, rows = _heatmap_rows(d, logd)
        edges.append(row_edges(times))
        mesh = ax.pcolormesh(
            p.grid.edges, edges[-1], rows, cmap=cm, vmin=p.vmin, vmax=p.vmax,
            shading="flat", rasterized=True,
        )
        ax.axvline(0.0, color="white", lw=0.6, ls=":", alpha=0.8)
    axes[0].set_ylim(min(e[0] for e in edges), max(e[-1] for e in edges))
    times = np.unique(np.concatenate([d.time for d in p.data] + [d.failed for d in p.data]))
    if times.size <= _FEW_ROWS:  # ticks at the probes: else a lone row spans t +- 0.5
        for ax in axes:  # with ticks such as -0.4 (an epoch before training)
            ax.set_yticks(times, [f"{t:g}" for t in times])
    cbar = fig.colorbar(mesh, ax=axes, pad=0.02, aspect=30, extend="min")
    unit = "per decade of the axis" if symlog else "per unit eigenvalue"
    cbar.set_label(f"log10 density {unit}\n(floor {p.vmin:.1f}: lower values share its colour)")
    cbar.ax.tick_params(labelsize=FONT)


def _heatmap_rows(rows: DensityRows, logd: np.ndarray) -> tuple[np.ndarray, np.ma.MaskedArray]:
    """The heat map rows of one run, one at each probe time, failed probes included.

    Args:
        rows: the run's density rows (``rows.time``: ``(r,)``, increasing) and the
            times of its failed probes (``rows.failed``).
        logd: ``(r, g)`` log10 density of each density row on the ``g`` grid cells.

    Returns:
        ``(n,)`` row times (epochs or steps), increasing, and the ``(n, g)`` log10
        densities with the rows of failed probes masked (drawn without colour). Their
        edges come from all ``n`` times, so a failed probe's neighbours keep their own
        extents instead of stretching over its time. A failed probe at the time of a
        density row adds no row.
    """
    failed = rows.failed[~np.isin(rows.failed, rows.time)]
    times = np.concatenate([rows.time, failed])
    order = np.argsort(times, kind="stable")  # density rows keep their order among ties
    blank = np.concatenate([np.zeros(rows.time.size, bool), np.ones(failed.size, bool)])[order]
    values = np.zeros((times.size, logd.shape[1]))
    values[~blank] = logd
    mask = np.broadcast_to(blank[:, None], values.shape)
    return times[order], np.ma.masked_array(values, mask=mask)


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
