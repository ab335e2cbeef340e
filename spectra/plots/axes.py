"""Axis scales and ticks: the eigenvalue axis (symlog or linear, see
:mod:`spectra.linalg.scales`), readable ticks on log and symlog axes, and the choice of
a log or symlog scale for values of either sign."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib import ticker as mticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spectra.linalg.scales import EigenvalueScale
from spectra.plots.style import FONT

EIGENVALUE_LABEL = "eigenvalue"
DENSITY_LABEL = "density (per unit eigenvalue)"


def set_eigenvalue_scale(ax: Axes, scale: EigenvalueScale) -> None:
    """Give ``ax`` the x scale of ``scale``: matplotlib's symlog (base 10, linscale 1,
    the transform of :func:`spectra.linalg.scales.symlog`) or linear."""
    if scale.linthresh is None:
        ax.set_xscale("linear")
    else:
        ax.set_xscale("symlog", linthresh=scale.linthresh, linscale=1.0, base=10)


def eigenvalue_range(fig: Figure, axes: Sequence[Axes], scale: EigenvalueScale, lo: float,
                     hi: float) -> None:
    """The x range ``[lo, hi]`` of panels sharing x; on a symlog scale, ticks spaced for
    the width the first panel has once the layout has placed it."""
    axes[0].set_xlim(lo, hi)
    if scale.linthresh is not None:
        width = axes_width(fig, axes[0])
        for ax in axes:
            symlog_ticks(ax, lo, hi, scale.linthresh, width=width)


def symlog_ticks(
    ax: Axes, lo: float, hi: float, linthresh: float, which: str = "x", width: float = 6.0
) -> None:
    """Readable ticks on a symlog axis over ``[lo, hi]``: 0 and signed powers of ten
    (a range inside the linear part ``(-linthresh, linthresh)``: linear ticks).

    ``width`` is the axis length in inches. Labels are placed greedily, 0 and the
    largest decade on each side first, then the others from large to small, each only
    if it keeps clear of the labels already placed (by an estimate of their widths);
    the other decades and the 2..9 multiples get minor ticks.
    """
    axis = ax.xaxis if which == "x" else ax.yaxis
    if -lo < linthresh and hi < linthresh:  # all in the linear part: linear ticks, else
        # 0 would be the only label and the axis would have no readable extent
        axis.set_major_locator(mticker.MaxNLocator(nbins=max(3, int(width / 1.2))))
        axis.set_major_formatter(mticker.FuncFormatter(
            lambda v, _pos: f"{v:g}".replace("-", "\u2212")))
        axis.set_minor_locator(mticker.NullLocator())
        return
    k0 = math.floor(math.log10(linthresh) + 1e-9)
    tr = EigenvalueScale(linthresh)
    inch = width / max(float(tr.to_display(hi) - tr.to_display(lo)), 1e-300)  # in / unit
    char = 0.6 * FONT / 72.0  # inches per character of a tick label, roughly
    minor: list[float] = []
    sides: list[list[float]] = []
    for sign, end in ((1.0, hi), (-1.0, -lo)):
        if end < linthresh:
            continue
        ks = range(k0, math.floor(math.log10(end) + 1e-9) + 1)
        sides.append([sign * 10.0**k for k in reversed(ks)])
    if sum(len(side) for side in sides) <= 8:  # 2..9 multiples only where they stay legible
        for side in sides:
            end = hi if side[0] > 0 else -lo
            for v in side:
                minor.extend(m * v for m in range(2, 10) if m * abs(v) <= end)
    candidates = ([0.0] if lo <= 0 <= hi else []) + [side[0] for side in sides]
    candidates += [v for side in sides for v in side[1:]]

    def size(v: float) -> float:
        text = power_label(v)
        return char * (4 + (v < 0) if "$" in text else len(text))

    major: list[float] = []
    for v in candidates:
        u = float(tr.to_display(v))
        if all(abs(u - float(tr.to_display(m))) * inch >= (size(v) + size(m)) / 2 + 0.08
               for m in major):
            major.append(v)
    minor += [v for side in sides for v in side if v not in major]
    axis.set_major_locator(mticker.FixedLocator(sorted(major)))
    axis.set_minor_locator(mticker.FixedLocator(sorted(minor)))
    axis.set_major_formatter(mticker.FuncFormatter(power_label))
    axis.set_minor_formatter(mticker.NullFormatter())


def axes_width(fig: Figure, ax: Axes) -> float:
    """Width in inches of ``ax`` once the layout engine has placed it."""
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
    return float(ax.get_position().width * fig.get_figwidth())


def power_label(v: float, _pos: int | None = None) -> str:
    """A tick label: ``0``, plain numbers from 0.01 to 1000, else ``10^k`` in mathtext
    (with a true minus sign); values that are not powers of ten as ``%g``."""
    if v == 0:
        return "0"
    k = round(math.log10(abs(v)))
    if abs(abs(v) - 10.0**k) > 1e-9 * abs(v):
        return f"{v:g}"
    if -2 <= k <= 3:
        return f"{v:g}".replace("-", "\u2212")
    return ("\u2212" if v < 0 else "") + f"$10^{{{k}}}$"


def log_ticks(ax: Axes, which: str = "y") -> None:
    """On a log axis spanning at most 2.5 decades, plain numbers at 1-2-5 (or 1-3)
    ticks instead of matplotlib's minor labels such as 6x10^-1; wider ones keep decades."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if which == "y" else ax.get_xlim()
    if lo <= 0 or hi <= 0:
        return
    decades = math.log10(hi / lo)
    if decades <= 2.5:
        subs = (1.0, 2.0, 5.0) if decades <= 1.5 else (1.0, 3.0)
        axis.set_major_locator(mticker.LogLocator(base=10, subs=subs))
        axis.set_major_formatter(mticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(mticker.NullFormatter())


def value_scale(ax: Axes, values: np.ndarray, axis: str = "y") -> float | None:
    """Log scale for positive data, symlog when some values are <= 0.

    The symlog threshold is a power of ten at the 10% quantile of the nonzero
    ``|values|``, but no less than 1e-6 of the largest; non-finite values are ignored.
    The symlog axis has base 10 and linscale 1, the one :func:`symlog_ticks` labels.

    Returns:
        The symlog threshold, or None (log, or nothing to scale).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    setter = ax.set_yscale if axis == "y" else ax.set_xscale
    if v.size == 0:
        return None
    if np.all(v > 0):
        setter("log")
        return None
    nz = np.abs(v[v != 0])
    if nz.size == 0:
        return None
    lt = 10.0 ** math.floor(math.log10(float(np.quantile(nz, 0.1))))
    lt = max(lt, 10.0 ** math.floor(math.log10(float(nz.max()) * 1e-6)))
    setter("symlog", linthresh=lt, linscale=1.0, base=10)
    return lt


def time_ticks(fig: Figure) -> None:
    """x ticks for time axes (epochs, steps) that say what was recorded: on panels whose
    data all lie at one time (a run of one probe or one epoch), one tick at that time
    (matplotlib's default range around a single value has ticks such as -0.04 ... 0.04,
    epochs before training began); on panels whose times are all whole numbers (rows
    per epoch), whole-number ticks only (no "epoch 1.2" between epochs 1 and 2). Panels
    sharing x are judged together (they share their ticks)."""

    def times(ax: Axes) -> np.ndarray:
        xs = [np.zeros(0)]
        for line in ax.get_lines():  # lines placed in data coordinates along x
            if not line.get_transform().contains_branch_seperately(ax.transData)[0]:
                continue  # axhline and the like: x in axes coordinates
            try:
                x = np.asarray(line.get_xdata(), dtype=np.float64)
            except (TypeError, ValueError):
                continue
            xs.append(x[np.isfinite(x)])
        return np.concatenate(xs)

    for ax in fig.axes:
        if ax.get_xscale() != "linear":
            continue
        x = np.concatenate([times(a) for a in ax.get_shared_x_axes().get_siblings(ax)])
        if x.size and np.all(x == x[0]):
            ax.set_xticks([x[0]], [f"{x[0]:g}"])
        elif x.size and np.all(x == np.round(x)):
            ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
