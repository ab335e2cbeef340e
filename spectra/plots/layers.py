"""Per-layer curvature over training: each block's ``lambda_1`` and trace, one row of
two panels per run (runs trained with ``spectra train --layers module|tensor``).

The ``probes`` columns ``layer_top_eigenvalue`` and ``layer_trace`` ``(n, B)`` hold
one value per block, in the order of the run config's ``probe.layer_names`` (with
``layer_sizes``); see :mod:`spectra.curvature.blocks`. The whole Hessian's
``lambda_1`` is drawn dashed in black for reference: a diagonal block's top
eigenvalue never exceeds it (Cauchy interlacing), and the trace of the whole
Hessian is the sum of its blocks' traces when the blocks cover every parameter.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spectra.plots.axes import log_ticks, time_ticks
from spectra.plots.data import (
    RunsLike,
    figure_title,
    finite_series,
    resolve_runs,
    run_title,
    time_column,
)
from spectra.plots.style import line_colors, mark_lone_points, new_figure, no_data, style
from spectra.runs import RunData

__all__ = ["plot_layers"]


def layer_names(run: RunData, count: int) -> list[str]:
    """The blocks' labels, ``name (size)``, from the run's probe config (``layer i``
    where the config does not name them)."""
    cfg = run.config.get("probe") or {}
    names = list(cfg.get("layer_names") or [])
    sizes = list(cfg.get("layer_sizes") or [])
    out = []
    for i in range(count):
        name = names[i] if i < len(names) else f"layer {i}"
        out.append(f"{name} ({sizes[i]:,} params)" if i < len(sizes) else name)
    return out


def plot_layers(
    runs: RunsLike,
    names: str | Iterable[str] | None = None,
    *,
    by: str = "auto",
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Each block's ``lambda_1`` and trace over training, a row of two panels per run.

    Args:
        runs, names, by: see :mod:`spectra.plots.data`.
        figsize: inches (default: 7 wide, 2.6 per run).
        title: the figure's title (default: "Per-layer curvature (model on data)").

    Raises:
        ValueError: no run records per-layer columns.
    """
    run_list = resolve_runs(runs, names)
    if not any("layer_top_eigenvalue" in r.probes.extra or "layer_trace" in r.probes.extra
               for r in run_list):
        raise ValueError("no run records per-layer spectra (train with --layers module|tensor, "
                         "or SpectralMonitor(layers=...))")
    with style():
        fig = new_figure(figsize, (7.0, 0.6 + 2.6 * len(run_list)))
        grid = fig.subplots(len(run_list), 2, squeeze=False, sharex="row")
        for row, run in zip(grid, run_list):
            t, tlabel = time_column(by, run.probes.step, run.probes.epoch, f"run {run.name!r}")
            _panel(row[0], run, t, "layer_top_eigenvalue", "λ1 of the block", log=True,
                   whole=np.asarray(run.probes.top_eigenvalues[:, 0]) if run.probes.top_eigenvalues
                   is not None else None)
            _panel(row[1], run, t, "layer_trace", "trace of the block", log=False,
                   whole=np.asarray(run.probes.trace))
            for ax in row:
                ax.set_xlabel(tlabel)
            row[0].set_title(f"{run_title(run)}: λ1 per layer")
            row[1].set_title(f"{run_title(run)}: trace per layer")
        fig.suptitle(title if title is not None else figure_title("Per-layer curvature", run_list))
    mark_lone_points(fig)  # a run of one probe: its points, not an empty panel
    time_ticks(fig)  # one tick at a lone time, whole numbers for whole epochs
    return fig


def _panel(ax: Axes, run: RunData, t: np.ndarray, column: str, ylabel: str, *, log: bool,
           whole: np.ndarray | None) -> None:
    values = run.probes.extra.get(column)
    if values is None:
        no_data(ax, "not recorded")
        return
    values = np.asarray(values, dtype=np.float64)
    if len(run.probes) == 0 or not np.isfinite(values).any():
        no_data(ax, "no probes recorded" if len(run.probes) == 0
                else "no finite value (NaN or Inf)")
        if len(run.probes) == 0:  # its own row: no time either, the x ticks would mean nothing
            ax.tick_params(axis="x", which="both", bottom=False, labelbottom=False)
        return
    colors = line_colors(values.shape[1])
    for i, label in enumerate(layer_names(run, values.shape[1])):
        ts, ys = finite_series(t, values[:, i])
        ax.plot(ts, ys, marker="o", markersize=2.5, color=colors[i], label=label)
    if whole is not None:
        ts, ys = finite_series(t, np.asarray(whole, dtype=np.float64))
        if ts.size:
            ax.plot(ts, ys, color="black", linestyle="--", linewidth=1.0, label="whole Hessian")
    ax.set_ylabel(ylabel)
    positive = values[np.isfinite(values)]
    if log and positive.size and np.all(positive > 0):
        ax.set_yscale("log")
        log_ticks(ax)
    ax.legend(frameon=False, fontsize=7.5)
