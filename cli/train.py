"""``spectra train``: train a model with a registry optimizer while recording its spectrum."""

from __future__ import annotations

from pathlib import Path

import click

from cli._build import (
    PreparedRun,
    data_on,
    load_data,
    make_loss,
    model_spec_for,
    optimizer_key,
    prepare_run,
    run_device,
    stored_schedule,
)
from cli._errors import CLIError, handle_errors
from cli._format import seconds
from cli._options import (
    ProbePlan,
    device_option,
    eval_train_option,
    given_options,
    model_data_options,
    option_flag,
    parse_kv,
    parse_schedule,
    probe_options,
    schedule_options,
    training_options,
)
from cli._output import echo_json, quiet, show_progress
from cli._paths import (
    check_checkpoint_dir,
    check_checkpoints_free,
    check_run_file,
    check_tensorboard_folder,
    check_tensorboard_runs,
    checkpoint_files,
    clear_checkpoints,
    default_checkpoint_dir,
    existing_runs,
    shown_path,
)
from cli._restore import custom_model_error
from cli._run import DISCARD, execute, next_plot, outcome_summary

# Options that --resume takes from the checkpoint instead of the command line.
_FROM_CHECKPOINT = ("model_name", "model_arg", "data_name", "data_arg", "data_dir", "seed",
                    "loss_name", "optimizer", "opt_arg", "batch_size", "log_every",
                    "probe_every", "probe_unit", "probe_samples", "top_k", "bottom", "tol",
                    "trace_matvecs", "density", "density_vectors", "density_steps",
                    "checkpoint_dir", "checkpoint_every", "schedule", "warmup",
                    "schedule_arg", "eval_train")


@click.command()
@click.option("--optimizer", default="dcao", show_default=True,
              help="Optimizer registry name (see `spectra info`): dcao, calr, smaran, lpsgd, "
                   "sgd, adam, ...")
@click.option("--opt-arg", multiple=True, metavar="KEY=VALUE",
              help="Optimizer hyperparameter, e.g. lr=0.01 or betas=0.9,0.99 (repeatable).")
@model_data_options
@training_options
@schedule_options
@probe_options
@click.option("--out", "-o", type=click.Path(dir_okay=False),
              help="The HDF5 run file (created, or a run is added to it)  "
                   "[default: runs/<run>.h5; with --resume: the checkpoint's file].")
@click.option("--run", "run_name", help="Run name in the file  [default: the optimizer's name].")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False),
              help="Folder of the .pt checkpoints  [default: <out stem>_ckpt/<run>/ beside "
                   "the run file].")
@click.option("--resume", type=click.Path(dir_okay=False), metavar="CKPT",
              help="Continue the run of this checkpoint in its run file, with its settings; "
                   "--epochs sets the new total.")
@eval_train_option
@device_option
@click.option("--json", "as_json", is_flag=True,
              help="No per-epoch lines; print a JSON summary at the end.")
