"""Optimizer trajectories on a 2-D test function, over the function's filled contours.

The only values computed here are the test function's, on the grid of the contours and
at each trajectory's last point (for the legend).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import colors as mcolors
from matplotlib import ticker as mticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spectra.plots.style import FONT, line_colors, new_figure, style

# Views (x range, y range) of the standard test functions.
_VIEWS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "rosenbrock": ((-2.0, 2.0), (-1.0, 3.0)),
    "himmelblau": ((-5.0, 5.0), (-5.0, 5.0)),
    "beale": ((-4.5, 4.5), (-4.5, 4.5)),
    "saddle": ((-1.5, 1.5), (-1.5, 1.5)),
}

_View = tuple[float, float, float, float]  # x0, x1, y0, y1


@dataclass(frozen=True)
class _Levels:
    """How the contours are filled: log-spaced for a function >= 0, else linear."""

    values: np.ndarray  # (levels,) increasing
    norm: mcolors.Normalize
    cmap: str
    label: str  # of the colour bar


def plot_trajectories(
    function: Any,
    trajectories: Mapping[str, Any],
    *,
    bounds: tuple[tuple[float, float], tuple[float, float]] | None = None,
    levels: int = 30,
    resolution: int = 300,
    lr: Mapping[str, float] | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Optimizer trajectories on a 2-D test function, over its contours.

    Args:
        function: a test function object, e.g. ``optim.testfunctions.get_function("rosenbrock")``
            (any object with ``value(xy)`` on a (..., 2) tensor, ``minima`` and ``name``;
            spectra does not import optim, so names are resolved by the caller).
        trajectories: name -> (T, 2) points (array, tensor, or an
            ``optim.testfunctions.Trajectory``).
        bounds: ``((x0, x1), (y0, y1))``; default: the function's standard view,
            widened to the trajectories when they stay near it.
        levels: number of contour levels; log-spaced when the function is >= 0 on
            the view, evenly spaced otherwise (the saddle).
        resolution: grid points per side for the contours.
        lr: name -> the learning rate of that run, for the legend.

    Each path has its own colour, line style and marker shape (markers at about 12
    evenly spaced steps), drawn half-transparent, so that later paths do not hide
    earlier ones. Legend entries give the lr, the number of steps and the final value,
    or where the path left the view ("left the view at step k", an arrow at the frame
    where it leaves) or diverged ("diverged at step k": NaN or Inf). Minima are marked
    with stars.
    """
    _check_arguments(function, trajectories, levels)
    fname = str(getattr(function, "name", "function"))
    minima = np.asarray(getattr(function, "minima", ()), dtype=np.float64).reshape(-1, 2)
    paths = {str(k): _as_points(str(k), v) for k, v in trajectories.items()}
    x0, x1, y0, y1 = _view(fname, minima, paths) if bounds is None else _checked_bounds(bounds)
    X, Y = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    Z = _evaluate(function, np.stack([X, Y], axis=-1))
    finite = Z[np.isfinite(Z)]
    if finite.size == 0:
        raise ValueError(f"{fname} is not finite anywhere on the view {((x0, x1), (y0, y1))}")

    with style():
        fig = new_figure(figsize, (6.5, 5.0))
        ax = fig.subplots()
        _draw_contours(fig, ax, X, Y, Z, _levels(finite, levels))
        _draw_paths(ax, function, paths, (x0, x1, y0, y1), lr or {})
        _mark_minima(ax, minima, fname)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.tick_params(labelsize=FONT)
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2,
                   frameon=False, handlelength=2.6)
        pretty = fname[:1].upper() + fname[1:]
        fig.suptitle(title if title is not None else f"Optimizer trajectories on {pretty}")
    return fig


# --------------------------------------------------------------------------- input


def _check_arguments(function: Any, trajectories: Any, levels: Any) -> None:
    if not callable(getattr(function, "value", None)):
        raise TypeError(
            "function must be a test function object with value(xy), e.g. "
            f"optim.testfunctions.get_function(name); got {type(function).__name__}"
        )
    if not isinstance(trajectories, Mapping) or not trajectories:
        raise ValueError("trajectories must be a non-empty mapping name -> (T, 2) points")
    if not (isinstance(levels, int) and levels >= 2):
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")


def _as_points(name: str, traj: Any) -> np.ndarray:
    """A trajectory as a ``(T, 2)`` float64 array (from an array, tensor or Trajectory)."""
    pts = getattr(traj, "points", traj)
    if hasattr(pts, "detach"):
        pts = pts.detach().cpu().numpy()
    try:
        a = np.asarray(pts, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"trajectory {name!r} is not a numeric (T, 2) array: {exc}") from None
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"trajectory {name!r} must have shape (T, 2), got {a.shape}")
    if a.shape[0] == 0:  # the right shape, but nothing to draw
        raise ValueError(f"trajectory {name!r} is empty (shape {a.shape}): it needs at least "
                         "one point")
    return a


