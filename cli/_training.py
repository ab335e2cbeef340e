"""What ``spectra train``, ``compare``, ``probe --checkpoint`` and ``landscape`` share.

* the click options of a training run (model, data, optimizer, probe schedule);
* building the data set, the model, the optimizer bundle and the monitor from them,
  before anything is written, so a bad option never touches a file;
* the run's config, stored in the HDF5 file and in every checkpoint;
* :class:`EpochReport`, a run writer in front of the real one that adds an
  optimizer's own curvature record (DCAO's ``lambda1``, ``gap`` and multipliers) to
  the metrics rows and prints one line per epoch;
* :func:`restore`, the model, data and probe set of a checkpoint.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from cli._common import SEED, TOL, CLIError
from cli.probe import fit_probe_size, parse_kv

LOSSES = ("auto", "cross-entropy", "mse")
RUN_SUFFIXES = (".h5", ".hdf5")
# DCAO's probe record keys copied into the metrics rows (plot_hparams reads them).
OPTIMIZER_EXTRAS = ("lambda1", "gap", "lr_mult", "momentum_mult", "wd_mult")


# --------------------------------------------------------------------------- options


def _apply(options: list[Callable]) -> Callable:
    def deco(fn: Callable) -> Callable:
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return deco


def model_data_options(fn: Callable) -> Callable:
    """--model, --model-arg, --data, --data-arg, --data-dir, --seed, --loss."""
    return _apply([
        click.option("--model", "model_name", default="mlp", show_default=True,
                     help="Model registry name (mlp, logistic, cnn, resnet20, resnet18) or "
                          "package.module:factory."),
        click.option("--model-arg", multiple=True, metavar="KEY=VALUE",
                     help="Model option, e.g. widths=64,64 or activation=tanh (repeatable)."),
        click.option("--data", "data_name", default="digits", show_default=True,
                     help="Data set registry name (digits, mnist, fashion-mnist, cifar10, "
                          "cifar100, synthetic)."),
        click.option("--data-arg", multiple=True, metavar="KEY=VALUE",
                     help="Data set option, e.g. n_train=500 or image=true (repeatable)."),
        click.option("--data-dir", type=click.Path(file_okay=False),
                     help="Folder of a file-based data set (default $SPECTRA_DATA_DIR or ./data)."),
        click.option("--seed", default=0, show_default=True, type=SEED,
                     help="Seeds the data split, the model's initialization, the batch order "
                          "and the probes."),
        click.option("--loss", "loss_name", type=click.Choice(LOSSES), default="auto",
                     show_default=True,
                     help="auto: cross-entropy for classification, MSE for regression."),
    ])(fn)


def training_options(fn: Callable) -> Callable:
    """--epochs, --batch-size, --log-every, --checkpoint-every, --overwrite."""
    return _apply([
        click.option("--epochs", type=click.IntRange(min=0),
                     help="Total number of epochs  [default: 5; with --resume: the run's]."),
        click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1),
                     help="Minibatch size (the last batch of an epoch may be smaller)."),
        click.option("--log-every", "log_every", type=click.IntRange(min=1), metavar="STEPS",
                     help="Also log the batch loss every STEPS optimizer steps."),
        click.option("--checkpoint-every", default=1, show_default=True,
                     type=click.IntRange(min=0), metavar="EPOCHS",
                     help="Write a checkpoint every EPOCHS epochs and after the last (0: none)."),
        click.option("--overwrite", is_flag=True,
                     help="Replace a run of the same name in the output file (otherwise an "
                          "existing name is an error and the file is left as it is)."),
    ])(fn)


def probe_options(fn: Callable) -> Callable:
    """The monitor's schedule and settings."""
    return _apply([
        click.option("--probe-every", default=1, show_default=True, type=click.IntRange(min=0),
                     metavar="N", help="Probe the spectrum every N units (0: never)."),
        click.option("--probe-unit", type=click.Choice(("epoch", "step")), default="epoch",
                     show_default=True, help="What --probe-every counts."),
        click.option("--probe-samples", default=512, show_default=True,
                     type=click.IntRange(min=1), metavar="N",
                     help="The probe set: the first N training samples."),
        click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=0),
                     help="Largest eigenvalues per probe (at most the model's number of "
                          "parameters)."),
        click.option("--bottom/--no-bottom", default=True, show_default=True,
                     help="Also the most negative eigenvalue."),
        click.option("--tol", default=1e-3, show_default=True, type=TOL,
                     help="Relative residual tolerance of the eigenvalues."),
        click.option("--trace-matvecs", default=60, show_default=True,
                     type=click.IntRange(min=0), help="Hutch++ trace budget (0: no trace)."),
        click.option("--density/--no-density", default=True, show_default=True,
                     help="Record the SLQ spectral density (needed by `spectra plot evolution`)."),
        click.option("--density-vectors", default=4, show_default=True,
                     type=click.IntRange(min=1), help="SLQ random vectors per probe."),
        click.option("--density-steps", default=80, show_default=True,
                     type=click.IntRange(min=1),
                     help="Lanczos steps per SLQ vector (at most the model's number of "
                          "parameters; the default is lowered to it for a tiny model)."),
    ])(fn)


