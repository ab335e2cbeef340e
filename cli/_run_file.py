"""What a run file holds, for ``spectra info RUN.h5``: its runs, their configs, rows and
checkpoints."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
import numpy as np

from cli._format import fmt, seconds
from cli._format import pct as pct_
from cli._output import echo_json
from cli._paths import shown_path


def _last(a: np.ndarray | None) -> float | None:
    if a is None or len(a) == 0:
        return None
    v = float(np.asarray(a)[-1])
    return v if math.isfinite(v) else None


def _last_finite(a: np.ndarray | None) -> float | None:
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    ok = np.isfinite(a)
    return float(a[ok][-1]) if ok.any() else None


def run_summary(run) -> dict[str, Any]:
    """A JSON-able description of one :class:`spectra.runs.store.RunData`."""
    m, p = run.metrics, run.probes
    epoch_rows = np.isfinite(m.test_loss) | np.isfinite(m.train_acc)
    top = None
    if p.top_eigenvalues is not None and len(p):
        row = np.asarray(p.top_eigenvalues[-1], dtype=np.float64)
        top = [float(x) for x in row if math.isfinite(x)]
    last_epoch = _last_finite(m.epoch)
    return {
        "name": run.name,
        "created": run.created,
        "spectra_version": run.spectra_version,
        "config": dict(run.config),
        "metrics_rows": len(m),
        "probe_rows": len(p),
        "metric_columns": list(m.columns),
        "probe_columns": [c for c in ("top_eigenvalues", "bottom_eigenvalue", "trace",
                                      "ritz_nodes", "ritz_weights")
                          if p[c] is not None and (np.asarray(p[c]).ndim > 1
                                                   or np.isfinite(np.asarray(p[c])).any())]
                         + list(p.extra),
        "top_k": None if p.top_eigenvalues is None else int(p.top_eigenvalues.shape[1]),
        "density_shape": None if p.ritz_nodes is None else list(p.ritz_nodes.shape[1:]),
        "last": {
            "step": int(m.step[-1]) if len(m) else None,
            "epoch": last_epoch,
            "train_loss": _last_finite(m.train_loss[epoch_rows]) if len(m) else None,
            "train_acc": _last_finite(m.train_acc[epoch_rows]) if len(m) else None,
            "test_loss": _last_finite(m.test_loss),
            "test_acc": _last_finite(m.test_acc),
            "lr": _last_finite(m.lr),
            "lambda1": top[0] if top else None,
            "lambda_min": _last(p.bottom_eigenvalue) if len(p) else None,
            "trace": _last(p.trace) if len(p) else None,
            "probe_epoch": _last(p.epoch) if len(p) else None,
        },
        "train_seconds": float(np.nansum(m.seconds[epoch_rows])) if len(m) else 0.0,
        "probe_seconds": float(np.nansum(p.seconds)) if len(p) else 0.0,
        "checkpoints": [{"path": str(c), "exists": c.exists(), "stale": _stale(c, last_epoch)}
                        for c in run.checkpoints],
    }


def _stale(path: Path, last_epoch: float | None) -> bool:
    """Whether the recorded checkpoint ``path`` is past the run's last metrics row
    (``last_epoch``, in epochs): its epoch, from the file name, is beyond it, so it
    holds epochs a resume from an earlier checkpoint dropped, and no resume accepts
    it. Read from the name only (a checkpoint is written just after its epoch's
    row); a name without an epoch, or a run without rows, is never stale."""
    from spectra.runs.checkpoints import checkpoint_epoch

    epoch = checkpoint_epoch(path)
    return epoch is not None and last_epoch is not None and epoch > last_epoch


def describe_run_file(path: str, as_json: bool) -> None:
    """Print what a run file holds (``spectra info RUN.h5``)."""
    import os

    from spectra.runs.store import read_runs

    runs = read_runs(path)
    summaries = [run_summary(r) for r in runs.values()]
    if as_json:
        echo_json({"file": str(path), "size_bytes": os.path.getsize(path),
                   "journal": os.path.exists(str(path) + "-journal"), "runs": summaries})
        return
    size = os.path.getsize(path)
    click.echo(f"{path}: spectra run file, {len(summaries)} run{'s' if len(summaries) != 1 else ''}, "
               f"{size / 1024:.0f} KiB")
    for s in summaries:
        click.echo("")
        _print_run(s, Path(path))


def _count(value: Any) -> str:
    """A stored count with thousands separators; any other JSON value as it is (a file
    written by another tool)."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _pair(value: Any) -> str:
    """A stored (num_vectors, num_steps) as a tuple; any other JSON value as it is."""
    return str(tuple(value)) if isinstance(value, list | tuple) else str(value)


