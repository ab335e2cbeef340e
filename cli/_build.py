"""A run built from command-line options, and checked, before anything is written.

* the data set, the loss and the model spec (:func:`load_data`, :func:`make_loss`,
  :func:`model_spec_for`), and the device they go to (:func:`run_device`,
  :func:`data_on`);
* optimizer names and bundles (:func:`optimizer_key`, :func:`optimizer_keys`,
  :func:`build_optimizer`, :func:`optimizer_spec`);
* the spectral monitor of a :class:`~cli._options.ProbePlan`, its sizes fitted to the
  model (:func:`fit_probe_size`, :func:`build_monitor`);
* :func:`prepare_run`: all of the above for one run, and the run's config, stored in
  the HDF5 file and in every checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli._errors import CLIError, option_error, option_errors
from cli._options import LOSSES, ProbePlan
from cli._output import jsonable
from cli._paths import relative_to_file
from spectra.utils.checks import closest

# --------------------------------------------------------------------------- data, loss, model


def load_data(name: str, data_dir: str | None, data_args: dict, seed: int):
    """The data set ``name`` of the registry (a :class:`spectra.registries.data.Dataset`);
    an error of a known data set with ``--data-arg`` options names ``--data-arg``."""
    from spectra.registries.data import available_datasets, load_dataset

    if not data_args or name.lower().replace("_", "-") not in available_datasets():
        return load_dataset(name, data_dir=data_dir, seed=seed)  # the library names --data
    with option_errors("--data-arg"):
        return load_dataset(name, data_dir=data_dir, seed=seed, **data_args)


def make_loss(name: str, task: str) -> tuple[str, Any]:
    """``(name, loss module)`` for ``--loss`` on a data set of ``task``; ``auto`` picks
    cross-entropy for classification and MSE for regression."""
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


def model_spec_for(name: str, model_args: dict, ds, seed: int):
    """The :class:`spectra.registries.models.ModelSpec` of ``--model``/``--model-arg``
    for the inputs and classes of data set ``ds``."""
    from spectra.registries.models import ModelSpec

    check_model_name(name)
    return ModelSpec(name=name, input_shape=ds.input_shape, num_classes=ds.num_classes,
                     kwargs=jsonable(sequence_args(name, model_args)), seed=seed)


def check_model_name(name: str, option: str = "--model") -> None:
    """Refuse a ``--model`` that names no model: not in the registry (the message
    suggests the closest name), or a ``package.module:factory`` whose module cannot be
    imported or has no such callable. Checked on its own so that the error names
    ``--model``, not the ``--model-arg`` options the model is then built with. A
    factory is imported here (the user named it), never called."""
    from spectra.registries.models import (
        available_models,
        build_model,
        import_factory,
        is_custom,
    )

    if not is_custom(name):
        if name not in available_models():
            try:  # raises at once for an unknown name, with the names and a suggestion
                build_model(name, input_shape=(1,), num_classes=1)
            except ValueError as exc:
                raise option_error(option, exc) from exc
        return
    try:
        import_factory(name)
    except (ValueError, TypeError) as exc:
        raise option_error(option, exc) from exc


def build_errors_option(model_args: dict) -> str:
    """The option to name in an error of building a model whose name passed
    :func:`check_model_name`: ``--model-arg`` when some were given, else ``--model``."""
    return "--model-arg" if model_args else "--model"


def sequence_args(name: str, args: dict) -> dict:
    """``widths=64`` -> ``widths=(64,)`` for options whose default is a sequence
    (``KEY=1,2`` parses as a tuple, ``KEY=1`` as a number)."""
    from spectra.registries.models import model_options

    defaults = model_options(name)
    out = dict(args)
    for k, v in args.items():
        if isinstance(defaults.get(k), (tuple, list)) and isinstance(v, (int, float, str)):
            out[k] = (v,)
    return out


def run_device(name: str, ranks: Any = None):
    """The ``torch.device`` of ``--device NAME`` (resolved: ``cpu``, ``cuda``, ``cuda:N``)
    in this process: under torchrun (``ranks.world_size > 1``) a bare ``cuda`` is
    ``cuda:LOCAL_RANK`` (modulo the devices present), so each process has its own GPU."""
    import torch

    if name == "cuda" and ranks is not None and ranks.world_size > 1:
        return torch.device("cuda", ranks.local_rank % max(torch.cuda.device_count(), 1))
    return torch.device(name)


def data_on(ds, device):
    """Data set ``ds`` with its train and test tensors on ``device`` (``ds`` itself when
    they are there already): the trainer indexes its batches out of them."""
    from dataclasses import replace

    if ds.train_x.device == device and ds.test_x.device == device:
        return ds
    return replace(ds, train_x=ds.train_x.to(device), train_y=ds.train_y.to(device),
                   test_x=ds.test_x.to(device), test_y=ds.test_y.to(device))


# --------------------------------------------------------------------------- optimizers


def _registry_key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def optimizer_key(name: str) -> str:
    """The registry key of ``name``, or a clear error listing the valid names."""
    import optim

    key = _registry_key(name)
    names = list(optim.available())
    if key not in names:
        close = closest(key, names)
        hint = f" Did you mean {close!r}?" if close else ""
        raise CLIError(f"unknown optimizer {name!r}.{hint} Valid names: {', '.join(names)}")
    return key


def optimizer_keys(text: str) -> list[str]:
    """``"sgd,adam,dcao"`` -> registry keys; all unknown names reported at once."""
    import optim

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CLIError("--optimizers is empty; give a comma-separated list, e.g. sgd,adam,dcao")
    valid = list(optim.available())
    keys = [_registry_key(n) for n in names]
    bad = [n for n, k in zip(names, keys) if k not in valid]
    if bad:
        hints = []
        for n in bad:
            close = closest(n.lower(), valid)
            hints.append(f"{n!r}" + (f" (did you mean {close!r}?)" if close else ""))
        raise CLIError(f"unknown optimizer{'s' if len(bad) > 1 else ''} {', '.join(hints)}; "
                       f"valid names: {', '.join(valid)}")
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise CLIError(f"--optimizers names {', '.join(dup)} more than once; each optimizer "
                       "is one run of the file")
    return keys


def build_optimizer(key: str, model, loss_fn, probe_data, overrides: dict, *,
                    total_steps: int, total_epochs: int, lr_schedule=None):
    """``optim.create_bundle`` with the arguments the name requires (DCAO's model,
    loss_fn and probe set) filled in, and the lr schedule (an
    :class:`optim.schedules.LRSchedule` or None); a schedule that does not fit the
    optimizer or the run is a ``CLIError`` naming ``--schedule``."""
    import optim
    from optim.schedules import ScheduleError

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
    try:
        return optim.create_bundle(key, model.parameters(), total_steps=max(total_steps, 1),
                                   total_epochs=max(total_epochs, 1), lr_schedule=lr_schedule,
                                   **extra, **overrides)
    except ScheduleError as exc:
        name = lr_schedule.name if lr_schedule is not None else "none"
        raise CLIError(f"--schedule {name}: {exc}") from None
    except (ValueError, TypeError) as exc:  # a hyperparameter the optimizer refuses
        raise option_error("--opt-arg", exc) from exc


def rank_probe_data(key: str, probe_data: tuple, overrides: dict, ranks: Any = None) -> tuple:
    """The probe set to give optimizer ``key`` in this process.

    An optimizer that probes its own Hessian (DCAO: it ``requires`` ``probe_data``)
    takes the first ``probe_batch_size`` samples of it, and under torch.distributed
    its operator all-reduces the ranks' products: each rank's data is its shard, and
    the probed Hessian is that of the union. ``spectra train`` under torchrun
    replicates training, so every rank holds the same probe set; given whole to every
    rank, the union would count each sample ``world_size`` times (right for a mean
    loss, ``world_size`` times too large for a summed one) and each rank would do all
    the work. So with several ranks each gets its contiguous shard of those first
    ``probe_batch_size`` samples: the union is the one-process probe batch.
    """
    import optim

    info = optim.available()[key]
    if ranks is None or ranks.world_size == 1 or "probe_data" not in info.requires:
        return probe_data
    from spectra.utils.distributed import shard

    n = {**dict(info.defaults), **overrides}.get("probe_batch_size")
    X, y = probe_data if n is None else (probe_data[0][:n], probe_data[1][:n])
    if len(y) < ranks.world_size:
        raise CLIError(f"{key}'s probe batch holds {len(y)} samples, fewer than the "
                       f"{ranks.world_size} torchrun processes: raise --probe-samples or "
                       "--opt-arg probe_batch_size")
    part = shard(len(y), ranks.rank, ranks.world_size)
    return X[part], y[part]


def optimizer_spec(key: str, overrides: dict, lr_schedule=None) -> dict[str, Any]:
    """The optimizer part of a run's config: name, overrides, all hyperparameters, the
    entry's schedule and the lr schedule (``LRSchedule.to_dict()``; ``{"name": "none"}``
    without one)."""
    import optim

    info = optim.available()[key]
    hp = {k: v for k, v in {**dict(info.defaults), **overrides}.items() if k not in info.requires}
    return jsonable({"name": key, "overrides": overrides, "hyperparameters": hp,
                     "schedule": info.schedule,
                     "lr_schedule": lr_schedule.to_dict() if lr_schedule else {"name": "none"}})


def stored_schedule(optimizer_config: dict):
    """The :class:`optim.schedules.LRSchedule` of a run's stored optimizer config
    (``none`` for runs written before lr schedules existed)."""
    from optim.schedules import LRSchedule

    return LRSchedule.from_dict(optimizer_config.get("lr_schedule"))


# --------------------------------------------------------------------------- the monitor


def fit_probe_size(model, top_k: int, density: tuple[int, int] | None,
                   given: set[str] | frozenset[str] | list[str]
                   ) -> tuple[int, tuple[int, int] | None]:
    """``(top_k, density)`` checked against the model's number of parameters ``P``.

    A ``P x P`` Hessian has ``P`` eigenvalues, and after ``P`` Lanczos steps SLQ has
    them all, so ``--top-k`` and ``--density-steps`` above ``P`` are refused when
    given (``given`` holds their option names, ``"top_k"``, ``"density_steps"``) and
    lowered to ``P`` when they are defaults (a tiny model with the default settings).
    """
    P = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if top_k > P:
        if "top_k" in given:
            raise CLIError(f"--top-k {top_k} exceeds the model's {P:,} parameters: its Hessian has "
                           f"{P:,} eigenvalues; use --top-k {P} or less")
        top_k = P
    if density is not None and density[1] > P:
        if "density_steps" in given:
            raise CLIError(f"--density-steps {density[1]} exceeds the model's {P:,} parameters: "
                           f"after {P:,} Lanczos steps SLQ has the exact eigenvalues and more steps "
                           f"add no nodes; use --density-steps {P} or less")
        density = (density[0], P)
    return top_k, density


def build_monitor(plan: ProbePlan, model, loss_fn, probe_data, store, *, seed: int,
                  progress: bool = False, optimizer=None):
    """The run's :class:`~spectra.runs.monitor.SpectralMonitor`; ``CLIError`` for a
    --top-k or --density-steps beyond the model's parameters (a default is lowered to
    fit), or --preconditioned with an ``optimizer`` that has no diagonal preconditioner,
    before anything is written. (The trainer hands the monitor its optimizer.)"""
    from spectra.runs.monitor import SpectralMonitor

    top_k, density = fit_probe_size(model, plan.top_k, plan.density, plan.given)
    try:
        return SpectralMonitor(
            model, loss_fn, probe_data, store, every=plan.every, unit=plan.unit,
            top_k=top_k, bottom=plan.bottom, density=density,
            trace=plan.trace_matvecs, tol=plan.tol, seed=seed, progress=progress,
            optimizer=optimizer, preconditioned=plan.preconditioned, alignment=plan.alignment,
            layers=plan.layers, layer_density=plan.layer_density,
            max_memory=plan.max_memory, density_mode=plan.density_mode,
        )
    except TypeError as exc:
        if plan.preconditioned and optimizer is not None:
            raise CLIError(f"--preconditioned needs an adaptive optimizer with a diagonal "
                           f"preconditioner: {exc}") from None
        raise


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


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def prepare_run(*, name: str, key: str, overrides: dict, ds, model_spec, loss_name: str,
                loss_fn, seed: int, epochs: int, batch_size: int, plan: ProbePlan,
                out: Path, checkpoint_dir: Path | None, checkpoint_every: int,
                log_every: int | None, command: str, lr_schedule=None, device=None,
                ranks: Any = None) -> PreparedRun:
    """Build the model, the optimizer bundle (with ``lr_schedule``, an
    :class:`optim.schedules.LRSchedule` or None) and (to check it) the monitor of one
    run, and its config; nothing is written. The model is built on the CPU (the same
    initialization everywhere) and moved to ``device`` (a ``torch.device``; default the
    CPU), where ``ds`` must be (:func:`data_on`); the config records it as ``device``.
    ``ranks``: the torchrun processes; with several, an optimizer that probes its own
    Hessian gets this rank's shard of its probe set (:func:`rank_probe_data`)."""
    import torch

    from spectra import __version__

    device = torch.device("cpu") if device is None else torch.device(device)
    with option_errors(build_errors_option(model_spec.kwargs)):
        model = model_spec.build()
    model.to(device)
    if not any(p.requires_grad for p in model.parameters()):
        raise CLIError(f"model {model_spec.name!r} has no trainable parameters: there is nothing "
                       "to train or to take the Hessian of")
    n = len(ds.train_y)
    probe_data = (ds.train_x[:plan.samples], ds.train_y[:plan.samples])
    spe = steps_per_epoch(n, batch_size)
    bundle = build_optimizer(key, model, loss_fn, rank_probe_data(key, probe_data, overrides, ranks),
                             overrides, total_steps=epochs * spe, total_epochs=epochs,
                             lr_schedule=lr_schedule)
    probe_cfg = None
    if plan.enabled:
        # the monitor's own view of its settings, plus the probe set size
        mon = build_monitor(plan, model, loss_fn, probe_data, None, seed=seed,
                            optimizer=bundle.optimizer)
        probe_cfg = {**mon.config(), "samples": int(min(plan.samples, n))}
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
        "device": str(device),
        "loss": loss_name,
        "optimizer": optimizer_spec(key, overrides, lr_schedule),
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