@dataclass(frozen=True)
class ProbePlan:
    """The monitor's schedule and settings as given on the command line."""

    every: int = 1
    unit: str = "epoch"
    samples: int = 512
    top_k: int = 5
    bottom: bool = True
    tol: float = 1e-3
    trace_matvecs: int = 60
    density: tuple[int, int] | None = (4, 80)
    # the size options given on the command line: above the model's number of
    # parameters these are refused, while a default is lowered to fit (see fit_probe_size)
    given: frozenset[str] = frozenset()

    @classmethod
    def from_options(cls, kw: dict[str, Any]) -> ProbePlan:
        density = (kw["density_vectors"], kw["density_steps"]) if kw["density"] else None
        if kw["trace_matvecs"] and kw["trace_matvecs"] < 4:
            raise CLIError(f"--trace-matvecs must be 0 or at least 4, got {kw['trace_matvecs']}")
        return cls(every=kw["probe_every"], unit=kw["probe_unit"], samples=kw["probe_samples"],
                   top_k=kw["top_k"], bottom=kw["bottom"], tol=kw["tol"],
                   trace_matvecs=kw["trace_matvecs"], density=density,
                   given=frozenset(given_options(("top_k", "density_steps"))))

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> ProbePlan | None:
        if not cfg:
            return None
        d = cfg.get("density")
        return cls(every=int(cfg["every"]), unit=cfg["unit"], samples=int(cfg["samples"]),
                   top_k=int(cfg["top_k"]), bottom=bool(cfg["bottom"]), tol=float(cfg["tol"]),
                   trace_matvecs=int(cfg["trace_matvecs"]),
                   density=tuple(d) if d is not None else None)

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def monitor(self, model, loss_fn, probe_data, store, *, seed: int, progress: bool = False):
        """The run's monitor; ``CLIError`` for a --top-k or --density-steps beyond the
        model's parameters (a default is lowered to fit), before anything is written."""
        from spectra.runs.monitor import SpectralMonitor

        top_k, density = fit_probe_size(model, self.top_k, self.density, self.given)
        return SpectralMonitor(
            model, loss_fn, probe_data, store, every=self.every, unit=self.unit,
            top_k=top_k, bottom=self.bottom, density=density,
            trace=self.trace_matvecs, tol=self.tol, seed=seed, progress=progress,
        )


