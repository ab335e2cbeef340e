"""Training curves: loss and accuracy, train and test, one line per run, in 2 x 2 panels.

What the train panels show. The reference trainer's ``train_loss`` and ``train_acc``
are running averages over each epoch's minibatches, taken while the weights change
(and in train mode: dropout on, batch norm on batch statistics); the panels say so.
A run trained with ``eval_train=True`` (``spectra train --eval-train``) also records
``train_eval_loss`` and ``train_eval_acc``, the whole training set evaluated in eval
mode at the end of each epoch and at epoch 0; those are drawn instead. Rows that log
a single batch's loss (``log_every_steps``: no ``seconds``) are left out of the
running average's line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from spectra.plots.axes import log_ticks, time_ticks
from spectra.plots.data import (
    RunsLike,
    figure_title,
    finite_series,
    resolve_runs,
    run_title,
    time_column,
    time_kind,
)
from spectra.plots.style import FONT, line_colors, new_figure, no_data, style
from spectra.runs import RunData

# metric column, panel title, y label; in panel order
_CURVES = (
    ("train_loss", "train loss", "loss"),
    ("test_loss", "test loss", "loss"),
    ("train_acc", "train accuracy", "accuracy (%)"),
    ("test_acc", "test accuracy", "accuracy (%)"),
)

# column -> (run, time, values, eval-mode train values?) of each run that records it
_Series = dict[str, list[tuple[RunData, np.ndarray, np.ndarray, bool]]]
# column -> (run, times of its rows whose value is +-Inf) of each run that has such rows
_Infinite = dict[str, list[tuple[RunData, np.ndarray]]]
_INF_LABEL = "infinite value (not drawn)"


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
    in any run says "not recorded". Infinite values (a loss that overflowed) are not
    drawn but marked by crosses at the top of their panel, at their times, in the
    run's colour; a panel with nothing else says so. The train panels are titled with what they show:
    the running average over each epoch, or the eval-mode evaluation of the training
    set when the run recorded it (see the module docstring).

    Raises:
        ValueError: no run records any of train/test loss/accuracy.
    """
    run_list = resolve_runs(runs, names)
    tkind = time_kind(by, [(r.metrics.step, r.metrics.epoch) for r in run_list])
    series, kinds, infinite = _series(run_list, tkind)
    acc = [y for c in ("train_acc", "test_acc") for _, _, y, _ in series[c]]
    percent = bool(acc) and max(float(np.max(y)) for y in acc) <= 1.0 + 1e-9
    color = dict(zip((r.name for r in run_list), line_colors(len(run_list))))
    with style():
        fig = new_figure(figsize, (7.0, 5.2))
        grid = fig.subplots(2, 2, sharex=True, squeeze=False)
        grid[0, 0].sharey(grid[0, 1])
        grid[1, 0].sharey(grid[1, 1])
        handles: dict[str, tuple] = {}
        for ax, (col, label, ylabel) in zip(grid.flat, _CURVES):
            _draw_panel(ax, series[col], col, _title(col, label, kinds), color, handles,
                        100.0 if percent else 1.0, infinite[col])
            ax.set_xlabel(tkind)
            ax.set_ylabel(ylabel if percent or "loss" in col else "accuracy")
        losses = [y for c in ("train_loss", "test_loss") for _, _, y, _ in series[c]]
        if losses and all(np.all(y > 0) for y in losses):
            grid[0, 0].set_yscale("log")  # shared with grid[0, 1]
            log_ticks(grid[0, 0])
        for r in run_list:  # a run with nothing drawn is named, with no line handle
            if r.name not in handles:
                what = "no metrics rows" if len(r.metrics) == 0 else "no loss or accuracy"
                handles[r.name] = (Line2D([], [], ls="none"), f"{run_title(r)}: {what}")
        if _INF_LABEL in handles:  # last in the legend, after the runs
            handles[_INF_LABEL] = handles.pop(_INF_LABEL)
        fig.legend(
            [h for h, _ in handles.values()], [lab for _, lab in handles.values()],
            loc="outside lower center", ncols=min(len(handles), 5), frameon=False,
        )
        fig.suptitle(title if title is not None else figure_title("Training curves", run_list))
    time_ticks(fig)  # one tick at a lone time, whole numbers for whole epochs
    return fig


_EVAL = {"train_loss": "train_eval_loss", "train_acc": "train_eval_acc"}
_RUNNING = " (running average over the epoch)"
_EVALUATED = " (eval mode, end of epoch)"


