"""An optimizer's hyperparameters over training, at the resolution the run recorded
them, and the curvature that drives them: on the left one panel per hyperparameter the
metrics hold (learning rate, momentum, weight decay, LPSGD's ``p``, CALR's
``effective_lr``; each logged row, so every step with ``log_every_steps=1``); on the
right, when recorded, the curvature (DCAO's lambda_1 and gap at each of its probes, or
the probes' top eigenvalues) and DCAO's multipliers with their clamp drawn.
Hyperparameters a run does not record get no panel."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import offset_copy

from spectra.plots.axes import log_ticks, time_ticks, value_scale
from spectra.plots.data import (
    RunsLike,
    figure_title,
    finite_series,
    one_run,
    run_title,
    time_column,
    time_kind,
)
from spectra.plots.style import FONT, SINGLE, mark_lone_points, new_figure, style
from spectra.runs import RunData

# metric column and its y label: the left column's panels, top to bottom
_HYPERPARAMETERS = (("lr", r"learning rate $\eta$"), ("momentum", r"momentum $\beta$"),
                    ("weight_decay", "weight decay"), ("p", "LPSGD's p-norm $p$"),
                    ("effective_lr", "effective step (CALR)"))
_MULTIPLIERS = (("lr_mult", r"$\eta$"), ("momentum_mult", "momentum"),
                ("wd_mult", "weight decay"))

# (column, label, time, values) of a hyperparameter; (label, time, values) of a curve
_Hyperparameter = tuple[str, str, np.ndarray, np.ndarray]
_Curve = tuple[str, np.ndarray, np.ndarray]


def plot_hparams(
    run: RunData | RunsLike,
    name: str | None = None,
    *,
    by: str = "step",
    multiplier_limits: tuple[float, float] | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """An optimizer's hyperparameters and the curvature that drives them.

    Left column: one panel per hyperparameter the metrics record (``lr``,
    ``momentum``, ``weight_decay``, and ``p``, ``effective_lr`` when an optimizer
    reports them), each row a step of the line: every logged step, or each epoch.
    Right column, when recorded: ``lambda1`` and ``gap`` at each optimizer probe
    (extra probe or metric columns as DCAO's history names them, drawn at their
    ``probe_step``; otherwise the probes' top two eigenvalues), and DCAO's
    multipliers ``lr_mult``, ``momentum_mult``, ``wd_mult`` (1 = unchanged), with the
    clamp ``multiplier_limits`` drawn when given. Legends sit below their panels.

    Raises:
        ValueError: the metrics record none of these hyperparameters.
    """
    r = one_run(run, name)
    tkind = time_kind(by, [(r.metrics.step, r.metrics.epoch), (r.probes.step, r.probes.epoch)])
    left = _hyperparameters(r, tkind)
    curv, curv_title = _curvature(r, tkind)
    mults = [(label, *m) for key, label in _MULTIPLIERS if (m := _extra(r, key, tkind))]
    right = [k for k, on in (("curv", bool(curv)), ("mult", bool(mults))) if on]
    with style():
        fig = new_figure(figsize, (7.0, 1.3 + 1.25 * max(len(left), 1.6 * len(right)))
                         if right else (SINGLE[0], 1.2 + 1.3 * len(left)))
        axd = _layout(fig, [col for col, *_ in left], right)
        for ax in axd.values():
            ax.tick_params(labelbottom=True, labelsize=FONT)
        _draw_hyperparameters(axd, left)
        if "curv" in axd:
            _draw_curvature(axd["curv"], curv, curv_title)
        if "mult" in axd:
            t_end = max([float(t[-1]) for *_, t, _ in left if t.size]
                        + [float(t[-1]) for _, t, _ in mults])
            _draw_multipliers(axd["mult"], mults, t_end, multiplier_limits)
        for ax in axd.values():
            ax.set_xlabel(tkind)
        axd[left[0][0]].set_title("hyperparameters used")
        base = f"Hyperparameters over training: {run_title(r)}"
        fig.suptitle(title if title is not None else figure_title(base, [r]))
    mark_lone_points(fig)  # a run of one probe: its points, not an empty panel
    time_ticks(fig)  # one tick at a lone time, whole numbers for whole epochs
    return fig


def _layout(fig: Figure, left: list[str], right: list[str]) -> dict[str, Axes]:
    """One column of panels for ``left``, and, beside it, one for ``right``, sharing x."""
    if not right:
        axes = fig.subplots(len(left), 1, sharex=True, squeeze=False)[:, 0]
        return dict(zip(left, axes))
    sub_l, sub_r = fig.subfigures(1, 2, wspace=0.02)
    fig.get_layout_engine().set(h_pad=0.06)  # the right column's legends hang below
    axes_l = sub_l.subplots(len(left), 1, sharex=True, squeeze=False)[:, 0]
    axes_r = [sub_r.add_subplot(len(right), 1, i + 1, sharex=axes_l[0])
              for i in range(len(right))]
    return dict(zip(left, axes_l)) | dict(zip(right, axes_r))


# --------------------------------------------------------------------------- series


def _hyperparameters(run: RunData, tkind: str) -> list[_Hyperparameter]:
    """The hyperparameters the metrics record, finite rows in time order (none for a
    column without a value)."""
    mt = run.metrics
    left = []
    if len(mt):
        t, _ = time_column(tkind, mt.step, mt.epoch, f"run {run.name!r}'s metrics")
        for col, label in _HYPERPARAMETERS:
            try:
                y = np.asarray(mt[col], dtype=np.float64)
            except KeyError:  # an extra column this run does not have
                continue
            ts, ys = finite_series(t, y)
            if ts.size:  # recorded: a panel; not recorded: none
                left.append((col, label, ts, ys))
    if not len(mt):
        raise ValueError(
            f"run {run.name!r} records no hyperparameters: its metrics table has no rows "
            "(the run stopped before its first epoch ended, or was not trained)"
        )
    if not left:
        raise ValueError(
            f"run {run.name!r} records no hyperparameters: its metrics have no lr, momentum, "
            "weight_decay, p or effective_lr values"
        )
    return left


def _curvature(run: RunData, tkind: str) -> tuple[list[_Curve], str]:
    """The controller's ``lambda1`` and ``gap`` columns, else the probes' lambda_1 and
    lambda_1 - lambda_2; and the panel's title."""
    curv: list[_Curve] = []
    lam1, gap = _extra(run, "lambda1", tkind), _extra(run, "gap", tkind)
    if lam1 is not None or gap is not None:
        if lam1 is not None:
            curv.append((r"$\lambda_1$", *lam1))
        if gap is not None:
            curv.append((r"gap $\lambda_1 - \lambda_2$", *gap))
        return curv, "curvature seen by the controller"
    p = run.probes
    if p.top_eigenvalues is not None and len(p):
        t, _ = time_column(tkind, p.step, p.epoch, f"run {run.name!r}'s probes")
        top = np.asarray(p.top_eigenvalues, dtype=np.float64)
        t1, y1 = finite_series(t, top[:, 0])
        if t1.size:
            curv.append((r"$\lambda_1$ (probe)", t1, y1))
        if top.shape[1] > 1:
            tg, g = finite_series(t, top[:, 0] - top[:, 1])
            if tg.size:
                curv.append((r"gap $\lambda_1 - \lambda_2$ (probe)", tg, g))
        title = "top Hessian eigenvalues (probes)"
        gaps = np.sort(t[np.isfinite(t) & ~np.isfinite(top[:, 0])])
        if gaps.size:  # probes of a run that diverged: not drawn, said
            more = ", ..." if gaps.size > 4 else ""
            when = ", ".join(f"{x:g}" for x in gaps[:4]) + more
            title += f"\nno finite $\\lambda_1$ at {tkind} {when}"
        return curv, title
    return curv, "curvature seen by the controller"


def _extra(run: RunData, key: str, tkind: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A column from the probes' extras, else the metrics' extras: (time, values)."""
    for table, what in ((run.probes, "probes"), (run.metrics, "metrics")):
        if key in table.extra and len(table):
            t, kind = time_column(tkind, table.step, table.epoch, f"run {run.name!r}'s {what}")
            if "probe_step" in table.extra:  # an optimizer's probe: drawn where it was taken
                at = np.asarray(table.extra["probe_step"], dtype=np.float64)
                steps = np.asarray(table.step, dtype=np.float64)
                # epochs of the probes from the rows' (step, epoch), with step 0 at epoch 0
                t = at if kind == "step" else np.interp(at, np.r_[0.0, steps], np.r_[0.0, t])
            ts, ys = finite_series(t, np.asarray(table.extra[key], dtype=np.float64))
            if ts.size:
                return ts, ys
    return None


# --------------------------------------------------------------------------- drawing

_LEGEND_DROP = 0.42  # inches from a right panel's bottom to its legend: below the x label


def _draw_hyperparameters(axd: dict[str, Axes], left: list[_Hyperparameter]) -> None:
    """Each hyperparameter as a step line; log y when positive and spanning over 5x
    (momentum stays linear)."""
    for col, label, t, y in left:
        ax = axd[col]
        ax.plot(t, y, color="C0", lw=1.3, drawstyle="steps-post",
                marker="o" if t.size <= 40 else None, ms=2.5)
        if col not in ("momentum", "p") and np.all(y > 0) and y.max() / y.min() > 5:
            ax.set_yscale("log")
            log_ticks(ax)
        else:
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useMathText=True)
        ax.set_ylabel(label)


def _legend_below(ax: Axes, ncols: int) -> None:
    """The panel's legend under its x label, clear of the lines: a fixed distance below
    the axes (a share of the axes' height put a tall panel's legend far below it, and
    past the figure's bottom edge: the layout could not make room for it)."""
    below = offset_copy(ax.transAxes, fig=ax.get_figure(), y=-_LEGEND_DROP, units="inches")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below, ncols=ncols,
              frameon=False, handlelength=1.8, columnspacing=1.0)


def _draw_curvature(ax: Axes, curv: list[_Curve], title: str) -> None:
    """The curvature curves on a log (or symlog) axis, legend below."""
    for i, (label, t, y) in enumerate(curv):
        ax.plot(t, y, color=f"C{i + 1}", lw=1.3, marker="o" if t.size <= 60 else None,
                ms=2.5, label=label)
    value_scale(ax, np.concatenate([y for _, _, y in curv]))
    ax.set_ylabel("Hessian eigenvalue")
    ax.set_title(title)
    _legend_below(ax, len(curv))
    if ax.get_yscale() == "log":
        log_ticks(ax)


def _draw_multipliers(ax: Axes, mults: list[_Curve], t_end: float,
                      limits: tuple[float, float] | None) -> None:
    """DCAO's multipliers as step lines held to ``t_end`` (each probe's marked), the
    line at 1 and the clamp ``limits``."""
    for i, (label, t, y) in enumerate(mults):
        n = t.size
        # a multiplier holds until the next probe: draw the last one to the end
        if t[-1] < t_end:
            t, y = np.append(t, t_end), np.append(y, y[-1])
        ax.plot(t, y, color=f"C{i + 4}", lw=1.3, drawstyle="steps-post", label=label,
                marker="o" if n <= 60 else None, markevery=list(range(n)), ms=2.5)
    ax.axhline(1.0, color="0.6", lw=0.7, ls=":")
    if limits is not None:
        lo, hi = limits
        for j, v in enumerate((lo, hi)):
            ax.axhline(v, color="0.35", lw=0.9, ls="--",
                       label=f"clamp [{lo:g}, {hi:g}]" if j == 0 else None)
        ax.set_ylim(min(lo, ax.get_ylim()[0]) - 0.08 * (hi - lo),
                    max(hi, ax.get_ylim()[1]) + 0.08 * (hi - lo))
    ax.set_ylabel("multiplier (1 = unchanged)")
    ax.set_title("DCAO multipliers")
    _legend_below(ax, 2)
