"""``spectra landscape``: the loss along Hessian eigenvectors or random directions."""

from __future__ import annotations

import click
import numpy as np

from cli._errors import CLIError, handle_errors
from cli._options import POSITIVE, SEED, TOL, device_option, parse_kv
from cli._output import echo_json, quiet
from cli._paths import check_figure_output
from cli._restore import restore


@click.command()
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), metavar="CKPT",
              help="A checkpoint written by `spectra train`.")
@click.option("--directions", type=click.Choice(("top", "bottom", "extremes", "random")),
              default="top", show_default=True,
              help="Hessian eigenvectors (unit norm) of the largest eigenvalues (top), the "
                   "most negative (bottom), or the top one and the most negative one "
                   "(extremes, --dims 2: a saddle's plane); random: filter-normalized "
                   "Gaussian directions (Li et al. 2018).")
@click.option("--dims", type=click.IntRange(1, 2), default=1, show_default=True,
              help="1: a line through the weights; 2: a plane.")
@click.option("--span", default=1.0, show_default=True,
              type=POSITIVE,
              help="The grid covers [-span, span] along each direction.")
@click.option("--points", default=21, show_default=True, type=click.IntRange(min=3),
              help="Grid points per direction (odd, so the weights themselves are on the grid).")
@click.option("--samples", type=click.IntRange(min=1),
              help="Training samples the loss averages over  [default: the run's probe set].")
@click.option("--tol", default=1e-3, show_default=True, type=TOL,
              help="Eigensolver tolerance (top).")
@click.option("--seed", default=0, show_default=True, type=SEED,
              help="Seed of the random directions / the eigensolver's start.")
@click.option("--model", "model_name", help="Replace the checkpoint's model (registry name).")
@click.option("--model-arg", multiple=True, metavar="KEY=VALUE", help="Model option (repeatable).")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Where the checkpoint's file-based data set now lies.")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Figure file: .png, .pdf or .svg.")
@click.option("--json", "as_json", is_flag=True, help="Print the grid and losses as JSON.")
@device_option
@handle_errors
def landscape(checkpoint, directions, dims, span, points, samples, tol, seed, model_name,
              model_arg, data_dir, output, as_json, device):
    """The loss around a checkpoint's weights, along its Hessian eigenvectors (the top,
    the most negative, or both as a plane) or random filter-normalized directions, on
    a 1-D or 2-D grid.

    \b
    Examples:
      spectra landscape --checkpoint CKPT -o landscape.png
      spectra landscape --checkpoint CKPT --directions random --dims 2 --span 0.5 -o plane.png
      spectra landscape --checkpoint CKPT --directions extremes --dims 2 -o saddle.png
      spectra landscape --checkpoint CKPT --device cuda --json
    """
    from spectra.landscape import describe_directions, eigenvalue_names, loss_landscape

    if directions == "extremes" and dims != 2:
        raise CLIError("--directions extremes (the top and the most negative eigenvector) "
                       f"spans a plane: pass --dims 2, got --dims {dims}")

    if points % 2 == 0:
        raise CLIError(f"--points must be odd so that the weights themselves are on the grid, got {points}")
    if output is None and not as_json:
        raise CLIError("give -o FIG.png for a figure, --json for the numbers, or both")
    path = check_figure_output(output) if output is not None else None
    from cli._build import run_device

    r = restore(checkpoint, model_name=model_name, model_args=parse_kv(model_arg, "--model-arg"),
                data_dir=data_dir, device=run_device(device))
    n = samples or (r.probe.samples if r.probe is not None else 512)
    X, y = r.ds.train_x[:n], r.ds.train_y[:n]
    land = loss_landscape(r.model, r.loss_fn, (X, y), directions=directions, dims=dims, span=span,
                          points=points, tol=tol, seed=seed)
    epoch = int(r.ckpt["epoch"])
    title = f"Loss landscape of {r.model_desc} on {r.ds.name}, epoch {epoch}"
    if path is not None:
        from spectra.plots import plot_landscape, save_figure

        save_figure(plot_landscape(land, title=title), path)
    if as_json:
        out = land.to_dict()
        out.update({"checkpoint": str(checkpoint), "epoch": epoch, "step": int(r.ckpt["step"]),
                    "num_samples": len(y), "span": span, "points": points,
                    "figure": None if path is None else str(path)})
        echo_json(out)
        return
    if quiet():
        return
    finite = np.isfinite(land.losses)
    lo, hi = float(land.losses[finite].min()), float(land.losses[finite].max())
    click.echo(f"{title}: {dims}-D, {describe_directions(directions, dims)}, {points} points per "
               f"direction over [-{span:g}, {span:g}], {len(y)} samples")
    if land.eigenvalues is not None:
        names = eigenvalue_names(directions, dims)
        click.echo("eigenvalues: " + ", ".join(
            f"{n} = {v:.4g}" for n, v in zip(names, land.eigenvalues, strict=True)))
    bad = int(finite.size - finite.sum())
    click.echo(f"loss at the weights {land.center_loss:.4g}; on the grid from {lo:.4g} to {hi:.4g}"
               + (f" where finite; NaN or Inf at {bad} of {finite.size} points (a smaller --span "
                  "keeps to finite losses)" if bad else ""))
    if path is not None:
        click.echo(f"wrote {path}")

