"""The look shared by every figure: paper-sized text, constrained layout, panels and
legends, and :func:`save_figure`.

Figures are built without pyplot (no display, no global state; safe on a headless
machine and in threads). Drawing happens inside :func:`style`, which sets matplotlib's
rc parameters for the duration only.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

#: Suffix -> matplotlib format accepted by :func:`save_figure`.
FIGURE_FORMATS: dict[str, str] = {".png": "png", ".pdf": "pdf", ".svg": "svg"}

FONT = 9.0  # points: tick labels, axis labels, text
TITLE = 10.0  # points: panel titles
SINGLE = (6.5, 4.0)  # inches: one panel, the text width of a paper

_RC = {
    "font.size": FONT,
    "axes.titlesize": TITLE,
    "axes.labelsize": FONT,
    "xtick.labelsize": FONT,
    "ytick.labelsize": FONT,
    "legend.fontsize": FONT - 0.5,
    "legend.title_fontsize": FONT,
    "figure.titlesize": TITLE + 1,
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.3,
    "pdf.fonttype": 42,  # TrueType in PDFs: editable, accepted by publishers
    "svg.fonttype": "none",
}
_MISSING = {"color": "0.45", "ha": "center", "va": "center", "fontsize": FONT}


@contextmanager
def style() -> Iterator[None]:
    """matplotlib's rc parameters of these figures, for the ``with`` block only."""
    with matplotlib.rc_context(_RC):
        yield


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
    with style():
        fig.savefig(path, format=fmt, dpi=dpi)
    return path


def new_figure(figsize: tuple[float, float] | None, default: tuple[float, float]) -> Figure:
    """A figure with constrained layout, ``figsize`` inches (default: ``default``)."""
    return Figure(figsize=default if figsize is None else figsize, layout="constrained")


def grid_shape(n: int) -> tuple[int, int]:
    """``(rows, columns)`` for ``n`` panels: one row of up to three; more go two to a row."""
    ncols = n if n <= 3 else 2
    return math.ceil(n / ncols), ncols


def panels_figsize(nrows: int, ncols: int) -> tuple[float, float]:
    """Inches for a grid of panels: :data:`SINGLE` for one, else about 3.5 x 2.9 each."""
    if nrows * ncols == 1:
        return SINGLE
    return (3.5 * ncols if ncols < 3 else 10.0, 2.9 * nrows + 0.4)


def panels(fig: Figure, n: int, *, sharex: bool = True, sharey: bool = True) -> list[Axes]:
    """``n`` panels (see :func:`grid_shape`); unused cells removed, tick labels kept."""
    nrows, ncols = grid_shape(n)
    grid = fig.subplots(nrows, ncols, sharex=sharex, sharey=sharey, squeeze=False)
    axes = list(grid.flat)
    for ax in axes[n:]:
        ax.remove()
    axes = axes[:n]
    for ax in axes:
        ax.tick_params(labelbottom=True, labelleft=True, labelsize=FONT)
    return axes


def line_colors(n: int) -> list[str]:
    """``n`` distinct colours for the runs (or layers) of one figure, as hex strings:
    matplotlib's default cycle ``C0`` .. ``C9`` for up to 10, ``tab20`` for up to 20,
    else ``n`` evenly spaced points of ``turbo``. (``C{i % 10}`` drew run 0 and run 10
    of an 11-run sweep alike.)"""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    if n <= 10:
        return [to_hex(f"C{i}") for i in range(n)]
    if n <= 20:
        return [to_hex(colormaps["tab20"](i)) for i in range(n)]
    return [to_hex(colormaps["turbo"](x)) for x in np.linspace(0.05, 0.95, n)]


