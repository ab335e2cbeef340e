"""Sharpness over training: the top-k Hessian eigenvalues and the smallest one against
time, with the optimizer's stability threshold where theory gives one, one panel per
run.

The threshold. A probe row that records ``threshold`` (with ``threshold_kind`` and,
for adaptive optimizers, ``preconditioned_top``: see :mod:`spectra.probe`) is drawn as
recorded, probe by probe, so that a learning-rate schedule shows. Whether the threshold
bounds the preconditioned sharpness is the ``threshold_preconditioned`` column (the
kind alone does not say: ``2/lr`` is SGD's and RMSprop's); runs written before that
column infer it from the kind, ``preconditioned_top`` and the config. A run without
those columns falls back on its config: a ``torch.optim`` baseline named there (``sgd``,
``sgdm``, ``adam``, ``adamw``, ``rmsprop``) is rebuilt at each metrics row's lr and
momentum and asked :func:`spectra.stability_threshold`, the one home of the formulas;
every other optimizer (CALR, SMARAN, LPSGD, Lion, DCAO, ...) gets no line, and the panel
says so. A threshold on the *preconditioned* sharpness (Adam, RMSprop) is drawn only
against the recorded ``preconditioned_top``, never against the Hessian's eigenvalues.
A threshold above the y range is named in the panel, not dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spectra.linalg.scales import symlog, symlog_inverse
from spectra.plots.axes import log_ticks, symlog_ticks, time_ticks, value_scale
from spectra.plots.data import (
    RunsLike,
    figure_title,
    finite_series,
    resolve_runs,
    run_title,
    time_column,
    time_kind,
    times_text,
)
from spectra.plots.style import (
    figure_legend,
    fit_note,
    grid_shape,
    mark_lone_points,
    new_figure,
    no_data,
    panel_note,
    panels,
    panels_figsize,
    style,
)
from spectra.runs import RunData

#: ``threshold_kind`` -> its formula in mathtext (the kinds of
#: :data:`spectra.curvature.stability.KINDS`).
KIND_LABELS: dict[str, str] = {
    "2/lr": r"$2/\eta$",
    "(2+2b)/lr": r"$(2+2\beta)/\eta$",
    "(2+2b)/((1-d)lr)": r"$(2+2\beta)/((1-d)\eta)$",
    "(2+2b)/((1+2b)lr)": r"$(2+2\beta)/((1+2\beta)\eta)$",
    "(2+2b1)/((1-b1)lr)": r"$(2+2\beta_1)/((1-\beta_1)\eta)$",
}
_ADAM_KIND = "(2+2b1)/((1-b1)lr)"

# config name of a torch.optim baseline -> its class name (the rules themselves are
# spectra.curvature.stability's); other optimizers have no threshold in theory
_TORCH_BASELINES = {"sgd": "SGD", "sgdm": "SGD", "adam": "Adam", "adamw": "AdamW",
                    "rmsprop": "RMSprop"}
# an eigenvalue panel shows a threshold up to this many times the largest eigenvalue
_ON_SCALE = 4.0


@dataclass(frozen=True)
class _Threshold:
    """A stability threshold over time."""

    time: np.ndarray  # (n,)
    value: np.ndarray  # (n,)
    label: str  # formula, for the legend
    preconditioned: bool  # bounds lambda_1(P^-1 H), not lambda_1(H)
    source: str  # "recorded" (probes) or "config" (rebuilt from the config and the lr)
    missing: np.ndarray = field(default_factory=lambda: np.zeros(0))  # probe times without one


@dataclass(frozen=True)
class _Sharpness:
    """What one panel draws, in time order."""

    run: RunData
    time: np.ndarray  # (n,) of the probes
    top: np.ndarray | None  # (n, k) top eigenvalues; None: not recorded
    bottom: np.ndarray | None  # (n,) smallest eigenvalue; None: not recorded
    pre_top: tuple[np.ndarray, np.ndarray] | None  # (time, lambda_1(P^-1 H))
    threshold: _Threshold | None
    note: str  # why there is no line, or ""
    nonfinite: np.ndarray = field(default_factory=lambda: np.zeros(0))  # probe times
    # whose eigenvalues are all NaN or Inf (a probe of a run that diverged)
    empty: str = ""  # a run without eigenvalues (among others with some): what it lacks


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

    With ``stability``, the optimizer's stability threshold where theory gives one (see
    the module docstring): ``2/lr`` for SGD, ``(2 + 2 beta)/lr`` for heavy-ball
    momentum (Cohen et al. 2021), Adam's preconditioned ``(2 + 2 beta1)/((1 - beta1) lr)``
    (Cohen et al. 2022) against the recorded preconditioned sharpness; none for
    optimizers without a fixed step (the panel says so). The y axis is logarithmic
    when every value drawn is positive, else symmetric-log with labelled decades on
    both sides of 0.

    A run without eigenvalues among runs with some gets a panel that says so; probes
    whose eigenvalues are all NaN or Inf (a run that diverged) are named in their panel.

    Raises:
        ValueError: no run whose probes hold top eigenvalues or the smallest eigenvalue
            (the message names each run and what it lacks).
    """
    run_list = resolve_runs(runs, names)
    tkind = time_kind(by, [(r.probes.step, r.probes.epoch) for r in run_list])
    missing = [_no_eigenvalues(r) for r in run_list]
    if all(missing):
        raise ValueError(missing[0] if len(run_list) == 1 else "; ".join(missing))
    per_run = [_empty_panel(r) if why else _sharpness(r, tkind, stability)
               for r, why in zip(run_list, missing)]

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
        fig.suptitle(" ")  # reserve the title's room before the ticks measure the panels
        figure_legend(fig, axes)
        notes = [_note_text(ax, s, _value_axis(fig, axes, per_run, 0.0)) for ax, s in
                 zip(axes, per_run)]
        if any(notes):  # room at the top of every panel (they share y) for the notes
            lines = max(n.count("\n") + 1 for n in notes if n)
            _value_axis(fig, axes, per_run, 0.075 * lines + 0.03)
            top = axes[0].get_ylim()[1]  # what lies above the final range is off scale
            notes = [_note_text(ax, s, top) for ax, s in zip(axes, per_run)]
        for ax, note in zip(axes, notes):
            panel_note(ax, note)  # in the free strip at the top of the panel
        base = "Sharpness over training"
        if len(per_run) == 1:
            base = f"{base}: {run_title(per_run[0].run)}"
        fig.suptitle(title if title is not None else figure_title(base, run_list))
    mark_lone_points(fig)  # a single point of lambda_2..k or a threshold: marked, not unseen
    time_ticks(fig)  # one tick at a lone time, whole numbers for whole epochs
    return fig


