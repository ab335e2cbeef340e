"""``spectra compare``: several optimizers on the same model, data and seed, into one file."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import click

from cli._build import (
    data_on,
    load_data,
    make_loss,
    model_spec_for,
    optimizer_keys,
    prepare_run,
    run_device,
)
from cli._errors import CLIError, Interrupted, first_line, handle_errors, speak_cli
from cli._format import fmt, pct, seconds
from cli._options import (
    ProbePlan,
    device_option,
    eval_train_option,
    model_data_options,
    parse_kv,
    parse_schedule,
    probe_options,
    schedule_options,
    split_opt_args,
    training_options,
)
from cli._output import echo_json, quiet, show_progress
from cli._paths import (
    check_checkpoint_dir,
    check_checkpoints_free,
    check_run_file,
    check_tensorboard_runs,
    clear_checkpoints,
    default_checkpoint_dir,
    existing_runs,
)
from cli._run import execute, next_plot, outcome_summary


@click.command()
@click.option("--optimizers", default="sgd,adam,dcao,calr,smaran,lpsgd", show_default=True,
              help="Comma-separated optimizer registry names; each becomes one run named "
                   "after it.")
@click.option("--opt-arg", multiple=True, metavar="[NAME.]KEY=VALUE",
              help="Hyperparameter for every optimizer (lr=0.01) or for one (sgd.lr=0.1); "
                   "repeatable.")
@model_data_options
@training_options
@schedule_options
@probe_options
@click.option("--out", "-o", default="runs/compare.h5", show_default=True,
              type=click.Path(dir_okay=False), help="The HDF5 file that gets one run per optimizer.")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False),
              help="Parent folder of the runs' checkpoint folders  [default: <out stem>_ckpt/ "
                   "beside the file].")
@eval_train_option
@device_option
@click.option("--json", "as_json", is_flag=True,
              help="No per-epoch lines or table; print a JSON summary at the end.")
@handle_errors
def compare(**kw) -> None:
    """Train several optimizers on the same model, data and seed; one file.

    Every optimizer starts from the same initialization (the model is built with
    --seed), sees the same batches in the same order and is probed on the same
    probe set, and with the same --schedule (which scales each optimizer's base lr).
    Each optimizer's base lr is its registry default, tuned for this default run
    (digits, the default MLP, 5 epochs: analyses/results/default_lrs.md); --opt-arg
    lr=... sets another. Unknown optimizer names, bad --opt-arg keys, bad schedule
    options and existing run names are reported before anything is trained or
    written. A table of the lrs, final losses, accuracies, λ1 and times closes the
    run. An optimizer that diverges (a non-finite loss) keeps its rows so far and is
    a row of the table; the others still train.

    \b
    Examples:
      spectra compare --optimizers sgd,adam,dcao,calr,smaran,lpsgd --epochs 5 -o runs/cmp.h5
      spectra compare --optimizers sgdm,adam --eval-train -o runs/cmp.h5
    """
    as_json = kw["as_json"]
    keys = optimizer_keys(kw["optimizers"])
    plan = ProbePlan.from_options(kw)
    lr_schedule = parse_schedule(kw)
    epochs = 5 if kw["epochs"] is None else kw["epochs"]
    out = check_run_file(kw["out"])
    overrides = split_opt_args(kw["opt_arg"], keys)
    model_args = parse_kv(kw["model_arg"], "--model-arg")
    data_args = parse_kv(kw["data_arg"], "--data-arg")
    present = [k for k in keys if k in existing_runs(out)]
    if present and not kw["overwrite"]:
        raise CLIError(f"{out} already has run{'s' if len(present) > 1 else ''} "
                       f"{', '.join(map(repr, present))}; write to another --out or pass "
                       "--overwrite to replace them")

    device = run_device(kw["device"])
    ds = load_data(kw["data_name"], kw["data_dir"], data_args, kw["seed"])
    loss_name, loss_fn = make_loss(kw["loss_name"], ds.task)
    spec = model_spec_for(kw["model_name"], model_args, ds, kw["seed"])
    ds = data_on(ds, device)
    base = Path(kw["checkpoint_dir"]) if kw["checkpoint_dir"] else default_checkpoint_dir(out, "x").parent
    if kw["checkpoint_every"] > 0:
        for key in keys:  # writable, and no run's checkpoints written over unless --overwrite
            check_checkpoint_dir(base / key)
            check_checkpoints_free(base / key, kw["overwrite"])
    check_tensorboard_runs(kw["tensorboard"], list(keys), kw["overwrite"])
    preps, plans, unpreconditioned = [], [], []
    for key in keys:  # every optimizer is built (and its options checked) before training
        ckpt_dir = base / key if kw["checkpoint_every"] > 0 else None
        try:
            kwargs = {
                "name": key, "key": key, "overrides": overrides[key], "ds": ds, "model_spec": spec,
                "loss_name": loss_name, "loss_fn": loss_fn, "seed": kw["seed"], "epochs": epochs,
                "batch_size": kw["batch_size"], "out": out, "checkpoint_dir": ckpt_dir,
                "checkpoint_every": kw["checkpoint_every"], "log_every": kw["log_every"],
                "command": "compare", "lr_schedule": lr_schedule, "device": device}
            run_plan = plan
            try:
                prep = prepare_run(plan=plan, **kwargs)
            except CLIError as exc:
                # --preconditioned applies to the adaptive optimizers of the comparison;
                # the others (SGD, ...) are probed without it rather than refused
                if not (plan.preconditioned and exc.format_message().startswith("--preconditioned")):
                    raise
                run_plan = replace(plan, preconditioned=False)
                prep = prepare_run(plan=run_plan, **kwargs)
                unpreconditioned.append(key)
            preps.append(prep)
            plans.append(run_plan)
        except CLIError as exc:  # say which optimizer an --opt-arg error is about
            message = exc.format_message()
            if not message.startswith("--opt-arg") or repr(key) in message:
                raise
            raise CLIError(f"--opt-arg ({key}){message.removeprefix('--opt-arg')}") from exc
        except Exception as exc:
            raise CLIError(f"{key}: {speak_cli(first_line(exc))}") from exc
    echo = not (as_json or quiet())
    if echo:
        c = preps[0].config
        click.echo(f"{len(keys)} optimizers on {c['model']['name']} ({c['num_params']:,} "
                   f"parameters), {ds.name} ({c['num_train']} train / {c['num_test']} test), "
                   f"{epochs} epochs of batch {kw['batch_size']}, seed {kw['seed']}"
                   + (f", on {device}" if device.type != "cpu" else "") + f" -> {out}")
        if unpreconditioned:
            click.echo(f"--preconditioned: {', '.join(unpreconditioned)} "
                       f"{'has' if len(unpreconditioned) == 1 else 'have'} no diagonal "
                       "preconditioner; probed without it")
    from spectra.runs.store import RunStore
    from spectra.runs.trainer import TrainingDiverged

    summaries = []
    width = max(len(k) for k in keys)
    with RunStore(out) as store:
        # every run is (re)made before the first one trains: with --overwrite, a comparison
        # cut short leaves no run of the one it replaces beside its own
        writers = []
        for prep in preps:
            prep.config["eval_train"] = bool(kw["eval_train"])  # also in the checkpoints' config
            writers.append(store.create_run(prep.name, prep.config, overwrite=kw["overwrite"]))
            if kw["overwrite"]:  # the run it replaces, and any checkpoints in its folder
                clear_checkpoints(prep.checkpoint_dir)
        for i, (prep, run_plan, writer) in enumerate(zip(preps, plans, writers, strict=True)):
            try:
                outcome = execute(prep, writer, ds=ds, epochs=epochs, batch_size=kw["batch_size"],
                                  seed=kw["seed"], plan=run_plan,
                                  checkpoint_every=kw["checkpoint_every"],
                                  log_every=kw["log_every"], echo=echo,
                                  progress=show_progress(as_json),
                                  prefix=f"{prep.name:<{width}}  ",
                                  eval_train=kw["eval_train"], tensorboard=kw["tensorboard"])
            except Interrupted as exc:
                rest = [p.name for p in preps[i + 1:]]
                if not rest:
                    raise
                raise Interrupted(f"{exc.hint}; {', '.join(map(repr, rest))} did not start (empty "
                                  f"run{'s' if len(rest) > 1 else ''} in {out})") from None
            except TrainingDiverged as exc:  # a result of the comparison: go on with the others
                if echo:
                    click.echo(f"{prep.name:<{width}}  diverged: {exc} Going on with the others.")
                summary = _diverged_summary(exc, prep, out)
            else:
                summary = outcome_summary(outcome, prep, out)
            summary["lr"] = prep.config["optimizer"]["hyperparameters"].get("lr")
            summaries.append(summary)
    if as_json:
        echo_json({"file": str(out), "runs": summaries})
    if all(s.get("diverged") for s in summaries):
        raise CLIError(f"every optimizer diverged ({', '.join(keys)}); lower the learning "
                       f"rate (--opt-arg lr=...). Their rows up to then are in {out}")
    if as_json:
        return
    if quiet():
        return
    click.echo("")
    _table(summaries)
    click.echo(f"\nrun file: {out}  (runs {', '.join(keys)})")
    probed = any(r.get("num_probes") for r in summaries)
    kind = next_plot(epochs, plan, probed=probed, one_run=False)
    if kind is not None:
        click.echo(f"next:     spectra plot {kind} {out} -o {out.with_name(f'{out.stem}_{kind}.png')}")


def _diverged_summary(exc: Exception, prep, out: Path) -> dict:
    """The summary of a run whose loss stopped being finite (the fields of
    :func:`cli._run.outcome_summary` that a run cut short has, and ``diverged``: the step,
    the epoch, the loss and the message)."""
    return {"file": str(out), "run": prep.name, "optimizer": prep.key,
            "diverged": {"step": exc.step, "epoch": exc.epoch, "loss": exc.loss,
                         "message": str(exc)},
            "final": {}, "last_probe": None, "train_seconds": math.nan,
            "probe_seconds": math.nan, "checkpoints": []}


def _table(rows: list[dict]) -> None:
    """The closing table: each run's base lr (DCAO scales its own by the controller's
    multiplier, a schedule by its factor), final metrics, last λ1 and times."""
    width = max(12, *(len(r["optimizer"]) + 1 for r in rows))
    head = (f"{'optimizer':<{width}} {'lr':>8} {'train loss':>10} {'train acc':>9} "
            f"{'test loss':>10} {'test acc':>9} {'λ1':>10} {'train':>8} {'probes':>8}")
    click.echo(head)
    click.echo("-" * len(head))
    for r in rows:
        if r.get("diverged"):
            d = r["diverged"]
            click.echo(f"{r['optimizer']:<{width}} {fmt(r.get('lr'), 8)} "
                       f"diverged: loss {d['loss']} at step {d['step']} (epoch {d['epoch']})")
            continue
        f = r["final"]
        lp = r["last_probe"] or {}
        top = lp.get("top_eigenvalues") or [math.nan]
        click.echo(f"{r['optimizer']:<{width}} {fmt(r.get('lr'), 8)} "
                   f"{fmt(f.get('train_loss'), 10)} {pct(f.get('train_acc'), 9)} "
                   f"{fmt(f.get('test_loss'), 10)} {pct(f.get('test_acc'), 9)} "
                   f"{fmt(top[0], 10)} {seconds(r['train_seconds'], 8)} "
                   f"{seconds(r['probe_seconds'], 8)}")
