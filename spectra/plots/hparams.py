"""DCAO's hyperparameters over training and the curvature that drives them: learning
rate, momentum and weight decay on the left; the controller's lambda_1 and gap (or the
probes' top eigenvalues) and its multipliers on the right, when recorded."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spectra.plots.axes import log_ticks, value_scale
from spectra.plots.data import (
    RunsLike,
    figure_title,
    finite_series,
    one_run,
    run_title,
    time_column,
    time_kind,
)
from spectra.plots.style import FONT, SINGLE, legend_on_top, new_figure, no_data, style
from spectra.runs import RunData

# metric column and its y label: the left column's panels, top to bottom
_HYPERPARAMETERS = (("lr", r"learning rate $\eta$"), ("momentum", r"momentum $\beta$"),
                    ("weight_decay", "weight decay"))
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
    r = one_run(run, name)
    tkind = time_kind(by, [(r.metrics.step, r.metrics.epoch), (r.probes.step, r.probes.epoch)])
    left = _hyperparameters(r, tkind)
    curv, curv_title = _curvature(r, tkind)
    mults = [(label, *m) for key, label in _MULTIPLIERS if (m := _extra(r, key, tkind))]
    mosaic = _mosaic(bool(curv), bool(mults))
    with style():
        fig = new_figure(figsize, (7.0, 5.0) if len(mosaic[0]) == 2 else SINGLE)
        axd = fig.subplot_mosaic(mosaic, sharex=True)
        for ax in axd.values():
            ax.tick_params(labelbottom=True, labelsize=FONT)
        _draw_hyperparameters(axd, left)
        if "curv" in axd:
            _draw_curvature(axd["curv"], curv, curv_title)
        if "mult" in axd:
            t_end = max([float(t[-1]) for *_, t, _ in left if t.size]
                        + [float(t[-1]) for _, t, _ in mults])
            _draw_multipliers(axd["mult"], mults, t_end)
        for key in mosaic[-1]:
            axd[key].set_xlabel(tkind)
        axd["lr"].set_title("hyperparameters used")
        base = f"Hyperparameters over training: {run_title(r)}"
        fig.suptitle(title if title is not None else figure_title(base, [r]))
    return fig


# --------------------------------------------------------------------------- series


def _hyperparameters(run: RunData, tkind: str) -> list[_Hyperparameter]:
    """lr, momentum and weight decay from the metrics, finite rows in time order."""
    mt = run.metrics
    left = []
    if len(mt):
        t, _ = time_column(tkind, mt.step, mt.epoch, f"run {run.name!r}'s metrics")
        for col, label in _HYPERPARAMETERS:
            left.append((col, label, *finite_series(t, np.asarray(mt[col], dtype=np.float64))))
    if not left or not any(y.size for *_, y in left):
        raise ValueError(
            f"run {run.name!r} records no hyperparameters: its metrics have no lr, momentum "
            "or weight_decay values"
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
        return curv, "top Hessian eigenvalues (probes)"
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


def _mosaic(curvature: bool, multipliers: bool) -> list[list[str]]:
    """The panels: hyperparameters on the left, curvature and multipliers on the right."""
    if curvature and multipliers:
        return [["lr", "curv"], ["lr", "curv"], ["momentum", "curv"],
                ["momentum", "mult"], ["weight_decay", "mult"], ["weight_decay", "mult"]]
    if curvature:
        return [["lr", "curv"], ["momentum", "curv"], ["weight_decay", "curv"]]
    if multipliers:
        return [["lr", "mult"], ["momentum", "mult"], ["weight_decay", "mult"]]
    return [["lr"], ["momentum"], ["weight_decay"]]


# --------------------------------------------------------------------------- drawing


def _draw_hyperparameters(axd: dict[str, Axes], left: list[_Hyperparameter]) -> None:
    """Each hyperparameter as a step line; log y when positive and spanning over 5x
    (momentum stays linear)."""
    for col, label, t, y in left:
        ax = axd[col]
        if y.size == 0:
            no_data(ax, f"{label}: not recorded")
        else:
            ax.plot(t, y, color="C0", lw=1.3, drawstyle="steps-post")
            if col != "momentum" and np.all(y > 0) and y.max() / y.min() > 5:
                ax.set_yscale("log")
                log_ticks(ax)
        ax.set_ylabel(label)


def _draw_curvature(ax: Axes, curv: list[_Curve], title: str) -> None:
    """The curvature curves on a log (or symlog) axis, legend on top."""
    for i, (label, t, y) in enumerate(curv):
        ax.plot(t, y, color=f"C{i + 1}", lw=1.3, marker="o" if t.size <= 40 else None,
                ms=2.5, label=label)
    value_scale(ax, np.concatenate([y for _, _, y in curv]))
    ax.set_ylabel("Hessian eigenvalue")
    ax.set_title(title)
    legend_on_top(ax, len(curv))
    if ax.get_yscale() == "log":
        log_ticks(ax)


def _draw_multipliers(ax: Axes, mults: list[_Curve], t_end: float) -> None:
    """DCAO's multipliers as step lines held to ``t_end``, and the line at 1."""
    for i, (label, t, y) in enumerate(mults):
        # a multiplier holds until the next probe: draw the last one to the end
        if t[-1] < t_end:
            t, y = np.append(t, t_end), np.append(y, y[-1])
        ax.plot(t, y, color=f"C{i + 4}", lw=1.3, drawstyle="steps-post", label=label)
    ax.axhline(1.0, color="0.6", lw=0.7, ls=":")
    ax.set_ylabel("multiplier (1 = unchanged)")
    ax.set_title("DCAO multipliers")
    legend_on_top(ax, len(mults))