@handle_errors
def train(**kw) -> None:
    """Train a model while recording its Hessian spectrum.

    Every epoch appends a metrics row (train/test loss and accuracy, lr, momentum,
    weight decay, seconds) to the run file; every --probe-every units the spectral
    monitor appends a probe row (top-k eigenvalues, the most negative one, the
    trace, raw SLQ nodes and weights) computed on the first --probe-samples
    training samples. Checkpoints (.pt) are written beside the file and recorded
    in it.

    \b
    Examples:
      spectra train --optimizer dcao --epochs 5 --out runs/demo.h5
      spectra train --optimizer adam --opt-arg lr=3e-3 --model-arg widths=128,128 -o runs/a.h5
      spectra train --optimizer sgdm --schedule warmup-cosine --warmup 1 -o runs/cos.h5
      spectra train --resume runs/demo_ckpt/dcao/checkpoint-epoch0005.pt --epochs 10
      spectra train --device cuda --model resnet20 --data cifar10 -o runs/gpu.h5
      torchrun --nproc_per_node 2 -m -- cli.main train --optimizer sgd -o runs/two.h5

    Under `torchrun --nproc_per_node N` (gloo) every process trains the same
    model on the same batches (the same seed: training is replicated, not
    data-parallel), the monitor's probes and DCAO's are sharded over the
    processes (each takes its part of the probe set, products all-reduced), and
    rank 0 alone writes the run file and the checkpoints and prints.

    --device (default auto: cuda when available) holds the model, the data, the
    optimizer's state and every Hessian product; the run's config records it.
    --resume may continue on another device (checkpoints load onto the CPU, then
    into the model and optimizer where --device puts them). --resume with more
    --epochs than planned is refused for a run whose schedule spans its planned
    length (a cosine or linear --schedule, lpsgd's p, calr-cosine's lr).
    """
    from spectra.utils.distributed import env_processes, processes_from_env

    try:
        env_processes()
    except ValueError as exc:
        raise CLIError(f"cannot join the torchrun processes: {exc}") from None
    with processes_from_env(backend="gloo") as ranks:
        if ranks.world_size > 1 and kw["resume"]:
            raise CLIError("--resume is not available under torchrun: resume in one process")
        if ranks.world_size > 1 and kw.get("alignment"):
            raise CLIError("--alignment is not available under torchrun (its gradient is not "
                           "reduced over the ranks): train in one process")
        if kw["resume"]:
            _resume(kw)
            return
        _train(kw, ranks)


def _train(kw: dict, ranks) -> None:
    """A new run (``train`` without --resume) in one of ``ranks.world_size`` processes."""
    as_json = kw["as_json"]
    plan = ProbePlan.from_options(kw)
    lr_schedule = parse_schedule(kw)
    epochs = 5 if kw["epochs"] is None else kw["epochs"]
    key = optimizer_key(kw["optimizer"])
    run = kw["run_name"] or key
    from spectra.runs.store import StoreError, check_run_name

    try:
        check_run_name(run)
    except StoreError as exc:
        raise CLIError(f"--run: {exc}") from None
    out = check_run_file(kw["out"] or f"runs/{run}.h5")
    overrides = parse_kv(kw["opt_arg"], "--opt-arg")
    model_args = parse_kv(kw["model_arg"], "--model-arg")
    data_args = parse_kv(kw["data_arg"], "--data-arg")

    # Everything is built and checked before the run file is opened.
    if run in existing_runs(out) and not kw["overwrite"]:
        raise CLIError(f"{out} already has a run named {run!r}; pick another --run, pass "
                       "--overwrite to replace it, or --resume one of its checkpoints")
    device = run_device(kw["device"], ranks)
    ds = load_data(kw["data_name"], kw["data_dir"], data_args, kw["seed"])
    loss_name, loss_fn = make_loss(kw["loss_name"], ds.task)
    spec = model_spec_for(kw["model_name"], model_args, ds, kw["seed"])
    ds = data_on(ds, device)
    ckpt_dir = None
    if kw["checkpoint_every"] > 0:
        ckpt_dir = Path(kw["checkpoint_dir"]) if kw["checkpoint_dir"] else default_checkpoint_dir(out, run)
        check_checkpoint_dir(ckpt_dir)
        check_checkpoints_free(ckpt_dir, kw["overwrite"])
    check_tensorboard_runs(kw["tensorboard"], [run], kw["overwrite"])
    prep = prepare_run(
        name=run, key=key, overrides=overrides, ds=ds, model_spec=spec, loss_name=loss_name,
        loss_fn=loss_fn, seed=kw["seed"], epochs=epochs, batch_size=kw["batch_size"], plan=plan,
        out=out, checkpoint_dir=ckpt_dir, checkpoint_every=kw["checkpoint_every"],
        log_every=kw["log_every"], command="train", lr_schedule=lr_schedule, device=device,
        ranks=ranks,
    )
    echo = not (as_json or quiet()) and ranks.is_main
    if echo:
        _header(prep, ds, out)
    from spectra.runs.store import RunStore

    prep.config["eval_train"] = bool(kw["eval_train"])  # also in the checkpoints' config
    ranks.barrier()  # every rank has checked the run file before rank 0 writes it
    if not ranks.is_main:
        execute(prep, DISCARD, ds=ds, epochs=epochs, batch_size=kw["batch_size"],
                seed=kw["seed"], plan=plan, checkpoint_every=0, log_every=None, echo=False,
                progress=False, eval_train=kw["eval_train"], ranks=ranks)
        return
    with RunStore(out) as store:
        writer = store.create_run(run, prep.config, overwrite=kw["overwrite"])
        if kw["overwrite"]:  # the run it replaces, and any checkpoints in its folder
            clear_checkpoints(ckpt_dir)
        outcome = execute(prep, writer, ds=ds, epochs=epochs, batch_size=kw["batch_size"],
                          seed=kw["seed"], plan=plan, checkpoint_every=kw["checkpoint_every"],
                          log_every=kw["log_every"], echo=echo, progress=show_progress(as_json),
                          eval_train=kw["eval_train"], tensorboard=kw["tensorboard"], ranks=ranks)
    _finish(outcome, prep, out, as_json)


