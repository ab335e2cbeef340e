"""Running a prepared run: :func:`execute` trains it into a run writer through an
:class:`EpochReport`, which adds the optimizer's curvature record (DCAO's ``lambda1``,
``gap`` and multipliers) to the metrics rows and prints one line per epoch;
:func:`outcome_summary` is the JSON-able summary of what it did."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from cli._build import PreparedRun, build_monitor
from cli._errors import Interrupted
from cli._format import as_float, fmt, pct, seconds
from cli._options import ProbePlan
from cli._output import ProbeLine
from cli._paths import shown_path

# An optimizer's probe record (DCAO's ``history``) -> metrics columns. A metrics row
# carries the last record measured since the previous row, with ``probe_step`` (the step
# it was measured at) and ``probes_since`` (how many records that interval holds); rows
# of intervals without a probe have NaN there, so no row repeats a stale value
# (plot_hparams reads lambda1, gap and the multipliers). The optimizer's history, in its
# checkpointed state, keeps every record.
OPTIMIZER_EXTRAS = {
    "step": "probe_step", "lambda1": "lambda1", "lambda2": "lambda2", "gap": "gap",
    "residual1": "residual1", "residual2": "residual2", "num_matvecs": "probe_num_matvecs",
    "seconds": "probe_seconds", "rho_ref": "rho_ref", "gamma_ref": "gamma_ref",
    "ok": "probe_ok", "lr_mult": "lr_mult", "momentum_mult": "momentum_mult",
    "wd_mult": "wd_mult",
}


def split_schedulers(bundle) -> tuple[list, list]:
    """``(step schedulers, epoch schedulers)`` of an optimizer bundle: the registry
    entry's scheduler first, then the lr schedule's (checkpoints store them in this
    order)."""
    return list(bundle.step_schedulers), list(bundle.epoch_schedulers)


@dataclass
class RunOutcome:
    name: str
    result: Any
    monitor: Any
    report: EpochReport


def execute(prep: PreparedRun, writer, *, ds, epochs: int, batch_size: int, seed: int,
            plan: ProbePlan, checkpoint_every: int, log_every: int | None, echo: bool,
            progress: bool, prefix: str = "", resume: Any = None,
            eval_train: bool = False, tensorboard: str | None = None,
            ranks: Any = None, resumed_from: Path | None = None) -> RunOutcome:
    """Train one prepared run into ``writer`` (a RunWriter); ``eval_train`` as for
    :func:`spectra.runs.trainer.train`; ``tensorboard``: also log the rows to
    TensorBoard in that folder (:class:`spectra.runs.tensorboard.TensorBoardWriter`).
    ``ranks``: the torchrun processes (:class:`spectra.utils.distributed.Processes`);
    with several, the monitor probes this rank's shard of the probe set.
    ``resumed_from``: the checkpoint ``resume`` was loaded from. Ctrl-C raises
    :class:`cli._errors.Interrupted`, which says what was kept and how to continue."""
    import torch

    from spectra.runs.trainer import CheckpointPolicy, train

    start = int(resume["step"]) if isinstance(resume, dict) and "step" in resume else 0
    tb = None
    if tensorboard is not None:
        from spectra.runs.tensorboard import TensorBoardWriter

        writer = tb = TensorBoardWriter(writer, tensorboard,
                                        purge_step=start + 1 if resume is not None else 0)
    report = EpochReport(writer, prep.bundle.optimizer, echo=echo, prefix=prefix, epochs=epochs,
                         start_step=start)
    report.last_checkpoint = resumed_from
    monitor = None
    if plan.enabled:
        probe_data = prep.probe_data
        if ranks is not None and ranks.world_size > 1:
            from spectra.utils.distributed import shard

            part = shard(len(probe_data[1]), ranks.rank, ranks.world_size)
            probe_data = (probe_data[0][part], probe_data[1][part])
        # one line per probe (products done / budget, the part running), not a bar per part
        monitor = build_monitor(plan, prep.model, prep.loss_fn, probe_data, report,
                                seed=seed, progress=ProbeLine() if progress else False)
        report.monitor = monitor
    policy = None
    if prep.checkpoint_dir is not None and checkpoint_every > 0:
        policy = CheckpointPolicy(prep.checkpoint_dir, every=checkpoint_every)
    step_s, epoch_s = split_schedulers(prep.bundle)
    if resume is None:
        torch.manual_seed(seed)
    try:
        result = train(
            prep.model, prep.bundle.optimizer, (ds.train_x, ds.train_y), loss_fn=prep.loss_fn,
            epochs=epochs, batch_size=batch_size, test_data=(ds.test_x, ds.test_y),
            step_schedulers=step_s, epoch_schedulers=epoch_s, monitor=monitor, store=report,
            checkpoint=policy, checkpoint_extra=prep.extra, log_every_steps=log_every, seed=seed,
            resume=resume, progress=progress, eval_train=eval_train,
        )
    except KeyboardInterrupt:
        raise Interrupted(interrupt_hint(prep.name, report)) from None
    finally:
        if tb is not None:  # the events written so far reach the disk, also on an error
            tb.close()
    report.flush()
    if monitor is not None and isinstance(resume, dict) and resume.get("monitor"):
        before = resume["monitor"]  # report this call's probes, not the run's total
        report.num_probes = monitor.num_probes - int(before["num_probes"])
        report.num_matvecs = monitor.num_matvecs - int(before["num_matvecs"])
    elif monitor is not None:
        report.num_probes, report.num_matvecs = monitor.num_probes, monitor.num_matvecs
    return RunOutcome(prep.name, result, monitor, report)


def next_plot(epochs: int, plan: ProbePlan | None, *, probed: bool, one_run: bool) -> str | None:
    """The ``spectra plot`` kind to suggest after training, one the run file can draw.

    ``plan``: the probes asked for (``None``: none); ``probed``: whether any probe was
    recorded; ``one_run``: ``train``'s run (its density evolution, else its sharpness,
    else its curves) rather than ``compare``'s runs (their curves, or after 0 epochs the
    density or sharpness at initialization). ``None`` when nothing can be drawn."""
    on = probed and plan is not None and plan.enabled
    density = on and plan.density is not None
    eigenvalues = on and (plan.top_k > 0 or plan.bottom)
    if one_run and (density or eigenvalues):
        return "evolution" if density else "sharpness"
    if epochs > 0:
        return "curves"
    if density:
        return "density"
    return "sharpness" if eigenvalues else None


def interrupt_hint(run: str, report: EpochReport) -> str:
    """What a Ctrl-C left of run ``run`` and how to continue it: ``train --resume`` of
    the last checkpoint written (or resumed from), else a new start with --overwrite."""
    try:
        file = report.path
    except AttributeError:  # a writer that writes no file (other torchrun ranks)
        file = None
    where = f"run {run!r}" + (f" of {file}" if file else "")
    last = report.last_checkpoint
    if last is not None:
        return (f"{where} keeps the rows written so far; continue it with "
                f"`spectra train --resume {shown_path(last)}`")
    return (f"{where} keeps the rows written so far, but no checkpoint was written yet; "
            "start it again with --overwrite")


def outcome_summary(outcome: RunOutcome, prep: PreparedRun, out: Path) -> dict:
    """The JSON-able summary of one trained run."""
    res, rep = outcome.result, outcome.report
    last = rep.last_metrics or {}
    probe = rep.last_probe
    top = None if probe is None or probe.get("top_eigenvalues") is None else \
        [float(x) for x in probe["top_eigenvalues"]]
    return {
        "file": str(out),
        "run": prep.name,
        "optimizer": prep.key,
        "epochs": res.epochs,
        "steps": res.steps,
        "train_seconds": res.train_seconds,
        "probe_seconds": res.probe_seconds,
        "num_probes": rep.num_probes,
        "num_matvecs": rep.num_matvecs,
        "final": {k: float(last[k]) for k in ("epoch", "train_loss", "train_acc", "test_loss",
                                               "test_acc", "lr") if k in last},
        "last_probe": None if probe is None else {
            "step": int(probe["step"]), "epoch": float(probe["epoch"]),
            "top_eigenvalues": top,
            "bottom_eigenvalue": float(probe.get("bottom_eigenvalue", math.nan)),
            "trace": float(probe.get("trace", math.nan)),
        },
        "checkpoints": [str(p) for p in res.checkpoints],
    }


class _Discard:
    """The run writer of the ranks other than 0 under torchrun: drops every row."""

    def append_metrics(self, row=None, /, **values) -> None:
        pass

    def append_probe(self, row=None, /, **values) -> None:
        pass


DISCARD = _Discard()


class EpochReport:
    """A run writer in front of the real one (``append_metrics``, ``append_probe``,
    ``add_checkpoint``): adds the last record of the optimizer's ``history`` (DCAO's
    probes) since the previous metrics row to the next one (``OPTIMIZER_EXTRAS``; records
    before ``start_step``, a resumed run's, are in the file already), keeps the last
    rows, and prints one line per epoch when ``echo``."""

    def __init__(self, writer, optimizer, *, echo: bool, prefix: str = "", epochs: int = 0,
                 start_step: int = 0):
        self.writer = writer
        self.optimizer = optimizer
        self.echo = echo
        self.prefix = prefix
        self.epochs = epochs
        self.monitor = None
        self.last_metrics: dict[str, Any] | None = None
        self.last_probe: dict[str, Any] | None = None
        self._pending: dict[str, Any] | None = None
        self.num_probes = 0
        self.num_matvecs = 0
        self._start_step = start_step
        self._written = 0  # records of the optimizer's history already looked at
        self.last_checkpoint: Any = None  # the last checkpoint written (or resumed from)

    # -- the writer interface the trainer and the monitor use
    def add_checkpoint(self, path: Any) -> Any:
        """Record checkpoint ``path`` in the run file and remember it as the last."""
        self.last_checkpoint = path
        return self.writer.add_checkpoint(path)

    def append_metrics(self, row=None, /, **values):
        row = {**(row or {}), **values}
        self._write_history(row)
        out = self.writer.append_metrics(row)
        if "seconds" in row and float(row.get("epoch", math.nan)).is_integer():
            self.last_metrics = row
            self._pending = row
            due = self.monitor is not None and self.monitor.due(step=int(row["step"]),
                                                                epoch=row["epoch"])
            if not due:
                self.flush()
        return out

    def _write_history(self, row: dict[str, Any]) -> None:
        """Add to ``row`` the optimizer's last history record since the previous row
        (``OPTIMIZER_EXTRAS``); NaN columns when there is none."""
        history = getattr(self.optimizer, "history", None)
        if not isinstance(history, list):
            return
        self._written = min(self._written, len(history))  # a loaded state replaces it
        step, last, count = int(row["step"]), None, 0
        while self._written < len(history):
            rec = history[self._written]
            if int(rec["step"]) >= step:  # measured after this row's step: the next row's
                break
            self._written += 1
            if int(rec["step"]) >= self._start_step:  # a resumed run's earlier ones are filed
                last, count = rec, count + 1
        for k, col in OPTIMIZER_EXTRAS.items():
            row.setdefault(col, math.nan if last is None else as_float(last.get(k)))
        row.setdefault("probes_since", count)

    def append_probe(self, row=None, /, **values):
        row = {**(row or {}), **values}
        out = self.writer.append_probe(row)
        self.last_probe = row
        if self._pending is not None:
            self.flush(row)
        elif self.echo:
            epoch = as_float(row.get("epoch"))
            if math.isfinite(epoch) and epoch.is_integer():
                when = f"epoch {int(epoch):>{self._width}}/{self.epochs}"
                if epoch == 0:
                    when += "  at initialization"
            else:
                when = f"step {int(row['step'])} (epoch {epoch:.2f})"
            click.echo(f"{self.prefix}{when}  {_probe_text(row)}")
        return out

    @property
    def _width(self) -> int:
        return len(str(self.epochs))

    def __getattr__(self, name: str) -> Any:
        # the rest of the writer: add_checkpoint, rewind, read, run_id, name, path
        if name.startswith("_") or name == "writer":
            raise AttributeError(name)
        return getattr(self.writer, name)

    def flush(self, probe: dict[str, Any] | None = None) -> None:
        row, self._pending = self._pending, None
        if row is None or not self.echo:
            return
        e = int(row["epoch"])
        parts = [f"{self.prefix}epoch {e:>{self._width}}/{self.epochs}",
                 f"train loss {fmt(row.get('train_loss'))} acc {pct(row.get('train_acc'))}",
                 f"test loss {fmt(row.get('test_loss'))} acc {pct(row.get('test_acc'))}"]
        hparams = _hparams_text(self.optimizer)
        if hparams:
            parts.append(hparams)
        if probe is not None:
            parts.append(_probe_text(probe))
        parts.append(f"({seconds(row.get('seconds'))}"
                     + (f" + probe {seconds(probe.get('seconds'))})" if probe else ")"))
        click.echo("  ".join(parts))


def _hparams_text(optimizer) -> str:
    """The current lr and momentum of an optimizer that reports them (``current_hparams()``:
    DCAO's base lr times its controller's multiplier; LPSGD's ``p`` and CALR's
    ``effective_lr`` too), "" otherwise."""
    current = getattr(optimizer, "current_hparams", None)
    if not callable(current):
        return ""
    hp = current()
    shown = [(k, k.replace("_", " ")) for k in ("lr", "momentum", "p", "effective_lr") if k in hp]
    return " ".join(f"{label} {fmt(hp[k])}" for k, label in shown)


def _probe_text(row: dict[str, Any]) -> str:
    top = row.get("top_eigenvalues")
    text = []
    if top is not None and len(top):
        text.append(f"λ1 {fmt(top[0])}")
    if math.isfinite(as_float(row.get("bottom_eigenvalue"))):
        text.append(f"λmin {fmt(row['bottom_eigenvalue'])}")
    return "  ".join(text) or "probed"
