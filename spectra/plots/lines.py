"""Smoothed densities as lines on one axis, the way papers draw Hessian spectra (Ghorbani
et al. 2019, Fig. 1; Papyan 2019): log density against a linear eigenvalue axis, one
curve per probe or per run, the Lanczos eigenvalues of each marked above the curves.
Shared by :func:`~spectra.plots.density.plot_density` and
:func:`~spectra.plots.evolution.plot_evolution`.

The smoothing is :func:`spectra.linalg.scales.smooth_densities`; this module chooses
the range (every node and every marked eigenvalue inside, with a margin), the width
(a fraction of that range unless given) and the y floor (below the lowest node's
peak, so that no outlier is lost under it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib import transforms as mtransforms
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spectra.linalg.scales import EigenvalueScale, Rules, choose_linthresh, smooth_densities
from spectra.plots.axes import (
    DENSITY_LABEL,
    EIGENVALUE_LABEL,
    eigenvalue_range,
    power_label,
    set_eigenvalue_scale,
)
from spectra.plots.style import FONT, figure_legend

#: default width of the Gaussian on a linear axis: the spectrum's extent over this
RESOLUTION = 100.0


@dataclass(frozen=True)
class Curve:
    """One density to draw and the eigenvalues to mark on it.

    Attributes:
        label: legend text.
        rules: its ``(nodes, weights)``, ``(n_v, m)`` each.
        color, ls: line colour and style.
        top: ``(k,)`` finite top eigenvalues (Lanczos) to mark; may be empty.
        bottom: the smallest eigenvalue (Lanczos), NaN when not recorded.
    """

    label: str
    rules: Rules
    color: str | tuple
    ls: str = "-"
    top: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bottom: float = math.nan


@dataclass(frozen=True)
class DrawnLines:
    """What :func:`draw_lines` drew: the x range, the width used, the y range."""

    xlim: tuple[float, float]
    sigma: float
    scale: EigenvalueScale
    ylim: tuple[float, float]


def _marks(c: Curve) -> np.ndarray:
    m = c.top[np.isfinite(c.top)]
    return np.append(m, c.bottom) if math.isfinite(c.bottom) else m


def draw_lines(
    fig: Figure,
    ax: Axes,
    curves: Sequence[Curve],
    *,
    xscale: str = "linear",
    linthresh: float | None = None,
    sigma: float | None = None,
    grid: int | np.ndarray = 1200,
    decades: float | None = None,
) -> DrawnLines:
    """Draw ``curves`` as smoothed densities on ``ax`` (log y), their eigenvalues marked.

    Args:
        xscale: ``"linear"`` (default) or ``"symlog"``.
        linthresh: the symlog threshold (default: from the data).
        sigma: the Gaussian's width (eigenvalue units; on symlog, its width near 0,
            growing with ``|lambda|`` beyond the threshold). Default: on a linear axis
            the range of the nodes and marks over :data:`RESOLUTION`; on symlog, the
            width :func:`~spectra.linalg.scales.density_grid` chooses. :func:`sigma_label`
            states it.
        grid: number of points, or an increasing 1-D array of eigenvalues.
        decades: the y axis shows this many decades below the highest peak. Default:
            its floor is just below the lowest peak of a single node (of weight at
            least 1e-7), so every outlier stays visible, and 2 to 10 decades down.
    """
    if decades is not None and not (math.isfinite(decades) and decades > 0):
        raise ValueError(f"decades must be a positive number, got {decades!r}")
    rules = [c.rules for c in curves]
    marks = np.concatenate([_marks(c) for c in curves] + [np.zeros(0)])
    lo = min([float(n[w > 0].min()) for n, w in rules] + marks.tolist())
    hi = max([float(n[w > 0].max()) for n, w in rules] + marks.tolist())
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    if xscale == "linear":
        width = span / RESOLUTION if sigma is None else sigma
        if np.ndim(grid) == 0:
            pad = max(4.0 * min(width, 0.1 * span), 0.04 * span)
            num = int(grid)  # type: ignore[arg-type]
            if num < 2:
                raise ValueError(f"grid must be at least 2 points (or an array), got {grid!r}")
            grid = np.linspace(lo - pad, hi + pad, num)
        sd = smooth_densities(rules, xscale="linear", grid=grid, sigma=width)
    else:
        sd = smooth_densities(rules, xscale=xscale, grid=grid, sigma=sigma,
                              linthresh=symlog_threshold(xscale, linthresh, sigma, rules))
    centers = sd.grid.centers
    peak = max(float(np.max(y)) for y in sd.values)
    if not (math.isfinite(peak) and peak > 0):
        raise ValueError("the density is zero or not finite everywhere; nothing to draw")
    if decades is not None:
        floor = peak * 10.0**-decades
    else:
        lowest = _lowest_node_peak(sd.scale, centers, rules, sd.grid.sigma_s)
        floor = min(max(peak * 1e-10, 0.2 * lowest), peak * 1e-2)
    for c, y in zip(curves, sd.values):
        ax.plot(centers, np.maximum(y, 1e-3 * floor), color=c.color, ls=c.ls, lw=1.2,
                label=c.label)
    set_eigenvalue_scale(ax, sd.scale)
    ax.set_yscale("log")
    ylim = (floor, peak * (peak / floor) ** 0.25)  # room for the rows of marks
    ax.set_ylim(*ylim)
    x0 = min(float(centers[0]), lo)
    x1 = max(float(centers[-1]), hi)
    eigenvalue_range(fig, [ax], sd.scale, x0, x1)
    _draw_marks(ax, curves)
    ax.axvline(0.0, color="0.75", lw=0.6, ls=":", zorder=0)
    ax.set_xlabel(EIGENVALUE_LABEL)
    ax.set_ylabel(DENSITY_LABEL)
    ax.tick_params(labelsize=FONT)
    return DrawnLines(xlim=(x0, x1), sigma=sd.grid.sigma_s, scale=sd.scale, ylim=ylim)


def symlog_threshold(xscale: str, linthresh: float | None, sigma: float | None,
                     rules: Sequence[Rules]) -> float | None:
    """The symlog threshold to use: ``linthresh`` when given; else, with an explicit
    ``sigma``, the data's threshold (:func:`~spectra.linalg.scales.choose_linthresh`)
    raised to the power of ten at or above ``10 sigma``: ``sigma`` is a width in the
    smoothing coordinate, where far out a width ``sigma`` spreads a node over a factor
    ``exp(sigma / (0.39 t))`` of eigenvalues; with ``t >= 10 sigma`` that factor is at
    most 1.3. None (chosen later) otherwise."""
    if xscale != "symlog" or linthresh is not None or sigma is None:
        return linthresh
    if not (math.isfinite(sigma) and sigma > 0):
        return None  # refused with its message by the smoothing
    return max(choose_linthresh(rules), 10.0 ** math.ceil(math.log10(10.0 * sigma) - 1e-9))


def _lowest_node_peak(scale: EigenvalueScale, centers: np.ndarray, rules: Sequence[Rules],
                      sigma_s: float) -> float:
    """The lowest height a single node of weight >= 1e-7 (of its rule) adds to the
    density: its weight over ``n_v sqrt(2 pi) sigma``, times ``ds/dx`` at the node."""
    lowest = math.inf
    for nodes, weights in rules:
        w = weights / weights.sum(axis=1, keepdims=True) / nodes.shape[0]
        ok = w >= 1e-7 / nodes.shape[0]
        if np.any(ok):
            h = w[ok] * scale.smoothing_slope(nodes[ok]) / (math.sqrt(2 * math.pi) * sigma_s)
            lowest = min(lowest, float(h.min()))
    return lowest if math.isfinite(lowest) else 0.0


# markers of the marked eigenvalues: top-k, smallest
_TOP, _BOTTOM = "v", "^"


def _draw_marks(ax: Axes, curves: Sequence[Curve]) -> None:
    """Each curve's top-k eigenvalues (down triangles) and smallest eigenvalue (up
    triangle) in a row of its own just under the top of the axes, in the legend's order
    (the rows closer together when there are more than 8 curves: every curve keeps one)."""
    trans = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    any_top = any_bottom = False
    gap = min(0.035, 0.28 / max(len(curves), 1))
    for j, c in enumerate(curves):
        y = 0.965 - gap * j
        top = c.top[np.isfinite(c.top)]
        if top.size:
            ax.plot(top, np.full(top.size, y), transform=trans, ls="none", marker=_TOP, ms=4.5,
                    color=c.color, mec="black", mew=0.4, clip_on=False)
            any_top = True
        if math.isfinite(c.bottom):
            ax.plot([c.bottom], [y], transform=trans, ls="none", marker=_BOTTOM, ms=4.5,
                    color=c.color, mec="black", mew=0.4, clip_on=False)
            any_bottom = True
    # legend proxies (grey): what the triangles mean
    ks = {int(np.isfinite(c.top).sum()) for c in curves} - {0}
    if any_top:
        what = f"top-{ks.pop()}" if len(ks) == 1 else "top"  # runs with different k: no one k
        ax.plot([], [], ls="none", marker=_TOP, ms=4.5, color="0.6", mec="black", mew=0.4,
                label=f"{what} eigenvalues (Lanczos)")
    if any_bottom:
        ax.plot([], [], ls="none", marker=_BOTTOM, ms=4.5, color="0.6", mec="black", mew=0.4,
                label="smallest eigenvalue (Lanczos)")


def sigma_label(ax: Axes, sigma: float, scale: EigenvalueScale) -> None:
    """The x label, with the Gaussian's width stated in it."""
    where = ("" if scale.linthresh is None
             else f" near 0; symlog threshold {power_label(scale.linthresh)}")
    ax.set_xlabel(f"{EIGENVALUE_LABEL}   (Gaussian smoothing σ = {sigma:.2g}{where})")


def legend_below(fig: Figure, ax: Axes, ncols: int, entries: dict | None = None) -> None:
    """The axes' legend (or ``entries``, label -> handle) below the figure's panels,
    without a frame, in at most ``ncols`` columns and as few as it takes to fit the
    figure's width (:func:`figure_legend`: three columns of long run names ran past
    both edges)."""
    figure_legend(fig, [ax], ncols, entries, handlelength=2.2, columnspacing=1.2)


__all__ = ["RESOLUTION", "Curve", "DrawnLines", "draw_lines", "legend_below", "sigma_label"]
