"""The spectra-run file format: what the writer and the reader both know.

One file holds one run or several (a comparison of optimizers on the same model,
data and seed)::

    /                   attrs: format="spectra-run", format_version=2, created, spectra_version
    /<run>/             attrs: config (JSON text), run_id, created, spectra_version
    /<run>/metrics/     one row per logged step; attr n_rows
                          step; epoch, train_loss, train_acc, test_loss, test_acc,
                          lr, momentum, weight_decay, seconds; any extra column
    /<run>/probes/      one row per probe; attr n_rows
                          step; epoch, bottom_eigenvalue, trace, trace_stderr,
                          num_matvecs, seconds; top_eigenvalues (n, k);
                          ritz_nodes, ritz_weights (n, n_v, m); any extra column
    /<run>/checkpoints  (n,) UTF-8 strings: ``.pt`` paths relative to the HDF5 file's
                          directory; attr n_rows

Columns and datasets
    In format 2 a table's scalar number columns (``step``, ``epoch``, the losses,
    ``bottom_eigenvalue``, ... and scalar extra columns) share one dataset,
    ``_scalars`` (n, c) float64, whose attribute ``columns`` (c,) names its columns
    in order (fixed-width UTF-8); ``step`` is stored there as a float64 holding an
    integer below 2**53 and read back as int64. Array columns (``top_eigenvalues``,
    ``ritz_nodes``, ...) and text columns are one dataset each, named for the
    column. (One dataset per column, format 1, costs about 0.8 KiB of HDF5 headers
    per column: three times the data of a short run.) Format 1 files, every column
    its own dataset with ``step`` int64, are read, and appended to in format 1.

Curvature probe columns (extra columns written by :class:`~spectra.runs.monitor.SpectralMonitor`
when it has the optimizer or the option; absent otherwise; definitions in
:mod:`spectra.curvature`)::

    threshold (n,)                 the optimizer's stability threshold (NaN: none in theory)
    threshold_kind (n,) text       its formula: "2/lr", "(2+2b)/lr", "(2+2b)/((1-d)lr)",
                                   "(2+2b)/((1+2b)lr)", "(2+2b1)/((1-b1)lr)" ("": none)
    threshold_preconditioned (n,)  1.0: the threshold bounds the preconditioned sharpness
                                   lambda_1(P^-1 H) (Adam, RMSprop: compare it with
                                   preconditioned_top), 0.0: the Hessian's lambda_1 (SGD);
                                   NaN: no threshold. (A kind alone does not say which:
                                   "2/lr" is SGD's and RMSprop's.) Runs written before
                                   this column have threshold and threshold_kind only.
    preconditioned_top (n,)        lambda_1(P^-1/2 H P^-1/2)      [preconditioned=True]
    alignment_full, alignment_batch (n,)  ||V_k^T g||^2 / ||g||^2 of the probe set's and
                                   the last minibatch's gradient  [alignment=True]
    step_loss_change, step_loss_change_top, step_loss_change_bulk (n,)  probe-set loss
                                   change of one optimizer step, of its projection onto
                                   span(V_k), and onto the complement
    step_top_fraction (n,)         ||V_k^T d||^2 / ||d||^2 of that step d
    layer_top_eigenvalue, layer_trace, layer_trace_stderr (n, B)   per block  [layers=...]
    layer_ritz_nodes, layer_ritz_weights (n, B, n_v, m)   per block SLQ, NaN-padded
    layer_heterogeneity (n,)       mean pairwise Jensen-Shannon distance of the blocks'
                                   densities                      [layer_density=...]

    The blocks' names and sizes, in column order: the run config's ``probe.layer_names``
    and ``probe.layer_sizes``.

Rows and missing values
    ``step`` is required in every metrics and probe row. Every other column is
    float64, and a value a row does not give is NaN, except a probe column first
    given a ``str`` (``threshold_kind``): a text column, fixed-width UTF-8 (64 bytes),
    read back as ``str``, ``""`` where a row does not give it. The ten standard metric columns
    and the scalar probe columns exist from the run's creation. The array probe
    columns (``top_eigenvalues``, ``ritz_nodes``, ``ritz_weights``) are created by
    the first row that gives them (earlier rows read as NaN) and are absent, read as
    ``None``, in a run that never gave them (e.g. a run without a density). A key
    that is not a standard column becomes an extra column the same way. The first
    value of an array column fixes its row shape: a later, smaller value (fewer
    Ritz nodes after an early Lanczos breakdown) is padded with NaN; a larger one
    is an error; an empty one, or ``None``, counts as not given.

Size
    A table's ``_scalars`` has chunks of 8 rows x 32 columns (2 KiB); an array or
    text column, chunks of about 4 KiB (at most 16 rows, at least one). Chunks are
    indexed by HDF5 1.10's extensible array (the superblock stays version 0, see
    :mod:`spectra.runs.journal`). A closed file holds its data, less than one unused
    chunk per dataset, and HDF5's headers of each dataset (about 0.8 KiB):
    ``tests/spectra/runs/test_writer.py`` checks that a run shaped like ``spectra
    train``'s takes at most twice its data from 3 epochs on. No
    compression: a compressed chunk changes size when a row is written into it, so
    HDF5 would move it on every append (a structural change each time, where an
    append now only overwrites allocated bytes), and float64 Ritz values, most of a
    run's data, hardly compress.

Committed rows
    Each table (``metrics``, ``probes``, ``checkpoints``) carries an ``n_rows``
    attribute, the committed row count; readers use only rows ``[0, n_rows)``.
    Datasets are allocated ahead in whole chunks (a full column grows by a
    quarter, chunks allocated at resize time, NaN-filled), so they may be longer than
    ``n_rows`` while a writer is open or after it was killed; a clean
    :meth:`~spectra.runs.writer.RunStore.close` trims them to ``n_rows``. Tables
    commit independently: a kill between a metrics row and the probe row of the
    same step keeps the first and loses the second. Rows are only ever appended,
    with one exception: :meth:`~spectra.runs.writer.RunWriter.rewind` lowers
    ``n_rows`` so that a run resumed from a checkpoint writes the steps after it
    once (the stopped run's rows for those steps are replaced by the resumed run's).

This module holds the names of that layout, the errors of both sides, and the
checks both sides apply to a file they open (its signature and root attributes,
a table's committed row count). Writing is :mod:`spectra.runs.writer`, reading
:mod:`spectra.runs.reader`, crash safety :mod:`spectra.runs.journal`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from spectra._version import __version__

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "GENERATION_ATTR",
    "METRIC_COLUMNS",
    "N_ROWS_ATTR",
    "PROBE_ARRAY_COLUMNS",
    "PROBE_COLUMNS",
    "PROBE_ROW_NDIM",
    "READ_VERSIONS",
    "RUN_ID_ATTR",
    "SCALARS",
    "SCALARS_COLUMNS_ATTR",
    "StoreError",
    "StoreLockedError",
    "StoreWriteError",
    "check_hdf5_signature",
    "check_root",
    "check_run_name",
    "committed_rows",
    "run_id_of",
    "run_names",
    "scalar_names",
    "text_attr",
]

FORMAT = "spectra-run"
FORMAT_VERSION = 2
READ_VERSIONS: tuple[int, ...] = (1, 2)  # format 1: one dataset per column, no _scalars
SCALARS = "_scalars"            # format 2: a table's scalar columns, (n, c) float64
SCALARS_COLUMNS_ATTR = "columns"  # their names, in column order

METRIC_COLUMNS: tuple[str, ...] = (
    "step", "epoch", "train_loss", "train_acc", "test_loss", "test_acc",
    "lr", "momentum", "weight_decay", "seconds",
)
PROBE_COLUMNS: tuple[str, ...] = (
    "step", "epoch", "top_eigenvalues", "bottom_eigenvalue", "trace", "trace_stderr",
    "ritz_nodes", "ritz_weights", "num_matvecs", "seconds",
)
# Number of dimensions of one row of each standard probe column (0: scalar).
PROBE_ROW_NDIM: dict[str, int] = {name: 0 for name in PROBE_COLUMNS} | {
    "top_eigenvalues": 1, "ritz_nodes": 2, "ritz_weights": 2,
}
# Probe columns created by the first row that gives them (absent: read as None).
PROBE_ARRAY_COLUMNS: tuple[str, ...] = ("top_eigenvalues", "ritz_nodes", "ritz_weights")

N_ROWS_ATTR = "n_rows"  # a table's committed row count
RUN_ID_ATTR = "run_id"  # a run's identity, new each time the run is created
# the root's count of committed structural changes: a reader that sees it move while it
# read (or a change in progress at either end) reads again
GENERATION_ATTR = "generation"


class StoreError(ValueError):
    """A file that is not a readable spectra-run file, or a bad request to one.

    Raised for: not an HDF5 file, not a spectra-run file, an unsupported
    ``format_version``, a duplicate or missing run, a row that does not fit its
    columns. The message names the file and what was expected.
    """


class StoreLockedError(StoreError):
    """The file is already open for writing, by another process or another
    :class:`~spectra.runs.writer.RunStore` in this one."""


class StoreWriteError(StoreError):
    """The file could not be written (no space left on the device, an I/O error).

    Every row committed before is intact; an unfinished structural change stays
    in the journal and is rolled back by the next writer. The
    :class:`~spectra.runs.writer.RunStore` is unusable afterwards (close it).
    """


def check_run_name(name: object) -> None:
    """Raise :class:`StoreError` unless ``name`` can name a run (a non-empty string
    without ``/``, NUL, and other than ``.`` and ``..``)."""
    if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or "\0" in name:
        raise StoreError(f"invalid run name {name!r} (a non-empty string without '/')")


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_hdf5_signature(path: Path) -> None:
    """Raise :class:`StoreError` unless ``path`` starts with HDF5's signature (at
    offset 0, 512, 1024, 2048, ..., after a user block)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        offset = 0
        while offset + len(_HDF5_SIGNATURE) <= size:
            fh.seek(offset)
            if fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                return
            offset = 512 if offset == 0 else 2 * offset
    raise StoreError(
        f"{path} is not an HDF5 file (no HDF5 signature); expected a spectra-run file "
        f"(format={FORMAT!r}, format_version={FORMAT_VERSION}) written by spectra.runs.store.RunStore"
    )


