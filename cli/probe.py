"""``spectra probe``: the Hessian spectrum of one model state, as a table or JSON.

The command resolves its settings (from a checkpoint's monitor where it has one),
builds the model and its probe set, probes, appends the row when asked, and prints.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import click
import numpy as np

from cli._build import (
    build_errors_option,
    check_model_name,
    data_on,
    fit_probe_size,
    load_data,
    make_loss,
    run_device,
    sequence_args,
)
from cli._errors import CLIError, handle_errors, option_errors
from cli._format import SPARK_BARS, fmt, pct, seconds, sparkline
from cli._options import (
    SEED,
    TOL,
    check_trace_matvecs,
    curvature_options,
    curvature_settings,
    device_option,
    given_options,
    option_flag,
    parse_kv,
)
from cli._output import ProbeLine, echo_json, show_progress
from cli._paths import check_append_target
from cli._restore import restore


@dataclass(frozen=True)
class Settings:
    """The probe's settings after defaults: the options, or a checkpoint's monitor's."""

    top_k: int
    bottom: bool
    tol: float
    trace_matvecs: int
    density: tuple[int, int] | None  # (vectors, steps)
    samples: int | None
    seed: int
    sample_seed: int | None = None
    preconditioned: bool = False
    alignment: bool = False
    layers: str | None = None
    layer_density: tuple[int, int] | None = None
    max_memory: int | None = None  # bytes
    density_mode: str = "auto"

    @classmethod
    def from_options(cls, kw: dict[str, Any]) -> Settings:
        check_trace_matvecs(kw["trace_matvecs"])
        return cls(top_k=kw["top_k"], bottom=kw["bottom"], tol=kw["tol"],
                   trace_matvecs=kw["trace_matvecs"],
                   density=(kw["density_vectors"], kw["density_steps"]) if kw["density"] else None,
                   samples=kw["n_samples"], seed=kw["seed"], sample_seed=kw["sample_seed"],
                   **curvature_settings(kw))

    def for_checkpoint(self, restored, kw: dict[str, Any], given: list[str]) -> Settings:
        """These settings for a checkpoint: each one not given on the command line is the
        run's monitor's (its seed the run's); the probe set is the monitor's, or 512."""
        s = self
        plan = restored.probe
        if plan is not None:
            density = s.density
            if plan.density is not None:
                on = kw["density"] if "density" in given else True
                vectors = kw["density_vectors"] if "density_vectors" in given else plan.density[0]
                steps = kw["density_steps"] if "density_steps" in given else plan.density[1]
                density = (vectors, steps) if on else None
            s = replace(
                s, top_k=s.top_k if "top_k" in given else plan.top_k,
                bottom=s.bottom if "bottom" in given else plan.bottom,
                tol=s.tol if "tol" in given else plan.tol,
                trace_matvecs=s.trace_matvecs if "trace_matvecs" in given else plan.trace_matvecs,
                density=density, samples=s.samples or plan.samples,
                preconditioned=s.preconditioned or plan.preconditioned,
                alignment=s.alignment or plan.alignment,
                layers=s.layers if "layers" in given else plan.layers,
                layer_density=s.layer_density if "layer_density" in given else plan.layer_density,
                max_memory=s.max_memory if "max_memory" in given else plan.max_memory,
                density_mode=s.density_mode if "density_mode" in given else plan.density_mode)
        if "seed" not in given:
            s = replace(s, seed=int(restored.config.get("seed", 0)))
        return replace(s, samples=s.samples or 512)


@dataclass
class Target:
    """The model to probe, its data set and loss, and where it stands."""

    model: Any
    ds: Any
    loss_fn: Any
    label: str
    step: int
    epoch: float | None = None
    checkpoint: str | None = None
    run: str | None = None  # the checkpoint's run, where --append goes by default
    run_record: dict | None = None  # the checkpoint's run record (id, name, file)
    device: Any = "cpu"  # where the model and the data are (--device)
    optimizer: Any = None  # the checkpoint's (state loaded), or the fit's Adam

    @property
    def info(self) -> dict[str, Any]:
        """What the JSON output says of the checkpoint."""
        if self.checkpoint is None:
            return {}
        return {"checkpoint": str(self.checkpoint), "step": self.step, "epoch": self.epoch}