def given_options(names: tuple[str, ...]) -> set[str]:
    """The ``names`` among the current command's options that the user gave (not defaults)."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return set()
    return {n for n in names
            if ctx.get_parameter_source(n) not in (None, ParameterSource.DEFAULT)}


# --------------------------------------------------------------------------- building


def jsonable(obj: Any) -> Any:
    """``obj`` through JSON and back: tuples become lists, other objects their repr."""
    return json.loads(json.dumps(obj, default=repr))


def make_loss(name: str, task: str) -> tuple[str, Any]:
    from torch import nn

    if name == "auto":
        name = "cross-entropy" if task == "classification" else "mse"
    if name == "cross-entropy":
        if task != "classification":
            raise CLIError("--loss cross-entropy needs class labels, but the data set is a "
                           "regression task; use --loss mse")
        return name, nn.CrossEntropyLoss()
    if name == "mse":
        if task == "classification":
            raise CLIError("--loss mse needs real-valued targets, but the data set has class "
                           "labels; use --loss cross-entropy")
        return name, nn.MSELoss()
    raise CLIError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")


def load_data(name: str, data_dir: str | None, data_args: dict, seed: int):
    from spectra.registries.data import load_dataset

    return load_dataset(name, data_dir=data_dir, seed=seed, **data_args)


def model_spec_for(name: str, model_args: dict, ds, seed: int):
    from spectra.registries.models import ModelSpec

    return ModelSpec(name=name, input_shape=ds.input_shape, num_classes=ds.num_classes,
                     kwargs=jsonable(sequence_args(name, model_args)), seed=seed)


def sequence_args(name: str, args: dict) -> dict:
    """``widths=64`` -> ``widths=(64,)`` for options whose default is a sequence
    (``KEY=1,2`` parses as a tuple, ``KEY=1`` as a number)."""
    import inspect

    from spectra.registries import models
    factory = getattr(models, "_REGISTRY", {}).get(name)
    if factory is None:
        return dict(args)
    params = inspect.signature(factory).parameters
    out = dict(args)
    for k, v in args.items():
        default = params[k].default if k in params else None
        if isinstance(default, (tuple, list)) and isinstance(v, (int, float, str)):
            out[k] = (v,)
    return out


def optimizer_key(name: str) -> str:
    """The registry key of ``name``, or a clear error listing the valid names."""
    import optim

    key = name.strip().lower().replace("_", "-")
    names = list(optim.available())
    if key not in names:
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise CLIError(f"unknown optimizer {name!r}.{hint} Valid names: {', '.join(names)}")
    return key


def optimizer_keys(text: str) -> list[str]:
    """``"sgd,adam,dcao"`` -> registry keys; all unknown names reported at once."""
    import optim

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CLIError("--optimizers is empty; give a comma-separated list, e.g. sgd,adam,dcao")
    valid = list(optim.available())
    keys = [n.lower().replace("_", "-") for n in names]
    bad = [n for n, k in zip(names, keys) if k not in valid]
    if bad:
        hints = []
        for n in bad:
            close = difflib.get_close_matches(n.lower(), valid, n=1, cutoff=0.5)
            hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise CLIError(f"unknown optimizer{'s' if len(bad) > 1 else ''} {', '.join(hints)}; "
                       f"valid names: {', '.join(valid)}")
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise CLIError(f"--optimizers names {', '.join(dup)} more than once; each optimizer "
                       "is one run of the file")
    return keys


def build_optimizer(key: str, model, loss_fn, probe_data, overrides: dict, *,
                    total_steps: int, total_epochs: int):
    """``optim.create_bundle`` with the arguments the name requires (DCAO's model,
    loss_fn and probe set) filled in."""
    import optim

    info = optim.available()[key]
    clash = sorted(set(info.requires) & set(overrides))
    if clash:
        raise CLIError(f"--opt-arg cannot set {', '.join(clash)}: the CLI passes the model, the "
                       "loss and the probe set itself")
    needed = {"model": model, "loss_fn": loss_fn, "probe_data": probe_data}
    missing = [r for r in info.requires if r not in needed]
    if missing:
        raise CLIError(f"optimizer {key!r} requires {', '.join(missing)}, which the CLI cannot "
                       "provide")
    extra = {r: needed[r] for r in info.requires}
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return optim.create_bundle(key, model.parameters(), total_steps=max(total_steps, 1),
                               total_epochs=max(total_epochs, 1), **extra, **overrides)


def optimizer_spec(key: str, overrides: dict) -> dict[str, Any]:
    import optim

    info = optim.available()[key]
    hp = {k: v for k, v in {**dict(info.defaults), **overrides}.items() if k not in info.requires}
    return jsonable({"name": key, "overrides": overrides, "hyperparameters": hp,
                     "schedule": info.schedule})


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def check_run_file(out: str | os.PathLike) -> Path:
    """The output ``.h5`` path, checked before anything is computed or written."""
    path = Path(out)
    if path.suffix.lower() not in RUN_SUFFIXES:
        raise CLIError(f"the run file must end in .h5 or .hdf5, got {str(path)!r}")
    if path.is_dir():
        raise CLIError(f"{path} is a directory; expected the path of a .h5 run file")
    parent = path.parent if str(path.parent) else Path(".")
    # the nearest existing ancestor must be a writable directory
    probe = parent
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise CLIError(f"cannot write {path}: {probe} is a file, not a directory")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write {path}: the directory {probe} is not writable")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise CLIError(f"cannot write {path}: the file is not writable")
    return path


def existing_runs(path: Path) -> list[str]:
    """Run names already in ``path`` (read-only; [] when the file does not exist)."""
    if not path.exists():
        return []
    from spectra.runs.store import list_runs

    return list_runs(path)


def default_checkpoint_dir(out: Path, run: str) -> Path:
    """``<out stem>_ckpt/<run>/`` beside the run file."""
    return out.with_name(f"{out.stem}_ckpt") / run


def relative_to_file(path: Path, out: Path) -> str:
    """``path`` relative to the run file's folder when below it, else absolute."""
    base = out.resolve().parent
    p = path.resolve()
    try:
        return str(p.relative_to(base))
    except ValueError:
        return str(p)


