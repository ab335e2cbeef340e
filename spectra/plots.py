"""Figures of training runs read from the HDF5 run store (:mod:`spectra.runs.store`).

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot
(no display, no global state; safe on a headless machine and in threads), sized
and lettered for a paper (9-10 pt text, constrained layout). :func:`save_figure`
writes one as PNG, PDF or SVG, by the path's suffix.

Plots compute nothing beyond Gaussian smoothing of the stored SLQ nodes and
weights with :meth:`spectra.linalg.density.SpectralMeasure.density` (and, for
:func:`plot_trajectories`, the test function's values on a grid for contours).

Runs. The ``runs`` argument of the run plots takes a :class:`~spectra.runs.store.RunData`,
a sequence of them, a mapping ``name -> RunData`` (as :func:`spectra.runs.store.read_runs`
returns), or the path of a ``.h5`` file; with a path, ``names`` picks runs (default:
all, in creation order). Panels are titled with the run name and the optimizer of the
run's config; one panel per run, on shared axes.

Time axis. ``by="auto"`` uses the epoch when every row has one, else the step;
``"epoch"`` and ``"step"`` force one.

Eigenvalue axis. A Hessian spectrum has a bulk near zero, a few large outliers and,
early in training, negative eigenvalues. Densities are drawn against a symmetric-log
axis (``xscale="symlog"``: linear on ``|lambda| <= linthresh``, logarithmic outside),
``linthresh`` a power of ten chosen from the stored Ritz nodes unless given: the
weight-median of ``|node|`` (the scale of the bulk), but no less than 1e-3 of the
largest ``|node|``, so the logarithmic part spans a few decades below the outliers.
Smoothing happens in the coordinate ``s(lambda) = c asinh(lambda / c)`` with
``c = linthresh / (1.11 ln 10)``, which follows the symlog axis (linear near 0,
logarithmic far out) but has a continuous derivative; so peaks have about the same
width on screen everywhere (within a factor 1.5): ``sigma`` is the Gaussian's width in
eigenvalue units near 0, and it grows in proportion to ``|lambda|`` beyond
``linthresh`` (default: 1/150 of the axis, 1/100 for overlaid curves). The value drawn
is still a density per unit eigenvalue: the smoothed density in ``s`` times
``ds/dlambda``, which integrates to 1 over the eigenvalues. ``xscale="linear"`` is
plain :meth:`SpectralMeasure.density` smoothing with a constant width.

Example::

    from spectra.plots import plot_evolution, save_figure
    fig = plot_evolution("runs/compare.h5", kind="heatmap")
    save_figure(fig, "figures/density_evolution.pdf")
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib import ticker as mticker
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from spectra.linalg.density import SpectralMeasure
from spectra.runs.store import RunData, read_run, read_runs

__all__ = [
    "FIGURE_FORMATS",
    "plot_curves",
    "plot_density",
    "plot_evolution",
    "plot_hparams",
    "plot_landscape",
    "plot_sharpness",
    "plot_trajectories",
    "save_figure",
]

RunsLike = RunData | Sequence[RunData] | Mapping[str, RunData] | str | os.PathLike

#: Suffix -> matplotlib format accepted by :func:`save_figure`.
FIGURE_FORMATS: dict[str, str] = {".png": "png", ".pdf": "pdf", ".svg": "svg"}

_FONT = 9.0
_TITLE = 10.0
_RC = {
    "font.size": _FONT,
    "axes.titlesize": _TITLE,
    "axes.labelsize": _FONT,
    "xtick.labelsize": _FONT,
    "ytick.labelsize": _FONT,
    "legend.fontsize": _FONT - 0.5,
    "legend.title_fontsize": _FONT,
    "figure.titlesize": _TITLE + 1,
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.3,
    "pdf.fonttype": 42,  # TrueType in PDFs: editable, accepted by publishers
    "svg.fonttype": "none",
}
_SINGLE = (6.5, 4.0)  # one panel: the text width of a paper
_MISSING = {"color": "0.45", "ha": "center", "va": "center", "fontsize": _FONT}


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(_RC):
        yield


# --------------------------------------------------------------------------- figures


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 200) -> Path:
    """Write ``fig`` to ``path`` as PNG, PDF or SVG, chosen by the suffix.

    Missing parent folders are created. ``dpi`` applies to PNG and to rasterized
    parts (heat maps) of PDF/SVG.

    Returns:
        The path written.

    Raises:
        ValueError: a suffix other than ``.png``, ``.pdf``, ``.svg``.
    """
    path = Path(path)
    fmt = FIGURE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        found = f"suffix {path.suffix!r}" if path.suffix else "no suffix"
        raise ValueError(
            f"cannot save a figure to {path}: {found}; expected one of "
            f"{', '.join(FIGURE_FORMATS)} (PNG for screens, PDF or SVG for papers)"
        )
    if not isinstance(fig, Figure):
        raise TypeError(f"expected a matplotlib Figure, got {type(fig).__name__}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _style():
        fig.savefig(path, format=fmt, dpi=dpi)
    return path


def _figure(figsize: tuple[float, float] | None, default: tuple[float, float]) -> Figure:
    return Figure(figsize=default if figsize is None else figsize, layout="constrained")


def _grid_shape(n: int) -> tuple[int, int]:
    """One row of up to three panels; more go two to a row."""
    ncols = n if n <= 3 else 2
    return math.ceil(n / ncols), ncols


def _panels_figsize(nrows: int, ncols: int) -> tuple[float, float]:
    if nrows * ncols == 1:
        return _SINGLE
    return (3.5 * ncols if ncols < 3 else 10.0, 2.9 * nrows + 0.4)


def _panels(fig: Figure, n: int, *, sharex: bool = True, sharey: bool = True) -> list[Axes]:
    """``n`` panels (see :func:`_grid_shape`); unused cells removed, tick labels kept."""
    nrows, ncols = _grid_shape(n)
    grid = fig.subplots(nrows, ncols, sharex=sharex, sharey=sharey, squeeze=False)
    axes = list(grid.flat)
    for ax in axes[n:]:
        ax.remove()
    axes = axes[:n]
    for ax in axes:
        ax.tick_params(labelbottom=True, labelleft=True, labelsize=_FONT)
    return axes


def _figure_legend(fig: Figure, axes: Sequence[Axes], ncols: int = 3) -> None:
    """One legend below all panels, each label once (panels share their entries)."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        width = fig.get_figwidth()
        ncols = len(entries) if width >= 9 else 4 if width >= 6.5 else ncols
        fig.legend(list(entries.values()), list(entries), loc="outside lower center",
                   ncols=min(len(entries), ncols), frameon=False)


def _legend_on_top(ax: Axes, ncols: int) -> None:
    """A one-row legend in a strip kept free at the top of the axes."""
    lo, hi = ax.get_ylim()
    if ax.get_yscale() == "log":
        ax.set_ylim(lo, hi * (hi / lo) ** 0.3)
    elif ax.get_yscale() == "linear":
        ax.set_ylim(lo, hi + 0.3 * (hi - lo))
    ax.legend(loc="upper center", ncols=ncols, frameon=False, handlelength=1.5,
              columnspacing=1.0)


def _log_ticks(ax: Axes, which: str = "y") -> None:
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


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, **_MISSING)


# --------------------------------------------------------------------------- runs


