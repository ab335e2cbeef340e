"""``spectra probe``: the Hessian spectrum of one model state, as a table or JSON."""

from __future__ import annotations

import click
import numpy as np
from click.core import ParameterSource

from cli._common import SEED, TOL, CLIError, echo_json, fmt, handle_errors, show_progress


def parse_kv(pairs: tuple[str, ...], what: str) -> dict:
    """``("a=1", "b=relu", "w=32,32")`` -> ``{"a": 1, "b": "relu", "w": (32, 32)}``."""
    out: dict = {}
    for item in pairs:
        if "=" not in item:
            raise CLIError(f"{what} {item!r} is not key=value")
        key, raw = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key:
            raise CLIError(f"{what} {item!r} has an empty key")
        out[key] = _parse_value(raw.strip())
    return out


def _parse_value(raw: str):
    if "," in raw:
        return tuple(_parse_value(x) for x in raw.split(",") if x)
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def sparkline(values: np.ndarray) -> str:
    """A one-line bar chart of non-negative ``values`` (log-scaled heights)."""
    bars = " ▁▂▃▄▅▆▇█"
    v = np.log10(np.maximum(values, 1e-12 * max(values.max(), 1e-300)))
    lo, hi = v.min(), v.max()
    if hi - lo < 1e-12:
        return bars[-1] * len(values)
    idx = np.round((v - lo) / (hi - lo) * (len(bars) - 1)).astype(int)
    return "".join(bars[i] for i in idx)


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
@click.option("--append", "append_to", type=click.Path(dir_okay=False), metavar="RUN.h5",
              help="Append the probe as a row of a run in this file.")
@click.option("--run", "run_name",
              help="The run --append adds the row to  [default: the checkpoint's run].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a table.")
@click.pass_context
@handle_errors
def probe(ctx, checkpoint, model_name, model_arg, data_name, data_arg, data_dir, fit_steps, seed,
          n_samples, top_k, bottom, tol, trace_matvecs, density, density_vectors, density_steps,
          use_float64, append_to, run_name, as_json):
    """Probe the Hessian spectrum of a model on a data set.

    With --checkpoint, rebuilds the model of a `spectra train` checkpoint, loads
    its weights and probes it on the same probe set (the first N training samples)
    with the same settings as the run's monitor, so the numbers repeat the
    monitor's. Without, builds the model from the registry and fits it briefly
    with full-batch Adam.

    Prints the top-k eigenvalues, the most negative one, the trace and a summary
    of the spectral density; --append adds the probe to a run of an HDF5 file.

    \b
    Examples:
      spectra probe --checkpoint runs/demo_ckpt/dcao/checkpoint-epoch0005.pt
      spectra probe --checkpoint CKPT --density --append runs/demo.h5 --json
      spectra probe --model mlp --data digits --fit-steps 50 --top-k 5 --density
    """
    import torch

    from spectra.runs.monitor import SpectralMonitor

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) != ParameterSource.DEFAULT

    if trace_matvecs and trace_matvecs < 4:
        raise CLIError(f"--trace-matvecs must be 0 or at least 4, got {trace_matvecs}")
    step, epoch, run_default = fit_steps, None, None
    info: dict = {}
    if checkpoint is not None:
        from cli._training import restore

        if given("fit_steps"):
            raise CLIError("--fit-steps does not apply with --checkpoint: the checkpoint's weights are probed")
        r = restore(
            checkpoint,
            model_name=model_name if given("model_name") else None,
            model_args=parse_kv(model_arg, "--model-arg"),
            data_name=data_name if given("data_name") else None,
            data_args=parse_kv(data_arg, "--data-arg"), data_dir=data_dir,
        )
        model, ds, loss_fn = r.model, r.ds, r.loss_fn
        plan = r.probe
        if plan is not None:  # the monitor's settings, unless given here
            top_k = top_k if given("top_k") else plan.top_k
            bottom = bottom if given("bottom") else plan.bottom
            tol = tol if given("tol") else plan.tol
            trace_matvecs = trace_matvecs if given("trace_matvecs") else plan.trace_matvecs
            if not given("density") and plan.density is not None:
                density = True
            if not given("density_vectors") and plan.density is not None:
                density_vectors = plan.density[0]
            if not given("density_steps") and plan.density is not None:
                density_steps = plan.density[1]
            n_samples = n_samples or plan.samples
        if not given("seed"):
            seed = int(r.config.get("seed", 0))
        step, epoch = int(r.ckpt["step"]), float(r.ckpt["epoch"])
        run_default = (r.ckpt.get("run") or {}).get("name")
        n_samples = n_samples or 512
        model_label = r.model_desc
        info = {"checkpoint": str(checkpoint), "step": step, "epoch": epoch}
    else:
        from spectra.registries.data import load_dataset
        from spectra.registries.models import build_model

        torch.manual_seed(seed)
        ds = load_dataset(data_name, data_dir=data_dir, seed=seed, **parse_kv(data_arg, "--data-arg"))
        from cli._training import sequence_args

        kwargs = sequence_args(model_name, parse_kv(model_arg, "--model-arg"))
        model = build_model(model_name, input_shape=ds.input_shape, num_classes=ds.num_classes, **kwargs)
        loss_fn = nn_loss(ds.task)
        model_label = model_name
        n_samples = n_samples or 1000
    X, y = ds.train_x[:n_samples], ds.train_y[:n_samples]

    # settings the model rules out fail here, before any fitting, probing or appending
    top_k, dens = fit_probe_size(model, top_k, (density_vectors, density_steps) if density else None,
                                 {n for n in ("top_k", "density_steps") if given(n)})
    mon = SpectralMonitor(
        model, loss_fn, (X, y), None, top_k=top_k, bottom=bottom, tol=tol, trace=trace_matvecs,
        density=dens, seed=seed, dtype="float64" if use_float64 else None,
        progress=show_progress(as_json),
    )
    run_name = run_name or run_default
    if append_to is not None:
        if run_name is None:
            raise CLIError("--append needs --run NAME: which run of the file gets the row")
        _check_append(append_to, run_name, top_k, dens)
    if checkpoint is None:
        fit_loss = _fit(model, loss_fn, X, y, fit_steps, progress=show_progress(as_json))
    else:
        fit_loss = _loss(model, loss_fn, X, y)
    # the monitor's probe: its random vectors are seeded by (seed, step) like in training
    res = mon.probe(step=step, epoch=epoch)
    if append_to is not None:
        from spectra.runs.store import RunStore

        with RunStore(append_to) as store:
            row_index = store.open_run(run_name).append_probe(mon.row(res, step=step, epoch=epoch))
        info["appended"] = {"file": str(append_to), "run": run_name, "row": row_index}
    P = sum(p.numel() for p in model.parameters())
    if as_json:
        out = res.to_dict()
        out.update({"model": model_label, "data": ds.name, "num_params": P,
                    "num_samples": len(y), "loss": fit_loss, "seed": seed, **info})
        echo_json(out)
        return
    where = f" at epoch {epoch:g} (step {step}) of {checkpoint}" if checkpoint else ""
    click.echo(f"model {model_label} ({P:,} parameters){where}")
    click.echo(f"probe set: the first {len(y)} training samples of {ds.name}, loss {fit_loss:.4f} "
               f"({res.reduction}-reduced over samples)")
    _print_result(res, top_k, bottom, trace_matvecs, tol)
    if "appended" in info:
        a = info["appended"]
        click.echo(f"appended as probe row {a['row']} of run {a['run']!r} in {a['file']}")