def _checked_bounds(bounds: Any) -> _View:
    try:
        (x0, x1), (y0, y1) = bounds
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be ((x0, x1), (y0, y1)), got {bounds!r}") from None
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"bounds must have x0 < x1 and y0 < y1, got {bounds!r}")
    return x0, x1, y0, y1


def _view(fname: str, minima: np.ndarray, paths: Mapping[str, np.ndarray]) -> _View:
    """The function's standard view (or one around the minima and trajectories),
    widened to the trajectories that stay within one view width of it."""
    if fname in _VIEWS:
        (x0, x1), (y0, y1) = _VIEWS[fname]
    else:
        pts = np.concatenate([minima] + [p[np.all(np.isfinite(p), 1)] for p in paths.values()])
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        pad = 0.15 * max(x1 - x0, y1 - y0, 1.0)
        x0, x1, y0, y1 = x0 - pad, x1 + pad, y0 - pad, y1 + pad
    wx, wy = x1 - x0, y1 - y0
    for p in paths.values():
        q = p[np.all(np.isfinite(p), 1)]
        if q.size:
            near = q[(q[:, 0] > x0 - wx) & (q[:, 0] < x1 + wx)
                     & (q[:, 1] > y0 - wy) & (q[:, 1] < y1 + wy)]
            if near.size:
                x0, y0 = min(x0, near[:, 0].min()), min(y0, near[:, 1].min())
                x1, y1 = max(x1, near[:, 0].max()), max(y1, near[:, 1].max())
    return x0, x1, y0, y1


def _evaluate(function: Any, xy: np.ndarray) -> np.ndarray:
    """``function.value`` on ``(..., 2)`` points, as float64 of shape ``(...)``."""
    import torch

    with torch.no_grad():
        out = function.value(torch.from_numpy(xy))
    return np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out, np.float64)


# --------------------------------------------------------------------------- drawing


def _levels(finite: np.ndarray, levels: int) -> _Levels:
    """``levels`` contour levels over the finite values: log-spaced over up to six
    decades below the maximum when they are all >= 0, else symmetric about 0."""
    zmax = float(finite.max())
    if float(finite.min()) >= 0 and zmax > 0:
        pos = finite[finite > 0]
        zlo = max(float(pos.min()) if pos.size else zmax * 1e-6, zmax * 1e-6)
        lv = np.logspace(math.log10(zlo), math.log10(zmax), levels)
        return _Levels(lv, mcolors.LogNorm(vmin=lv[0], vmax=lv[-1]), "Greys_r",
                       "f(x, y) (log scale)")
    lim = float(np.max(np.abs(finite)))
    return _Levels(np.linspace(-lim, lim, levels), mcolors.Normalize(vmin=-lim, vmax=lim),
                   "RdBu_r", "f(x, y)")


def _draw_contours(
    fig: Figure, ax: Axes, X: np.ndarray, Y: np.ndarray, Z: np.ndarray, lv: _Levels
) -> None:
    """Filled contours with thin lines over them, and their colour bar."""
    log = isinstance(lv.norm, mcolors.LogNorm)
    Zp = np.clip(Z, lv.values[0], lv.values[-1]) if log else Z
    cf = ax.contourf(X, Y, Zp, levels=lv.values, norm=lv.norm, cmap=lv.cmap, alpha=0.55)
    ax.contour(X, Y, Zp, levels=lv.values, norm=lv.norm, colors="0.35", linewidths=0.35,
               alpha=0.7)
    cbar = fig.colorbar(cf, ax=ax, pad=0.02, aspect=30)
    lo, hi = lv.values[0], lv.values[-1]
    if log:
        k = np.arange(math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9) + 1)
        k = k[::max(1, math.ceil(len(k) / 8))]
        cbar.set_ticks(10.0**k, labels=[f"$10^{{{int(j)}}}$" for j in k])
        cbar.minorticks_off()
    else:
        ticks = mticker.MaxNLocator(7, symmetric=True).tick_values(lo, hi)
        cbar.set_ticks(ticks[np.abs(ticks) <= hi * (1 + 1e-9)])
    cbar.set_label(lv.label)
    cbar.ax.tick_params(labelsize=FONT)


_STYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class PathStatus:
    """How a path ends: the first step that is not finite, the first step outside the
    view, or neither (``None``)."""

    diverged_at: int | None
    left_at: int | None