# --------------------------------------------------------------------------- data


def _sharpness(run: RunData, tkind: str, stability: bool) -> _Sharpness:
    """The eigenvalues of ``run``'s probes in time order, and its threshold; ``run`` has
    some (:func:`_no_eigenvalues` is "", checked by :func:`plot_sharpness`)."""
    p = run.probes
    top = None if p.top_eigenvalues is None else np.asarray(p.top_eigenvalues, np.float64)
    bottom = np.asarray(p.bottom_eigenvalue, dtype=np.float64)
    has_top = top is not None and bool(np.any(np.isfinite(top)))
    has_bottom = bool(np.any(np.isfinite(bottom)))  # one of the two: _no_eigenvalues is ""
    t, _ = time_column(tkind, p.step, p.epoch, f"run {run.name!r}'s probes")
    order = np.argsort(t, kind="stable")
    finite = np.isfinite(bottom) if has_bottom else np.zeros(len(p), bool)
    if has_top:
        finite |= np.isfinite(top).any(axis=1)
    nonfinite = np.sort(t[~finite & np.isfinite(t)])
    pre = None
    if "preconditioned_top" in p.extra:
        tp, yp = finite_series(t, np.asarray(p.extra["preconditioned_top"], np.float64))
        pre = (tp, yp) if tp.size else None
    threshold, note = (_threshold(run, tkind, t, pre is not None) if stability
                       else (None, ""))
    return _Sharpness(
        run=run, time=t[order], top=top[order] if has_top else None,
        bottom=bottom[order] if has_bottom else None, pre_top=pre, threshold=threshold,
        note=note, nonfinite=nonfinite,
    )


