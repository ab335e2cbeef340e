"""What the figures draw, read from runs: the runs themselves, their titles, their time
axis and the density rows of their probes.

Runs. The ``runs`` argument of the run plots takes a :class:`~spectra.runs.store.RunData`,
a sequence of them, a mapping ``name -> RunData`` (as :func:`spectra.runs.store.read_runs`
returns), or the path of a ``.h5`` file; with a path, ``names`` picks runs (default:
all, in creation order). Panels are titled with the run name and the optimizer of the
run's config.

Time axis. ``by="auto"`` uses the epoch when every row has one, else the step;
``"epoch"`` and ``"step"`` force one.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spectra.linalg.density import SpectralMeasure, nonfinite_rows, strip_padding
from spectra.linalg.scales import Rules, midpoint_edges
from spectra.runs import RunData, read_run, read_runs

RunsLike = RunData | Sequence[RunData] | Mapping[str, RunData] | str | os.PathLike


# --------------------------------------------------------------------------- runs


def resolve_runs(runs: RunsLike, names: str | Iterable[str] | None) -> list[RunData]:
    """The runs to plot, in order (see the module docstring).

    Raises:
        ValueError: a name that is not there, or no runs at all.
        TypeError: ``runs`` of another kind, or a sequence holding something else.
    """
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
    twice = sorted({r.name for r in out if sum(q.name == r.name for q in out) > 1})
    if twice:  # each plot tells runs apart by name: colours, legends, titles
        raise ValueError(f"two or more runs are named {', '.join(map(repr, twice))}: give them "
                         "distinct names (dataclasses.replace(run, name=...)), e.g. the same "
                         "run name from two files")
    return out


def one_run(run: RunData | RunsLike, name: str | None) -> RunData:
    """The one run of ``run`` (named ``name`` in a file or collection of several)."""
    runs = resolve_runs(run, name)
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


def run_title(run: RunData) -> str:
    """``name (optimizer)``, or the name alone when the config names no other optimizer."""
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


def figure_title(base: str, runs: Sequence[RunData]) -> str:
    """``base (model on data)`` when the runs share a model and data set."""
    setting = _setting(runs)
    return f"{base} ({setting})" if setting else base


# --------------------------------------------------------------------------- time


def time_column(
    by: str, step: np.ndarray, epoch: np.ndarray, what: str
) -> tuple[np.ndarray, str]:
    """The time column of a table (float64) and its axis label, ``"epoch"`` or ``"step"``.

    Raises:
        ValueError: a bad ``by``, or ``by="epoch"`` for rows without an epoch
            (``what`` names the table).
    """
    if by not in ("auto", "epoch", "step"):
        raise ValueError(f"by must be 'auto', 'epoch' or 'step', got {by!r}")
    epoch = np.asarray(epoch, dtype=np.float64)
    has_epoch = bool(np.all(np.isfinite(epoch)))  # a table of no rows lacks no epoch
    if by == "epoch" and not has_epoch:
        raise ValueError(
            f"{what} has rows without an epoch; plot against the step with by='step'"
        )
    if by == "epoch" or (by == "auto" and has_epoch):
        return epoch, "epoch"
    return np.asarray(step, dtype=np.float64), "step"


def time_kind(by: str, tables: Sequence[tuple[np.ndarray, np.ndarray]]) -> str:
    """One time axis for several ``(step, epoch)`` tables (shared axes): epoch only if
    all have it."""
    if by != "auto":
        return by
    for _, epoch in tables:
        e = np.asarray(epoch, dtype=np.float64)
        if e.size and not np.all(np.isfinite(e)):
            return "step"
    return "epoch"


def finite_series(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows where time ``t`` and value ``y`` are both finite, in time order (ties
    keep their row order); possibly empty."""
    ok = np.isfinite(t) & np.isfinite(y)
    order = np.argsort(t[ok], kind="stable")
    return t[ok][order], y[ok][order]


def times_text(kind: str, t: np.ndarray) -> str:
    """``epoch 1, 2, ...`` (``kind``: the time unit, "epoch" or "step"): the first six
    of the times ``t`` (``(n,)``, n >= 1), for notes that name probes."""
    more = ", ..." if t.size > 6 else ""
    return f"{kind} " + ", ".join(f"{x:g}" for x in t[:6]) + more


def row_edges(t: np.ndarray) -> np.ndarray:
    """Cell edges around row centres ``t`` (increasing): midpoints, ends mirrored; a
    single row spans ``t +- 0.5``."""
    if t.size == 1:
        return np.array([t[0] - 0.5, t[0] + 0.5])
    return midpoint_edges(t)


# --------------------------------------------------------------------------- densities