@click.command()
@click.option("--checkpoint", type=click.Path(dir_okay=False), metavar="CKPT",
              help="Probe the model of this checkpoint (from `spectra train`) on the probe set "
                   "its monitor used; the probe settings default to the monitor's.")
@click.option("--model", "model_name", default="mlp", show_default=True,
              help="Model registry name (with --checkpoint: replaces the checkpoint's model).")
@click.option("--model-arg", multiple=True, metavar="KEY=VALUE", help="Model keyword argument (repeatable).")
@click.option("--data", "data_name", default="digits", show_default=True,
              help="Data set registry name (with --checkpoint: replaces the checkpoint's data).")
@click.option("--data-arg", multiple=True, metavar="KEY=VALUE", help="Data set option (repeatable).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Directory of a file-based data set.")
@click.option("--fit-steps", default=50, show_default=True, type=click.IntRange(min=0),
              help="Without --checkpoint: full-batch Adam steps before the probe (0 probes the "
                   "initialization).")
@click.option("--seed", default=0, show_default=True, type=SEED,
              help="Seed of the data, the model and the probe's random vectors (with "
                   "--checkpoint: the run's).")
@click.option("--samples", "n_samples", type=click.IntRange(min=1),
              help="Training samples the Hessian averages over  [default: 1000; with "
                   "--checkpoint: the monitor's probe set].")
@click.option("--sample-seed", type=click.IntRange(min=0), metavar="S",
              help="Probe a random subsample of --samples training samples drawn with this seed "
                   "(spectra.subsample)  [default: the first --samples samples].")
@click.option("--subsamples", default=0, show_default=True, type=click.IntRange(min=0),
              metavar="K",
              help="Also λ1 on K random subsamples of --samples samples (seeds --sample-seed, "
                   "+1, …, default from 0): their mean ± std says whether the sample is large "
                   "enough. K top-eigenvalue runs.")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=0),
              help="Largest eigenvalues (at most the model's number of parameters).")
@click.option("--bottom/--no-bottom", default=True, show_default=True, help="Also the most negative eigenvalue.")
@click.option("--tol", default=1e-3, show_default=True, type=TOL)
@click.option("--trace-matvecs", default=60, show_default=True, type=click.IntRange(min=0),
              help="Hutch++ budget (0: no trace).")
@click.option("--density/--no-density", default=False, show_default=True, help="SLQ spectral density.")
@click.option("--density-vectors", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--density-steps", default=80, show_default=True, type=click.IntRange(min=1),
              help="Lanczos steps per SLQ vector (at most the model's number of parameters; the "
                   "default is lowered to it for a tiny model).")
@click.option("--float64", "use_float64", is_flag=True, help="Compute in float64.")
@device_option
@curvature_options
@click.option("--append", "append_to", type=click.Path(dir_okay=False), metavar="RUN.h5",
              help="Append the probe as a row of a run in this file: a checkpoint after the "
                   "run's last probe, on its monitor's probe set (no --samples, --sample-seed, "
                   "--data*, --model* of one's own).")
@click.option("--run", "run_name",
              help="The run --append adds the row to  [default: the checkpoint's run].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a table.")