def _column(r: RunData, col: str) -> tuple[np.ndarray, bool]:
    """The values of metric ``col`` of run ``r`` (float64, one per row), and whether
    they are an eval-mode evaluation of the train set rather than a running average.
    Batch-loss rows (``seconds`` NaN among rows that have it) are NaN here."""
    mt = r.metrics
    ev = _EVAL.get(col)
    if ev is not None and ev in mt.extra:
        y = np.asarray(mt.extra[ev], dtype=np.float64)
        if np.any(np.isfinite(y)):
            return y, True
    y = np.asarray(mt[col], dtype=np.float64)
    if ev is not None:
        sec = np.asarray(mt.seconds, dtype=np.float64)
        if np.any(np.isfinite(sec)) and not np.all(np.isfinite(sec)):
            y = np.where(np.isfinite(sec), y, np.nan)  # epoch rows only
    return y, False


def _series(run_list: Sequence[RunData],
            tkind: str) -> tuple[_Series, dict[str, set[bool]], _Infinite]:
    """The finite rows of each curve's column, per run, in time order; per train
    column, which kinds (eval mode or running average) the runs give; and the times
    of the rows whose value is infinite, per column and run."""
    series: _Series = {c: [] for c, *_ in _CURVES}
    kinds: dict[str, set[bool]] = {c: set() for c in _EVAL}
    infinite: _Infinite = {c: [] for c, *_ in _CURVES}
    for r in run_list:
        mt = r.metrics
        if len(mt) == 0:
            continue
        t, _ = time_column(tkind, mt.step, mt.epoch, f"run {r.name!r}'s metrics")
        for col, *_ in _CURVES:
            y, evaluated = _column(r, col)
            ts, ys = finite_series(t, y)
            if ts.size:
                series[col].append((r, ts, ys, evaluated))
                if col in kinds:
                    kinds[col].add(evaluated)
            inf = np.isinf(y) & np.isfinite(t)
            if inf.any():
                infinite[col].append((r, np.sort(t[inf])))
    if not any(series.values()) and not any(infinite.values()):
        empty = all(len(r.metrics) == 0 for r in run_list)
        why = (": their metrics tables have no rows (runs stopped before their first "
               "epoch ended, or not trained)" if empty else " in their metrics")
        raise ValueError(
            f"runs {[r.name for r in run_list]} record no train/test loss or accuracy{why}"
        )
    return series, kinds, infinite


def _title(col: str, label: str, kinds: dict[str, set[bool]]) -> str:
    """The panel's title: a train column says what its values are."""
    k = kinds.get(col)
    if not k:
        return label
    if k == {True}:
        return label + _EVALUATED
    if k == {False}:
        return label + _RUNNING
    return f"{label} (dashed: running average over the epoch)"


def _draw_panel(
    ax: Axes,
    items: list[tuple[RunData, np.ndarray, np.ndarray, bool]],
    col: str,
    label: str,
    color: dict[str, str],
    handles: dict[str, tuple],
    acc_scale: float,
    infinite: list[tuple[RunData, np.ndarray]],
) -> None:
    """One metric's lines (accuracies times ``acc_scale``), and crosses at the top of
    the panel at the times of its infinite values; each run's first line, and the
    first cross, go to ``handles`` for the figure's legend."""
    ax.tick_params(labelbottom=True, labelsize=FONT)
    if not items:
        no_data(ax, f"{label}: " + ("only infinite values" if infinite else "not recorded"))
    mixed = len({e for *_, e in items}) > 1
    for r, t, y, evaluated in items:
        y = y * acc_scale if col.endswith("acc") else y
        (h,) = ax.plot(t, y, color=color[r.name], lw=1.3, ls="--" if mixed and not evaluated else "-",
                       marker="o" if t.size <= 30 else None, ms=2.5)
        handles.setdefault(r.name, (h, run_title(r)))
    for r, t in infinite:
        ax.plot(t, np.full(t.size, 0.97), transform=ax.get_xaxis_transform(), ls="none",
                marker="x", ms=5, mew=1.3, color=color[r.name])
        handles.setdefault(r.name, (Line2D([], [], color=color[r.name], lw=1.3), run_title(r)))
        handles.setdefault(_INF_LABEL, (Line2D([], [], ls="none", marker="x", ms=5, mew=1.3,
                                               color="0.3"), _INF_LABEL))
    ax.set_title(label)