# --------------------------------------------------------------------------- a run


@dataclass
class PreparedRun:
    """Everything of one run built and checked, nothing written yet."""

    name: str
    key: str
    model: Any
    bundle: Any
    loss_fn: Any
    probe_data: tuple
    config: dict[str, Any]
    checkpoint_dir: Path | None
    extra: dict[str, Any] = field(default_factory=dict)


def prepare_run(*, name: str, key: str, overrides: dict, ds, model_spec, loss_name: str,
                loss_fn, seed: int, epochs: int, batch_size: int, plan: ProbePlan,
                out: Path, checkpoint_dir: Path | None, checkpoint_every: int,
                log_every: int | None, command: str) -> PreparedRun:
    import torch

    model = model_spec.build()
    if not any(p.requires_grad for p in model.parameters()):
        raise CLIError(f"model {model_spec.name!r} has no trainable parameters: there is nothing "
                       "to train or to take the Hessian of")
    n = len(ds.train_y)
    probe_data = (ds.train_x[:plan.samples], ds.train_y[:plan.samples])
    spe = steps_per_epoch(n, batch_size)
    bundle = build_optimizer(key, model, loss_fn, probe_data, overrides,
                             total_steps=epochs * spe, total_epochs=epochs)
    probe_cfg = None
    if plan.enabled:
        # the monitor's own view of its settings, plus the probe set size
        mon = plan.monitor(model, loss_fn, probe_data, None, seed=seed)
        probe_cfg = {**mon.config(), "samples": int(min(plan.samples, n))}
    from spectra._version import __version__

    config = jsonable({
        "command": command,
        "spectra_version": __version__,
        "torch_version": torch.__version__,
        "model": model_spec.to_dict(),
        "data": ds.spec.to_dict(),
        "num_train": n,
        "num_test": len(ds.test_y),
        "task": ds.task,
        "num_params": sum(p.numel() for p in model.parameters()),
        "loss": loss_name,
        "optimizer": optimizer_spec(key, overrides),
        "seed": seed,
        "batch_size": batch_size,
        "epochs": epochs,
        "steps_per_epoch": spe,
        "log_every_steps": log_every,
        "probe": probe_cfg,
        "checkpoint": None if checkpoint_dir is None else {
            "dir": relative_to_file(checkpoint_dir, out), "every": checkpoint_every},
    })
    extra = {
        "model_spec": config["model"],
        "data_spec": config["data"],
        "optimizer_spec": config["optimizer"],
        "config": config,
    }
    return PreparedRun(name=name, key=key, model=model, bundle=bundle, loss_fn=loss_fn,
                       probe_data=probe_data, config=config, checkpoint_dir=checkpoint_dir,
                       extra=extra)


def split_schedulers(bundle) -> tuple[list, list]:
    if bundle.scheduler is None:
        return [], []
    if bundle.interval == "step":
        return [bundle.scheduler], []
    return [], [bundle.scheduler]


@dataclass
class RunOutcome:
    name: str
    result: Any
    monitor: Any
    report: EpochReport