@handle_errors
def probe(**kw):
    """Probe the Hessian spectrum of a model on a data set.

    With --checkpoint, rebuilds the model of a `spectra train` checkpoint, loads
    its weights and probes it on the same probe set (the first N training samples)
    with the same settings as the run's monitor, so the numbers repeat the
    monitor's. Without, builds the model from the registry and fits it briefly
    with full-batch Adam.

    Prints the top-k eigenvalues, the most negative one, the trace and a summary
    of the spectral density; --append adds the probe to a run of an HDF5 file.
    With the optimizer (a checkpoint's, its state loaded; without --checkpoint,
    the fit's Adam) also its stability threshold, and on request the
    preconditioned sharpness (--preconditioned), the gradient alignment
    (--alignment) and per-layer spectra (--layers); --json reports them all.

    Under `torchrun --nproc_per_node N` each process probes its shard of the
    probe set (products all-reduced over gloo), the fit is
    repeated identically on every rank, and rank 0 alone prints and appends.

    --device (default auto: cuda when available) holds the model, the data, the
    fit and every Hessian product; a checkpoint written on any device loads onto it.

    \b
    Examples:
      spectra probe --checkpoint runs/demo_ckpt/dcao/checkpoint-epoch0005.pt
      spectra probe --checkpoint CKPT --density --append runs/demo.h5 --json
      spectra probe --model mlp --data digits --fit-steps 50 --top-k 5 --density
      spectra probe --checkpoint CKPT --preconditioned --alignment --layers module --json
      spectra probe --samples 200 --subsamples 5
      spectra probe --checkpoint CKPT --device cuda --json
      torchrun --nproc_per_node 2 -m cli.main probe --checkpoint CKPT --json
    """
    from spectra.utils.distributed import env_processes, processes_from_env

    try:
        env_processes()
    except ValueError as exc:
        raise CLIError(f"cannot join the torchrun processes: {exc}") from None
    # gloo: the operators also all-reduce CPU tensors (sample counts), which nccl cannot
    with processes_from_env(backend="gloo") as ranks:
        _probe(kw, ranks)


def _probe(kw: dict[str, Any], ranks) -> None:
    """The command's body in one of ``ranks.world_size`` processes."""
    given = given_options(tuple(kw))
    settings = Settings.from_options(kw)
    device = run_device(kw["device"], ranks)
    if kw["checkpoint"] is not None:
        target, settings = _from_checkpoint(kw, given, settings, device)
    else:
        target = _from_registry(kw, settings.seed, device)
        settings = replace(settings, samples=settings.samples or 1000)
    probe_set = _probe_set(target.ds, settings.samples, kw["sample_seed"])
    if ranks.world_size > 1 and settings.alignment:
        raise CLIError("--alignment is not available under torchrun (its gradient is not "
                       "reduced over the ranks): run it in one process")
    shard_set = _shard(probe_set, ranks)

    # settings the model rules out fail here, before any fitting, probing or appending
    top_k, density = fit_probe_size(target.model, settings.top_k, settings.density, given)
    settings = replace(settings, top_k=top_k, density=density)
    line = ProbeLine() if show_progress(kw["as_json"]) and ranks.is_main else False
    mon = _monitor(target, shard_set, settings, use_float64=kw["use_float64"], progress=line)
    run_name = kw["run_name"] or target.run
    if kw["append_to"] is not None:
        if target.checkpoint is None:  # before asking for --run: no run takes this probe
            raise CLIError(f"--append {kw['append_to']}: a model fitted here (--fit-steps) "
                           "belongs to no run's history; --append takes the probe of a "
                           "--checkpoint of that run")
        if run_name is None:
            raise CLIError("--append needs --run NAME: which run of the file gets the row")
        changed = [option_flag(name) for name in
                   ("model_name", "model_arg", "data_name", "data_arg", "data_dir", "sample_seed")
                   if name in given]
        check_append_target(kw["append_to"], run_name, top_k, density,
                            checkpoint=target.checkpoint, source=target.run_record,
                            step=target.step, samples=settings.samples, changed=changed)
    if target.checkpoint is None:
        # every rank fits the same model on the whole probe set: identical weights
        fit_loss, target.optimizer = _fit(target.model, target.loss_fn, *probe_set, kw["fit_steps"],
                                          progress=show_progress(kw["as_json"]) and ranks.is_main)
    else:
        fit_loss = _loss(target.model, target.loss_fn, *probe_set)
    if settings.preconditioned and target.optimizer is None:
        raise CLIError("--preconditioned reads the optimizer's state: probe a --checkpoint of "
                       "`spectra train` (with its optimizer state), or fit with --fit-steps > 0")
    if settings.preconditioned:
        from spectra.curvature.preconditioner import preconditioner

        try:
            preconditioner(target.optimizer)
        except (TypeError, ValueError) as exc:
            raise CLIError(f"--preconditioned needs an adaptive optimizer that has stepped: {exc}") from None
    # the monitor's probe: its random vectors are seeded by (seed, step) like in training
    try:
        res = mon.probe(step=target.step, epoch=target.epoch, optimizer=target.optimizer)
    finally:
        if line:
            line.close()
    spread = None
    if kw["subsamples"]:
        spread = _spread(target, settings, kw, ranks)
    if not ranks.is_main:
        return
    appended = None
    if kw["append_to"] is not None:
        appended = _append(kw["append_to"], run_name, mon.row(res, step=target.step,
                                                              epoch=target.epoch))
    show = _print_json if kw["as_json"] else _print_table
    show(res, target, settings, loss=fit_loss, num_samples=len(probe_set[1]), appended=appended,
         spread=spread, ranks=ranks.world_size)