def check_root(f: h5py.File, path: Path) -> int:
    """The ``format_version`` of ``f``; raise :class:`StoreError` unless its root says
    spectra-run in a version this spectra reads (:data:`READ_VERSIONS`)."""
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != FORMAT:
        found = "no 'format' attribute" if fmt is None else f"format={fmt!r}"
        raise StoreError(
            f"{path} is an HDF5 file but not a spectra-run file: its root has {found}, "
            f"expected format={FORMAT!r}"
        )
    version = f.attrs.get("format_version")
    if version is not None and not (isinstance(version, (int, np.integer))
                                    or float(version) == int(version)):
        raise StoreError(f"{path} has format_version={float(version):g}; a format version is a whole "
                         "number (the file is damaged or was not written by spectra)")
    if version is None or int(version) not in READ_VERSIONS:
        hint = (
            "it was written by a newer spectra; upgrade spectra to read it"
            if version is not None and int(version) > FORMAT_VERSION
            else "it cannot be read by this version"
        )
        raise StoreError(
            f"{path} has format_version={None if version is None else int(version)}; "
            f"spectra {__version__} reads format_version "
            f"{', '.join(map(str, READ_VERSIONS))} and writes {FORMAT_VERSION}: {hint}"
        )
    return int(version)


def run_names(f: h5py.File) -> list[str]:
    """Names of the runs in ``f``, in creation order."""
    # each member opened by name: h5py's items() yields None for one it cannot open (a
    # read torn by a concurrent change), which would drop the run instead of raising
    members = [(k, f[k]) for k in f]
    runs = [(text_attr(g, "created"), k) for k, g in members if isinstance(g, h5py.Group)]
    return [k for _, k in sorted(runs)]