def path_status(p: np.ndarray, view: _View) -> PathStatus:
    """Where path ``p`` (``(T, 2)``) diverges (a non-finite point) and where it first
    leaves ``view``."""
    x0, x1, y0, y1 = view
    fin = np.all(np.isfinite(p), axis=1)
    diverged = int(np.argmin(fin)) if not fin.all() else None
    inside = fin & (p[:, 0] >= x0) & (p[:, 0] <= x1) & (p[:, 1] >= y0) & (p[:, 1] <= y1)
    out = np.flatnonzero(fin & ~inside)
    left = int(out[0]) if out.size and (diverged is None or out[0] < diverged) else None
    return PathStatus(diverged_at=diverged, left_at=left)


def _exit_point(a: np.ndarray, b: np.ndarray, view: _View) -> np.ndarray:
    """Where the segment from ``a`` (inside the view) to ``b`` crosses the frame."""
    x0, x1, y0, y1 = view
    d = b - a
    ts = [1.0]
    for lo, hi, k in ((x0, x1, 0), (y0, y1, 1)):
        if d[k] > 0:
            ts.append((hi - a[k]) / d[k])
        elif d[k] < 0:
            ts.append((lo - a[k]) / d[k])
    return a + max(0.0, min(ts)) * d


def _legend_label(name: str, p: np.ndarray, status: PathStatus, final: float,
                  lr: float | None) -> str:
    steps = len(p) - 1
    what = [f"lr {lr:.2g}"] if lr is not None else []
    what.append(f"{steps} step" + ("" if steps == 1 else "s"))
    if status.diverged_at is not None:
        end = f"diverged at step {status.diverged_at}"
        if status.left_at is not None:
            end = f"left the view at step {status.left_at}, {end}"
    elif status.left_at is not None:
        end = f"left the view at step {status.left_at}"
        if math.isfinite(final):
            end += f", final f = {final:.2g}"
    else:
        end = f"final f = {final:.2g}"
    return f"{name} ({', '.join(what)}): {end}"


def _draw_paths(ax: Axes, function: Any, paths: Mapping[str, np.ndarray], view: _View,
                lr: Mapping[str, float]) -> None:
    """Each trajectory's finite points, an X at its end (an arrow at the frame where it
    leaves the view), and one circle per start."""
    starts = set()
    colors = line_colors(len(paths))
    for i, (name, p) in enumerate(paths.items()):
        c = colors[i]
        status = path_status(p, view)
        fin = p[: status.diverged_at] if status.diverged_at is not None else p
        final = float(_evaluate(function, fin[-1:].copy())[0]) if len(fin) else math.nan
        if status.diverged_at is not None:
            final = math.nan
        every = max(1, len(fin) // 12)
        ax.plot(fin[:, 0], fin[:, 1], color=c, lw=1.4, alpha=0.75, ls=_STYLES[i % len(_STYLES)],
                marker=_MARKERS[i % len(_MARKERS)], markevery=every, ms=4, mec="black", mew=0.4,
                label=_legend_label(name, p, status, final, lr.get(name)), zorder=3 + 0.01 * i)
        if len(fin) == 0:
            continue
        starts.add((float(fin[0, 0]), float(fin[0, 1])))
        if status.left_at is not None and status.left_at > 0:
            k = status.left_at
            exit_ = _exit_point(fin[k - 1], fin[k], view)
            ax.annotate("", xy=exit_, xytext=fin[k - 1], zorder=6,
                        arrowprops={"arrowstyle": "-|>", "color": c, "lw": 1.6,
                                    "mutation_scale": 14})
        if path_status(fin[-1:], view).left_at is None:  # the end is in the view
            ax.plot(*fin[-1], marker="X", color=c, ms=7, mec="black", mew=0.6, ls="none",
                    zorder=5)
    for j, (sx, sy) in enumerate(sorted(starts)):
        ax.plot(sx, sy, marker="o", ms=6, color="white", mec="black", mew=0.9, ls="none",
                label="start" if j == 0 else None, zorder=5)


def _mark_minima(ax: Axes, minima: np.ndarray, fname: str) -> None:
    """Stars at the global minima; the saddle's critical point where there are none."""
    if len(minima):
        ax.plot(minima[:, 0], minima[:, 1], marker="*", ms=12, color="gold", mec="black",
                mew=0.7, ls="none", label="global minimum" if len(minima) == 1
                else "global minima", zorder=5)
    elif fname == "saddle":
        ax.plot(0.0, 0.0, marker="P", ms=8, color="white", mec="black", mew=0.8, ls="none",
                label="saddle point", zorder=5)