def _probe_set(ds, samples: int, seed: int | None):
    """The first ``samples`` training samples, or a subsample drawn with ``seed``."""
    if seed is None:
        return ds.train_x[:samples], ds.train_y[:samples]
    from spectra.operators.sampling import subsample

    with option_errors("--samples"):
        return subsample((ds.train_x, ds.train_y), samples, seed=seed)


def _shard(probe_set, ranks):
    """This rank's contiguous part of the probe set (all of it for one process)."""
    if ranks.world_size == 1:
        return probe_set
    from spectra.utils.distributed import shard

    n = len(probe_set[1])
    if n < ranks.world_size:
        raise CLIError(f"--samples {n} is fewer than the {ranks.world_size} torchrun processes")
    part = shard(n, ranks.rank, ranks.world_size)
    return probe_set[0][part], probe_set[1][part]


def _spread(target: Target, s: Settings, kw: dict[str, Any], ranks):
    """λ1 on ``--subsamples`` seeded subsamples of ``s.samples`` training samples."""
    import torch

    from spectra.operators.sampling import top_eigenvalue_spread

    first = kw["sample_seed"] or 0
    with option_errors("--samples"):
        return top_eigenvalue_spread(
            target.model, target.loss_fn, (target.ds.train_x, target.ds.train_y), s.samples,
            range(first, first + kw["subsamples"]), tol=s.tol, eval_mode=True,
            dtype=torch.float64 if kw["use_float64"] else None,
            rank=ranks.rank, world_size=ranks.world_size)


def _from_checkpoint(kw: dict[str, Any], given: list[str], settings: Settings, device
                     ) -> tuple[Target, Settings]:
    """The model of a checkpoint (weights loaded, on ``device`` with the data), and the
    settings of its monitor for those not given."""
    if "fit_steps" in given:
        raise CLIError("--fit-steps does not apply with --checkpoint: the checkpoint's weights "
                       "are probed")
    restored = restore(
        kw["checkpoint"],
        model_name=kw["model_name"] if "model_name" in given else None,
        model_args=parse_kv(kw["model_arg"], "--model-arg"),
        data_name=kw["data_name"] if "data_name" in given else None,
        data_args=parse_kv(kw["data_arg"], "--data-arg"), data_dir=kw["data_dir"],
        device=device,
    )
    target = Target(restored.model, restored.ds, restored.loss_fn, restored.model_desc,
                    step=int(restored.ckpt["step"]), epoch=float(restored.ckpt["epoch"]),
                    checkpoint=kw["checkpoint"], run=(restored.ckpt.get("run") or {}).get("name"),
                    run_record=restored.ckpt.get("run") or None, device=device)
    settings = settings.for_checkpoint(restored, kw, given)
    target.optimizer = _checkpoint_optimizer(restored, settings)
    return target, settings


