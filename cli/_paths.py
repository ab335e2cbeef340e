"""Output paths, checked before anything is computed or written: run files, figures,
checkpoint folders, and the run a probe row is appended to."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cli._errors import CLIError
from spectra.runs.paths import nearest_existing

RUN_SUFFIXES = (".h5", ".hdf5")
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def shown_path(path: str | os.PathLike) -> Path:
    """``path`` relative to the working directory when below it (as a user types it),
    else as it is."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def check_can_create(base: Path, path: Path) -> None:
    """A file can be created in the existing directory ``base`` (where ``path`` goes):
    tried with an unnamed temporary file, which leaves nothing behind. ``os.access``
    alone passes for root on a folder whose mode denies writing, and on a read-only
    or virtual file system (``/proc``, ``/sys``)."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise CLIError(f"cannot write {path}: no file can be created in {base} ({why})") from None


def check_run_file(out: str | os.PathLike) -> Path:
    """The output ``.h5`` path, checked before anything is computed or written: its
    suffix, its folder, and a name that leaves room for its journal's
    (:func:`spectra.runs.writer.check_run_file_name`)."""
    path = Path(out)
    if path.suffix.lower() not in RUN_SUFFIXES:
        raise CLIError(f"the run file must end in .h5 or .hdf5, got {str(path)!r}")
    if path.is_dir():
        raise CLIError(f"{path} is a directory; expected the path of a .h5 run file")
    from spectra.runs.store import StoreError
    from spectra.runs.writer import check_run_file_name

    try:  # a name that leaves no room for its journal's: refused before the model is built
        check_run_file_name(path)
    except StoreError as exc:
        raise CLIError(str(exc)) from None
    # the nearest existing ancestor must be a writable directory
    base = nearest_existing(path.parent)
    if base.exists() and not base.is_dir():
        raise CLIError(f"cannot write {path}: {base} is a file, not a directory")
    if base.exists() and not os.access(base, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write {path}: the directory {base} is not writable")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise CLIError(f"cannot write {path}: the file is not writable")
    if base.is_dir():
        check_can_create(base, path)
    return path


def existing_runs(path: Path) -> list[str]:
    """Run names already in ``path`` (read-only; [] when the file does not exist)."""
    if not path.exists():
        return []
    from spectra.runs.store import list_runs

    return list_runs(path)


def check_figure_output(output: str) -> Path:
    """The figure path, checked before anything is read or drawn."""
    path = Path(output)
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        found = f"suffix {path.suffix!r}" if path.suffix else "no suffix"
        raise CLIError(f"cannot save a figure to {path}: {found}; expected .png, .pdf or .svg")
    if path.is_dir():
        raise CLIError(f"{path} is a directory; expected the path of a figure file")
    base = nearest_existing(path.parent)
    if not base.is_dir():
        raise CLIError(f"cannot write {path}: {base} is a file, not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write {path}: the directory {base} is not writable")
    check_can_create(base, path)
    return path


def check_checkpoint_dir(path: Path) -> None:
    """Checkpoints can be written to the folder ``path`` (made when missing)."""
    base = nearest_existing(path)
    if not base.is_dir():
        raise CLIError(f"cannot write checkpoints to {path}: {base} is a file, not a directory")


def checkpoint_files(folder: Path | None) -> list[Path]:
    """The checkpoint files in ``folder`` (the names ``spectra train`` writes,
    :data:`spectra.runs.checkpoints.CHECKPOINT_GLOB`), sorted by name: by epoch; none
    when ``folder`` is ``None`` or not a directory."""
    from spectra.runs.checkpoints import CHECKPOINT_GLOB

    if folder is None or not folder.is_dir():
        return []
    return sorted(folder.glob(CHECKPOINT_GLOB))


def clear_checkpoints(folder: Path | None) -> None:
    """Remove the checkpoint files of ``folder`` (:func:`checkpoint_files`), those a new
    run started with ``--overwrite`` replaces: left there, a shorter new run's folder
    would also hold the old run's later epochs."""
    for path in checkpoint_files(folder):
        path.unlink(missing_ok=True)


def check_checkpoints_free(path: Path | None, overwrite: bool) -> None:
    """Refuse to start a new run whose checkpoint folder ``path`` already holds
    checkpoints (another run's, or those of a run whose file was deleted): the new run
    would write over them, epoch by epoch. ``overwrite`` (``--overwrite``) allows it;
    ``None`` (no checkpoints) always passes."""
    if overwrite:
        return
    found = checkpoint_files(path)
    if found:
        names = found[0].name if len(found) == 1 else f"{found[0].name} ... {found[-1].name}"
        raise CLIError(
            f"the checkpoint folder {path} already holds {len(found)} checkpoint"
            f"{'s' if len(found) > 1 else ''} ({names}) that this run would write over; "
            "pick another --checkpoint-dir (or --run, or --out), or pass --overwrite to "
            "replace them")


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


