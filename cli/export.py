"""``spectra export``: a run file's tables as CSV files (pandas, R, a spreadsheet) or
TensorBoard event files."""

from __future__ import annotations

import click

from cli._errors import CLIError, handle_errors
from cli._paths import check_tensorboard_runs, shown_path


@click.command()
@click.argument("run_file", metavar="RUN_FILE", type=click.Path(exists=True, dir_okay=False))
@click.option("--run", "runs", multiple=True, metavar="NAME",
              help="Run to export (repeatable)  [default: every run of the file].")
@click.option("--csv", "csv_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Folder of the CSV files (created when missing).")
@click.option("--tensorboard", "tb_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Also (or instead) write TensorBoard event files, in DIR/RUN (needs pip "
                   "install tensorboard).")
@click.option("--overwrite", is_flag=True,
              help="Replace CSV files, and TensorBoard folders of the runs, that exist (and "
                   "remove an earlier export's density CSV when these runs have no density).")
@handle_errors
def export(run_file: str, runs: tuple[str, ...], csv_dir: str | None, tb_dir: str | None,
           overwrite: bool) -> None:
    """Write a run file's metrics, probe scalars and densities as CSV files.

    Three files in DIR, named after RUN_FILE, each with a `run` column first:
    STEM.metrics.csv (one line per metrics row), STEM.probes.csv (one line per
    probe: step, epoch, top_eigenvalues_1 = λ1 ... top_eigenvalues_k,
    bottom_eigenvalue, trace, ...) and STEM.density.csv (the raw SLQ measure in
    long format: run, step, epoch, vector, node, weight; the density of a probe
    averages sum(weight * delta(x - node)) over its vectors). An empty field is
    a value the row did not give. Existing files are an error unless --overwrite.

    A run trained with --layers has one probes column per block, named after the
    block (layer_trace_BLOCK, ...); with --layer-density, STEM.layer_density.csv
    holds each block's measure in the same long format with a `layer` column.

    --tensorboard DIR writes the same rows as TensorBoard events (scalars, and
    each probe's density as a histogram), as `spectra train --tensorboard` does.

    In Python: spectra.runs.read_run(path, name).metrics.to_pandas() (or
    .to_dict() for numpy arrays), and .probes.density_long().

    \b
    Examples:
      spectra export runs/demo.h5 --csv runs/csv
      spectra export runs/cmp.h5 --run sgd --run dcao --csv runs/csv --overwrite
      spectra export runs/cmp.h5 --tensorboard runs/tb
    """
    from spectra.runs.export import export_csv
    from spectra.runs.store import list_runs

    if csv_dir is None and tb_dir is None:
        raise CLIError("nothing to write: give --csv DIR and/or --tensorboard DIR")

    have = list_runs(run_file)
    if not have:  # else --tensorboard alone would write nothing and say 'view: ...'
        raise CLIError(f"{run_file} holds no runs; nothing to export")
    for name in runs:
        if name not in have:
            from spectra.utils.checks import did_you_mean

            raise CLIError(f"--run {name}: no run of that name in {run_file}."
                           f"{did_you_mean(name, have)} Runs: {', '.join(have) or 'none'}")
    names = list(dict.fromkeys(runs)) or have  # a run named twice is written once
    if tb_dir is not None:
        _check_tensorboard(tb_dir, names, overwrite)
    if csv_dir is not None:
        try:
            written = export_csv(run_file, csv_dir, names, overwrite=overwrite)
        except FileExistsError as exc:
            raise CLIError(f"{exc} (--overwrite replaces them)") from None
        width = max(8, *map(len, written))
        for table, (path, lines) in written.items():
            click.echo(f"{table:>{width}}: {shown_path(path)}  ({lines} lines)")
        if "density" not in written:
            click.echo(f"{'density':>{width}}: none recorded (no probe with --density)")
    if tb_dir is not None:
        from spectra.runs.store import read_run
        from spectra.runs.tensorboard import log_run

        for name in names:
            folder = log_run(read_run(run_file, name), tb_dir)
            click.echo(f"tensorboard: {shown_path(folder)}")
        click.echo(f"view: tensorboard --logdir {tb_dir}")


def _check_tensorboard(tb_dir: str, names: list[str], overwrite: bool) -> None:
    """Refuse --tensorboard before anything is written: tensorboard missing, or a
    run's folder holding events already (without --overwrite)."""
    from spectra.runs.tensorboard import check_tensorboard

    try:
        check_tensorboard()
    except ImportError as exc:
        raise CLIError(f"--tensorboard: {exc}") from None
    check_tensorboard_runs(tb_dir, names, overwrite)