def execute(prep: PreparedRun, writer, *, ds, epochs: int, batch_size: int, seed: int,
            plan: ProbePlan, checkpoint_every: int, log_every: int | None, echo: bool,
            progress: bool, prefix: str = "", resume: Any = None) -> RunOutcome:
    """Train one prepared run into ``writer`` (a RunWriter)."""
    import torch

    from spectra.runs.trainer import CheckpointPolicy, train

    report = EpochReport(writer, prep.bundle.optimizer, echo=echo, prefix=prefix, epochs=epochs)
    monitor = None
    if plan.enabled:
        monitor = plan.monitor(prep.model, prep.loss_fn, prep.probe_data, report, seed=seed,
                               progress=progress)
        report.monitor = monitor
    policy = None
    if prep.checkpoint_dir is not None and checkpoint_every > 0:
        policy = CheckpointPolicy(prep.checkpoint_dir, every=checkpoint_every)
    step_s, epoch_s = split_schedulers(prep.bundle)
    if resume is None:
        torch.manual_seed(seed)
    result = train(
        prep.model, prep.bundle.optimizer, (ds.train_x, ds.train_y), loss_fn=prep.loss_fn,
        epochs=epochs, batch_size=batch_size, test_data=(ds.test_x, ds.test_y),
        step_schedulers=step_s, epoch_schedulers=epoch_s, monitor=monitor, store=report,
        checkpoint=policy, checkpoint_extra=prep.extra, log_every_steps=log_every, seed=seed,
        resume=resume, progress=progress,
    )
    report.flush()
    if monitor is not None and isinstance(resume, dict) and resume.get("monitor"):
        before = resume["monitor"]  # report this call's probes, not the run's total
        report.num_probes = monitor.num_probes - int(before["num_probes"])
        report.num_matvecs = monitor.num_matvecs - int(before["num_matvecs"])
    elif monitor is not None:
        report.num_probes, report.num_matvecs = monitor.num_probes, monitor.num_matvecs
    return RunOutcome(prep.name, result, monitor, report)


# --------------------------------------------------------------------------- report


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


class EpochReport:
    """A run writer in front of the real one (``append_metrics``, ``append_probe``,
    ``add_checkpoint``): adds the optimizer's curvature record to metrics rows, keeps
    the last rows, and prints one line per epoch when ``echo``."""

    def __init__(self, writer, optimizer, *, echo: bool, prefix: str = "", epochs: int = 0):
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

    # -- the writer interface the trainer and the monitor use
    def append_metrics(self, row=None, /, **values):
        row = {**(row or {}), **values}
        history = getattr(self.optimizer, "history", None)
        if history:
            rec = history[-1]
            for k in OPTIMIZER_EXTRAS:
                if k in rec and k not in row:
                    row[k] = _num(rec[k])
        out = self.writer.append_metrics(row)
        if "seconds" in row and float(row.get("epoch", math.nan)).is_integer():
            self.last_metrics = row
            self._pending = row
            due = self.monitor is not None and self.monitor.due(step=int(row["step"]),
                                                                epoch=row["epoch"])
            if not due:
                self.flush()
        return out

    def append_probe(self, row=None, /, **values):
        row = {**(row or {}), **values}
        out = self.writer.append_probe(row)
        self.last_probe = row
        if self._pending is not None:
            self.flush(row)
        elif self.echo:
            epoch = _num(row.get("epoch"))
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
                 f"train loss {_fmt(row.get('train_loss'))} acc {_pct(row.get('train_acc'))}",
                 f"test loss {_fmt(row.get('test_loss'))} acc {_pct(row.get('test_acc'))}"]
        if probe is not None:
            parts.append(_probe_text(probe))
        parts.append(f"({_num(row.get('seconds')):.1f} s"
                     + (f" + probe {_num(probe.get('seconds')):.1f} s)" if probe else ")"))
        click.echo("  ".join(parts))


def _probe_text(row: dict[str, Any]) -> str:
    top = row.get("top_eigenvalues")
    text = []
    if top is not None and len(top):
        text.append(f"λ1 {_fmt(top[0])}")
    if math.isfinite(_num(row.get("bottom_eigenvalue"))):
        text.append(f"λmin {_fmt(row['bottom_eigenvalue'])}")
    return "  ".join(text) or "probed"


def _fmt(x: Any) -> str:
    v = _num(x)
    return f"{v:.4g}" if math.isfinite(v) else "-"


def _pct(x: Any) -> str:
    v = _num(x)
    return f"{100 * v:.1f}%" if math.isfinite(v) else "-"


