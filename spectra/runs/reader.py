"""Reading spectra-run files: :func:`read_run`, :func:`read_runs`, :func:`list_runs`.

The readers open a file read-only and *without* a lock, so they never block a
writer and work while a run is being written: they see the rows committed when
they open the file (:mod:`spectra.runs.format`), wait (up to 5 s) while a writer
is inside a structural change, and retry a read that overlapped one. A reader
never writes: a journal left by a killed writer is not rolled back here but read
around (:class:`~spectra.runs.journal.PreChangeView`). Readers in the writer's
process read through its handle (HDF5 refuses a second, differently locked open
of the same file): the writer registers it with :func:`register_writer_file`.

Damaged files (a table that is not a group, a config that is not a JSON object,
an ``n_rows`` that is not a row count, a column of strings) are refused with a
:class:`~spectra.runs.format.StoreError` naming the file, the run and the object.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import h5py
import numpy as np

from spectra.runs.format import (
    GENERATION_ATTR,
    METRIC_COLUMNS,
    PROBE_ARRAY_COLUMNS,
    PROBE_COLUMNS,
    PROBE_ROW_NDIM,
    SCALARS,
    StoreError,
    check_hdf5_signature,
    check_root,
    committed_rows,
    run_id_of,
    run_names,
    scalar_names,
    text_attr,
)
from spectra.runs.journal import PreChangeView, abandoned_journal, journal_path

__all__ = [
    "Metrics",
    "Probes",
    "RunData",
    "checkpoint_base",
    "import_pandas",
    "list_runs",
    "long_measure",
    "put_column",
    "read_run",
    "read_run_from",
    "read_runs",
    "register_writer_file",
    "resolve_checkpoints",
    "unregister_writer_file",
    "writer_file",
]


class _Table:
    """What :class:`Metrics` and :class:`Probes` share: a table of named columns.

    Like a pandas ``DataFrame``: ``len(table)`` is the number of rows, iterating
    gives the column names (``for name in table``, ``"lr" in table``,
    ``dict(table)``), ``table["name"]`` reads a column. :meth:`to_dict` gives
    plain numpy arrays, :meth:`to_pandas` a ``DataFrame``.
    """

    _STANDARD: tuple[str, ...] = ()
    step: np.ndarray
    extra: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.step.shape[0])

    def __getitem__(self, name: str) -> Any:
        if not isinstance(name, str):
            raise TypeError(
                f"{type(self).__name__} columns are read by name, e.g. table['step']; got "
                f"{name!r}. For rows use .to_pandas() or .to_dict()"
            )
        if name in self._STANDARD:
            return getattr(self, name)
        try:
            return self.extra[name]
        except KeyError:
            raise KeyError(
                f"no column {name!r} in these {type(self).__name__.lower()}; columns: "
                f"{', '.join(self.columns)}"
            ) from None

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of the columns that hold data: the standard ones a run wrote (an
        array column it never wrote is left out), then the extra ones."""
        return tuple(c for c in self._STANDARD if getattr(self, c) is not None) + tuple(self.extra)

    def keys(self) -> tuple[str, ...]:
        """:attr:`columns` (so that ``dict(table)`` works)."""
        return self.columns

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def to_dict(self, flat: bool = False) -> dict[str, np.ndarray]:
        """The columns as a plain ``dict`` of writable numpy arrays (copies).

        Args:
            flat: only 1-D columns, one value per row: a column of shape (n, k)
                becomes k columns ``name_1`` ... ``name_k`` (``top_eigenvalues_1``
                is λ1, the largest); columns with more dimensions per row
                (``ritz_nodes``, ``ritz_weights``) are left out (see
                :meth:`Probes.density_long`).

        Returns:
            name -> array with the table's n rows first.
        """
        out: dict[str, np.ndarray] = {}
        for name in self.columns:
            a = np.array(self[name])
            if not flat or a.ndim == 1:
                put_column(out, name, a)
            elif a.ndim == 2:
                for j in range(a.shape[1]):
                    put_column(out, f"{name}_{j + 1}", a[:, j])
        return out

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` of :meth:`to_dict` ``(flat=True)``: one row per
        table row. Needs pandas (``pip install pandas``)."""
        return import_pandas(f"{type(self).__name__}.to_pandas()").DataFrame(self.to_dict(flat=True))


def put_column(out: dict[str, np.ndarray], name: str, values: np.ndarray) -> None:
    """``out[name] = values``, or :class:`StoreError` when ``out`` already has a column
    of that name: a flat view names the entries of an ``(n, k)`` column ``x`` as
    ``x_1`` ... ``x_k``, which a column of one's own may already be called, and one of
    the two would silently replace the other."""
    if name in out:
        raise StoreError(f"{name!r} is both a column and an entry of a flattened (n, k) "
                         "column; read the table with to_dict() (not flat), or rename the "
                         "column")
    out[name] = values


def import_pandas(what: str) -> Any:
    """The ``pandas`` module, or an ImportError that says how to install it."""
    try:
        import pandas
    except ImportError:
        raise ImportError(
            f"{what} needs pandas, which is not installed: pip install pandas (or, in "
            "spectra's repository, pip install '.[pandas]'; 'spectra' on PyPI is another "
            "project). Without it, .to_dict() gives the same columns as numpy arrays"
        ) from None
    return pandas


@dataclass(frozen=True)
class Metrics(_Table):
    """Committed metric rows of a run: read-only (n,) arrays.

    ``step`` int64 (optimizer steps); the others float64, NaN where a row gave no
    value: ``epoch``, ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``
    (fractions), ``lr``, ``momentum``, ``weight_decay``, ``seconds`` (wall-clock).
    ``extra`` holds any other column. ``metrics["name"]`` reads any column;
    ``len(metrics)`` is the number of rows and iterating gives the column names,
    as a pandas ``DataFrame`` does (see :class:`_Table`: ``to_dict()``, ``to_pandas()``).
    """

    _STANDARD = METRIC_COLUMNS

    step: np.ndarray
    epoch: np.ndarray
    train_loss: np.ndarray
    train_acc: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray
    lr: np.ndarray
    momentum: np.ndarray
    weight_decay: np.ndarray
    seconds: np.ndarray
    extra: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Probes(_Table):
    """Committed probe rows of a run: read-only arrays with n rows.

    ``step`` (n,) int64; ``epoch``, ``bottom_eigenvalue``, ``trace``,
    ``trace_stderr``, ``num_matvecs``, ``seconds`` (n,) float64; ``top_eigenvalues``
    (n, k); ``ritz_nodes`` and ``ritz_weights`` (n, n_v, m), the raw SLQ measure
    per random vector. Array columns a run never wrote are ``None``; NaN marks a
    value a row did not give (and padding of shorter rows). ``extra`` holds any
    other column. A table like :class:`Metrics` (iterating gives the column
    names; ``to_dict()``, ``to_pandas()``); :meth:`density_long` gives the SLQ
    measure in long format.
    """

    _STANDARD = PROBE_COLUMNS

    step: np.ndarray
    epoch: np.ndarray
    top_eigenvalues: np.ndarray | None
    bottom_eigenvalue: np.ndarray
    trace: np.ndarray
    trace_stderr: np.ndarray
    ritz_nodes: np.ndarray | None
    ritz_weights: np.ndarray | None
    num_matvecs: np.ndarray
    seconds: np.ndarray
    extra: Mapping[str, np.ndarray]

    def density_long(self) -> dict[str, np.ndarray]:
        """The SLQ measure in long format: one row per (probe, random vector, Ritz node).

        Columns, each (N,): ``step`` int64 and ``epoch`` of the probe; ``vector``
        int64, the random vector (0 ... n_v - 1); ``node``, a Ritz value (an
        eigenvalue estimate); ``weight``, its weight in that vector's measure (a
        vector's weights sum to 1). The density estimate of a probe is the average
        over its vectors of sum(weight * delta(x - node)): divide the weights by
        the number of vectors the probe has (those with nodes: a probe of fewer vectors
        than the row's width is NaN-padded) and sum them over the vectors. NaN padding
        (a vector with fewer nodes, or none) is dropped. Empty columns when the run recorded no density.
        """
        nodes, weights = self.ritz_nodes, self.ritz_weights
        if nodes is None or weights is None or nodes.size == 0:
            return {"step": np.zeros(0, np.int64), "epoch": np.zeros(0), "vector": np.zeros(0, np.int64),
                    "node": np.zeros(0), "weight": np.zeros(0)}
        return long_measure(self.step, self.epoch, nodes, weights, ("vector",))


def long_measure(step: np.ndarray, epoch: np.ndarray, nodes: np.ndarray, weights: np.ndarray,
                 axes: Sequence[str]) -> dict[str, np.ndarray]:
    """Ritz measures ``nodes``, ``weights`` ``(n, *index, m)`` (a row per probe, then one
    axis per name in ``axes``, then the nodes) in long format: one row per finite
    (node, weight) pair; columns ``step`` and ``epoch`` of its probe (``(n,)`` each), an
    int64 column per name in ``axes`` (the index along that axis), ``node`` and
    ``weight``. NaN padding is dropped."""
    nodes = np.asarray(nodes, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    index = np.indices(nodes.shape).reshape(nodes.ndim, -1)
    keep = np.isfinite(nodes.reshape(-1)) & np.isfinite(weights.reshape(-1))
    row = index[0][keep]
    out = {"step": np.asarray(step)[row], "epoch": np.asarray(epoch)[row]}
    for name, along in zip(axes, index[1:-1], strict=True):
        out[name] = along[keep].astype(np.int64)
    out["node"] = nodes.reshape(-1)[keep]
    out["weight"] = weights.reshape(-1)[keep]
    return out


@dataclass(frozen=True)
class RunData:
    """Everything committed for one run.

    Attributes:
        name: the run's name.
        path: the HDF5 file.
        config: the run's configuration (decoded JSON).
        created: ISO 8601 UTC time the run was created.
        spectra_version: version of the spectra that created the run.
        metrics: :class:`Metrics`.
        probes: :class:`Probes`.
        checkpoints: the ``.pt`` files, resolved against the directory of the HDF5
            file's real path (:func:`resolve_checkpoints`).
        run_id: the identity written when the run was created (a new one when it
            is replaced with ``overwrite``); None for runs of files older than it.
    """

    name: str
    path: Path
    config: Mapping[str, Any]
    created: str
    spectra_version: str
    metrics: Metrics
    probes: Probes
    checkpoints: tuple[Path, ...]
    run_id: str | None = None


def list_runs(path: str | os.PathLike[str]) -> list[str]:
    """Names of the runs in a spectra-run file, in creation order.

    Opens read-only without the HDF5 file lock (see this module's docstring).
    """
    return _with_reader(Path(path), lambda f, p: run_names(f))


def read_run(path: str | os.PathLike[str], name: str) -> RunData:
    """Read the committed rows of one run.

    Opens read-only without the HDF5 file lock, so it works while a writer is
    appending (it sees the rows committed when it opens the file).

    Raises:
        FileNotFoundError: no such file.
        StoreError: not a spectra-run file, unsupported version, or no such run.
    """
    return _with_reader(Path(path), lambda f, p: read_run_from(f, p, name))


def read_runs(path: str | os.PathLike[str]) -> dict[str, RunData]:
    """Read every run of a file: name -> :class:`RunData`, in creation order."""
    return _with_reader(
        Path(path), lambda f, p: {name: read_run_from(f, p, name) for name in run_names(f)}
    )


def _with_reader(path: Path, fn: Any, wait: float = 5.0) -> Any:
    """Run ``fn(h5py_file, path)`` on the file opened read-only, without the lock.

    Reading never writes. A journal left by a killed writer is not rolled back
    here (the next writer does that): the file is read as it was before the
    killed change, rebuilt from the journal in memory; a journal that was not
    written for this file is ignored. While a live writer is inside a structural
    change (its journal exists) the read waits, up to ``wait`` seconds; a read
    that fails or overlaps such a change is retried, except a failure that comes
    twice in a row with nothing changed in between (:func:`_unchanged`): the file
    itself is damaged, a StoreError at once. A change that begins and
    commits while the read runs leaves no journal at either end: the root's
    ``generation`` (each commit raises it) read before and after, each through a
    fresh open, tells it.
    """
    own = writer_file(path) if path.exists() else None
    if own is not None:
        return fn(own, path)
    if not path.exists():
        raise FileNotFoundError(f"no such spectra run file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a spectra run file (.h5)")
    check_hdf5_signature(path)
    jpath = journal_path(path)
    deadline = time.monotonic() + wait
    error: Exception | None = None
    same_failures = 0  # reads in a row that failed while nothing changed
    while True:
        before = _stat_or_none(jpath)
        file_before = _stat_or_none(str(path))
        busy, journal = abandoned_journal(path) if before is not None else (False, None)
        if not busy:
            start: int | None = None
            try:
                # a dead writer's journal (read through it): no change can commit meanwhile
                start = _generation(path) if journal is None else None
                with contextlib.ExitStack() as stack:
                    if journal is not None:
                        view = stack.enter_context(contextlib.closing(PreChangeView(path, journal)))
                        f = stack.enter_context(h5py.File(view, "r"))
                    else:
                        f = stack.enter_context(h5py.File(path, "r", locking=False))
                    check_root(f, path)
                    result = fn(f, path)
                # no change began or ended meanwhile, nor ran whole inside the read
                if _stat_or_none(jpath) == before and (journal is not None
                                                       or _generation(path) == start):
                    return result
                error = RuntimeError("its structure changed during every read")
            except StoreError:
                raise
            except (OSError, KeyError, RuntimeError, ValueError) as exc:
                error = exc
                same_failures = same_failures + 1 if _unchanged(path, jpath, before, journal,
                                                                start, file_before) else 0
                if same_failures >= 2:  # not a writer's change: the same failure again
                    raise StoreError(
                        f"cannot read {path}: {exc}; it failed twice with no writer changing "
                        "the file in between: the file is damaged or was not written by "
                        "spectra") from None
        if time.monotonic() > deadline:
            raise StoreError(
                f"cannot read {path}: "
                + (f"{error}" if not busy else f"{jpath} stayed in place for {wait:g} s")
                + "; a writer may be changing its structure, or another program holds the "
                "file's lock"
            )
        time.sleep(0.02)


def _steps(cols: dict[str, np.ndarray], n: int, path: Path, name: str, table: str) -> np.ndarray:
    """The ``step`` column of a table of ``n`` rows, taken out of ``cols``. Every table
    the writer makes has one: without it a read is torn (``ValueError``, which the
    reader retries) or the file damaged."""
    step = cols.pop("step", None)
    if step is None and n == 0:
        return _frozen(np.zeros(0, np.int64))
    if step is None or len(step) != n:
        raise ValueError(f"{path}: run {name!r}, table {table!r} has {n} rows but "
                         f"{'no' if step is None else len(step)} steps")
    return step


def _unchanged(path: Path, jpath: str, before: tuple[int, int, int] | None, journal: Any,
               start: int | None, file_before: tuple[int, int, int] | None = None) -> bool:
    """Whether no structural change can have overlapped a read that began with the
    journal at ``before`` and the root's generation at ``start``: the journal is as it
    was, and a dead writer's journal was read through (``journal``; no change commits
    then) or the generation is still ``start``. When the generation could not be read
    at all (``start`` None: a truncated or damaged file that HDF5 cannot open), the
    file itself unchanged since ``file_before`` (its inode, size and mtime) is."""
    if _stat_or_none(jpath) != before:
        return False
    if journal is not None:
        return True
    if start is None:
        return file_before is not None and _stat_or_none(str(path)) == file_before
    try:
        return start is not None and _generation(path) == start
    except (OSError, KeyError, RuntimeError, ValueError):
        return False


def _generation(path: Path) -> int:
    """The root's count of committed structural changes (0 before the writer kept one),
    through a fresh open: an open file's metadata is cached."""
    with h5py.File(path, "r", locking=False) as f:
        return int(f.attrs.get(GENERATION_ATTR, 0))


def _stat_or_none(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _read_table(group: Any, path: Path, where: str) -> tuple[int, dict[str, np.ndarray]]:
    """The committed rows of one table (a group of column datasets, with the scalar
    columns in one ``_scalars`` dataset in format 2; ``None``: no table), by column
    name in name order."""
    if group is None:
        return 0, {}
    if not isinstance(group, h5py.Group):
        raise StoreError(
            f"{path}: {where} is {_kind(group)}; expected a group of column datasets "
            "(the file is damaged or was not written by spectra)"
        )
    # each member opened by name: items() yields None for one h5py cannot open (a read
    # torn by a concurrent change), which would drop the column instead of raising
    cols = {k: v for k, v in ((k, group[k]) for k in group) if isinstance(v, h5py.Dataset)}
    packed = cols.pop(SCALARS, None)
    for k, v in cols.items():
        if v.dtype.kind not in "biuf" and not _is_text(v):
            held = "strings" if h5py.check_string_dtype(v.dtype) is not None else f"{v.dtype} values"
            raise StoreError(f"{path}: {where}: column {k!r} holds {held}; expected real numbers "
                             "or fixed-width text")
    names = [] if packed is None else scalar_names(packed, path, where)
    n = committed_rows(group.attrs, list(cols.values()) + ([packed] if packed is not None else []),
                       path, where)
    # numbers as float64 (format 1 kept each column's own dtype: float32 stayed float32),
    # steps as int64
    out = {k: _frozen(np.char.decode(v[:n], "utf-8") if _is_text(v)
                      else _steps_of(v[:n], path, where) if k == "step"
                      else v[:n].astype(np.float64, copy=False))
           for k, v in cols.items()}
    if packed is not None:
        block = packed[:n]
        for j, name in enumerate(names):
            column = block[:, j]
            out[name] = _frozen(_steps_of(column, path, where) if name == "step" else column)
    return n, dict(sorted(out.items()))


def _steps_of(values: np.ndarray, path: Path, where: str) -> np.ndarray:
    """A ``step`` column as int64, or :class:`StoreError` when an entry is not a whole
    number (a damaged file: NaN read as int64's minimum)."""
    v = np.asarray(values)
    if v.dtype.kind == "f" and not bool(np.all(np.isfinite(v) & (v == np.round(v)))):
        bad = v[~(np.isfinite(v) & (v == np.round(v)))][0]
        raise StoreError(f"{path}: {where}: column 'step' holds {float(bad)}; steps are whole numbers "
                         "(the file is damaged)")
    return v.astype(np.int64)


def _is_text(ds: h5py.Dataset) -> bool:
    """A text column: fixed-width byte strings (read as ``str``; "" where not given)."""
    return ds.dtype.kind == "S"


def _read_config(group: h5py.Group, path: Path, name: str) -> dict[str, Any]:
    """The run's ``config`` attribute: JSON text of an object (``{}`` when absent)."""
    raw = group.attrs.get("config", "{}")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        raise StoreError(
            f"{path}: run {name!r} has a config attribute of type {type(raw).__name__}; "
            "expected JSON text of an object"
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path}: run {name!r} has a config that is not JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise StoreError(
            f"{path}: run {name!r} has a config that is a JSON {type(config).__name__} "
            f"({raw[:60]!r}); expected a JSON object"
        )
    return config


def checkpoint_base(path: str | os.PathLike[str]) -> str:
    """The folder a run file's checkpoint paths are recorded relative to: that of its
    real path, symbolic links resolved. The writer records against it and the reader
    resolves against it, so a file written or read through a link (``runs/latest.h5 ->
    ../archive/x.h5``) finds its checkpoints either way."""
    return os.path.dirname(os.path.realpath(path))


def resolve_checkpoints(path: str | os.PathLike[str],
                        recorded: Iterable[str]) -> tuple[Path, ...]:
    """The files that recorded checkpoint paths of the run file at ``path`` name: relative
    to :func:`checkpoint_base`. For a file read through a link, a checkpoint that is not
    there but is beside the link is taken from there: files written through a link
    before the base was the real file's folder recorded against the link's. Only then
    does it look at the file system (one ``realpath`` otherwise)."""
    base = Path(checkpoint_base(path))
    link = Path(os.path.abspath(path)).parent
    out = []
    for rel in recorded:
        found = Path(os.path.normpath(base / rel))
        if link != base and not found.exists():
            beside_link = Path(os.path.normpath(link / rel))
            if beside_link.exists():
                found = beside_link
        out.append(found)
    return tuple(out)


def read_run_from(f: h5py.File, path: Path, name: str) -> RunData:
    """The committed rows of run ``name`` of ``f``, the open file at ``path`` (what
    :func:`read_run` returns, for a caller that has the file open).

    ``name`` must be one of :func:`~spectra.runs.format.run_names` exactly: an HDF5
    path (``"run/metrics"``, ``"."``) names a group too, but not a run.
    """
    if not isinstance(name, str):
        raise TypeError(f"the run name must be a str, got {type(name).__name__} {name!r}")
    names = run_names(f)
    if name not in names:
        from spectra.utils.checks import did_you_mean  # imports torch: on this path only

        raise StoreError(f"{path} has no run {name!r}; runs: {names}."
                         f"{did_you_mean(name, names)}".rstrip("."))
    group = f[name]
    config = _read_config(group, path, name)

    def nan(n: int) -> np.ndarray:
        return _frozen(np.full(n, np.nan))

    n, cols = _read_table(group.get("metrics"), path, f"run {name!r}, table 'metrics'")
    step = _steps(cols, n, path, name, "metrics")
    metrics = Metrics(
        step=step,
        **{c: cols.pop(c, nan(n)) for c in METRIC_COLUMNS if c != "step"},
        extra=MappingProxyType(cols),
    )
    n, cols = _read_table(group.get("probes"), path, f"run {name!r}, table 'probes'")
    if "num_hvps" in cols:  # the column's name before 0.1.1; rows appended since use the new one
        old = cols.pop("num_hvps")
        new = cols.get("num_matvecs")
        cols["num_matvecs"] = old if new is None else _frozen(np.where(np.isnan(new), old, new))
    step = _steps(cols, n, path, name, "probes")
    for c in PROBE_COLUMNS:  # a foreign or damaged file: a standard column of another rank
        want = PROBE_ROW_NDIM.get(c, 0) + 1
        if c in cols and np.ndim(cols[c]) != want:
            raise StoreError(f"{path}: run {name!r}, table 'probes': column {c!r} has shape "
                             f"{np.shape(cols[c])}; expected {want} dimensions (rows first)")
    probes = Probes(
        step=step,
        **{
            c: cols.pop(c, None if c in PROBE_ARRAY_COLUMNS else nan(n))
            for c in PROBE_COLUMNS
            if c != "step"
        },
        extra=MappingProxyType(cols),
    )
    checkpoints: tuple[Path, ...] = ()
    ckpt = group.get("checkpoints")
    where = f"run {name!r}, table 'checkpoints'"
    if ckpt is not None and not (
        isinstance(ckpt, h5py.Dataset) and h5py.check_string_dtype(ckpt.dtype) is not None
    ):
        raise StoreError(f"{path}: {where} is {_kind(ckpt)}; expected a dataset of path strings")
    if ckpt is not None:
        k = committed_rows(ckpt.attrs, [ckpt], path, where)
        checkpoints = resolve_checkpoints(path, ckpt.asstr()[:k])
    return RunData(
        name=name,
        path=path,
        config=config,
        created=text_attr(group, "created"),
        spectra_version=text_attr(group, "spectra_version"),
        metrics=metrics,
        probes=probes,
        checkpoints=checkpoints,
        run_id=run_id_of(group),
    )


# --------------------------------------------------------------------------- this process's writers

# The open h5py file of each writer of this process, by real path.
_WRITER_FILES: weakref.WeakValueDictionary[str, h5py.File] = weakref.WeakValueDictionary()


def register_writer_file(path: Path, f: h5py.File) -> None:
    """Have readers of ``path`` in this process read through ``f``, the writer's file."""
    _WRITER_FILES[os.path.realpath(path)] = f


def unregister_writer_file(path: Path, f: h5py.File) -> None:
    """Undo :func:`register_writer_file` (when ``f`` is still the one registered)."""
    key = os.path.realpath(path)
    if _WRITER_FILES.get(key) is f:
        del _WRITER_FILES[key]


def writer_file(path: Path) -> h5py.File | None:
    """The open file of this process's writer of ``path``, or None."""
    f = _WRITER_FILES.get(os.path.realpath(path))
    return f if f is not None and f.id.valid else None


def _kind(obj: Any) -> str:
    if isinstance(obj, h5py.Dataset):
        return f"a dataset of shape {obj.shape} and dtype {obj.dtype}"
    if isinstance(obj, h5py.Group):
        return "a group"
    return f"a {type(obj).__name__}"