_NO_DENSITY = (
    "run {name!r} has no density probes: record them with `spectra train --density` (the "
    "default) or SpectralMonitor's density option, which store the SLQ "
    "ritz_nodes/ritz_weights"
)
_NO_PROBES = (
    "run {name!r} has no density probes: its probes table has no rows (probing was off, "
    "or the run stopped before its first probe)"
)


@dataclass(frozen=True)
class DensityRows:
    """The probes of a run that hold a density.

    Attributes:
        run: the run.
        time: ``(r,)`` epoch or step of each, increasing.
        index: ``(r,)`` their row numbers in the probes table.
        measures: their ``(nodes, weights)`` rules, padding removed.
        failed: ``(f,)`` epoch or step of each failed probe (Ritz nodes or weights
            NaN or Inf beyond padding: a probe that diverged, or a damaged file),
            increasing and without repeats; those probes have no row in the above.
    """

    run: RunData
    time: np.ndarray
    index: np.ndarray
    measures: list[Rules]
    failed: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _row_list(rows: list[int]) -> str:
    more = f", ... ({len(rows)} in all)" if len(rows) > 10 else ""
    return "[" + ", ".join(map(str, rows[:10])) + more + "]"


def density_rows(run: RunData, kind: str, *, stacklevel: int = 3) -> DensityRows:
    """The probes of ``run`` with a density, against time ``kind`` (epoch or step).

    Rows whose nodes or weights are not finite (beyond padding) are skipped with a
    warning that names them (``stacklevel``: as :func:`warnings.warn`'s, counted from
    here; the default names the caller of a plot function that calls this); their
    times are kept in ``failed``.

    Raises:
        ValueError: no probe holds a density (the message says whether the run has
            no probes at all), or every one that does is not finite.
    """
    p = run.probes
    if len(p) == 0:
        raise ValueError(_NO_PROBES.format(name=run.name))
    if p.ritz_nodes is None or p.ritz_weights is None:
        raise ValueError(_NO_DENSITY.format(name=run.name))
    t, _ = time_column(kind, p.step, p.epoch, f"run {run.name!r}'s probes")
    bad = nonfinite_rows(p.ritz_nodes, p.ritz_weights)
    rows = []
    for i in range(len(p)):
        m = None if i in bad else strip_padding(p.ritz_nodes[i], p.ritz_weights[i])
        if m is not None and np.isfinite(t[i]):
            rows.append((float(t[i]), i, m))
    if bad:
        what = (f"run {run.name!r}: the stored Ritz nodes or weights of probe rows "
                f"{_row_list(bad)} are not finite (NaN or Inf: a probe that diverged, or a "
                "damaged file)")
        if not rows:
            raise ValueError(f"{what}; no other probe row has a density to draw")
        warnings.warn(f"{what}; skipped", stacklevel=stacklevel)
    if not rows:
        raise ValueError(_NO_DENSITY.format(name=run.name))
    rows.sort(key=lambda r: (r[0], r[1]))
    failed = t[np.array(bad, dtype=np.int64)]  # their times: a heat map leaves them blank
    return DensityRows(
        run=run,
        time=np.array([r[0] for r in rows]),
        index=np.array([r[1] for r in rows], dtype=np.int64),
        measures=[r[2] for r in rows],
        failed=np.unique(failed[np.isfinite(failed)]),
    )


def density_rows_of(runs: Sequence[RunData], kind: str) -> list[DensityRows]:
    """The density rows (:func:`density_rows`) of each of ``runs`` that has a density.

    A run without one, among runs with one (a file where one run stopped before its
    first probe, or was trained without densities), is left out of the figure with a
    warning that names it and says why. Warnings name the caller of the plot function
    that calls this.

    Raises:
        ValueError: no run has a density (the message says why, for each run).
    """
    out: list[DensityRows] = []
    missing: list[str] = []
    for r in runs:
        try:
            out.append(density_rows(r, kind, stacklevel=4))
        except ValueError as exc:
            missing.append(str(exc))
    if not out:
        raise ValueError("; ".join(missing))
    for why in missing:
        warnings.warn(f"{why}; left out of the figure", stacklevel=3)
    return out


def measure_rules(measure: SpectralMeasure) -> Rules:
    """The rules of ``measure``, padding removed.

    Raises:
        ValueError: nodes or weights that are not finite, or no positive weight.
    """
    bad = nonfinite_rows(measure.nodes, measure.weights)
    if bad:
        raise ValueError(
            f"the SpectralMeasure's nodes or weights are not finite (NaN or Inf) in rows "
            f"{_row_list(bad)} (one per random vector); nothing to draw"
        )
    rules = strip_padding(measure.nodes, measure.weights)
    if rules is None:
        raise ValueError("the SpectralMeasure has no node with positive weight")
    return rules