def _checkpoint_optimizer(restored, s: Settings):
    """The checkpoint's optimizer, rebuilt from the run's config with its state loaded
    (its current lr, moments and preconditioner); None when the checkpoint records
    none. A failure is a ``CLIError`` only when an option needs the optimizer."""
    from cli._build import build_optimizer, stored_schedule

    cfg = restored.config.get("optimizer")
    state = restored.ckpt.get("optimizer_state")
    if not cfg or state is None:
        return None
    probe_set = (restored.ds.train_x[: s.samples or 512], restored.ds.train_y[: s.samples or 512])
    try:
        bundle = build_optimizer(cfg["name"], restored.model, restored.loss_fn, probe_set,
                                 dict(cfg.get("overrides") or {}), total_steps=1, total_epochs=1,
                                 lr_schedule=stored_schedule(cfg))
        bundle.optimizer.load_state_dict(state)
    except (CLIError, ValueError, TypeError, KeyError) as exc:
        if s.preconditioned or s.alignment:
            raise CLIError(f"cannot rebuild the optimizer of {restored.path} "
                           f"(--preconditioned and --alignment need it): {exc}") from None
        return None
    return bundle.optimizer


def _from_registry(kw: dict[str, Any], seed: int, device) -> Target:
    """A model of the registry on a data set of the registry, at its initialization
    (built on the CPU, then moved with the data to ``device``)."""
    import torch

    from spectra.registries.models import build_model

    torch.manual_seed(seed)
    ds = load_data(kw["data_name"], kw["data_dir"], parse_kv(kw["data_arg"], "--data-arg"), seed)
    check_model_name(kw["model_name"])
    kwargs = sequence_args(kw["model_name"], parse_kv(kw["model_arg"], "--model-arg"))
    with option_errors(build_errors_option(kwargs)):
        model = build_model(kw["model_name"], input_shape=ds.input_shape,
                            num_classes=ds.num_classes, **kwargs)
    _, loss_fn = make_loss("auto", ds.task)
    return Target(model.to(device), data_on(ds, device), loss_fn, kw["model_name"],
                  step=kw["fit_steps"], device=device)


def _monitor(target: Target, probe_set, s: Settings, *, use_float64: bool, progress):
    """A monitor that probes ``target`` on ``probe_set`` with settings ``s`` (none written)."""
    from spectra.runs.monitor import SpectralMonitor

    return SpectralMonitor(
        target.model, target.loss_fn, probe_set, None, top_k=s.top_k, bottom=s.bottom,
        tol=s.tol, trace=s.trace_matvecs, density=s.density, seed=s.seed,
        dtype="float64" if use_float64 else None, progress=progress,
        alignment=s.alignment, layers=s.layers, layer_density=s.layer_density,
        preconditioned=s.preconditioned, max_memory=s.max_memory, density_mode=s.density_mode,
    )


def _append(path: str, run: str, row: dict) -> dict[str, Any]:
    """Append probe ``row`` to run ``run`` of ``path``; what the output says of it."""
    from spectra.runs.store import RunStore

    with RunStore(path) as store:
        row_index = store.open_run(run).append_probe(row)
    return {"file": str(path), "run": run, "row": row_index}


def _num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _print_json(res, target: Target, s: Settings, *, loss: float, num_samples: int,
                appended: dict | None, spread=None, ranks: int = 1) -> None:
    out = res.to_dict()
    out.update({"model": target.label, "data": target.ds.name,
                "num_params": _num_params(target.model), "num_samples": num_samples,
                "loss": loss, "seed": s.seed, "processes": ranks, "device": str(target.device),
                **target.info})
    if spread is not None:
        out["subsamples"] = spread.to_dict()
    if appended is not None:
        out["appended"] = appended
    echo_json(out)