# --------------------------------------------------------------------------- checkpoints


@dataclass
class Restored:
    """A checkpoint's model (weights loaded), data set, loss and probe settings."""

    path: Path
    ckpt: dict[str, Any]
    model: Any
    ds: Any
    loss_name: str
    loss_fn: Any
    config: dict[str, Any]
    probe: ProbePlan | None
    model_desc: str


def restore(path: str | os.PathLike, *, model_name: str | None = None,
            model_args: dict | None = None, data_name: str | None = None,
            data_args: dict | None = None, data_dir: str | None = None,
            loss_name: str | None = None) -> Restored:
    """Rebuild the model and data of a checkpoint and load its weights.

    The ``*_name``/``*_args``/``data_dir`` arguments, when given, replace the
    checkpoint's model and data specs (for checkpoints written without them).
    """
    from spectra.registries.data import DataSpec
    from spectra.registries.models import ModelSpec
    from spectra.runs.checkpoints import load_checkpoint

    ckpt = load_checkpoint(path)
    config = ckpt.get("config") or {}
    ms, dspec = ckpt.get("model_spec"), ckpt.get("data_spec")
    if dspec is None and data_name is None:
        raise CLIError(f"{path} records no data spec; pass --data (and --data-arg/--data-dir)")
    if dspec is not None and data_name is None:
        d = dict(dspec)
        if data_args:
            d["kwargs"] = {**dict(d.get("kwargs") or {}), **data_args}
        if data_dir is not None:
            d["data_dir"] = data_dir
        ds = DataSpec.from_dict(d).load()
    else:
        seed = int((dspec or {}).get("seed", 0))
        ds = load_data(data_name, data_dir, data_args or {}, seed)
    if ms is None and model_name is None:
        raise CLIError(f"{path} records no model spec; pass --model (and --model-arg)")
    if model_name is None and not model_args:
        spec = ModelSpec.from_dict(ms)
    else:
        base = dict(ms or {})
        kwargs = dict(base.get("kwargs") or {}) if model_name is None else {}
        kwargs.update(jsonable(sequence_args(model_name or base["name"], model_args or {})))
        # only a factory the user named may be imported, never one the file names
        spec = ModelSpec(name=model_name or base["name"], input_shape=ds.input_shape,
                         num_classes=ds.num_classes, kwargs=kwargs, seed=base.get("seed"),
                         allow_import=model_name is not None)
    if tuple(spec.input_shape) != tuple(ds.input_shape):
        raise CLIError(
            f"the model of {path} takes inputs of shape {tuple(spec.input_shape)}, but data set "
            f"{ds.name!r} has inputs of shape {tuple(ds.input_shape)}; probe it on the data it "
            "was trained on (or pass --data/--data-arg that give that shape)")
    model = build_trusted(spec, path)
    desc = spec.name + (f" {json.dumps(spec.kwargs)}" if spec.kwargs else "")
    try:
        model.load_state_dict(ckpt["model_state"])
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        detail = " ".join(str(exc).split())
        raise CLIError(
            f"the weights in {path} do not fit model {desc} (a checkpoint of another "
            f"architecture?): {detail[:300] or first}"
        ) from exc
    lname, loss_fn = make_loss(loss_name or config.get("loss") or "auto", ds.task)
    return Restored(path=Path(path), ckpt=ckpt, model=model, ds=ds, loss_name=lname,
                    loss_fn=loss_fn, config=config,
                    probe=ProbePlan.from_config(config.get("probe")), model_desc=desc)


def custom_model_error(path, name: str, option: str = "--model") -> CLIError:
    """The refusal of a custom model that a file (not the user) names."""
    return CLIError(
        f"{path} records the custom model {name!r}; loading a file never imports or calls code "
        f"it names. If you trust it, name it yourself: {option} {name}")


def build_trusted(spec, path, option: str = "--model"):
    """``spec.build()``, with the refusal of a file-named custom model as a CLI error."""
    from spectra.registries.models import UntrustedModelError

    try:
        return spec.build()
    except UntrustedModelError:
        raise custom_model_error(path, spec.name, option) from None


def kv(pairs: tuple[str, ...], what: str) -> dict:
    return parse_kv(pairs, what)