def _resume(kw: dict) -> None:
    """``train --resume CKPT``: continue the checkpoint's run in its run file."""
    from spectra.runs.checkpoints import load_checkpoint
    from spectra.runs.store import RunStore

    as_json = kw["as_json"]
    path = Path(kw["resume"])
    ckpt = load_checkpoint(path)
    config = ckpt.get("config")
    run_info = ckpt.get("run") or {}
    if not config or not run_info:
        raise CLIError(f"{path} was not written by `spectra train` (it has no run config); "
                       "resume it from Python with spectra.runs.trainer.train(resume=...)")
    trusted = _check_resume_options(kw, path, config)
    run = kw["run_name"] or run_info["name"]
    out, data = _resume_run_file(kw["out"], ckpt, path, run)
    done = int(ckpt["epoch"])
    epochs = int(config["epochs"]) if kw["epochs"] is None else kw["epochs"]
    if epochs < done:
        raise CLIError(f"the checkpoint is at epoch {done}; --epochs {epochs} is the total, "
                       f"so it must be at least {done}")
    planned = int(config["epochs"])
    horizon = _schedule_horizon(config["optimizer"])
    if epochs > planned and horizon is not None:
        raise CLIError(
            f"run {run!r} was planned for {planned} epochs and its {horizon} spans exactly "
            f"those: --epochs {epochs} would run past its end (a cosine lr rises again, the "
            f"p-norm would leave its range). Resume to at most --epochs {planned}, or start a "
            f"new run with --epochs {epochs}")
    folder = _checkpoint_folder(config, out)
    later = _later_checkpoints(ckpt, path, data, folder)
    _refuse_another_files_checkpoints(later, out)
    if not kw["overwrite"]:
        _refuse_dropping_later_epochs(ckpt, path, out, run, data, later)
    check_tensorboard_folder(kw["tensorboard"], [run])  # its events continue the run's
    prep, ds, plan = _prepare_resumed(config, run, out, trusted, run_device(kw["device"]))
    echo = not (as_json or quiet())
    if echo:
        click.echo(f"resuming run {run!r} of {out} at epoch {done} (step {int(ckpt['step'])}), "
                   f"training to epoch {epochs}")
    with RunStore(out) as store:
        writer = store.open_run(run)
        dropped = writer.rewind(int(ckpt["step"]))
        if echo and (dropped["metrics"] or dropped["probes"]):
            click.echo(f"dropped {dropped['metrics']} metric and {dropped['probes']} probe rows "
                       f"past step {int(ckpt['step'])}, written after this checkpoint by the run "
                       "that stopped; training writes those steps again")
        # committed to the rewind: the run's later checkpoints belong to no history now
        if kw["overwrite"]:  # consented to: without it, later files are left (info: stale)
            _remove_later_checkpoints(ckpt, later)
        ck = config.get("checkpoint")
        outcome = execute(prep, writer, ds=ds, epochs=epochs, batch_size=int(config["batch_size"]),
                          seed=int(config["seed"]), plan=plan,
                          checkpoint_every=int(ck["every"]) if ck else 0,
                          log_every=config.get("log_every_steps"), echo=echo,
                          progress=show_progress(as_json), resume=ckpt, resumed_from=path,
                          eval_train=bool(config.get("eval_train", False)),
                          tensorboard=kw["tensorboard"])
    _finish(outcome, prep, out, as_json, resumed_at=(done, int(ckpt["step"])))