def figure_legend(fig: Figure, axes: Sequence[Axes], ncols: int | None = None,
                  entries: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
    """One legend below all panels, each label once (panels share their entries).

    The legend is sized to its entries: at most ``ncols`` columns (default: all entries
    in one row), as many as fit the figure's width, the rows filled evenly (5 entries
    that fit 4 to a row go 3 + 2). A legend wider than the figure would lose its first
    and last entries at the edges. ``entries`` (label -> handle) replaces the axes'
    own; ``kwargs`` go to ``fig.legend`` (``handlelength``...).
    """
    if entries is None:
        entries = {}
        for ax in axes:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                entries.setdefault(label, handle)
    if not entries:
        return
    renderer = _renderer(fig)
    n = len(entries)
    cols = max(1, min(n, n if ncols is None else ncols))
    while True:
        legend = fig.legend(list(entries.values()), list(entries), loc="outside lower center",
                            ncols=cols, frameon=False, **kwargs)
        if cols == 1 or legend.get_window_extent(renderer).width <= 0.98 * fig.bbox.width:
            break
        legend.remove()
        cols -= 1
    even = math.ceil(n / math.ceil(n / cols))  # as many rows, entries spread evenly
    if even < cols:
        legend.remove()
        fig.legend(list(entries.values()), list(entries), loc="outside lower center",
                   ncols=even, frameon=False, **kwargs)


def _renderer(fig: Figure) -> Any:
    """A renderer that measures text as ``fig`` will draw it (Agg's when the figure,
    built without pyplot, has no canvas that renders)."""
    canvas = fig.canvas
    if not hasattr(canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = FigureCanvasAgg(fig)
    return canvas.get_renderer()


def legend_on_top(ax: Axes, ncols: int) -> None:
    """A one-row legend in a strip kept free at the top of the axes."""
    lo, hi = ax.get_ylim()
    if ax.get_yscale() == "log":
        ax.set_ylim(lo, hi * (hi / lo) ** 0.3)
    elif ax.get_yscale() == "linear":
        ax.set_ylim(lo, hi + 0.3 * (hi - lo))
    ax.legend(loc="upper center", ncols=ncols, frameon=False, handlelength=1.5,
              columnspacing=1.0)


def no_data(ax: Axes, text: str) -> None:
    """``text`` in grey at the centre of an empty panel, whose y ticks go (with no
    values they would mean nothing; the x axis may be a time axis shared with others)."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, **_MISSING)
    ax.tick_params(axis="y", which="both", left=False, labelleft=False)



def fit_note(ax: Axes, text: str) -> str:
    """``text`` wrapped to the width of ``ax`` (at about 0.55 em per character of the
    note's font), so that a note written by :func:`panel_note` stays inside the panel."""
    fig = ax.get_figure()
    width = ax.get_position().width * fig.get_figwidth()  # inches
    return textwrap.fill(text, max(20, int(width / (0.55 * (FONT - 1) / 72.0)) - 2))


def panel_note(ax: Axes, text: str) -> None:
    """``text`` (wrapped already, see :func:`fit_note`) at the top left of the panel,
    in small grey type on a white box; nothing for ``""``."""
    if text:
        ax.text(0.02, 0.97, text, transform=ax.transAxes, ha="left", va="top",
                fontsize=FONT - 1, color="0.25", in_layout=False, zorder=6,
                bbox={"boxstyle": "square,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})


def mark_lone_points(fig: Figure) -> None:
    """A marker on every point of a marker-less line that no segment reaches: the only
    point of a run with one probe, or one between NaN gaps. Without it such a line is
    listed in the legend but not drawn at all. Other points keep no marker."""
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_marker() not in ("None", None, "", " "):
                continue
            try:
                x = np.asarray(line.get_xdata(), dtype=np.float64)
                y = np.asarray(line.get_ydata(), dtype=np.float64)
            except (TypeError, ValueError):  # dates, categories: not ours to judge
                continue
            if x.shape != y.shape or x.ndim != 1 or x.size == 0:
                continue
            ok = np.isfinite(x) & np.isfinite(y)
            reached = np.zeros_like(ok)  # a finite neighbour: a segment reaches the point
            reached[1:] |= ok[:-1]
            reached[:-1] |= ok[1:]
            lone = np.flatnonzero(ok & ~reached)
            if lone.size:
                line.set_marker("o")
                line.set_markevery(lone.tolist())
                line.set_markersize(max(2.5, 1.8 * line.get_linewidth()))
