"""Gradient alignment with the top Hessian eigenspace over training, and where one
optimizer step's loss change comes from (runs trained with ``spectra train --alignment``).

Left panel: the fraction of the full-batch gradient (solid) and of the last
minibatch's gradient (dotted) in the span of the top-``k`` eigenvectors
(Gur-Ari, Roberts & Dyer 2018). Right panel: the loss change on the probe set of one
optimizer step (black), of its projection onto the top space (solid) and onto the
complement (dashed) (Song, Ahn & Yun 2025), on a symmetric-log axis whose linear part
is chosen from the values drawn (a log axis when all are positive). Columns and
definitions: :mod:`spectra.curvature.alignment`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spectra.plots.axes import symlog_ticks, time_ticks, value_scale
from spectra.plots.data import (
    RunsLike,
    figure_title,
    finite_series,
    resolve_runs,
    run_title,
    time_kind,
)
from spectra.plots.style import line_colors, mark_lone_points, new_figure, no_data, style

__all__ = ["plot_alignment"]


def plot_alignment(
    runs: RunsLike,
    names: str | Iterable[str] | None = None,
    *,
    by: str = "auto",
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Gradient alignment and the step's loss-change split over training, every run on
    the same two panels (one color per run).

    Raises:
        ValueError: no run records the alignment columns.
    """
    run_list = resolve_runs(runs, names)
    if not any("alignment_full" in r.probes.extra for r in run_list):
        raise ValueError("no run records gradient alignment (train with --alignment, or "
                         "SpectralMonitor(alignment=True))")
    tkind = time_kind(by, [(r.probes.step, r.probes.epoch) for r in run_list])
    with style():
        fig = new_figure(figsize, (7.5, 3.4))
        left, right = fig.subplots(1, 2, squeeze=True)
        step_values: list[np.ndarray] = []  # every loss change drawn on the right (non-empty)
        colors = line_colors(len(run_list))
        for i, run in enumerate(run_list):
            p = run.probes
            if "alignment_full" not in p.extra:
                continue
            t = np.asarray(p.epoch if tkind == "epoch" else p.step, dtype=np.float64)
            c, label = colors[i], run_title(run)
            tf, yf = finite_series(t, np.asarray(p["alignment_full"]))
            if tf.size:
                left.plot(tf, yf, color=c, marker="o", markersize=2.5, label=f"{label}: full batch")
            else:  # in the legend, without a handle that would stand for a line
                what = "no probes recorded" if len(p) == 0 else "no finite value"
                left.plot([], [], ls="none", label=f"{label}: {what}")
            tb, yb = finite_series(t, _column(p, "alignment_batch"))
            if tb.size:
                left.plot(tb, yb, color=c, linestyle=":", label=f"{label}: minibatch")
            for col, style_kw, what in (
                # the whole step in black for one run; in the run's colour (dash-dot) for
                # several, where one black line per run could not be told apart
                ("step_loss_change", {"color": "black", "linewidth": 0.9} if len(run_list) == 1
                 else {"color": c, "linewidth": 0.9, "linestyle": "-."}, "whole step"),
                ("step_loss_change_top", {"color": c}, "top-space part"),
                ("step_loss_change_bulk", {"color": c, "linestyle": "--"}, "complement"),
            ):
                ts, ys = finite_series(t, _column(p, col))
                if ts.size:
                    right.plot(ts, ys, label=f"{label}: {what}", **style_kw)
                    step_values.append(ys)
        left.set_ylim(-0.02, 1.02)
        left.set_ylabel("‖P_k g‖² / ‖g‖²")
        left.set_title("gradient in the top-k eigenspace")
        right.set_ylabel("loss change on the probe set")
        right.set_title("one optimizer step, split")
        if step_values:
            _loss_change_scale(fig, right, np.concatenate(step_values))
            right.legend(frameon=False, fontsize=7)
        else:
            no_data(right, "not recorded (needs the optimizer)")
        for ax in (left, right):
            ax.set_xlabel(tkind)
        left.legend(frameon=False, fontsize=7)
        fig.suptitle(title if title is not None else figure_title("Gradient alignment", run_list))
    mark_lone_points(fig)  # a run of one probe: its points, not an empty panel
    time_ticks(fig)  # one tick at a lone time, whole numbers for whole epochs
    return fig


def _loss_change_scale(fig: Figure, ax: Axes, values: np.ndarray) -> None:
    """The y scale of the loss-change panel ``ax`` for the ``(n,)`` finite loss changes
    drawn on it (loss units): symmetric-log with the linear part chosen from the data
    (:func:`~spectra.plots.axes.value_scale`: a power of ten at their small end, so
    changes of 1e-7 are not all squeezed into a linear part of fixed width), labelled
    with signed powers of ten, and a line at 0; a log axis when all are positive."""
    linthresh = value_scale(ax, values)
    if linthresh is None:  # all positive: a log axis, which has no 0
        return
    ax.axhline(0.0, color="0.6", linewidth=0.6)
    lo, hi = ax.get_ylim()
    height = float(ax.get_position().height * fig.get_figheight())  # inches
    symlog_ticks(ax, lo, hi, linthresh, which="y", width=max(height, 1.5))


def _column(probes, name: str) -> np.ndarray:
    """Probe column ``name`` as float64, all NaN (one per row) when the run lacks it."""
    if name not in probes.extra:
        return np.full(len(probes), np.nan)
    return np.asarray(probes.extra[name], dtype=np.float64)