def text_attr(obj: h5py.Group | h5py.Dataset, name: str) -> str:
    """A text attribute as ``str`` (``""`` when absent): fixed-length strings, which many
    tools other than h5py write, come back as bytes (``str()`` of them read
    ``"b'0.1.0'"``); they are decoded as UTF-8."""
    value = obj.attrs.get(name, "")
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def run_id_of(group: h5py.Group) -> str | None:
    """The run's identity attribute; None when absent (files older than it)."""
    value = group.attrs.get(RUN_ID_ATTR)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def scalar_names(ds: h5py.Dataset, path: Path, where: str) -> list[str]:
    """The column names of a table's ``_scalars`` dataset, checked against its shape
    (a 2-D float dataset with one name per column)."""
    raw = ds.attrs.get(SCALARS_COLUMNS_ATTR)
    names = [] if raw is None else [
        n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in np.ravel(raw)]
    if ds.ndim != 2 or ds.dtype.kind != "f" or raw is None or len(names) != ds.shape[1]:
        raise StoreError(
            f"{path}: {where}: {ds.name} is not a table of scalar columns (shape {ds.shape}, "
            f"{ds.dtype}, {len(names)} column names); the file is damaged or was not written "
            "by spectra"
        )
    return names


def committed_rows(
    attrs: h5py.AttributeManager, cols: list[h5py.Dataset], path: Path, where: str = "a table"
) -> int:
    """``n_rows`` when present (checked against the dataset lengths), else the
    common length of the datasets (a file written by other tools). ``where`` names
    the table in errors (e.g. ``"run 'sgd', table 'probes'"``)."""
    for c in cols:
        if c.ndim == 0:
            raise StoreError(
                f"{path}: {where}: {c.name} is a scalar dataset; expected a column with one "
                "entry per row"
            )
    lengths = {c.name: c.shape[0] for c in cols}
    if N_ROWS_ATTR in attrs:
        n = _row_count(attrs[N_ROWS_ATTR], path, where)
        short = {k: v for k, v in lengths.items() if v < n}
        if short:
            raise StoreError(f"{path}: {where}: datasets shorter than the committed n_rows={n}: {short}")
        return n
    if len(set(lengths.values())) > 1:
        raise StoreError(f"{path}: datasets of one table differ in length and there is no n_rows: {lengths}")
    return next(iter(lengths.values()), 0)


def _row_count(value: Any, path: Path, where: str) -> int:
    """The ``n_rows`` attribute ``value`` as an int, or ``StoreError`` unless it is an integer >= 0."""
    v = value
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(())[()]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
        shown = value.item() if isinstance(value, np.generic) else value
        raise StoreError(
            f"{path}: {where} has n_rows={shown!r}; expected the committed row count, an "
            "integer >= 0 (the file is damaged or was not written by spectra)"
        )
    return int(v)
