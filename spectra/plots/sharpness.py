"""Sharpness over training: the top-k Hessian eigenvalues and the smallest one against
time, with the edge-of-stability threshold of the learning rate, one panel per run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spectra.plots.axes import log_ticks, value_scale
from spectra.plots.data import (
    RunsLike,
    figure_title,
    resolve_runs,
    run_title,
    time_column,
    time_kind,
)
from spectra.plots.style import figure_legend, grid_shape, new_figure, panels, panels_figsize, style
from spectra.runs import RunData

# (time, threshold, legend label)
_Threshold = tuple[np.ndarray, np.ndarray, str]


@dataclass(frozen=True)
class _Sharpness:
    """What one panel draws, in time order."""

    run: RunData
    time: np.ndarray  # (n,) of the probes
    top: np.ndarray | None  # (n, k) top eigenvalues; None: not recorded
    bottom: np.ndarray | None  # (n,) smallest eigenvalue; None: not recorded
    threshold: _Threshold | None


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
    run_list = resolve_runs(runs, names)
    tkind = time_kind(by, [(r.probes.step, r.probes.epoch) for r in run_list])
    per_run = [_sharpness(r, tkind, stability) for r in run_list]
    values = _limit_values(per_run)

    nrows, ncols = grid_shape(len(per_run))
    with style():
        fig = new_figure(figsize, panels_figsize(nrows, ncols))
        axes = panels(fig, len(per_run))
        for i, (ax, s) in enumerate(zip(axes, per_run)):
            _draw(ax, s)
            ax.set_xlabel(tkind)
            if i % ncols == 0:
                ax.set_ylabel("Hessian eigenvalue")
            if len(per_run) > 1:
                ax.set_title(run_title(s.run))
        figure_legend(fig, axes)
        _value_axis(axes[0], values)
        base = "Sharpness over training"
        if len(per_run) == 1:
            base = f"{base}: {run_title(per_run[0].run)}"
        fig.suptitle(title if title is not None else figure_title(base, run_list))
    return fig


def _stability_threshold(run: RunData, tkind: str) -> _Threshold | None:
    """``(time, threshold, label)`` of the edge of stability, from the metrics' lr (and
    momentum): ``2/lr``, or ``(2 + 2 beta)/lr`` when a momentum ``beta > 0`` is recorded;
    rows without a positive lr are left out. None without such rows."""
    mt = run.metrics
    if len(mt) == 0:
        return None
    t, _ = time_column(tkind, mt.step, mt.epoch, f"run {run.name!r}'s metrics")
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


def _sharpness(run: RunData, tkind: str, stability: bool) -> _Sharpness:
    """The eigenvalues of ``run``'s probes in time order, and its threshold."""
    p = run.probes
    top = None if p.top_eigenvalues is None else np.asarray(p.top_eigenvalues, np.float64)
    bottom = np.asarray(p.bottom_eigenvalue, dtype=np.float64)
    has_top = top is not None and bool(np.any(np.isfinite(top)))
    has_bottom = bool(np.any(np.isfinite(bottom)))
    if len(p) == 0 or not (has_top or has_bottom):
        raise ValueError(
            f"run {run.name!r} has no eigenvalue probes: record them with top_k=k (and "
            "bottom=True) in SpectralMonitor or `spectra train`"
        )
    t, _ = time_column(tkind, p.step, p.epoch, f"run {run.name!r}'s probes")
    order = np.argsort(t, kind="stable")
    return _Sharpness(
        run=run,
        time=t[order],
        top=top[order] if has_top else None,
        bottom=bottom[order] if has_bottom else None,
        threshold=_stability_threshold(run, tkind) if stability else None,
    )


def _limit_values(per_run: Sequence[_Sharpness]) -> np.ndarray:
    """The values the y range must show: the finite eigenvalues, and the thresholds
    capped at 30 times the largest eigenvalue (``lr -> 0`` sends them to infinity)."""
    drawn = []
    for s in per_run:
        if s.top is not None:
            drawn.append(s.top.ravel())
        if s.bottom is not None:
            drawn.append(s.bottom)
    eig_values = np.concatenate(drawn)
    eig_values = eig_values[np.isfinite(eig_values)]
    top_max = float(eig_values.max())
    lim_values = [eig_values]
    for s in per_run:
        if s.threshold is not None:
            cap = 30.0 * abs(top_max) if top_max != 0 else np.inf
            lim_values.append(np.minimum(s.threshold[1], cap))
    return np.concatenate(lim_values)


def _top_label(j: int, k: int) -> str | None:
    """The legend label of the ``j``-th of ``k`` top eigenvalues (one for lambda_2..k)."""
    if j == 0:
        return r"$\lambda_1$ (top)"
    if j == 1:
        return {2: r"$\lambda_2$", 3: r"$\lambda_2, \lambda_3$"}.get(
            k, rf"$\lambda_2, \dots, \lambda_{{{k}}}$")
    return None


def _draw(ax: Axes, s: _Sharpness) -> None:
    """One run's panel: top eigenvalues in shades of blue, the smallest in red, the
    threshold dashed, and the zero line."""
    t = s.time
    if s.top is not None:
        k = s.top.shape[1]
        shades = matplotlib.colormaps["Blues"](np.linspace(0.95, 0.45, k))
        for j in range(k):
            ok = np.isfinite(s.top[:, j])
            ax.plot(t[ok], s.top[ok, j], color=shades[j], lw=1.6 if j == 0 else 0.9,
                    marker="o" if ok.sum() <= 40 else None, ms=2.5, label=_top_label(j, k))
    if s.bottom is not None:
        ok = np.isfinite(s.bottom)
        ax.plot(t[ok], s.bottom[ok], color="C3", lw=1.2, ls="-",
                marker="s" if ok.sum() <= 40 else None, ms=2.5, label=r"$\lambda_{\min}$")
    if s.threshold is not None:
        tt, thr, label = s.threshold
        ax.plot(tt, thr, color="black", lw=1.0, ls="--", drawstyle="steps-post", label=label)
    ax.axhline(0.0, color="0.7", lw=0.6, zorder=0)


def _value_axis(ax: Axes, values: np.ndarray) -> None:
    """A log, symlog or linear y scale for ``values`` (shared by all panels) and a range
    with some room around them."""
    value_scale(ax, values)
    v = values[np.isfinite(values)]
    lo, hi = float(v.min()), float(v.max())
    if ax.get_yscale() == "log":
        ax.set_ylim(lo / 1.5, hi * 1.5)
        log_ticks(ax)
    elif ax.get_yscale() == "symlog":
        ax.set_ylim(lo * 1.5 if lo < 0 else lo, hi * 1.5 if hi > 0 else hi / 1.5)
    else:
        span = hi - lo if hi > lo else max(abs(hi), 1.0)
        ax.set_ylim(lo - 0.1 * span, hi + 0.1 * span)