def fit_probe_size(model, top_k: int, density: tuple[int, int] | None,
                   given: set[str] | frozenset[str]) -> tuple[int, tuple[int, int] | None]:
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


def nn_loss(task: str):
    from torch import nn

    return nn.CrossEntropyLoss() if task == "classification" else nn.MSELoss()


def _check_append(path: str, run: str, top_k: int, density) -> None:
    """Fail before probing when the row could not be appended."""
    from pathlib import Path

    from spectra.runs.store import read_run

    if not Path(path).exists():
        raise CLIError(f"--append {path}: no such run file (create it with `spectra train`)")
    data = read_run(path, run)  # StoreError names a missing run or a non-run file
    p = data.probes
    if p.top_eigenvalues is not None and top_k > p.top_eigenvalues.shape[1]:
        raise CLIError(f"run {run!r} of {path} stores top-{p.top_eigenvalues.shape[1]} eigenvalues; "
                       f"--top-k {top_k} does not fit its rows (use --top-k {p.top_eigenvalues.shape[1]})")
    if density is not None and p.ritz_nodes is not None and (
            density[0] > p.ritz_nodes.shape[1] or density[1] > p.ritz_nodes.shape[2]):
        raise CLIError(f"run {run!r} of {path} stores densities of {tuple(p.ritz_nodes.shape[1:])} "
                       f"(probes, steps); --density-vectors/--density-steps {tuple(density)} do not fit")


def _print_result(res, top_k, bottom, trace_matvecs, tol) -> None:
    rows = [(f"λ{i + 1}", v, r) for i, (v, r) in enumerate(zip(res.top_eigenvalues, res.top_residuals))]
    if top_k:
        click.echo(f"{'':>6} {'eigenvalue':>12} {'residual':>10}")
        for name, v, r in rows:
            click.echo(f"{name:>6} {v:12.6g} {r:10.2g}")
    if bottom:
        click.echo(f"{'λmin':>6} {res.bottom_eigenvalue:12.6g}")
    if trace_matvecs:
        click.echo(f"{'trace':>6} {res.trace:12.6g} ± {res.trace_stderr:.3g} (Hutch++, {trace_matvecs} products)")
    if res.measure is not None:
        m = res.measure
        lo, hi = m.support()
        grid = np.linspace(lo, hi, 60)
        dens = m.density(grid, sigma=(hi - lo) / 120 if hi > lo else None)
        # "negative" beyond the probe's accuracy: tiny negative Ritz values of the bulk
        # around 0 are within tol * lambda_max of zero and are not counted
        cut = -tol * max(abs(lo), abs(hi))
        neg = float(np.sum(m.weights * (m.nodes < cut)) / m.num_vectors)
        click.echo(f"density: support [{fmt(lo, 0)}, {fmt(hi, 0)}], mass below {fmt(cut, 0)}: {neg:.1%}, "
                   f"n_v={m.num_vectors}, m={m.num_steps}")
        click.echo(f"  {fmt(lo, 0)} {sparkline(dens)} {fmt(hi, 0)}  (log density)")
    status = "converged" if res.converged else f"NOT converged to tol={tol:g}"
    click.echo(f"{res.num_matvecs} Hessian-vector products, {res.seconds:.2f} s, {status}")


def _loss(model, loss_fn, X, y) -> float:
    import torch

    from spectra.utils.modes import eval_mode

    with eval_mode(model), torch.no_grad():
        return float(loss_fn(model(X), y))


def _fit(model, loss_fn, X, y, steps: int, progress: bool) -> float:
    """Full-batch Adam for ``steps`` steps; returns the final loss."""
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
        return float(loss_fn(model(X), y))