# lr schedules whose shape is fixed by the run's length (step and constant are not)
_HORIZON_SCHEDULES = ("cosine", "warmup-cosine", "linear")


def _schedule_horizon(optimizer_config: dict) -> str | None:
    """What of a run's schedules is fixed to its planned length (``None``: nothing):
    the registry entry's own schedule (calr-cosine's lr, lpsgd's p) or a
    cosine/linear ``--schedule``."""
    entry = optimizer_config.get("schedule")
    if entry:
        return f"schedule ({entry})"
    lr = stored_schedule(optimizer_config)
    if lr.name in _HORIZON_SCHEDULES:
        return f"lr schedule ({lr.describe()})"
    return None


def _check_resume_options(kw: dict, path: Path, config: dict) -> bool:
    """Refuse the options --resume takes from the checkpoint; True when the user named
    the checkpoint's own custom model, which allows importing it."""
    from spectra.registries.models import is_custom

    model_name = (config.get("model") or {}).get("name", "")
    # naming the checkpoint's own custom model is how a user allows importing it
    trusted = ("model_name" in given_options(("model_name",))
               and kw["model_name"] == model_name and is_custom(model_name))
    given = [n for n in given_options(_FROM_CHECKPOINT) if not (n == "model_name" and trusted)]
    if given:
        opts = ", ".join(option_flag(n) for n in given)
        raise CLIError(f"--resume continues a run with the settings of its checkpoint; "
                       f"{opts} cannot be changed (only --epochs, --out, --run and --overwrite)")
    if is_custom(model_name) and not trusted:
        raise custom_model_error(path, model_name)
    return trusted


def _resume_run_file(out_option: str | None, ckpt: dict, path: Path, run: str
                     ) -> tuple[Path, object]:
    """The run file that holds run ``run`` of checkpoint ``ckpt``, with the history the
    checkpoint continues, and the run as read there (a
    :class:`spectra.runs.store.RunData`); checked before anything is written."""
    from spectra.runs.checkpoints import CheckpointError, check_resume, run_file
    from spectra.runs.store import read_run

    recorded = run_file(ckpt, path)
    if out_option is None and recorded is None:
        raise CLIError(f"{path} records no run file; pass --out RUN.h5")
    out = check_run_file(out_option or recorded)
    if not out.exists():
        if out_option is None:
            raise CLIError(f"the run file {out} of this checkpoint does not exist; pass --out")
        mine = f" (this checkpoint's is {recorded})" if recorded is not None else ""
        raise CLIError(f"--out {out}: no such run file; --resume continues the checkpoint's run "
                       f"in the file that holds it{mine}")
    if run not in existing_runs(out):
        raise CLIError(f"{out} has no run {run!r} to continue; runs: {existing_runs(out)}")
    data = read_run(out, run)
    try:  # the same run and history, before anything is written
        check_resume(ckpt, data, where=f"checkpoint {path}")
    except CheckpointError as exc:
        raise CLIError(str(exc)) from None
    return out, data