def _resolve_runs(runs: RunsLike, names: str | Iterable[str] | None) -> list[RunData]:
    if isinstance(names, str):
        names = [names]
    names = None if names is None else list(names)
    if isinstance(runs, (str, os.PathLike)):
        if names is None:
            out = list(read_runs(runs).values())
            if not out:
                raise ValueError(f"{runs} holds no runs; nothing to plot")
        else:
            out = [read_run(runs, n) for n in names]
    elif isinstance(runs, RunData):
        out = [runs]
    elif isinstance(runs, Mapping):
        if names is not None:
            missing = [n for n in names if n not in runs]
            if missing:
                raise ValueError(f"no runs named {missing}; available: {list(runs)}")
            out = [runs[n] for n in names]
        else:
            out = list(runs.values())
    elif isinstance(runs, Sequence):
        out = list(runs)
        if names is not None:
            have = [getattr(r, "name", None) for r in out]
            missing = [n for n in names if n not in have]
            if missing:
                raise ValueError(f"no runs named {missing}; available: {have}")
            out = [r for r in out if getattr(r, "name", None) in names]
    else:
        raise TypeError(
            "runs must be a RunData, a sequence or mapping of them, or the path of a "
            f"spectra-run .h5 file; got {type(runs).__name__}"
        )
    for r in out:
        if not isinstance(r, RunData):
            raise TypeError(
                f"expected spectra.runs.store.RunData objects, got {type(r).__name__}; read runs "
                "with spectra.runs.store.read_run(path, name) or pass the .h5 path"
            )
    if not out:
        raise ValueError("no runs to plot: the list of runs is empty")
    return out


def _one_run(run: RunData | RunsLike, name: str | None) -> RunData:
    runs = _resolve_runs(run, name)
    if len(runs) > 1:
        where = str(run) if isinstance(run, (str, os.PathLike)) else "the runs given"
        raise ValueError(
            f"{where} hold {len(runs)} runs ({', '.join(r.name for r in runs)}); "
            "pass name= to pick one"
        )
    return runs[0]


def _config_name(config: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, Mapping):
            value = value.get("name")
        if isinstance(value, str) and value:
            return value
    return None


def _run_title(run: RunData) -> str:
    opt = _config_name(run.config, "optimizer", "optim")
    if opt is None or opt == run.name:
        return run.name
    return f"{run.name} ({opt})"


def _setting(runs: Sequence[RunData]) -> str:
    """'model on data' when every run shares them, else ''."""
    models = {_config_name(r.config, "model") for r in runs}
    datas = {_config_name(r.config, "data", "dataset") for r in runs}
    model = models.pop() if len(models) == 1 else None
    data = datas.pop() if len(datas) == 1 else None
    if model and data:
        return f"{model} on {data}"
    return model or data or ""


def _title(base: str, runs: Sequence[RunData]) -> str:
    """``base (model on data)`` when the runs share a model and data set."""
    setting = _setting(runs)
    return f"{base} ({setting})" if setting else base


def _time(
    by: str, step: np.ndarray, epoch: np.ndarray, what: str
) -> tuple[np.ndarray, str]:
    """The time column of a table and its axis label."""
    if by not in ("auto", "epoch", "step"):
        raise ValueError(f"by must be 'auto', 'epoch' or 'step', got {by!r}")
    epoch = np.asarray(epoch, dtype=np.float64)
    has_epoch = epoch.size > 0 and bool(np.all(np.isfinite(epoch)))
    if by == "epoch" and not has_epoch:
        raise ValueError(
            f"{what} has rows without an epoch; plot against the step with by='step'"
        )
    if by == "epoch" or (by == "auto" and has_epoch):
        return epoch, "epoch"
    return np.asarray(step, dtype=np.float64), "step"


def _time_kind(by: str, tables: Sequence[tuple[np.ndarray, np.ndarray]]) -> str:
    """One time axis for several tables (shared axes): epoch only if all have it."""
    if by != "auto":
        return by
    for _, epoch in tables:
        e = np.asarray(epoch, dtype=np.float64)
        if e.size and not np.all(np.isfinite(e)):
            return "step"
    return "epoch"


# --------------------------------------------------------------------------- eigenvalue axis


_LOG10 = math.log(10.0)
_LOG_DECADES = 3  # decades of a data-chosen symlog axis below its largest |value|