def _print_run(s: dict[str, Any], path: Path) -> None:
    c = s["config"]
    click.echo(f"run {s['name']!r}  (created {s['created'][:19].replace('T', ' ')} UTC, "
               f"spectra {s['spectra_version']})")
    rows = []
    model = c.get("model")
    if isinstance(model, dict):
        kw = model.get("kwargs") or {}
        rows.append(("model", f"{model.get('name', '?')}" + (f" {kw}" if kw else "")
                     + (f", {_count(c['num_params'])} parameters" if "num_params" in c else "")))
    data = c.get("data")
    if isinstance(data, dict):
        kw = data.get("kwargs") or {}
        sizes = f", {c['num_train']} train / {c['num_test']} test" if "num_train" in c else ""
        rows.append(("data", f"{data.get('name', '?')}" + (f" {kw}" if kw else "") + sizes))
    opt = c.get("optimizer")
    if isinstance(opt, dict):
        over = opt.get("overrides") or {}
        shown = (", ".join(f"{k}={v}" for k, v in over.items()) if isinstance(over, dict)
                 else str(over))
        rows.append(("optimizer", f"{opt.get('name', '?')}"
                     + (" " + shown if over else "")
                     + (" (with its schedule)" if opt.get("schedule") else "")))
        sched = opt.get("lr_schedule")
        if isinstance(sched, dict) and sched.get("name", "none") != "none":
            from optim.schedules import LRSchedule

            try:
                text = LRSchedule.from_dict(sched).describe()
            except ValueError:  # a schedule this version does not know: show it as stored
                text = str(sched)
            rows.append(("lr schedule", text))
    if "epochs" in c:
        rows.append(("training", (f"{c['epochs']} epochs, batch {c.get('batch_size')}, "
                                  f"seed {c.get('seed')}, loss {c.get('loss')}")))
    probe = c.get("probe")
    if isinstance(probe, dict):
        dens = probe.get("density")
        every, unit = probe.get("every"), probe.get("unit")
        if isinstance(unit, str) and isinstance(every, int) and every != 1:
            unit += "s"  # every 10 steps, every 1 epoch
        rows.append(("probes", (f"every {every} {unit}, "
                                f"{probe.get('samples')} samples, top-{probe.get('top_k')}, "
                                f"trace {probe.get('trace_matvecs')}, density "
                                f"{_pair(dens) if dens else 'off'}, tol {probe.get('tol')}")))
    elif c and "probe" in c:
        rows.append(("probes", "off"))
    if not rows and c:
        rows.append(("config", ", ".join(f"{k}={v}" for k, v in c.items())))
    last = s["last"]
    holds = ([f"top-{s['top_k']}"] if s["top_k"] else []) + (
        [f"density {tuple(s['density_shape'])}"] if s["density_shape"] else [])
    rows.append(("rows", f"{s['metrics_rows']} metrics, {s['probe_rows']} probes"
                         + (f" ({', '.join(holds)})" if holds else "")))
    if last["epoch"] is not None:
        parts = [f"epoch {last['epoch']:g}"]
        for key, label, pct in (("train_loss", "train loss", False), ("train_acc", "acc", True),
                                ("test_loss", "test loss", False), ("test_acc", "acc", True)):
            v = last[key]
            if v is not None:
                parts.append(f"{label} {pct_(v) if pct else fmt(v)}")
        rows.append(("last", ", ".join(parts)))
    # a run probed with --top-k 0 has no λ1 but may have λmin and the trace
    probed = [f"{label} {fmt(last[key])}" for key, label in
              (("lambda1", "λ1"), ("lambda_min", "λmin"), ("trace", "trace"))
              if last.get(key) is not None]
    if probed:
        rows.append(("last probe", ", ".join(probed)
                     + (f" at epoch {last['probe_epoch']:g}" if last["probe_epoch"] is not None else "")))
    rows.append(("time", (f"{seconds(s['train_seconds'])} training, "
                         f"{seconds(s['probe_seconds'])} probes")))
    ck = [x for x in s["checkpoints"] if not x["stale"]]
    stale = len(s["checkpoints"]) - len(ck)
    missing = sum(not x["exists"] for x in ck)
    text = (f"{len(ck)}, last {shown_path(ck[-1]['path'])}" if ck else "none") + (
        f" ({missing} missing on disk)" if missing else "")
    if stale:
        text += (f"; {stale} more recorded past the last row (of epochs a resume dropped, "
                 "not resumable)")
    rows.append(("checkpoints", text))
    for k, v in rows:
        click.echo(f"  {k:>11}: {v}")