def _print_table(res, target: Target, s: Settings, *, loss: float, num_samples: int,
                 appended: dict | None, spread=None, ranks: int = 1) -> None:
    P = _num_params(target.model)
    where = (f" at epoch {target.epoch:g} (step {target.step}) of {target.checkpoint}"
             if target.checkpoint else "")
    on = f" on {target.device}" if str(target.device) != "cpu" else ""
    click.echo(f"model {target.label} ({P:,} parameters){where}{on}")
    which = "the first" if s.sample_seed is None else f"a random sample (seed {s.sample_seed}) of"
    over = f", sharded over {ranks} processes" if ranks > 1 else ""
    click.echo(f"probe set: {which} {num_samples} training samples of {target.ds.name}{over}, "
               f"loss {fmt(loss)} ({res.reduction}-reduced over samples)")
    _print_result(res, s.top_k, s.bottom, s.trace_matvecs, s.tol)
    _print_memory(res)
    _print_curvature(res)
    if spread is not None:
        sd = "" if spread.std != spread.std else f" ± {fmt(spread.std)} (std)"
        click.echo(f"λ1 over {len(spread.values)} random subsamples of {spread.num_samples} "
                   f"(seeds {spread.seeds[0]}…{spread.seeds[-1]}): {fmt(spread.mean)}{sd}; "
                   f"min {fmt(min(spread.values))}, max {fmt(max(spread.values))}")
    if appended is not None:
        click.echo(f"appended as probe row {appended['row']} of run {appended['run']!r} in "
                   f"{appended['file']}")


MEMORY_PARTS = {"top": "top-k eigensolver basis", "bottom": "λmin eigensolver basis",
                "density": "SLQ density", "preconditioned": "preconditioned eigensolver basis"}


def _print_memory(res) -> None:
    """Which mode each solver ran in (``res.memory``) and why: the SLQ density full or
    bounded, the eigensolvers' bases on the device, host or disk."""
    for part, plan in res.memory.items():
        mode = plan["mode"]
        if part == "density":
            mode = {"full": "full (stored bases, reorthogonalized)",
                    "bounded": "bounded (no stored basis)"}.get(mode, mode)
        click.echo(f"{MEMORY_PARTS.get(part, part)}: {mode}, {plan['reason']}")


def _print_curvature(res) -> None:
    """The threshold, the preconditioned sharpness, the alignment and the layers."""
    t = res.threshold
    if t is not None:
        what = "λ1(P⁻¹H)" if t.preconditioned else "λ1"
        click.echo(f"stability threshold {fmt(t.value)} = {t.kind} (lr {fmt(t.lr)}, β {fmt(t.beta)}), "
                   f"for {what}")
    if res.preconditioned_top == res.preconditioned_top:  # not NaN
        click.echo(f"preconditioned sharpness λ1(P^-1/2 H P^-1/2) {fmt(res.preconditioned_top)}")
    a = res.alignment
    if a is not None:
        click.echo(f"gradient in the top-{a.k} eigenspace: full batch {pct(a.full_batch)}"
                   + (f", minibatch {pct(a.minibatch)}" if a.minibatch == a.minibatch else ""))
        if a.step_loss_change == a.step_loss_change:
            click.echo(f"one optimizer step changes the loss by {fmt(a.step_loss_change)}: its "
                       f"top-space part {fmt(a.step_loss_change_top)}, the rest "
                       f"{fmt(a.step_loss_change_bulk)} ({pct(a.step_top_fraction)} of ‖step‖² in "
                       "the top space)")
    if res.layers is not None:
        click.echo(f"{'layer':>12} {'size':>8} {'λ1':>12} {'trace':>12}")
        for b in res.layers.blocks:
            click.echo(f"{b.name:>12} {b.size:>8,} {fmt(b.top_eigenvalue, 12)} {fmt(b.trace, 12)}")
        if res.layers.heterogeneity == res.layers.heterogeneity:
            click.echo(f"block heterogeneity (mean Jensen-Shannon distance) "
                       f"{fmt(res.layers.heterogeneity)}")


