"""Runs outside spectra: a run file's tables as CSV files.

:func:`export_csv` writes, for the chosen runs of one file, three CSV files that
any tool reads (pandas, R, a spreadsheet), each with a ``run`` column first:

``<stem>.metrics.csv``
    one line per metrics row: ``run``, the standard columns (``step``, ``epoch``,
    ``train_loss``, ..., ``seconds``), then every extra column of any run.
``<stem>.probes.csv``
    one line per probe: ``run``, ``step``, ``epoch``, ``top_eigenvalues_1`` (λ1, the
    largest) ... ``top_eigenvalues_k``, ``bottom_eigenvalue``, ``trace``, ...: the
    probe scalars (:meth:`~spectra.runs.reader.Probes.to_dict` with ``flat=True``).
``<stem>.density.csv``
    the raw SLQ measure in long format, one line per (run, probe, random vector,
    Ritz node): ``run``, ``step``, ``epoch``, ``vector``, ``node``, ``weight``
    (:meth:`~spectra.runs.reader.Probes.density_long`); written only when a run
    recorded a density.
``<stem>.layer_density.csv``
    the raw SLQ measure of each block (``train --layers ... --layer-density``) in the
    same long format with a ``layer`` column: ``run``, ``step``, ``epoch``, ``layer``,
    ``vector``, ``node``, ``weight``; written only when a run recorded one.

The per-block columns of a run probed with ``layers=...`` (``layer_top_eigenvalue``,
``layer_trace``, ``layer_trace_stderr``, one value per block) are written as one
column per block named after the block: ``layer_trace_<block>``, ``<block>`` the run
config's ``probe.layer_names`` entry (``3``, ``features.0.weight``) with any character
other than letters, digits, ``_``, ``.`` and ``-`` replaced by ``_``; the block's
position (1, 2, ...) where the config names no blocks, or its names do not tell the
columns apart. The ``layer`` column of ``layer_density.csv`` holds the same names.

A value a row did not give (NaN) is an empty field, which pandas and R read as
missing; floats are written with the digits that read back to the same float64.
Existing files are refused unless ``overwrite``. ``<stem>`` is the run file's name
without ``.h5``, so several run files can be exported into one folder.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from spectra.runs.format import StoreError
from spectra.runs.reader import RunData, list_runs, long_measure, put_column, read_run

__all__ = ["TABLES", "block_labels", "csv_paths", "export_csv", "write_csv"]

TABLES: tuple[str, ...] = ("metrics", "probes", "density", "layer_density")


def csv_paths(path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """table -> the CSV file :func:`export_csv` writes for it (see the module docstring)."""
    stem = Path(path).name.removesuffix(".h5").removesuffix(".hdf5")
    return {table: Path(out_dir) / f"{stem}.{table}.csv" for table in TABLES}


def export_csv(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    runs: Sequence[str] | None = None,
    *,
    overwrite: bool = False,
) -> dict[str, tuple[Path, int]]:
    """Write the metrics, probe scalars and densities of runs of a file as CSV.

    Args:
        path: the run file (``.h5``); read without a lock, so it may be written
            meanwhile (the committed rows at the time of reading are exported).
        out_dir: folder of the CSV files (created when missing).
        runs: names of the runs to export, in this order; ``None``: every run, in
            creation order.
        overwrite: replace CSV files that exist; otherwise they are an error. A CSV
            of a table this export has no rows for (``density`` or ``layer_density``,
            when no chosen run recorded one) left by an earlier export is then removed, so that the folder
            never pairs this export's tables with an older density.

    Returns:
        table -> (CSV file, number of data lines), for the files written
        (``density`` and ``layer_density`` are absent when no chosen run recorded
        one).

    Raises:
        StoreError: a name in ``runs`` that the file does not hold (the message
            lists its runs), or no runs to export.
        FileExistsError: a CSV file exists and ``overwrite`` is false (nothing
            is written).
    """
    have = list_runs(path)
    names = list(have) if runs is None else list(dict.fromkeys(runs))
    missing = [n for n in names if n not in have]
    if missing:
        raise StoreError(f"{path} has no run {missing[0]!r}; runs: {', '.join(have) or 'none'}")
    if not names:
        raise StoreError(f"{path} holds no runs; nothing to export")
    data = [read_run(path, n) for n in names]
    tables = {
        "metrics": [(r.name, r.metrics.to_dict(flat=True)) for r in data],
        "probes": [(r.name, _probe_columns(r)) for r in data],
        "density": [(r.name, r.probes.density_long()) for r in data if _has_density(r)],
        "layer_density": [(r.name, _layer_density_long(r)) for r in data
                          if _has_layer_density(r)],
    }
    targets = {t: p for t, p in csv_paths(path, out_dir).items() if tables[t]}
    if not overwrite:
        exist = [str(p) for p in targets.values() if p.exists()]
        if exist:
            raise FileExistsError(
                f"{', '.join(exist)} already exist{'s' if len(exist) == 1 else ''}; "
                "choose another folder or allow overwriting"
            )
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    written = {t: (p, write_csv(p, tables[t])) for t, p in targets.items()}
    if overwrite:
        for t, p in csv_paths(path, out_dir).items():
            if t not in targets and p.exists():
                p.unlink()
    return written


def _grouped(names: list[str]) -> list[str]:
    """``names`` in their order, except that the numbered entries ``base_1, base_2, ...``
    of one base (two or more of them) come together, by index, where the first was."""
    numbered: dict[str, list[tuple[int, str]]] = {}
    for n in names:
        m = re.fullmatch(r"(.+)_(\d+)", n)
        if m:
            numbered.setdefault(m.group(1), []).append((int(m.group(2)), n))
    out: list[str] = []
    placed: set[str] = set()
    for n in names:
        if n in placed:
            continue
        m = re.fullmatch(r"(.+)_(\d+)", n)
        group = numbered.get(m.group(1), []) if m else []
        members = [g for _, g in sorted(group)] if len(group) > 1 else [n]
        out.extend(members)
        placed.update(members)
    return out


def _has_density(run: RunData) -> bool:
    nodes = run.probes.ritz_nodes
    return nodes is not None and bool(np.isfinite(nodes).any())


# the probe columns of a run probed with layers=...: (n, B), one value per block
_BLOCK_PREFIX = "layer_"
_LAYER_DENSITY = ("layer_ritz_nodes", "layer_ritz_weights")


def block_labels(run: RunData, count: int) -> list[str]:
    """The CSV names of a run's ``count`` blocks: the run config's ``probe.layer_names``
    with any character other than letters, digits, ``_``, ``.`` and ``-`` replaced by
    ``_`` (``3``, ``features.0.weight``); ``1 .. count`` (the positions) when the
    config names no ``count`` blocks, or two names would read the same."""
    probe = run.config.get("probe") if isinstance(run.config, Mapping) else None
    names = probe.get("layer_names") if isinstance(probe, Mapping) else None
    if isinstance(names, list | tuple) and len(names) == count:
        labels = [re.sub(r"[^\w.-]", "_", str(n)) for n in names]
        if all(labels) and len(set(labels)) == count:
            return labels
    return [str(j + 1) for j in range(count)]


def _probe_columns(run: RunData) -> dict[str, np.ndarray]:
    """The probe table's 1-D columns (:meth:`~spectra.runs.reader.Probes.to_dict` with
    ``flat=True``), the per-block ones named after the blocks (:func:`block_labels`)
    instead of numbered by position."""
    out: dict[str, np.ndarray] = {}
    for name, a in run.probes.to_dict().items():
        if a.ndim == 1:
            put_column(out, name, a)
        elif a.ndim == 2:
            labels = (block_labels(run, a.shape[1]) if name.startswith(_BLOCK_PREFIX)
                      else [str(j + 1) for j in range(a.shape[1])])
            for j, label in enumerate(labels):
                put_column(out, f"{name}_{label}", a[:, j])
    return out


def _has_layer_density(run: RunData) -> bool:
    p = run.probes
    if not all(c in p.extra for c in _LAYER_DENSITY):
        return False
    nodes = np.asarray(p.extra["layer_ritz_nodes"])
    return nodes.ndim == 4 and bool(np.isfinite(nodes).any())


def _layer_density_long(run: RunData) -> dict[str, np.ndarray]:
    """Each block's SLQ measure in long format, as
    :meth:`~spectra.runs.reader.Probes.density_long` with a ``layer`` column (the
    block's name, :func:`block_labels`): one row per (probe, block, random vector, Ritz
    node); NaN padding is dropped."""
    p = run.probes
    nodes = p.extra["layer_ritz_nodes"]
    out = long_measure(p.step, p.epoch, nodes, p.extra["layer_ritz_weights"], ("layer", "vector"))
    out["layer"] = np.array(block_labels(run, np.shape(nodes)[1]), dtype=object)[out["layer"]]
    return out


def write_csv(path: Path, runs: Iterable[tuple[str, Mapping[str, np.ndarray]]]) -> int:
    """Write the 1-D columns of several runs as one CSV file with a ``run`` column.

    The header is ``run`` then the union of the runs' columns, in first-seen
    order, the entries ``name_1 .. name_k`` of an array column kept together in
    index order (a run with a larger top-k than the first used to put its extra
    ``top_eigenvalues_3`` after ``seconds``); a column a run lacks is empty on its
    lines, and so is NaN. Written to a temporary file beside ``path`` and renamed
    into place. Returns the number of data lines.
    """
    runs = list(runs)
    seen: dict[str, None] = {}
    for _, cols in runs:
        seen.update(dict.fromkeys(cols))
    header = _grouped(list(seen))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    lines = 0
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["run", *header])
            for name, cols in runs:
                n = len(next(iter(cols.values()))) if cols else 0
                fields = [_fields(cols[c]) if c in cols else [""] * n for c in header]
                for i in range(n):
                    out.writerow([name, *(f[i] for f in fields)])
                lines += n
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return lines


def _fields(a: np.ndarray) -> list[str]:
    """CSV fields of a 1-D column: integers as they are, floats in their shortest
    exact form (``repr``), NaN as an empty field, text as it is."""
    if a.dtype.kind in "iub":
        return [str(int(x)) for x in a.tolist()]
    if a.dtype.kind == "f":
        return ["" if math.isnan(x) else repr(x) for x in a.astype(np.float64).tolist()]
    return [str(x) for x in a.tolist()]