def _no_eigenvalues(run: RunData) -> str:
    """Why ``run`` has no eigenvalue to draw (a one-line error), or "" when it has."""
    p = run.probes
    if len(p) == 0:
        return (f"run {run.name!r} has no eigenvalue probes: its probes table has no rows "
                "(probing was off, or the run stopped before its first probe)")
    top = None if p.top_eigenvalues is None else np.asarray(p.top_eigenvalues, np.float64)
    if (top is not None and np.isfinite(top).any()) or np.isfinite(
            np.asarray(p.bottom_eigenvalue, np.float64)).any():
        return ""
    return (f"run {run.name!r} has no eigenvalue probes: record them with `spectra train "
            "--top-k K` (and --bottom) or SpectralMonitor's top-k (and bottom) options")


def _empty_panel(run: RunData) -> _Sharpness:
    """The panel of a run without eigenvalues, among runs with some: a note, no lines."""
    what = "no probes recorded" if len(run.probes) == 0 else "no eigenvalues recorded"
    return _Sharpness(run=run, time=np.zeros(0), top=None, bottom=None, pre_top=None,
                      threshold=None, note="", empty=what)


def _optimizer_config(run: RunData) -> tuple[str | None, Mapping[str, Any]]:
    """The optimizer's name and hyperparameters as the run's config records them."""
    opt = run.config.get("optimizer")
    if isinstance(opt, str):
        return opt, {}
    if isinstance(opt, Mapping):
        hp = opt.get("hyperparameters")
        name = opt.get("name")
        return (name if isinstance(name, str) else None,
                hp if isinstance(hp, Mapping) else opt)
    return None, {}


def _threshold(run: RunData, tkind: str, t_probes: np.ndarray,
               has_pre: bool) -> tuple[_Threshold | None, str]:
    """The run's threshold (recorded, else from its config) and, when there is no line
    to draw, a note that says why."""
    name, _ = _optimizer_config(run)
    who = name or "this optimizer"
    recorded = _recorded_threshold(run, t_probes, name)
    thr = recorded if recorded is not None else _config_threshold(run, tkind)
    if thr is None:
        if recorded is None and "threshold" in run.probes.extra:
            return None, f"no stability line: theory gives none for {who}"
        if name is None:
            return None, "no stability line: the config names no optimizer"
        if name.lower() in _TORCH_BASELINES:
            return None, f"no stability line: no positive lr recorded for {who}"
        return None, f"no stability line: theory gives none for {who}"
    if thr.preconditioned and not has_pre:
        return None, (f"no stability line: {who}'s threshold bounds the preconditioned "
                      "sharpness (not recorded)")
    return thr, ""