def check_append_target(path: str, run: str, top_k: int,
                        density: tuple[int, int] | None, *,
                        checkpoint: str | None = None, source: dict | None = None,
                        step: int | None = None, samples: int | None = None,
                        changed: Sequence[str] = ()) -> None:
    """Fail before probing when a probe row of these sizes could not be appended to
    run ``run`` of ``path``, or when it would mix another run's checkpoint into it:
    ``source`` is the ``run`` record (``id``, ``name``, ``file``) of the probed
    ``checkpoint``, whose id must be the run's own when it has one. (A model fitted
    here, with no checkpoint, is refused by ``probe`` itself.)

    The run's probe rows are one series, in step order, of its monitor's probe set: a
    row at ``step`` at or before the run's last probe (a duplicate, or out of order),
    or one measured on another probe set (``samples`` other than the monitor's, or the
    options ``changed``: a data set, model or subsample of one's own) is refused."""
    from spectra.runs.store import read_run

    if not Path(path).exists():
        raise CLIError(f"--append {path}: no such run file (create it with `spectra train`)")
    data = read_run(path, run)  # StoreError names a missing run or a non-run file
    if source and source.get("id") and data.run_id and source["id"] != data.run_id:
        from spectra.runs.checkpoints import run_file

        file = run_file({"run": source}, checkpoint) if checkpoint else None
        where = f"run {source.get('name')!r}" + (f" of {file}" if file else "")
        raise CLIError(
            f"--append {path} --run {run}: checkpoint {checkpoint} belongs to {where} (run id "
            f"{source['id']}), not to run {run!r} of {path} (id {data.run_id}); its probe would "
            "be mixed into another run's history. Append it to its own run, or probe without "
            "--append")
    p = data.probes
    if p.top_eigenvalues is not None and top_k > p.top_eigenvalues.shape[1]:
        raise CLIError(f"run {run!r} of {path} stores top-{p.top_eigenvalues.shape[1]} eigenvalues; "
                       f"--top-k {top_k} does not fit its rows (use --top-k {p.top_eigenvalues.shape[1]})")
    if density is not None and p.ritz_nodes is not None and (
            density[0] > p.ritz_nodes.shape[1] or density[1] > p.ritz_nodes.shape[2]):
        raise CLIError(f"run {run!r} of {path} stores densities of {tuple(p.ritz_nodes.shape[1:])} "
                       f"(probes, steps); --density-vectors/--density-steps {tuple(density)} do not fit")
    where = f"--append {path} --run {run}"
    if step is not None and p.step is not None and len(p.step) and step <= int(p.step[-1]):
        raise CLIError(
            f"{where}: the run's probes end at step {int(p.step[-1])}, and this checkpoint is at "
            f"step {step}; its rows are one series in step order, so a row at or before the last "
            "would repeat a step or read out of order. Probe without --append (--json keeps "
            "the numbers)")
    planned = (data.config.get("probe") or {}).get("samples")
    other = list(changed)
    if samples is not None and planned is not None and int(planned) != int(samples):
        other.insert(0, f"--samples {samples} (the monitor's: {planned})")
    if other:
        raise CLIError(
            f"{where}: the run's probe rows are measured on its monitor's probe set, and this "
            f"probe is not ({', '.join(other)}); its row would read as the same series. Probe "
            "without --append (--json keeps the numbers)")


def check_tensorboard_folder(tb_dir: str | os.PathLike | None, names: list[str]) -> None:
    """Refuse ``tb_dir``/NAME folders for runs ``names`` that cannot be made or written (a
    file in the way, no write permission), before any run file is touched: the
    TensorBoard writer makes its folder only at the first row."""
    if tb_dir is None:
        return
    for name in names:
        folder = Path(tb_dir) / name
        base = nearest_existing(folder)
        if not base.is_dir():
            raise CLIError(f"--tensorboard: cannot write to {folder}: {base} is a file, not a directory")
        if not os.access(base, os.W_OK | os.X_OK):
            raise CLIError(f"--tensorboard: cannot write to {folder}: {base} is not writable")


def check_tensorboard_runs(tb_dir: str | os.PathLike | None, names: list[str],
                           overwrite: bool) -> None:
    """For new runs ``names``: :func:`check_tensorboard_folder`, and refuse ``tb_dir``/NAME
    folders that already hold TensorBoard events (another run's, or an earlier run of
    that name): TensorBoard would show both as one run. ``overwrite`` (``--overwrite``)
    allows the latter; the new events then purge the old ones (``purge_step=0``)."""
    from spectra.runs.tensorboard import EVENT_FILE_PREFIX

    check_tensorboard_folder(tb_dir, names)
    if tb_dir is None or overwrite:
        return
    taken = [str(Path(tb_dir) / n) for n in names
             if (Path(tb_dir) / n).is_dir() and any((Path(tb_dir) / n).glob(EVENT_FILE_PREFIX + "*"))]
    if taken:
        raise CLIError(f"--tensorboard: {', '.join(taken)} already hold"
                       f"{'s' if len(taken) == 1 else ''} TensorBoard events; choose another "
                       "folder (or --run), or --overwrite replaces them (their events are purged)")