def _checkpoint_folder(config: dict, out: Path) -> Path | None:
    """The checkpoint folder of a run created with ``config`` in ``out`` (``None``
    when it keeps no checkpoints)."""
    ck = config.get("checkpoint")
    return (out.resolve().parent / ck["dir"]) if ck else None


def _checkpoint_files(data: object, folder: Path | None) -> list[Path]:
    """The run's recorded checkpoints (``data``, a :class:`spectra.runs.store.RunData`)
    and then the checkpoint files in its ``folder``: also those written by a run that
    stopped before it recorded them."""
    return [*data.checkpoints, *checkpoint_files(folder)]


def _later_checkpoints(ckpt: dict, path: Path, data: object, folder: Path | None
                       ) -> list[tuple[Path, dict]]:
    """The checkpoints of ``ckpt``'s run (at ``path``) taken after it, in step order, as
    ``(path, header)`` (:func:`spectra.runs.checkpoints.later_checkpoint_headers`):
    among the run's recorded checkpoints (``data``, a :class:`spectra.runs.store.RunData`)
    and the files of its checkpoint ``folder`` (a run that stopped between writing a
    checkpoint and recording it leaves one there). Each file is read once, before
    anything is written; the checks and the removal below share the list."""
    from spectra.runs.checkpoints import later_checkpoint_headers

    return later_checkpoint_headers(ckpt, _checkpoint_files(data, folder), exclude=path)


def _last_of_history(later: list[tuple[Path, dict]], data: object
                     ) -> tuple[Path, dict] | None:
    """The last of the ``later`` checkpoints (:func:`_later_checkpoints`) that continues
    run ``data``'s present history; ``None`` when none does (those of a dropped history
    hold nothing to lose)."""
    from spectra.runs.checkpoints import CheckpointError, check_resume

    for candidate, other in reversed(later):
        try:
            check_resume(other, data, where=f"checkpoint {candidate}")
        except (CheckpointError, KeyError, TypeError, ValueError):
            continue
        return candidate, other
    return None


def _refuse_another_files_checkpoints(later: list[tuple[Path, dict]], out: Path) -> None:
    """Refuse, even with ``--overwrite``, to resume into ``out`` when one of the ``later``
    checkpoints of the run (:func:`_later_checkpoints`) belongs to another run file: one
    that records that file (not ``out``), where it still continues the run's history.
    A copy of a run file beside the original shares the original's checkpoint folder
    (it is named relative to the file's folder), so resuming the copy would remove
    those checkpoints (``--overwrite``) or write its own epochs over them, and the
    original could no longer resume from them."""
    from spectra.runs.checkpoints import CheckpointError, check_resume, run_file
    from spectra.runs.store import StoreError, read_run

    mine = out.resolve()
    for candidate, other in later:
        try:
            owner = run_file(other, candidate)
            if owner is None or owner.resolve() == mine or not owner.is_file():
                continue
            check_resume(other, read_run(owner, str(other["run"]["name"])),
                         where=f"checkpoint {candidate}")
        except (CheckpointError, StoreError, OSError, KeyError, TypeError, ValueError):
            continue  # unreadable, or no longer of the other file's history
        raise CLIError(
            f"{shown_path(candidate)} (epoch {int(other['epoch'])}) is a checkpoint of run "
            f"{other['run']['name']!r} of {shown_path(owner)}, not of {shown_path(out)}: the two "
            f"files share the checkpoint folder {shown_path(candidate.parent)}, and resuming {out.name} "
            f"there would remove or write over that file's checkpoints (also with --overwrite). "
            f"Resume {shown_path(owner)} instead, or copy the run file together with its "
            f"checkpoint folder into a folder of its own (a copied run directory resumes the "
            f"copy)")