def _print_result(res, top_k, bottom, trace_matvecs, tol) -> None:
    if top_k:
        click.echo(f"{'':>6} {'eigenvalue':>12} {'rel. residual':>14}")
        # relative to the spectrum's scale for an eigenvalue that is zero to within tol (a
        # flat direction): r / |λ| there is rounding over rounding, not the solver's accuracy
        floor = tol * float(np.max(np.abs(res.top_eigenvalues)))
        for i, (v, r) in enumerate(zip(res.top_eigenvalues, res.top_residuals)):
            scale = max(abs(float(v)), floor)
            rel = r / scale if scale > 0 else float("nan")
            click.echo(f"{f'λ{i + 1}':>6} {fmt(v, 12)} {fmt(rel, 14, digits=2)}")
    if bottom:
        click.echo(f"{'λmin':>6} {fmt(res.bottom_eigenvalue, 12)}")
    if trace_matvecs:
        click.echo(f"{'trace':>6} {fmt(res.trace, 12)} ± {fmt(res.trace_stderr, digits=2)} "
                   f"(Hutch++, {trace_matvecs} products; ± one standard error)")
    if top_k:
        click.echo(f"rel. residual: ‖Hv − λv‖ / |λ| of each eigenpair (‖v‖ = 1; / tol·max|λ| "
                   f"where |λ| is below that); converged where ≤ --tol {tol:g}")
    if res.measure is not None:
        _print_density(res.measure, tol)
    status = "converged" if res.converged else f"NOT converged to --tol {tol:g}"
    click.echo(f"{res.num_matvecs} Hessian-vector products, {seconds(res.seconds)}, {status}")


def _print_density(m, tol: float, bins: int = 60) -> None:
    """The SLQ density: its support, the mass clearly below zero, and a one-line plot
    of log10 density over a linear eigenvalue axis, with its scale."""
    lo, hi = m.support()
    grid = np.linspace(lo, hi, bins)
    sigma = (hi - lo) / 120 if hi > lo else None
    dens = m.density(grid, sigma=sigma)
    # "negative" beyond the probe's accuracy: tiny negative Ritz values of the bulk
    # around 0 are within tol * max|λ| of zero and are not counted
    cut = -tol * max(abs(lo), abs(hi))
    neg = float(np.sum(m.weights * (m.nodes < cut)) / m.num_vectors)
    click.echo(f"density (SLQ, {m.num_vectors} random vectors × {m.num_steps} Lanczos steps): "
               f"eigenvalues from {fmt(lo)} to {fmt(hi)}")
    click.echo(f"  mass below {fmt(cut)} (−tol·max|λ|): {pct(neg)} of the SLQ weight, "
               "negative beyond the probe's accuracy")
    floor = max(float(dens.min()), 1e-12 * float(dens.max()))
    click.echo(f"  {fmt(lo)} ▕{sparkline(dens)}▏ {fmt(hi)}")
    step = (hi - lo) / (bins - 1)
    click.echo(f"  height: log10 density per unit eigenvalue (σ {fmt(sigma)}), "
               f"'{SPARK_BARS[0]}' {fmt(floor, digits=2)} … '{SPARK_BARS[-1]}' "
               f"{fmt(dens.max(), digits=2)}; x: linear, step {fmt(step)}")


def _loss(model, loss_fn, X, y) -> float:
    import torch

    from spectra.utils.modes import eval_mode

    with eval_mode(model), torch.no_grad():
        return float(loss_fn(model(X), y))


def _fit(model, loss_fn, X, y, steps: int, progress: bool):
    """Full-batch Adam for ``steps`` steps; returns the final loss and the optimizer
    (``None`` when it took no step: it has no state)."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    it = range(steps)
    if progress and steps:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="fit", unit="step", leave=False)
    for _ in it:
        opt.zero_grad(set_to_none=True)
        out = loss_fn(model(X), y)
        if not torch.isfinite(out):
            raise FloatingPointError("the loss became non-finite while fitting")
        out.backward()
        opt.step()
    with torch.no_grad():
        return float(loss_fn(model(X), y)), (opt if steps else None)