def _recorded_threshold(run: RunData, t: np.ndarray, name: str | None) -> _Threshold | None:
    """The probes' ``threshold`` column, when it holds a value."""
    p = run.probes
    if "threshold" not in p.extra:
        return None
    value = np.asarray(p.extra["threshold"], dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(value) & (value > 0)
    if not np.any(ok):
        return None
    kinds = (np.asarray(p.extra["threshold_kind"]).astype(str)
             if "threshold_kind" in p.extra else np.full(len(p), ""))
    kind_set = sorted({str(k) for k in kinds[ok] if str(k)})
    label = " / ".join(KIND_LABELS.get(k, k) for k in kind_set) or "threshold"
    preconditioned = _recorded_preconditioned(p, ok, kind_set, name)
    ts, vs = finite_series(t[ok], value[ok])
    missing = np.isfinite(t) & ~ok
    gaps = np.sort(t[missing])
    return _Threshold(ts, vs, label, preconditioned, "recorded", gaps)


def _recorded_preconditioned(p: Any, ok: np.ndarray, kinds: Sequence[str],
                             name: str | None) -> bool:
    """Whether the recorded threshold at the rows ``ok`` bounds the preconditioned
    sharpness: the ``threshold_preconditioned`` column where it holds a value (a kind
    alone does not say: ``2/lr`` is SGD's and RMSprop's); in runs written before that
    column, inferred from Adam's kind, a recorded ``preconditioned_top`` or the
    config's optimizer."""
    col = p.extra.get("threshold_preconditioned")
    if col is not None:
        flags = np.asarray(col, dtype=np.float64)[ok]
        if np.all(np.isfinite(flags)):
            return bool(np.any(flags > 0.5))
    pre_col = p.extra.get("preconditioned_top")
    pre_rows = (np.isfinite(np.asarray(pre_col, dtype=np.float64)[ok])
                if pre_col is not None else np.zeros(int(ok.sum()), bool))
    config_rule = _TORCH_BASELINES.get((name or "").lower())
    return (_ADAM_KIND in kinds or bool(np.any(pre_rows))
            or config_rule in ("Adam", "AdamW", "RMSprop"))


def _config_threshold(run: RunData, tkind: str) -> _Threshold | None:
    """The threshold of a ``torch.optim`` baseline named by the config, at each metrics
    row's lr (and momentum, or Adam's beta1), by :func:`spectra.stability_threshold`."""
    name, hp = _optimizer_config(run)
    cls_name = _TORCH_BASELINES.get((name or "").lower())
    mt = run.metrics
    if cls_name is None or len(mt) == 0:
        return None
    import torch

    from spectra.curvature.stability import stability_threshold

    cls = getattr(torch.optim, cls_name)
    t, _ = time_column(tkind, mt.step, mt.epoch, f"run {run.name!r}'s metrics")
    lr = np.asarray(mt.lr, dtype=np.float64)
    beta = np.asarray(mt.momentum, dtype=np.float64)
    keys = {"SGD": ("momentum", "dampening", "nesterov"), "RMSprop": ("momentum", "alpha"),
            "Adam": ("betas",), "AdamW": ("betas",)}[cls_name]
    base = {k: (tuple(hp[k]) if k == "betas" else hp[k]) for k in keys if k in hp}
    param = [torch.zeros(1, requires_grad=True)]
    times, values, kinds, pre = [], [], set(), False
    for i in np.flatnonzero(np.isfinite(t) & np.isfinite(lr) & (lr > 0)):
        kw = dict(base, lr=float(lr[i]))
        if math.isfinite(beta[i]):  # what the optimizer used at that row
            if cls_name in ("Adam", "AdamW"):
                kw["betas"] = (float(beta[i]), float(base.get("betas", (0.9, 0.999))[1]))
            else:
                kw["momentum"] = float(beta[i])
        try:
            rule = stability_threshold(cls(param, **kw))
        except (ValueError, TypeError):  # a config torch refuses: no line
            rule = None
        if rule is not None:
            times.append(float(t[i]))
            values.append(rule.value)
            kinds.add(rule.kind)
            pre = pre or rule.preconditioned
    if not values:
        return None
    ts, vs = finite_series(np.array(times), np.array(values))
    label = " / ".join(KIND_LABELS[k] for k in sorted(kinds))
    return _Threshold(ts, vs, label, pre, "config")


# --------------------------------------------------------------------------- drawing


def _top_label(j: int, k: int) -> str | None:
    """The legend label of the ``j``-th of ``k`` top eigenvalues (one for lambda_2..k)."""
    if j == 0:
        return r"$\lambda_1$ (top)"
    if j == 1:
        return {2: r"$\lambda_2$", 3: r"$\lambda_2, \lambda_3$"}.get(
            k, rf"$\lambda_2, \dots, \lambda_{{{k}}}$")
    return None


def _threshold_label(thr: _Threshold) -> str:
    what = "preconditioned stability threshold" if thr.preconditioned else "stability threshold"
    return f"{thr.label} ({what})"


def _draw(ax: Axes, s: _Sharpness) -> None:
    """One run's panel: lambda_1 solid with circles, lambda_2..k thin dotted, lambda_min
    red dash-dot with squares, the preconditioned lambda_1 purple with diamonds,
    the threshold black dashed (purple for a preconditioned one), and the zero line."""
    t = s.time
    if s.empty:
        no_data(ax, s.empty)
    if s.top is not None:
        k = s.top.shape[1]
        shades = matplotlib.colormaps["Blues"](np.linspace(0.95, 0.6, k))
        for j in range(k):
            ok = np.isfinite(s.top[:, j])
            few = ok.sum() <= 40
            ax.plot(t[ok], s.top[ok, j], color=shades[j], lw=1.6 if j == 0 else 0.9,
                    ls="-" if j == 0 else ":", marker="o" if few and j == 0 else None, ms=3,
                    label=_top_label(j, k))
    if s.bottom is not None:
        ok = np.isfinite(s.bottom)
        ax.plot(t[ok], s.bottom[ok], color="C3", lw=1.2, ls="-.",
                marker="s" if ok.sum() <= 40 else None, ms=2.5, label=r"$\lambda_{\min}$")
    if s.pre_top is not None:
        tp, yp = s.pre_top
        ax.plot(tp, yp, color="C4", lw=1.3, ls="-", marker="D" if tp.size <= 40 else None,
                ms=2.5, label=r"$\lambda_1(P^{-1}H)$ (preconditioned)")
    if s.threshold is not None:
        thr = s.threshold
        recorded = thr.source == "recorded"  # at the probes: marked there
        ax.plot(thr.time, thr.value, color="C4" if thr.preconditioned else "black", lw=1.1,
                ls="--", drawstyle="default" if recorded else "steps-post",
                marker="o" if recorded and thr.time.size <= 40 else None, ms=3, mfc="white",
                label=_threshold_label(thr))
    ax.axhline(0.0, color="0.7", lw=0.6, zorder=0)


def _panel_values(s: _Sharpness) -> np.ndarray:
    """The eigenvalues a panel draws (the threshold aside)."""
    parts = [np.zeros(0)]
    if s.top is not None:
        parts.append(s.top.ravel())
    if s.bottom is not None:
        parts.append(s.bottom)
    if s.pre_top is not None:
        parts.append(s.pre_top[1])
    v = np.concatenate(parts)
    return v[np.isfinite(v)]


def _value_axis(fig: Figure, axes: Sequence[Axes], per_run: Sequence[_Sharpness],
                room: float) -> float:
    """One y scale and range for all panels: the eigenvalues, the thresholds that lie
    within :data:`_ON_SCALE` times the largest of them, and a share ``room`` of the
    height free at the top. Returns the top of the range before that room."""
    eig = np.concatenate([_panel_values(s) for s in per_run])
    top_max = float(eig.max())
    values = [eig]
    for s in per_run:
        if s.threshold is not None:
            v = s.threshold.value
            cap = _ON_SCALE * top_max if top_max > 0 else np.inf
            values.append(v[v <= cap])
    v = np.concatenate(values)
    ax = axes[0]
    linthresh = value_scale(ax, v)
    lo, hi = float(v.min()), float(v.max())
    if ax.get_yscale() == "log":
        lo, hi = lo / 1.5, hi * 1.5
        ax.set_ylim(lo, hi * (hi / lo) ** (room / (1 - room)))
        for a in axes:
            log_ticks(a)
    elif ax.get_yscale() == "symlog" and linthresh is not None:
        lo, hi = (lo * 1.5 if lo < 0 else lo), (hi * 1.5 if hi > 0 else hi / 1.5)
        u = [float(symlog(np.array(x), linthresh)) for x in (lo, hi)]
        top = float(symlog_inverse(np.array(u[1] + (u[1] - u[0]) * room / (1 - room)),
                                   linthresh))
        ax.set_ylim(lo, top)
        height = float(ax.get_position().height * fig.get_figheight())
        for a in axes:
            symlog_ticks(a, lo, top, linthresh, which="y", width=max(height, 1.5))
    else:
        span = hi - lo if hi > lo else max(abs(hi), 1.0)
        lo, hi = lo - 0.1 * span, hi + 0.1 * span
        ax.set_ylim(lo, hi + (hi - lo) * room / (1 - room))
    return hi


def _note_text(ax: Axes, s: _Sharpness, top: float) -> str:
    """Why there is no stability line, or which part of it lies above ``top``; wrapped
    to the panel's width. "" when there is nothing to say."""
    text = s.note
    if s.threshold is not None:
        above = s.threshold.value[s.threshold.value > top]
        if above.size:
            rng = (f"{above.min():.3g}" if above.min() == above.max()
                   else f"{above.min():.3g} to {above.max():.3g}")
            where = "" if above.size == s.threshold.value.size else " in part"
            text = f"↑ stability threshold {s.threshold.label} off scale{where}: {rng}"
        if s.threshold.missing.size:
            text = ((text + "; " if text else "") + "no threshold recorded at "
                    + times_text(ax.get_xlabel(), s.threshold.missing))
    if s.nonfinite.size:  # probes that gave no number: the lines skip them
        gap = "no finite eigenvalue (NaN or Inf) at " + times_text(ax.get_xlabel(), s.nonfinite)
        text = f"{gap}; {text}" if text else gap
    return fit_note(ax, text) if text else ""
