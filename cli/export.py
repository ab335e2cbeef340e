"""``spectra export``: a run file's tables as CSV files, for pandas, R or a spreadsheet."""

from __future__ import annotations

from pathlib import Path

import click

from cli._errors import CLIError, handle_errors


@click.command()
@click.argument("run_file", metavar="RUN_FILE", type=click.Path(exists=True, dir_okay=False))
@click.option("--run", "runs", multiple=True, metavar="NAME",
              help="Run to export (repeatable)  [default: every run of the file].")
@click.option("--csv", "csv_dir", required=True, metavar="DIR",
              type=click.Path(file_okay=False),
              help="Folder of the CSV files (created when missing).")
@click.option("--overwrite", is_flag=True, help="Replace CSV files that exist.")
@handle_errors
def export(run_file: str, runs: tuple[str, ...], csv_dir: str, overwrite: bool) -> None:
    """Write a run file's metrics, probe scalars and densities as CSV files.

    Three files in DIR, named after RUN_FILE, each with a `run` column first:
    STEM.metrics.csv (one line per metrics row), STEM.probes.csv (one line per
    probe: step, epoch, top_eigenvalues_1 = λ1 ... top_eigenvalues_k,
    bottom_eigenvalue, trace, ...) and STEM.density.csv (the raw SLQ measure in
    long format: run, step, epoch, vector, node, weight; the density of a probe
    averages sum(weight * delta(x - node)) over its vectors). An empty field is
    a value the row did not give. Existing files are an error unless --overwrite.

    In Python: spectra.runs.read_run(path, name).metrics.to_pandas() (or
    .to_dict() for numpy arrays), and .probes.density_long().

    Examples:
      spectra export runs/demo.h5 --csv runs/csv
      spectra export runs/cmp.h5 --run sgd --run dcao --csv runs/csv --overwrite
    """
    from spectra.runs.export import export_csv
    from spectra.runs.store import list_runs

    have = list_runs(run_file)
    for name in runs:
        if name not in have:
            from spectra.utils.checks import did_you_mean

            raise CLIError(f"--run {name}: no run of that name in {run_file}."
                           f"{did_you_mean(name, have)} Runs: {', '.join(have) or 'none'}")
    try:
        written = export_csv(run_file, csv_dir, list(runs) or None, overwrite=overwrite)
    except FileExistsError as exc:
        raise CLIError(f"{exc} (--overwrite replaces them)") from None
    for table, (path, lines) in written.items():
        click.echo(f"{table:>8}: {_shown(path)}  ({lines} lines)")
    if "density" not in written:
        click.echo(" density: none recorded (no probe with --density)")


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