def _refuse_dropping_later_epochs(ckpt: dict, path: Path, out: Path, run: str,
                                  data: object, later: list[tuple[Path, dict]]) -> None:
    """Refuse to resume from ``ckpt`` when run ``run`` of ``out`` went on past it and
    wrote a later checkpoint: the resume would drop the epochs recorded after ``ckpt``
    (rows a stopped run wrote after its last checkpoint are dropped without asking:
    no checkpoint can continue them). ``--overwrite`` allows it. ``data``: the run as
    read from ``out``; ``later``: the run's checkpoints after ``ckpt``
    (:func:`_later_checkpoints`)."""
    later = _last_of_history(later, data)
    if later is None:
        return
    step, done = int(ckpt["step"]), int(ckpt["epoch"])
    metrics = int((data.metrics["step"] > step).sum()) if len(data.metrics) else 0
    probes = int((data.probes["step"] > step).sum()) if len(data.probes) else 0
    shown = shown_path(later[0])
    raise CLIError(
        f"{path} (epoch {done}) is not the last checkpoint of run {run!r} in {out}: the run "
        f"went on to {shown} (epoch {int(later[1]['epoch'])}), and resuming from epoch "
        f"{done} would drop the {metrics} metric and {probes} probe rows recorded after it. "
        f"Resume from {shown}, or pass --overwrite to drop them and train from epoch "
        f"{done} again")


def _remove_later_checkpoints(ckpt: dict, later: list[tuple[Path, dict]]) -> list[Path]:
    """Delete the checkpoints of ``ckpt``'s run (the same run id) taken after it (a
    greater step), once the run file was rewound to ``ckpt``'s step: they continue
    rows the rewind dropped, so no resume accepts them (``check_resume``), and until
    the resumed run writes those epochs again they would pass for the run's (in
    ``spectra info``, or for ever when it stops earlier). ``later``: those checkpoints,
    found before the rewind among the run's recorded checkpoints and the files of its
    checkpoint folder (:func:`_later_checkpoints`); other runs' checkpoints and other
    files are never touched. Called only with
    ``--overwrite`` (without it, a resume that would drop later epochs is refused, and
    leftovers of an earlier dropped history are left where they are). One line on
    stderr names what was removed, also with ``--json`` or ``--quiet`` (files were
    deleted); a file that cannot be removed is named there too and training goes on.
    Returns the removed paths."""
    removed = []
    for stale, _ in later:
        try:
            stale.unlink()
        except OSError as exc:
            click.echo(f"warning: cannot remove {shown_path(stale)}, a checkpoint of the dropped "
                       f"epochs ({exc.strerror or exc}); delete it by hand", err=True)
        else:
            removed.append(stale)
    if removed:
        first = removed[0]
        rest = [p.name if p.parent == first.parent else str(shown_path(p)) for p in removed[1:]]
        names = ", ".join([str(shown_path(first)), *rest]) if len(rest) <= 2 else (
            f"{shown_path(first)} ... {rest[-1]}")
        click.echo(f"removed {len(removed)} checkpoint{'s' if len(removed) > 1 else ''} of the "
                   f"dropped epochs past epoch {int(ckpt['epoch'])} ({names})", err=True)
    return removed


def _prepare_resumed(config: dict, run: str, out: Path, trusted: bool, device
                     ) -> tuple[PreparedRun, object, ProbePlan]:
    """``(prepared run, data set, probe plan)`` rebuilt from a run's config, on
    ``device`` (the config keeps the device the run was created on: a checkpoint's
    config must equal its run's)."""
    from spectra.registries.data import DataSpec
    from spectra.registries.models import ModelSpec

    plan = ProbePlan.from_config(config.get("probe")) or ProbePlan(every=0)
    ds = data_on(DataSpec.from_dict(config["data"]).load(), device)
    _, loss_fn = make_loss(config["loss"], ds.task)
    spec = ModelSpec.from_dict(config["model"])
    if trusted:
        spec = spec.trusted()
    ck = config.get("checkpoint")
    opt = config["optimizer"]
    prep = prepare_run(
        name=run, key=opt["name"], overrides=dict(opt.get("overrides") or {}), ds=ds,
        model_spec=spec, loss_name=config["loss"], loss_fn=loss_fn, seed=int(config["seed"]),
        epochs=int(config["epochs"]), batch_size=int(config["batch_size"]), plan=plan, out=out,
        checkpoint_dir=_checkpoint_folder(config, out),
        checkpoint_every=int(ck["every"]) if ck else 0,
        log_every=config.get("log_every_steps"), command="train",
        lr_schedule=stored_schedule(opt), device=device,
    )
    prep.extra["config"] = config  # the run's config is the one it was created with
    return prep, ds, plan