@dataclass(frozen=True)
class _EigAxis:
    """The eigenvalue axis: matplotlib's symlog transform (base 10, linscale 1) or linear."""

    linthresh: float | None  # None: linear

    @property
    def _a(self) -> float:  # matplotlib's linscale_adj = linscale / (1 - 1/base)
        return 1.0 / (1.0 - 0.1)

    def fwd(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.linthresh is None:
            return x
        t = self.linthresh
        ax = np.abs(x)
        with np.errstate(divide="ignore"):
            out = np.sign(x) * t * (self._a + np.log10(np.maximum(ax, t) / t))
        return np.where(ax <= t, x * self._a, out)

    def inv(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        if self.linthresh is None:
            return u
        t = self.linthresh
        au = np.abs(u)
        out = np.sign(u) * t * 10.0 ** (np.maximum(au / t, self._a) - self._a)
        return np.where(au <= t * self._a, u / self._a, out)

    # Smoothing coordinate s(x) = c t asinh(x / (c t)): like the symlog display
    # coordinate (linear near 0, logarithmic far out, display ~ 1.11 s in both
    # regimes with c = 1 / (ln 10 * 1.11)) but with a continuous derivative, so that
    # the density per unit eigenvalue has no jump at +-linthresh. ds/dx = 1 at 0.
    _C = 1.0 / (_LOG10 / (1.0 - 0.1))

    def sfwd(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.linthresh is None:
            return x
        ct = self._C * self.linthresh
        return ct * np.arcsinh(x / ct)

    def sinv(self, s: float) -> float:
        if self.linthresh is None:
            return float(s)
        ct = self._C * self.linthresh
        return float(ct * np.sinh(s / ct))

    def sderiv(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.linthresh is None:
            return np.ones_like(x)
        ct = self._C * self.linthresh
        return 1.0 / np.sqrt(1.0 + (x / ct) ** 2)

    def apply(self, ax: Axes) -> None:
        if self.linthresh is None:
            ax.set_xscale("linear")
        else:
            ax.set_xscale("symlog", linthresh=self.linthresh, linscale=1.0, base=10)


def _symlog_ticks(
    ax: Axes, lo: float, hi: float, linthresh: float, which: str = "x", width: float = 6.0
) -> None:
    """Readable ticks on a symlog axis over ``[lo, hi]``: 0 and signed powers of ten.

    ``width`` is the axis length in inches. Labels are placed greedily, 0 and the
    largest decade on each side first, then the others from large to small, each only
    if it keeps clear of the labels already placed (by an estimate of their widths);
    the other decades and the 2..9 multiples get minor ticks.
    """
    axis = ax.xaxis if which == "x" else ax.yaxis
    k0 = math.floor(math.log10(linthresh) + 1e-9)
    tr = _EigAxis(linthresh)
    inch = width / max(float(tr.fwd(hi) - tr.fwd(lo)), 1e-300)  # inches per display unit
    char = 0.6 * _FONT / 72.0  # inches per character of a tick label, roughly
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
        text = _power_label(v)
        return char * (4 + (v < 0) if "$" in text else len(text))

    major: list[float] = []
    for v in candidates:
        u = float(tr.fwd(v))
        if all(abs(u - float(tr.fwd(m))) * inch >= (size(v) + size(m)) / 2 + 0.08 for m in major):
            major.append(v)
    minor += [v for side in sides for v in side if v not in major]
    axis.set_major_locator(mticker.FixedLocator(sorted(major)))
    axis.set_minor_locator(mticker.FixedLocator(sorted(minor)))
    axis.set_major_formatter(mticker.FuncFormatter(_power_label))
    axis.set_minor_formatter(mticker.NullFormatter())


def _axes_width(fig: Figure, ax: Axes) -> float:
    """Width in inches of ``ax`` once the layout engine has placed it."""
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
    return float(ax.get_position().width * fig.get_figwidth())


def _power_label(v: float, _pos: int | None = None) -> str:
    if v == 0:
        return "0"
    k = round(math.log10(abs(v)))
    if abs(abs(v) - 10.0**k) > 1e-9 * abs(v):
        return f"{v:g}"
    if -2 <= k <= 3:
        return f"{v:g}".replace("-", "\u2212")
    return ("\u2212" if v < 0 else "") + f"$10^{{{k}}}$"


def _clean_measure(nodes: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Nodes and weights of one stored probe row, NaN padding removed; None if empty.

    NaN entries (rows of a run without a density there, or padding of shorter
    Lanczos runs) get weight 0; random vectors with no weight left are dropped so
    that the average over vectors stays normalized.
    """
    nodes = np.asarray(nodes, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(nodes) & np.isfinite(weights) & (weights > 0)
    w = np.where(ok, weights, 0.0)
    x = np.where(np.isfinite(nodes), nodes, 0.0)
    keep = w.sum(axis=1) > 0
    if not np.any(keep):
        return None
    return x[keep], w[keep]


def _choose_linthresh(measures: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """A power of ten: the weight-median of |node| (the bulk's scale), but at least
    ``10**-_LOG_DECADES`` of the largest |node|, so that the logarithmic part of the
    axis spans a few decades below the outliers rather than resolving noise at zero."""
    a = np.concatenate([np.abs(n[w > 0]) for n, w in measures])
    w = np.concatenate([(w / w.sum(axis=1, keepdims=True))[w > 0] for _, w in measures])
    amax = float(a.max()) if a.size else 0.0
    if amax == 0.0:
        return 1.0
    order = np.argsort(a)
    cw = np.cumsum(w[order])
    median = float(a[order][np.searchsorted(cw, 0.5 * cw[-1])])
    scale = min(max(median, amax * 10.0**-_LOG_DECADES), amax)
    return float(10.0 ** round(math.log10(scale)))


def _eig_axis(
    xscale: str, linthresh: float | None, measures: Sequence[tuple[np.ndarray, np.ndarray]]
) -> _EigAxis:
    if xscale == "linear":
        return _EigAxis(None)
    if xscale != "symlog":
        raise ValueError(f"xscale must be 'symlog' or 'linear', got {xscale!r}")
    if linthresh is not None:
        if not (math.isfinite(linthresh) and linthresh > 0):
            raise ValueError(f"linthresh must be a positive number, got {linthresh!r}")
        return _EigAxis(float(linthresh))
    return _EigAxis(_choose_linthresh(measures))


@dataclass(frozen=True)
class _EigGrid:
    centers: np.ndarray  # (g,) eigenvalues where the density is evaluated
    edges: np.ndarray  # (g + 1,) cell edges in eigenvalue units (for heat maps)
    sigma_s: float  # smoothing width in the smoothing coordinate (eigenvalue units at 0)


def _eig_grid(
    axis: _EigAxis,
    measures: Sequence[tuple[np.ndarray, np.ndarray]],
    grid: int | np.ndarray,
    sigma: float | None,
    resolution: float = 150.0,
) -> _EigGrid:
    """The evaluation grid, evenly spaced on screen, and the smoothing width: ``sigma``,
    or the nodes' extent in the smoothing coordinate over ``resolution``."""
    if sigma is not None and not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive width in eigenvalue units, got {sigma!r}")
    lo = min(float(n[w > 0].min()) for n, w in measures)
    hi = max(float(n[w > 0].max()) for n, w in measures)
    s_lo, s_hi = float(axis.sfwd(lo)), float(axis.sfwd(hi))
    if s_hi - s_lo <= 0:
        half = max(abs(s_lo), 1.0) * 0.1
        s_lo, s_hi = s_lo - half, s_hi + half
    sigma_s = (s_hi - s_lo) / resolution if sigma is None else float(sigma)
    if np.ndim(grid) == 0:
        num = int(grid)  # type: ignore[arg-type]
        if num < 2:
            raise ValueError(f"grid must be at least 2 points (or an array), got {grid!r}")
        # 3 sigma of margin beyond the extreme nodes, evenly spaced in the display coordinate
        x_lo, x_hi = axis.sinv(s_lo - 3 * sigma_s), axis.sinv(s_hi + 3 * sigma_s)
        u_edges = np.linspace(float(axis.fwd(x_lo)), float(axis.fwd(x_hi)), num + 1)
        centers = axis.inv(0.5 * (u_edges[1:] + u_edges[:-1]))
    else:
        centers = np.asarray(grid, dtype=np.float64)
        if centers.ndim != 1 or centers.size < 2 or not np.all(np.isfinite(centers)):
            raise ValueError("grid must be an int or a 1-D array of at least 2 finite eigenvalues")
        if np.any(np.diff(centers) <= 0):
            raise ValueError("grid must be strictly increasing")
        uc = axis.fwd(centers)
        mid = 0.5 * (uc[1:] + uc[:-1])
        u_edges = np.concatenate([[2 * uc[0] - mid[0]], mid, [2 * uc[-1] - mid[-1]]])
    return _EigGrid(centers=centers, edges=axis.inv(u_edges), sigma_s=sigma_s)


def _smooth(
    axis: _EigAxis, grid: _EigGrid, nodes: np.ndarray, weights: np.ndarray, dim: int
) -> np.ndarray:
    """Density per unit eigenvalue on ``grid.centers``: SLQ smoothing in the smoothing
    coordinate, times its derivative (the change of variables)."""
    measure = SpectralMeasure(
        nodes=axis.sfwd(nodes), weights=weights, num_matvecs=int(nodes.size), dim=dim
    )
    return measure.density(axis.sfwd(grid.centers), grid.sigma_s) * axis.sderiv(grid.centers)


def _dim(run: RunData) -> int:
    for key in ("num_params", "num_parameters", "dim", "parameters"):
        value = run.config.get(key)
        if isinstance(value, (int, float)) and value > 0:
            return int(value)
    return 0


_NO_DENSITY = (
    "run {name!r} has no density probes: record them with density=(n_v, m) "
    "(SpectralMonitor or `spectra train`), which stores the SLQ ritz_nodes/ritz_weights"
)


@dataclass(frozen=True)
class _DensityRows:
    run: RunData
    time: np.ndarray  # (r,) epoch or step of each probe with a density, increasing
    index: np.ndarray  # (r,) their row numbers in the probes table
    measures: list[tuple[np.ndarray, np.ndarray]]


def _nonfinite_rows(nodes: np.ndarray, weights: np.ndarray) -> list[int]:
    """Rows ``i`` of ``(r, n_v, m)`` (or ``(n_v, m)``) SLQ arrays holding a NaN or Inf that
    is not padding: padding (and a row without a density) is NaN in both arrays at once,
    so an Inf anywhere, or a NaN beside a finite partner, is a diverged probe or damage."""
    n = np.asarray(nodes, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    broken = ~(np.isfinite(n) & np.isfinite(w)) & ~(np.isnan(n) & np.isnan(w))
    return [int(i) for i in np.flatnonzero(broken.reshape(broken.shape[0], -1).any(axis=1))]


def _row_list(rows: list[int]) -> str:
    more = f", ... ({len(rows)} in all)" if len(rows) > 10 else ""
    return "[" + ", ".join(map(str, rows[:10])) + more + "]"


def _density_rows(run: RunData, kind: str) -> _DensityRows:
    p = run.probes
    if p.ritz_nodes is None or p.ritz_weights is None or len(p) == 0:
        raise ValueError(_NO_DENSITY.format(name=run.name))
    t, _ = _time(kind, p.step, p.epoch, f"run {run.name!r}'s probes")
    bad = _nonfinite_rows(p.ritz_nodes, p.ritz_weights)
    rows = []
    for i in range(len(p)):
        m = None if i in bad else _clean_measure(p.ritz_nodes[i], p.ritz_weights[i])
        if m is not None and np.isfinite(t[i]):
            rows.append((float(t[i]), i, m))
    if bad:
        what = (f"run {run.name!r}: the stored Ritz nodes or weights of probe rows "
                f"{_row_list(bad)} are not finite (NaN or Inf: a probe that diverged, or a "
                "damaged file)")
        if not rows:
            raise ValueError(f"{what}; no other probe row has a density to draw")
        warnings.warn(f"{what}; skipped", stacklevel=3)
    if not rows:
        raise ValueError(_NO_DENSITY.format(name=run.name))
    rows.sort(key=lambda r: (r[0], r[1]))
    return _DensityRows(
        run=run,
        time=np.array([r[0] for r in rows]),
        index=np.array([r[1] for r in rows], dtype=np.int64),
        measures=[r[2] for r in rows],
    )


def _row_edges(t: np.ndarray) -> np.ndarray:
    """Cell edges around row centres ``t`` (increasing): midpoints, ends mirrored."""
    if t.size == 1:
        return np.array([t[0] - 0.5, t[0] + 0.5])
    mid = 0.5 * (t[1:] + t[:-1])
    return np.concatenate([[2 * t[0] - mid[0]], mid, [2 * t[-1] - mid[-1]]])


_EIG_LABEL = "eigenvalue"
_DENSITY_CBAR = "log10 density (per unit eigenvalue)"


# --------------------------------------------------------------------------- evolution


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
        runs, names: the runs (see the module docstring).
        kind: ``"heatmap"`` or ``"curves"``.
        sigma: smoothing width in eigenvalue units (see the module docstring).
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
    run_list = _resolve_runs(runs, names)
    tkind = _time_kind(by, [(r.probes.step, r.probes.epoch) for r in run_list])
    data = [_density_rows(r, tkind) for r in run_list]
    all_measures = [m for d in data for m in d.measures]
    axis = _eig_axis(xscale, linthresh, all_measures)
    eg = _eig_grid(
        axis, all_measures, grid, sigma, resolution=150.0 if kind == "heatmap" else 100.0
    )
    dens = [np.array([_smooth(axis, eg, n, w, _dim(d.run)) for n, w in d.measures]) for d in data]
    peak = max(float(np.max(D)) for D in dens)
    if not (math.isfinite(peak) and peak > 0):
        raise ValueError("the stored densities are all zero or not finite; nothing to draw")
    vmax = math.log10(peak)
    vmin = vmax - decades

    nrows, ncols = _grid_shape(len(data))
    with _style():
        fig = _figure(figsize, _panels_figsize(nrows, ncols))
        axes = _panels(fig, len(data))
        tmin = min(float(d.time[0]) for d in data)
        tmax = max(float(d.time[-1]) for d in data)
        if kind == "heatmap":
            cm = matplotlib.colormaps[cmap or "magma"]
            mesh = None
            for ax, d, D in zip(axes, data, dens):
                logd = np.log10(np.maximum(D, 10.0 ** (vmin - 1)))
                mesh = ax.pcolormesh(
                    eg.edges, _row_edges(d.time), logd, cmap=cm, vmin=vmin, vmax=vmax,
                    shading="flat", rasterized=True,
                )
                ax.axvline(0.0, color="white", lw=0.6, ls=":", alpha=0.8)
            edges = [_row_edges(d.time) for d in data]
            axes[0].set_ylim(min(e[0] for e in edges), max(e[-1] for e in edges))
            cbar = fig.colorbar(mesh, ax=axes, pad=0.02, aspect=30)
            cbar.set_label(_DENSITY_CBAR)
            cbar.ax.tick_params(labelsize=_FONT)
            base = "Hessian eigenvalue density over training"
        else:
            cm = matplotlib.colormaps[cmap or "viridis"]
            norm = mcolors.Normalize(vmin=tmin, vmax=tmax if tmax > tmin else tmin + 1)
            floor = 10.0**vmin
            for ax, d, D in zip(axes, data, dens):
                for t, y in zip(d.time, D):
                    ax.plot(eg.centers, np.maximum(y, 0.5 * floor), color=cm(norm(t)), lw=1.0)
                ax.axvline(0.0, color="0.6", lw=0.6, ls=":")
                ax.set_yscale("log")
            axes[0].set_ylim(floor, 10.0 ** (vmax + 0.3))
            cbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cm), ax=axes, pad=0.02, aspect=30)
            cbar.set_label(tkind)
            cbar.ax.tick_params(labelsize=_FONT)
            base = "Hessian eigenvalue density by " + tkind
        ylabel = tkind if kind == "heatmap" else "density (per unit eigenvalue)"
        for i, (ax, d) in enumerate(zip(axes, data)):
            if i % ncols == 0:
                ax.set_ylabel(ylabel)
            axis.apply(ax)
            ax.set_xlabel(_EIG_LABEL)
            if len(data) > 1:
                ax.set_title(_run_title(d.run))
        axes[0].set_xlim(eg.edges[0], eg.edges[-1])
        if axis.linthresh is not None:
            fig.suptitle(" ")  # reserve the title's room before measuring
            width = _axes_width(fig, axes[0])
            for ax in axes:
                _symlog_ticks(ax, eg.edges[0], eg.edges[-1], axis.linthresh, width=width)
        if len(data) == 1:
            base = f"{base}: {_run_title(data[0].run)}"
        fig.suptitle(title if title is not None else _title(base, run_list))
    return fig


# --------------------------------------------------------------------------- density


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
        sigma, grid, xscale, linthresh, decades: as in :func:`plot_evolution`.

    For a run, its top eigenvalues and smallest eigenvalue of that probe (Lanczos)
    are marked with vertical lines.
    """
    if not (math.isfinite(decades) and decades > 0):
        raise ValueError(f"decades must be a positive number, got {decades!r}")
    marks: list[tuple[np.ndarray, str, str]] = []
    if isinstance(source, SpectralMeasure):
        bad = _nonfinite_rows(source.nodes, source.weights)
        if bad:
            raise ValueError(
                f"the SpectralMeasure's nodes or weights are not finite (NaN or Inf) in rows "
                f"{_row_list(bad)} (one per random vector); nothing to draw"
            )
        m = _clean_measure(source.nodes, source.weights)
        if m is None:
            raise ValueError("the SpectralMeasure has no node with positive weight")
        dim = source.dim
        base = "Hessian eigenvalue density"
        run_list: list[RunData] = []
    else:
        run = _one_run(source, name)
        d = _density_rows(run, _time_kind("auto", [(run.probes.step, run.probes.epoch)]))
        n = len(d.measures)
        if not -n <= probe < n:
            raise ValueError(
                f"probe={probe} is out of range: run {run.name!r} has {n} probes with a density"
            )
        m = d.measures[probe]
        row = int(d.index[probe])
        dim = _dim(run)
        p = run.probes
        epoch = float(p.epoch[row])
        when = f"epoch {epoch:g}" if math.isfinite(epoch) else f"step {int(p.step[row])}"
        base = f"Hessian eigenvalue density: {_run_title(run)} at {when}"
        run_list = [run]
        if p.top_eigenvalues is not None:
            top = np.asarray(p.top_eigenvalues[row], dtype=np.float64)
            top = top[np.isfinite(top)]
            if top.size:
                marks.append((top, "C3", f"top-{top.size} eigenvalues (Lanczos)"))
        bottom = float(p.bottom_eigenvalue[row])
        if math.isfinite(bottom):
            marks.append((np.array([bottom]), "C0", "smallest eigenvalue (Lanczos)"))
    axis = _eig_axis(xscale, linthresh, [m])
    eg = _eig_grid(axis, [m], grid, sigma)
    y = _smooth(axis, eg, m[0], m[1], dim)
    peak = float(np.max(y))
    if not (math.isfinite(peak) and peak > 0):
        raise ValueError("the density is zero or not finite everywhere; nothing to draw")
    floor = peak * 10.0**-decades
    with _style():
        fig = _figure(figsize, _SINGLE)
        ax = fig.subplots()
        ax.fill_between(eg.centers, floor, np.maximum(y, floor), color="C0", alpha=0.15, lw=0)
        ax.plot(eg.centers, np.maximum(y, 0.5 * floor), color="C0", lw=1.3, label="SLQ density")
        for values, color, label in marks:
            for j, v in enumerate(values):
                ax.axvline(v, color=color, lw=0.8, ls="--", alpha=0.8,
                           label=label if j == 0 else None)
        axis.apply(ax)
        ax.set_yscale("log")
        ax.set_ylim(floor, peak * 2.0)
        ax.set_xlim(eg.edges[0], eg.edges[-1])
        if axis.linthresh is not None:
            _symlog_ticks(ax, eg.edges[0], eg.edges[-1], axis.linthresh,
                          width=_axes_width(fig, ax))
        ax.set_xlabel(_EIG_LABEL)
        ax.set_ylabel("density (per unit eigenvalue)")
        ax.tick_params(labelsize=_FONT)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(marks) + 1,
                  frameon=False, handlelength=1.8, columnspacing=1.2)
        fig.suptitle(title if title is not None else _title(base, run_list))
    return fig


# --------------------------------------------------------------------------- sharpness


def _stability_threshold(run: RunData, tkind: str) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(time, threshold, label) from the metrics' lr (and momentum), or None."""
    mt = run.metrics
    if len(mt) == 0:
        return None
    t, _ = _time(tkind, mt.step, mt.epoch, f"run {run.name!r}'s metrics")
    lr = np.asarray(mt.lr, dtype=np.float64)
    beta = np.asarray(mt.momentum, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(lr) & (lr > 0)
    if not np.any(ok):
        return None
    has_beta = bool(np.any(np.isfinite(beta[ok]) & (beta[ok] > 0)))
    b = np.where(np.isfinite(beta), beta, 0.0)
    thr = (2.0 + 2.0 * b) / np.where(ok, lr, np.nan)
    order = np.argsort(t[ok], kind="stable")
    label = (r"$(2+2\beta)/\eta$" if has_beta else r"$2/\eta$") + " (edge of stability)"
    return t[ok][order], thr[ok][order], label


def _value_scale(ax: Axes, values: np.ndarray, axis: str = "y") -> None:
    """Log scale for positive data, symlog when some values are <= 0."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    setter = ax.set_yscale if axis == "y" else ax.set_xscale
    if v.size == 0:
        return
    if np.all(v > 0):
        setter("log")
        return
    nz = np.abs(v[v != 0])
    if nz.size == 0:
        return
    lt = 10.0 ** math.floor(math.log10(float(np.quantile(nz, 0.1))))
    lt = max(lt, 10.0 ** math.floor(math.log10(float(nz.max()) * 1e-6)))
    setter("symlog", linthresh=lt, linscale=0.5)


def plot_sharpness(
    runs: RunsLike,
    names: str | Iterable[str] | None = None,
    *,
    by: str = "auto",
    stability: bool = True,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Top-k Hessian eigenvalues and the smallest one over training, one panel per run.

    With ``stability`` and a recorded ``lr``, the edge-of-stability threshold of
    gradient descent is drawn: ``2/lr``, or ``(2 + 2 beta)/lr`` for heavy-ball
    momentum ``beta`` when the metrics record one (Cohen et al., 2021). For adaptive
    optimizers (Adam and kin) the threshold applies to the preconditioned Hessian,
    not to these eigenvalues. The y axis is logarithmic when every value drawn is
    positive, else symmetric-log.

    Raises:
        ValueError: a run whose probes hold no top eigenvalues nor smallest eigenvalue.
    """
    run_list = _resolve_runs(runs, names)
    tkind = _time_kind(by, [(r.probes.step, r.probes.epoch) for r in run_list])
    per_run = []
    drawn: list[np.ndarray] = []
    for r in run_list:
        p = r.probes
        top = None if p.top_eigenvalues is None else np.asarray(p.top_eigenvalues, np.float64)
        bottom = np.asarray(p.bottom_eigenvalue, dtype=np.float64)
        has_top = top is not None and bool(np.any(np.isfinite(top)))
        has_bottom = bool(np.any(np.isfinite(bottom)))
        if len(p) == 0 or not (has_top or has_bottom):
            raise ValueError(
                f"run {r.name!r} has no eigenvalue probes: record them with top_k=k (and "
                "bottom=True) in SpectralMonitor or `spectra train`"
            )
        t, _ = _time(tkind, p.step, p.epoch, f"run {r.name!r}'s probes")
        order = np.argsort(t, kind="stable")
        top = top[order] if has_top else None
        bottom = bottom[order]
        thr = _stability_threshold(r, tkind) if stability else None
        per_run.append((r, t[order], top, bottom if has_bottom else None, thr))
        if top is not None:
            drawn.append(top.ravel())
        if has_bottom:
            drawn.append(bottom)
    eig_values = np.concatenate(drawn)
    eig_values = eig_values[np.isfinite(eig_values)]
    top_max = float(eig_values.max())
    lim_values = [eig_values]
    for *_, thr in per_run:
        if thr is not None:
            # keep the eigenvalues readable when lr -> 0 sends the threshold to infinity
            cap = 30.0 * abs(top_max) if top_max != 0 else np.inf
            lim_values.append(np.minimum(thr[1], cap))
    all_values = np.concatenate(lim_values)

    nrows, ncols = _grid_shape(len(per_run))
    with _style():
        fig = _figure(figsize, _panels_figsize(nrows, ncols))
        axes = _panels(fig, len(per_run))
        for i, (ax, (r, t, top, bottom, thr)) in enumerate(zip(axes, per_run)):
            if top is not None:
                k = top.shape[1]
                shades = matplotlib.colormaps["Blues"](np.linspace(0.95, 0.45, k))
                for j in range(k):
                    ok = np.isfinite(top[:, j])
                    if j == 0:
                        label = r"$\lambda_1$ (top)"
                    elif j == 1:
                        label = {2: r"$\lambda_2$", 3: r"$\lambda_2, \lambda_3$"}.get(
                            k, rf"$\lambda_2, \dots, \lambda_{{{k}}}$")
                    else:
                        label = None
                    ax.plot(t[ok], top[ok, j], color=shades[j], lw=1.6 if j == 0 else 0.9,
                            marker="o" if ok.sum() <= 40 else None, ms=2.5, label=label)
            if bottom is not None:
                ok = np.isfinite(bottom)
                ax.plot(t[ok], bottom[ok], color="C3", lw=1.2, ls="-",
                        marker="s" if ok.sum() <= 40 else None, ms=2.5,
                        label=r"$\lambda_{\min}$")
            if thr is not None:
                ax.plot(thr[0], thr[1], color="black", lw=1.0, ls="--", drawstyle="steps-post",
                        label=thr[2])
            ax.axhline(0.0, color="0.7", lw=0.6, zorder=0)
            ax.set_xlabel(tkind)
            if i % ncols == 0:
                ax.set_ylabel("Hessian eigenvalue")
            if len(per_run) > 1:
                ax.set_title(_run_title(r))
        _figure_legend(fig, axes)
        _value_scale(axes[0], all_values)
        v = all_values[np.isfinite(all_values)]
        lo, hi = float(v.min()), float(v.max())
        if axes[0].get_yscale() == "log":
            axes[0].set_ylim(lo / 1.5, hi * 1.5)
            _log_ticks(axes[0])
        elif axes[0].get_yscale() == "symlog":
            axes[0].set_ylim(lo * 1.5 if lo < 0 else lo, hi * 1.5 if hi > 0 else hi / 1.5)
        else:
            span = hi - lo if hi > lo else max(abs(hi), 1.0)
            axes[0].set_ylim(lo - 0.1 * span, hi + 0.1 * span)
        base = "Sharpness over training"
        if len(per_run) == 1:
            base = f"{base}: {_run_title(per_run[0][0])}"
        fig.suptitle(title if title is not None else _title(base, run_list))
    return fig


# --------------------------------------------------------------------------- curves

_CURVES = (
    ("train_loss", "train loss", "loss"),
    ("test_loss", "test loss", "loss"),
    ("train_acc", "train accuracy", "accuracy (%)"),
    ("test_acc", "test accuracy", "accuracy (%)"),
)


def plot_curves(
    runs: RunsLike,
    names: str | Iterable[str] | None = None,
    *,
    by: str = "auto",
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Loss and accuracy, train and test, one line per run (optimizer): 2 x 2 panels.

    Losses are on a log axis when positive; accuracies stored as fractions are drawn
    in percent. Rows that do not give a value (NaN) are skipped. A panel with no data
    in any run says "not recorded".

    Raises:
        ValueError: no run records any of train/test loss/accuracy.
    """
    run_list = _resolve_runs(runs, names)
    tkind = _time_kind(by, [(r.metrics.step, r.metrics.epoch) for r in run_list])
    series: dict[str, list[tuple[RunData, np.ndarray, np.ndarray]]] = {c: [] for c, *_ in _CURVES}
    for r in run_list:
        mt = r.metrics
        if len(mt) == 0:
            continue
        t, _ = _time(tkind, mt.step, mt.epoch, f"run {r.name!r}'s metrics")
        for col, *_ in _CURVES:
            y = np.asarray(mt[col], dtype=np.float64)
            ok = np.isfinite(y) & np.isfinite(t)
            if np.any(ok):
                order = np.argsort(t[ok], kind="stable")
                series[col].append((r, t[ok][order], y[ok][order]))
    if not any(series.values()):
        raise ValueError(
            f"runs {[r.name for r in run_list]} record no train/test loss or accuracy in "
            "their metrics"
        )
    acc_scale = 1.0
    acc = [y for c in ("train_acc", "test_acc") for _, _, y in series[c]]
    if acc and max(float(np.max(y)) for y in acc) <= 1.0 + 1e-9:
        acc_scale = 100.0
    color = {r.name: f"C{i % 10}" for i, r in enumerate(run_list)}
    with _style():
        fig = _figure(figsize, (7.0, 5.2))
        grid = fig.subplots(2, 2, sharex=True, squeeze=False)
        grid[0, 0].sharey(grid[0, 1])
        grid[1, 0].sharey(grid[1, 1])
        handles = {}
        for ax, (col, label, ylabel) in zip(grid.flat, _CURVES):
            ax.tick_params(labelbottom=True, labelsize=_FONT)
            items = series[col]
            if not items:
                _no_data(ax, f"{label}: not recorded")
            for r, t, y in items:
                y = y * acc_scale if col.endswith("acc") else y
                (h,) = ax.plot(t, y, color=color[r.name], lw=1.3,
                               marker="o" if t.size <= 30 else None, ms=2.5)
                handles.setdefault(r.name, (h, _run_title(r)))
            ax.set_title(label)
            ax.set_xlabel(tkind)
            ax.set_ylabel(ylabel if acc_scale == 100.0 or "loss" in col else "accuracy")
        losses = [y for c in ("train_loss", "test_loss") for _, _, y in series[c]]
        if losses and all(np.all(y > 0) for y in losses):
            grid[0, 0].set_yscale("log")  # shared with grid[0, 1]
            _log_ticks(grid[0, 0])
        fig.legend(
            [h for h, _ in handles.values()], [lab for _, lab in handles.values()],
            loc="outside lower center", ncols=min(len(handles), 5), frameon=False,
        )
        fig.suptitle(title if title is not None else _title("Training curves", run_list))
    return fig


# --------------------------------------------------------------------------- hparams

_MULTIPLIERS = (("lr_mult", r"$\eta$"), ("momentum_mult", "momentum"),
                ("wd_mult", "weight decay"))


def _extra(run: RunData, key: str, tkind: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A column from the probes' extras, else the metrics' extras: (time, values)."""
    for table, what in ((run.probes, "probes"), (run.metrics, "metrics")):
        if key in table.extra and len(table):
            t, _ = _time(tkind, table.step, table.epoch, f"run {run.name!r}'s {what}")
            y = np.asarray(table.extra[key], dtype=np.float64)
            ok = np.isfinite(t) & np.isfinite(y)
            if np.any(ok):
                order = np.argsort(t[ok], kind="stable")
                return t[ok][order], y[ok][order]
    return None


def plot_hparams(
    run: RunData | RunsLike,
    name: str | None = None,
    *,
    by: str = "step",
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """DCAO's hyperparameters and the curvature that drives them, against the step.

    Left column: ``lr``, ``momentum`` and ``weight_decay`` from the metrics (the values
    the optimizer used). Right column, when recorded: ``lambda1`` and ``gap`` (extra
    probe or metric columns as DCAO's history names them; otherwise the probes' top
    two eigenvalues), and DCAO's multipliers ``lr_mult``, ``momentum_mult``,
    ``wd_mult`` (1 = unchanged).

    Raises:
        ValueError: the metrics record none of lr, momentum, weight decay.
    """
    r = _one_run(run, name)
    mt = r.metrics
    tkind = _time_kind(by, [(mt.step, mt.epoch), (r.probes.step, r.probes.epoch)])
    left = []
    if len(mt):
        t, _ = _time(tkind, mt.step, mt.epoch, f"run {r.name!r}'s metrics")
        for col, label in (("lr", r"learning rate $\eta$"), ("momentum", r"momentum $\beta$"),
                           ("weight_decay", "weight decay")):
            y = np.asarray(mt[col], dtype=np.float64)
            ok = np.isfinite(t) & np.isfinite(y)
            order = np.argsort(t[ok], kind="stable")
            left.append((col, label, t[ok][order], y[ok][order]))
    if not left or not any(y.size for *_, y in left):
        raise ValueError(
            f"run {r.name!r} records no hyperparameters: its metrics have no lr, momentum "
            "or weight_decay values"
        )
    curv: list[tuple[str, np.ndarray, np.ndarray]] = []
    curv_title = "curvature seen by the controller"
    lam1, gap = _extra(r, "lambda1", tkind), _extra(r, "gap", tkind)
    if lam1 is not None or gap is not None:
        if lam1 is not None:
            curv.append((r"$\lambda_1$", *lam1))
        if gap is not None:
            curv.append((r"gap $\lambda_1 - \lambda_2$", *gap))
    elif r.probes.top_eigenvalues is not None and len(r.probes):
        curv_title = "top Hessian eigenvalues (probes)"
        p = r.probes
        t, _ = _time(tkind, p.step, p.epoch, f"run {r.name!r}'s probes")
        top = np.asarray(p.top_eigenvalues, dtype=np.float64)
        order = np.argsort(t, kind="stable")
        t, top = t[order], top[order]
        ok = np.isfinite(t) & np.isfinite(top[:, 0])
        if np.any(ok):
            curv.append((r"$\lambda_1$ (probe)", t[ok], top[ok, 0]))
        if top.shape[1] > 1:
            g = top[:, 0] - top[:, 1]
            ok = np.isfinite(t) & np.isfinite(g)
            if np.any(ok):
                curv.append((r"gap $\lambda_1 - \lambda_2$ (probe)", t[ok], g[ok]))
    mults = [(label, *m) for key, label in _MULTIPLIERS if (m := _extra(r, key, tkind))]

    if curv and mults:
        mosaic = [["lr", "curv"], ["lr", "curv"], ["momentum", "curv"],
                  ["momentum", "mult"], ["weight_decay", "mult"], ["weight_decay", "mult"]]
    elif curv:
        mosaic = [["lr", "curv"], ["momentum", "curv"], ["weight_decay", "curv"]]
    elif mults:
        mosaic = [["lr", "mult"], ["momentum", "mult"], ["weight_decay", "mult"]]
    else:
        mosaic = [["lr"], ["momentum"], ["weight_decay"]]
    with _style():
        wide = len(mosaic[0]) == 2
        fig = _figure(figsize, (7.0, 5.0) if wide else _SINGLE)
        axd = fig.subplot_mosaic(mosaic, sharex=True)
        for ax in axd.values():
            ax.tick_params(labelbottom=True, labelsize=_FONT)
        for col, label, t, y in left:
            ax = axd[col]
            if y.size == 0:
                _no_data(ax, f"{label}: not recorded")
            else:
                ax.plot(t, y, color="C0", lw=1.3, drawstyle="steps-post")
                if col != "momentum" and np.all(y > 0) and y.max() / y.min() > 5:
                    ax.set_yscale("log")
                    _log_ticks(ax)
            ax.set_ylabel(label)
        if "curv" in axd:
            ax = axd["curv"]
            for i, (label, t, y) in enumerate(curv):
                ax.plot(t, y, color=f"C{i + 1}", lw=1.3, marker="o" if t.size <= 40 else None,
                        ms=2.5, label=label)
            values = np.concatenate([y for _, _, y in curv])
            _value_scale(ax, values)
            ax.set_ylabel("Hessian eigenvalue")
            ax.set_title(curv_title)
            _legend_on_top(ax, len(curv))
            if ax.get_yscale() == "log":
                _log_ticks(ax)
        if "mult" in axd:
            ax = axd["mult"]
            t_end = max([float(t[-1]) for *_, t, _ in left if t.size]
                        + [float(t[-1]) for _, t, _ in mults])
            for i, (label, t, y) in enumerate(mults):
                # a multiplier holds until the next probe: draw the last one to the end
                if t[-1] < t_end:
                    t, y = np.append(t, t_end), np.append(y, y[-1])
                ax.plot(t, y, color=f"C{i + 4}", lw=1.3, drawstyle="steps-post", label=label)
            ax.axhline(1.0, color="0.6", lw=0.7, ls=":")
            ax.set_ylabel("multiplier (1 = unchanged)")
            ax.set_title("DCAO multipliers")
            _legend_on_top(ax, len(mults))
        for key in mosaic[-1]:
            axd[key].set_xlabel(tkind)
        axd["lr"].set_title("hyperparameters used")
        base = f"Hyperparameters over training: {_run_title(r)}"
        fig.suptitle(title if title is not None else _title(base, [r]))
    return fig


# --------------------------------------------------------------------------- trajectories

# Views (x range, y range) of the standard test functions.
_VIEWS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "rosenbrock": ((-2.0, 2.0), (-1.0, 3.0)),
    "himmelblau": ((-5.0, 5.0), (-5.0, 5.0)),
    "beale": ((-4.5, 4.5), (-4.5, 4.5)),
    "saddle": ((-1.5, 1.5), (-1.5, 1.5)),
}


def _as_points(name: str, traj: Any) -> np.ndarray:
    pts = getattr(traj, "points", traj)
    if hasattr(pts, "detach"):
        pts = pts.detach().cpu().numpy()
    try:
        a = np.asarray(pts, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"trajectory {name!r} is not a numeric (T, 2) array: {exc}") from None
    if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 1:
        raise ValueError(f"trajectory {name!r} must have shape (T, 2), got {a.shape}")
    return a


def _evaluate(function: Any, xy: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = function.value(torch.from_numpy(xy))
    return np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out, np.float64)


def plot_trajectories(
    function: Any,
    trajectories: Mapping[str, Any],
    *,
    bounds: tuple[tuple[float, float], tuple[float, float]] | None = None,
    levels: int = 30,
    resolution: int = 300,
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

    Legend entries give each run's final value. Minima are marked with stars.
    """
    if not callable(getattr(function, "value", None)):
        raise TypeError(
            "function must be a test function object with value(xy), e.g. "
            f"optim.testfunctions.get_function(name); got {type(function).__name__}"
        )
    if not isinstance(trajectories, Mapping) or not trajectories:
        raise ValueError("trajectories must be a non-empty mapping name -> (T, 2) points")
    if not (isinstance(levels, int) and levels >= 2):
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    fname = str(getattr(function, "name", "function"))
    minima = np.asarray(getattr(function, "minima", ()), dtype=np.float64).reshape(-1, 2)
    paths = {str(k): _as_points(str(k), v) for k, v in trajectories.items()}

    if bounds is None:
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
                # widen to trajectories that stay within one view width of it
                near = q[(q[:, 0] > x0 - wx) & (q[:, 0] < x1 + wx)
                         & (q[:, 1] > y0 - wy) & (q[:, 1] < y1 + wy)]
                if near.size:
                    x0, y0 = min(x0, near[:, 0].min()), min(y0, near[:, 1].min())
                    x1, y1 = max(x1, near[:, 0].max()), max(y1, near[:, 1].max())
    else:
        try:
            (x0, x1), (y0, y1) = bounds
        except (TypeError, ValueError):
            raise ValueError(f"bounds must be ((x0, x1), (y0, y1)), got {bounds!r}") from None
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"bounds must have x0 < x1 and y0 < y1, got {bounds!r}")
    xs = np.linspace(x0, x1, resolution)
    ys = np.linspace(y0, y1, resolution)
    X, Y = np.meshgrid(xs, ys)
    Z = _evaluate(function, np.stack([X, Y], axis=-1))
    finite = Z[np.isfinite(Z)]
    if finite.size == 0:
        raise ValueError(f"{fname} is not finite anywhere on the view {((x0, x1), (y0, y1))}")

    with _style():
        fig = _figure(figsize, (6.5, 5.0))
        ax = fig.subplots()
        zmax = float(finite.max())
        if float(finite.min()) >= 0 and zmax > 0:
            pos = finite[finite > 0]
            zlo = max(float(pos.min()) if pos.size else zmax * 1e-6, zmax * 1e-6)
            lv = np.logspace(math.log10(zlo), math.log10(zmax), levels)
            norm: mcolors.Normalize = mcolors.LogNorm(vmin=lv[0], vmax=lv[-1])
            cmap = "Greys_r"
            Zp = np.clip(Z, lv[0], lv[-1])
            label = "f(x, y) (log scale)"
        else:
            lim = float(np.max(np.abs(finite)))
            lv = np.linspace(-lim, lim, levels)
            norm = mcolors.Normalize(vmin=-lim, vmax=lim)
            cmap = "RdBu_r"
            Zp = Z
            label = "f(x, y)"
        cf = ax.contourf(X, Y, Zp, levels=lv, norm=norm, cmap=cmap, alpha=0.55)
        ax.contour(X, Y, Zp, levels=lv, norm=norm, colors="0.35", linewidths=0.35, alpha=0.7)
        cbar = fig.colorbar(cf, ax=ax, pad=0.02, aspect=30)
        if isinstance(norm, mcolors.LogNorm):
            k = np.arange(math.ceil(math.log10(lv[0]) - 1e-9),
                          math.floor(math.log10(lv[-1]) + 1e-9) + 1)
            k = k[::max(1, math.ceil(len(k) / 8))]
            cbar.set_ticks(10.0**k, labels=[f"$10^{{{int(j)}}}$" for j in k])
            cbar.minorticks_off()
        else:
            ticks = mticker.MaxNLocator(7, symmetric=True).tick_values(-lim, lim)
            cbar.set_ticks(ticks[np.abs(ticks) <= lim * (1 + 1e-9)])
        cbar.set_label(label)
        cbar.ax.tick_params(labelsize=_FONT)
        starts = set()
        for i, (name, p) in enumerate(paths.items()):
            c = f"C{i % 10}"
            ok = np.all(np.isfinite(p), axis=1)
            fin = p[ok]
            final = float(_evaluate(function, p[-1:].copy())[0]) if ok[-1] else math.nan
            lab = (f"{name} (final f = {final:.2g})" if math.isfinite(final)
                   else f"{name} (diverged)")
            ax.plot(fin[:, 0], fin[:, 1], color=c, lw=1.3, alpha=0.95, label=lab,
                    marker="." if len(fin) <= 60 else None, ms=3)
            if len(fin):
                ax.plot(*fin[-1], marker="X", color=c, ms=7, mec="black", mew=0.6, ls="none")
                starts.add((float(fin[0, 0]), float(fin[0, 1])))
        for j, (sx, sy) in enumerate(sorted(starts)):
            ax.plot(sx, sy, marker="o", ms=6, color="white", mec="black", mew=0.9, ls="none",
                    label="start" if j == 0 else None, zorder=5)
        if len(minima):
            ax.plot(minima[:, 0], minima[:, 1], marker="*", ms=12, color="gold", mec="black",
                    mew=0.7, ls="none", label="global minimum" if len(minima) == 1
                    else "global minima", zorder=5)
        elif fname == "saddle":
            ax.plot(0.0, 0.0, marker="P", ms=8, color="white", mec="black", mew=0.8, ls="none",
                    label="saddle point", zorder=5)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.tick_params(labelsize=_FONT)
        ax.legend(loc="best", framealpha=0.85)
        pretty = fname[:1].upper() + fname[1:]
        fig.suptitle(title if title is not None else f"Optimizer trajectories on {pretty}")
    return fig


# --------------------------------------------------------------------------- landscape


def plot_landscape(
    landscape: Any,
    *,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """A loss landscape of :func:`spectra.landscape.loss_landscape`.

    1-D: the loss against the step along the direction, with the quadratic model
    ``L(0) + lambda_1 a^2 / 2`` for a top eigenvector. 2-D: filled contours of the loss
    over the plane, the weights marked with a star.
    """
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    land = landscape
    losses = np.asarray(land.losses, dtype=np.float64)
    finite = losses[np.isfinite(losses)]
    if finite.size == 0:
        raise ValueError("the landscape's losses are all NaN or Inf; nothing to draw")
    lo, hi = float(finite.min()), float(finite.max())
    label = {"top": "top eigenvector", "random": "random direction"}.get(land.kind, "direction")
    with _style():
        fig = _figure(figsize, _SINGLE if land.dims == 1 else (6.0, 5.0))
        ax = fig.subplots()
        if land.dims == 1:
            ax.plot(land.alphas, losses, color="C0", lw=1.5, marker="o", ms=3, label="loss")
            if land.eigenvalues is not None:
                lam = float(land.eigenvalues[0])
                a = np.linspace(land.alphas[0], land.alphas[-1], 200)
                ax.plot(a, land.center_loss + 0.5 * lam * a**2, color="C3", ls="--", lw=1.0,
                        label=f"L(0) + \u03bb1 a\u00b2/2, \u03bb1 = {lam:.3g}")
            ax.plot([0], [land.center_loss], marker="*", color="gold", mec="black", ms=11,
                    ls="none", label="weights", zorder=5)
            pad = 0.08 * (hi - lo if hi > lo else 1.0)
            ax.set_ylim(lo - pad, hi + pad)
            unit = " (parameter-space distance)" if land.kind == "top" else (
                " (\u00d7 filter norms)" if land.kind == "random" else "")
            ax.set_xlabel(f"step a along the {label}{unit}")
            ax.set_ylabel("loss")
            ax.legend(frameon=False)
            ax.grid(alpha=0.3, lw=0.5)
        else:
            levels = np.linspace(lo, hi, 25) if hi > lo else 25
            cf = ax.contourf(land.alphas, land.betas, losses, levels=levels, cmap="viridis")
            ax.contour(land.alphas, land.betas, losses, levels=levels, colors="white",
                       linewidths=0.3, alpha=0.6)
            cbar = fig.colorbar(cf, ax=ax, pad=0.02, aspect=30)
            cbar.set_label("loss")
            cbar.ax.yaxis.set_major_locator(MaxNLocator(7))
            cbar.ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
            cbar.ax.tick_params(labelsize=_FONT)
            ax.plot([0], [0], marker="*", color="gold", mec="black", ms=12, ls="none",
                    label="weights")
            for i, set_label in enumerate((ax.set_xlabel, ax.set_ylabel)):
                suffix = ""
                if land.eigenvalues is not None:
                    suffix = f" (\u03bb{i + 1} = {float(land.eigenvalues[i]):.3g})"
                set_label(f"{label} {i + 1}{suffix}")
            ax.set_aspect("equal")
            ax.legend(loc="upper right", framealpha=0.85)
        kind = {"top": "top Hessian eigenvector", "random": "random filter-normalized direction"}
        base = f"Loss along {'a' if land.dims == 1 else 'two'} {kind.get(land.kind, 'direction')}" \
            + ("s" if land.dims == 2 else "")
        fig.suptitle(title if title is not None else base)
    return fig
