"""``spectra probe``: the Hessian spectrum of one model state, as a table or JSON."""

from __future__ import annotations

import click
import numpy as np

from cli._common import CLIError, echo_json, fmt, handle_errors, show_progress


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
@click.option("--model", "model_name", default="mlp", show_default=True, help="Model registry name.")
@click.option("--model-arg", multiple=True, metavar="KEY=VALUE", help="Model keyword argument (repeatable).")
@click.option("--data", "data_name", default="digits", show_default=True, help="Data set registry name.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Directory of a file-based data set.")
@click.option("--fit-steps", default=50, show_default=True, type=click.IntRange(min=0),
              help="Full-batch Adam steps before the probe (0 probes the initialization).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--samples", "n_samples", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Training samples the Hessian averages over.")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=0))
@click.option("--bottom/--no-bottom", default=True, show_default=True, help="Also the most negative eigenvalue.")
@click.option("--tol", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--trace-matvecs", default=60, show_default=True, type=click.IntRange(min=0),
              help="Hutch++ budget (0: no trace).")
@click.option("--density/--no-density", default=False, show_default=True, help="SLQ spectral density.")
@click.option("--density-probes", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--density-steps", default=80, show_default=True, type=click.IntRange(min=1))
@click.option("--float64", "use_float64", is_flag=True, help="Compute in float64.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a table.")
@handle_errors
def probe(model_name, model_arg, data_name, data_dir, fit_steps, seed, n_samples, top_k, bottom, tol,
          trace_matvecs, density, density_probes, density_steps, use_float64, as_json):
    """Probe the Hessian spectrum of a model on a data set.

    Builds the model from the registry, fits it briefly with full-batch Adam,
    and prints the top-k eigenvalues, the most negative one, the trace and a
    summary of the spectral density.
    """
    import torch
    from torch import nn

    from spectra.data import load_dataset
    from spectra.models import build_model
    from spectra.probe import ProbeSettings
    from spectra.probe import probe as run_probe

    torch.manual_seed(seed)
    ds = load_dataset(data_name, data_dir=data_dir, seed=seed)
    kwargs = parse_kv(model_arg, "--model-arg")
    model = build_model(model_name, input_shape=ds.input_shape, num_classes=ds.num_classes, **kwargs)
    loss_fn = nn.CrossEntropyLoss() if ds.task == "classification" else nn.MSELoss()
    X, y = ds.train_x[:n_samples], ds.train_y[:n_samples]
    fit_loss = _fit(model, loss_fn, X, y, fit_steps, progress=show_progress(as_json))
    settings = ProbeSettings(
        top_k=top_k, bottom=bottom, tol=tol, trace_matvecs=trace_matvecs,
        density=(density_probes, density_steps) if density else None, seed=seed,
        dtype="float64" if use_float64 else None,
    )
    res = run_probe(model, loss_fn, (X, y), settings)
    if as_json:
        out = res.to_dict()
        out.update({"model": model_name, "data": data_name, "num_params": sum(p.numel() for p in model.parameters()),
                    "num_samples": int(len(y)), "loss": fit_loss})
        echo_json(out)
        return
    P = sum(p.numel() for p in model.parameters())
    click.echo(f"model {model_name} ({P:,} parameters) on {data_name}, {len(y)} samples, loss {fit_loss:.4f}")
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
        neg = float(np.sum(m.weights * (m.nodes < 0)) / m.num_probes)
        click.echo(f"density: support [{fmt(lo, 0)}, {fmt(hi, 0)}], mass below 0: {neg:.1%}, "
                   f"n_v={m.num_probes}, m={m.num_steps}")
        click.echo(f"  {fmt(lo, 0)} {sparkline(dens)} {fmt(hi, 0)}  (log density)")
    status = "converged" if res.converged else f"NOT converged to tol={tol:g}"
    click.echo(f"{res.num_hvps} Hessian-vector products, {res.seconds:.2f} s, {status}")


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