def _header(prep: PreparedRun, ds, out: Path) -> None:
    c = prep.config
    probe = c["probe"]
    what = "no probes" if probe is None else (
        f"probe every {probe['every']} {probe['unit']}{'s' if probe['every'] > 1 else ''} "
        f"on {probe['samples']} samples: top-{probe['top_k']}"
        + (", λmin" if probe["bottom"] else "")
        + (f", trace ({probe['trace_matvecs']} products)" if probe["trace_matvecs"] else "")
        + (f", density {tuple(probe['density'])}" if probe["density"] else ""))
    hp = c["optimizer"]["overrides"]
    click.echo(f"{prep.key} on {c['model']['name']} ({c['num_params']:,} parameters), "
               f"{ds.name} ({c['num_train']} train / {c['num_test']} test), "
               f"{c['epochs']} epoch{'s' if c['epochs'] != 1 else ''} of batch {c['batch_size']}"
               + (f", {', '.join(f'{k}={v}' for k, v in hp.items())}" if hp else ""))
    lr_schedule = stored_schedule(c["optimizer"])
    if lr_schedule.name != "none":
        click.echo(f"lr schedule: {lr_schedule.describe()}")
    where = f" on {c['device']}" if c.get("device", "cpu") != "cpu" else ""
    click.echo(f"{what}; run {prep.name!r} in {out}{where}")


def _finish(outcome, prep: PreparedRun, out: Path, as_json: bool,
            resumed_at: tuple[int, int] | None = None) -> None:
    """The summary of a finished ``train``; ``resumed_at``: the (epoch, step) of the
    checkpoint a resume started from (the run's totals then differ from this session's,
    and the line says which number is which)."""
    s = outcome_summary(outcome, prep, out)
    if as_json:
        s["config"] = prep.config
        echo_json(s)
        return
    if quiet():
        return
    def n(count: int, noun: str) -> str:
        return f"{count} {noun}{'' if count == 1 else 's'}"

    time = (f"in {seconds(s['train_seconds'])} of training + {seconds(s['probe_seconds'])} "
            f"of probes ({n(s['num_probes'], 'probe')}, {s['num_matvecs']} Hessian-vector "
            "products)")
    if resumed_at is None:
        click.echo(f"done: {n(s['epochs'], 'epoch')} ({n(s['steps'], 'step')}) {time}")
    else:  # the times and probe counts are this session's; the run's totals differ
        epoch0, step0 = resumed_at
        click.echo(f"done: {n(s['epochs'] - epoch0, 'epoch')} ({n(s['steps'] - step0, 'step')}) "
                   f"this session, {time}; the run: {n(s['epochs'], 'epoch')}, "
                   f"{n(s['steps'], 'step')} in all")
    click.echo(f"run file:    {out}  (run {prep.name!r})")
    if s["checkpoints"]:
        click.echo(f"checkpoints: {prep.checkpoint_dir}/ (last: {Path(s['checkpoints'][-1]).name})")
    kind = next_plot(s["epochs"], ProbePlan.from_config(prep.config["probe"]),
                     probed=bool(s["num_probes"]), one_run=True)
    if kind is not None:
        click.echo(f"next:        spectra plot {kind} {out} -o {out.with_suffix('.png')}")
