"""Writing spectra-run files: :class:`RunStore` (a file) and :class:`RunWriter` (a run).

The writer only ever appends (:mod:`spectra.runs.format` describes the layout
and when a row counts as committed). Each ``append_*`` call commits one row:
(1) new columns and more capacity, inside a journaled transaction; (2) the row
into every column, flushed; (3) the table's ``n_rows``, flushed. Structural
changes (creating a run or a column, growing, trimming at close) run inside
transactions of :class:`~spectra.runs.journal.JournaledFile`, which makes them
all-or-nothing under SIGKILL (see :mod:`spectra.runs.journal`). A failed write
(no space left, an I/O error) ends the store with
:class:`~spectra.runs.format.StoreWriteError`; every row committed before is intact.

Locking
    A :class:`RunStore` holds an exclusive ``flock`` on the file (the lock HDF5
    itself takes on Linux; the kernel drops it when the process dies, however it
    dies) for as long as it is open: a second writer, in another process or this
    one, gets :class:`~spectra.runs.format.StoreLockedError`, and so does a
    writer while another program has the file open with HDF5's locking on. The
    readers (:mod:`spectra.runs.reader`) take no lock and never block a writer;
    readers in the writer's process read through its handle. On file systems
    without ``flock`` (some network mounts) there is no lock.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import math
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from spectra._version import __version__
from spectra.runs.format import (
    FORMAT,
    FORMAT_VERSION,
    GENERATION_ATTR,
    METRIC_COLUMNS,
    N_ROWS_ATTR,
    PROBE_ARRAY_COLUMNS,
    PROBE_COLUMNS,
    PROBE_ROW_NDIM,
    RUN_ID_ATTR,
    SCALARS,
    SCALARS_COLUMNS_ATTR,
    StoreError,
    StoreLockedError,
    StoreWriteError,
    check_hdf5_signature,
    check_root,
    check_run_name,
    committed_rows,
    run_id_of,
    run_names,
    scalar_names,
)
from spectra.runs.journal import ChangeAborted, JournaledFile, journal_path
from spectra.runs.paths import nearest_existing
from spectra.runs.reader import (
    RunData,
    checkpoint_base,
    read_run_from,
    register_writer_file,
    resolve_checkpoints,
    unregister_writer_file,
    writer_file,
)

__all__ = ["RunStore", "RunWriter", "check_run_file_name"]

# Chunks: about 4 KiB, at most 16 rows (a scalar column: 128 B), at least one row (one
# probe's Ritz nodes). Small chunks keep a short run's file near its data: a column
# wastes less than one chunk after close (HDF5 does not shrink a partly used chunk).
# A full column grows by a quarter (at least one chunk): a file killed before its
# clean close holds at most about 25 % unused rows.
_CHUNK_BYTES = 1 << 12
_MAX_CHUNK_ROWS = 16
# Objects created by the writer use HDF5 1.10's formats (readable by HDF5 >= 1.10):
# a resizable column's chunks are indexed by an extensible array of a
# few hundred bytes instead of a version-1 B-tree node allocated whole (room for 64
# chunks, whatever the column holds). The superblock stays version 0 (see
# spectra.runs.journal).
_LIBVER = ("v110", "v110")
# Format 2's _scalars dataset: chunks of 8 rows x 32 columns (2 KiB), at most 4096
# columns (one unlimited dimension keeps the extensible-array chunk index); scalar
# columns past that many become datasets of their own.
_SCALAR_CHUNK = (8, 32)
_MAX_SCALAR_COLUMNS = 1 << 12
_STEP_LIMIT = 1 << 53  # a float64 holds every integer below it
_MAX_ATTR_BYTES = 60_000        # HDF5 v1 object headers hold attributes below 64 KiB
_TEXT_BYTES = 64                # a text column's fixed width (UTF-8 bytes)
_TEXT = h5py.string_dtype("utf-8", _TEXT_BYTES)
_STR = h5py.string_dtype("utf-8")


class RunStore:
    """Writer of a spectra-run HDF5 file: creates it, or opens it to add runs.

    Args:
        path: the ``.h5`` file. Created (with missing parent directories) when
            absent (``format_version`` 2); an existing file must be a spectra-run
            file of a version this spectra reads, and is only ever appended to,
            in its own format (a format 1 file stays format 1).

    Raises:
        StoreLockedError: another process or another ``RunStore`` of this process
            has the file open for writing (or another program holds HDF5's lock).
        StoreError: the file is not a spectra-run file of a supported version, or
            its name leaves no room for its journal's (:func:`check_run_file_name`).

    Use as a context manager, or call :meth:`close`; both trim the datasets to
    their committed rows. Not thread-safe.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._error_reported = False
        self._writers: dict[str, RunWriter] = {}
        self._packed = True  # format 2 (a _scalars dataset per table); False in a format 1 file
        if writer_file(self.path) is not None:
            raise StoreLockedError(
                f"{self.path} is already open for writing by another RunStore in this "
                "process; use that one, or close it first"
            )
        check_run_file_name(self.path)
        if not self.path.exists():
            _create_file(self.path)
        self._io: JournaledFile | None = JournaledFile(self.path)
        try:
            check_hdf5_signature(self.path)
            with self._transaction(changes=False):
                try:
                    self._file = h5py.File(self._io, "r+", libver=_LIBVER)
                except OSError as exc:
                    raise StoreError(f"cannot open {self.path} for writing: {exc}") from exc
            self._packed = check_root(self._file, self.path) >= 2
        except BaseException:
            if self._file is not None:
                self._file.close()
                self._file = None
            self._io.close()
            self._io = None
            raise
        register_writer_file(self.path, self._file)

    @contextlib.contextmanager
    def _transaction(self, changes: bool = True) -> Iterator[None]:
        """Make the HDF5 structure changes inside all-or-nothing under SIGKILL, and
        count them in the root's generation (``changes=False``: opening the file, which
        writes nothing)."""
        assert self._io is not None
        self._check_io()
        self._io.begin()
        try:
            yield
            if self._file is not None:
                if changes:
                    self._next_generation()
                self._file.flush()
        except BaseException as exc:
            # a change that stopped half-way (an error, Ctrl-C) must not commit: it is undone
            # from the journal, and the store writes nothing more
            self._io.abort(exc)
            self._release_aborted()
            raise
        self._io.commit()
        self._check_io()

    def _release_aborted(self) -> None:
        """After :meth:`JournaledFile.abort` stopped a change half-way: drop HDF5's view of
        the file (it holds the change; its writes go nowhere now), then undo the change on
        disk from the journal and release the file, so that readers, in this process too,
        read it as it was before the change. The store then counts as closed
        (:attr:`closed`), but every later use raises the abort's :class:`StoreWriteError`
        (not "closed"), and closing it raises nothing (the interruption was the report)."""
        file, self._file = self._file, None
        if file is not None:
            unregister_writer_file(self.path, file)
            with contextlib.suppress(Exception):
                file.close()  # its writes go nowhere now
        assert self._io is not None
        self._io.undo()  # HDF5 has let go: the old bytes go back
        self._io.close()
        self._error_reported = True

    def _next_generation(self) -> None:
        """Raise the root's count of structural changes, inside the change (journaled
        with it): a reader that saw another count before its read reads again."""
        f = self._file
        if f is not None and self._io is not None and self._io.error is None:
            f.attrs[GENERATION_ATTR] = np.int64(int(f.attrs.get(GENERATION_ATTR, 0)) + 1)

    def _check_io(self) -> None:
        """Raise :class:`StoreWriteError` once a write of this store has failed."""
        if self._io is not None and self._io.error is not None:
            self._error_reported = True
            raise _write_error(self.path, self._io.error)

    def _flush(self) -> None:
        """Flush to the operating system; raise if any write failed."""
        self._f().flush()
        self._check_io()

    # -- context / lifetime
    def __enter__(self) -> RunStore:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._file is not None else "closed"
        return f"RunStore({str(self.path)!r}, {state})"

    @property
    def closed(self) -> bool:
        return self._file is None

    def close(self) -> None:
        """Trim every dataset to its committed rows, flush and release the file.

        Idempotent. Writers of this store are unusable afterwards.
        """
        if self._file is None:  # closed already, or released when a change was undone
            self._io = None
            for writer in self._writers.values():
                writer._store = None
            self._writers.clear()
            return
        assert self._io is not None
        io_, file = self._io, self._file
        try:
            self._io.begin()
            try:
                if self._io.error is None:  # after a failed write, leave the file as it is
                    for writer in self._writers.values():
                        writer._trim()
                    self._next_generation()
                    self._file.flush()
            except BaseException as exc:  # the trim stopped half-way: undo it, as above
                self._io.abort(exc)
                self._error_reported = True
                raise
            finally:
                aborted = isinstance(self._io.error, ChangeAborted)
                with contextlib.suppress(Exception) if aborted else contextlib.nullcontext():
                    self._file.close()  # after an aborted change its writes go nowhere
                self._file = None
                self._io.commit()
                if aborted:
                    self._io.undo()
        finally:
            for writer in self._writers.values():
                writer._store = None
            self._writers.clear()
            self._io.close()
            self._io = None
            unregister_writer_file(self.path, file)
        if io_.error is not None and not self._error_reported:  # failed in the trim
            self._error_reported = True
            raise _write_error(self.path, io_.error)

    def _f(self) -> h5py.File:
        self._check_io()
        if self._file is None:
            raise StoreError(f"{self.path}: this RunStore is closed")
        return self._file

    # -- runs
    def run_names(self) -> list[str]:
        """Names of the runs in the file, in creation order."""
        return run_names(self._f())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.run_names()

    def create_run(
        self,
        name: str,
        config: Mapping[str, Any] | None = None,
        *,
        overwrite: bool = False,
    ) -> RunWriter:
        """Add a run and return its writer.

        Args:
            name: run name, unique in the file (no ``/``).
            config: JSON-able settings (model, data, optimizer and hyperparameters,
                seed, probe settings); numpy scalars/arrays and paths are converted.
            overwrite: replace an existing run of that name (its data is deleted;
                HDF5 does not reclaim the space). Without it a duplicate name raises.

        Raises:
            StoreError: duplicate name (without ``overwrite``), invalid name, or a
                config that is too large for an attribute.
            TypeError: a config value that is not JSON-able.
        """
        f = self._f()
        _check_run_name(name, self.path)
        config_text = _config_json(config)
        if name in f and not overwrite:
            raise StoreError(
                f"{self.path} already has a run named {name!r}; choose another name, "
                "pass overwrite=True to replace it, or use open_run() to append to it"
            )
        with self._transaction():
            if name in f:
                old = self._writers.pop(name, None)
                if old is not None:
                    old._store = None
                    old._close_ids()
                del f[name]
            group = f.create_group(name)
            group.attrs[RUN_ID_ATTR] = uuid.uuid4().hex
            group.attrs["config"] = config_text
            group.attrs["created"] = _now()
            group.attrs["spectra_version"] = __version__
            probe_scalars = [c for c in PROBE_COLUMNS if c not in PROBE_ARRAY_COLUMNS]
            for table, columns in (("metrics", METRIC_COLUMNS), ("probes", probe_scalars)):
                g = group.create_group(table)
                if self._packed:
                    _create_scalars(g, list(columns), 0)
                else:  # a format 1 file stays format 1
                    for column in columns:
                        _create_column(g, column, (), 0)
                g.attrs[N_ROWS_ATTR] = np.int64(0)
            ckpt = group.create_dataset(
                "checkpoints", shape=(0,), maxshape=(None,), dtype=_STR, chunks=(64,),
                track_times=False,
            )
            ckpt.attrs[N_ROWS_ATTR] = np.int64(0)
        writer = RunWriter(self, name)
        self._writers[name] = writer
        return writer

    def open_run(self, name: str) -> RunWriter:
        """Writer that appends to an existing run (e.g. when training resumes).

        Rows of a killed writer that were not committed are overwritten.
        """
        f = self._f()
        if name not in self._writers:
            if name not in f or not isinstance(f[name], h5py.Group):
                raise StoreError(f"{self.path} has no run {name!r}; runs: {run_names(f)}")
            _check_appendable(f[name], self.path, name)  # before anything is written
            writer = RunWriter(self, name)  # reads and checks only
            if writer._lacks_counts():
                with self._transaction():  # a file from other tools may lack n_rows
                    writer._write_counts()
            self._writers[name] = writer
        return self._writers[name]

    def read_run(self, name: str) -> RunData:
        """The committed data of run ``name`` (see :func:`read_run`)."""
        return read_run_from(self._f(), self.path, name)


def _check_appendable(group: h5py.Group, path: Path, name: str) -> None:
    """Raise :class:`StoreError` unless run ``name`` (``group``) has what appending
    needs: ``metrics`` and ``probes`` groups of datasets with one entry per row that
    can grow (unlimited first dimension), and a growable ``checkpoints`` dataset; a
    file written by another tool, or damaged, is named with what is wrong."""
    def refuse(what: str) -> StoreError:
        return StoreError(f"{path}: run {name!r} cannot be appended to: {what} (a run "
                          "written by another tool, or damaged; spectra's own runs are "
                          "made by RunStore.create_run)")

    def growable(ds: h5py.Dataset, where: str) -> None:
        if ds.ndim == 0 or ds.maxshape[0] is not None:
            raise refuse(f"{where} has shape {ds.shape} and maximum shape {ds.maxshape}; "
                         "a column needs one entry per row and an unlimited first dimension")

    for member, kind in (("metrics", h5py.Group), ("probes", h5py.Group),
                         ("checkpoints", h5py.Dataset)):
        found = group.get(member, getclass=True)
        if found is not kind:
            what = "none" if found is None else f"a {found.__name__.lower()}"
            raise refuse(f"its {member!r} should be an HDF5 {kind.__name__.lower()}, it has {what}")
    growable(group["checkpoints"], "'checkpoints'")
    for table in ("metrics", "probes"):
        for key in group[table]:
            if group[table].get(key, getclass=True) is not h5py.Dataset:
                raise refuse(f"'{table}/{key}' is not a dataset")
            growable(group[table][key], f"'{table}/{key}'")


class RunWriter:
    """Appends rows to one run of an open :class:`RunStore`.

    Get one from :meth:`RunStore.create_run` or :meth:`RunStore.open_run`. Each
    ``append_*`` call commits one row (flushed, crash-safe; see
    :mod:`spectra.runs.journal`) and returns its row index.
    """

    def __init__(self, store: RunStore, name: str) -> None:
        self._store: RunStore | None = store
        self.name = name
        group = store._f()[name]
        self._metrics = _Table(group["metrics"], store.path, f"{name}/metrics", {})
        self._probes = _Table(group["probes"], store.path, f"{name}/probes", PROBE_ROW_NDIM, text=True)
        self._ckpt = group["checkpoints"]
        self._num_ckpt = committed_rows(self._ckpt.attrs, [self._ckpt], store.path)

    def _lacks_counts(self) -> bool:
        """Whether a table has no ``n_rows`` yet (a file written by another tool)."""
        return self._metrics.lacks_count() or self._probes.lacks_count()

    def _write_counts(self) -> None:
        """Write the missing ``n_rows``: a structural change, inside a transaction."""
        self._metrics.write_count()
        self._probes.write_count()

    def __repr__(self) -> str:
        return (
            f"RunWriter({self.name!r}, metrics={self.num_metrics}, probes={self.num_probes}, "
            f"checkpoints={self._num_ckpt})"
        )

    def _live(self) -> RunStore:
        if self._store is not None:
            self._store._check_io()  # a failed write or an undone change says so
        if self._store is None or self._store._file is None:
            raise StoreError(f"run {self.name!r}: its RunStore is closed or the run was replaced")
        return self._store

    @property
    def config(self) -> dict[str, Any]:
        """The run's configuration (decoded JSON)."""
        return json.loads(self._live()._f()[self.name].attrs["config"])

    @property
    def path(self) -> Path:
        """The HDF5 file."""
        return self._live().path

    @property
    def run_id(self) -> str | None:
        """The identity written when the run was created (see :class:`RunData`)."""
        return run_id_of(self._live()._f()[self.name])

    def read(self) -> RunData:
        """The run's committed rows (as :func:`read_run` returns them)."""
        return self._live().read_run(self.name)

    @property
    def num_metrics(self) -> int:
        """Committed metric rows."""
        return self._metrics.n

    @property
    def num_probes(self) -> int:
        """Committed probe rows."""
        return self._probes.n

    @property
    def num_checkpoints(self) -> int:
        return self._num_ckpt

    def append_metrics(self, row: Mapping[str, Any] | None = None, /, **values: Any) -> int:
        """Commit one metrics row.

        Args:
            row, values: column -> real scalar, as a mapping and/or keywords.
                ``step`` (int, optimizer steps) is required; the standard columns
                are ``epoch`` (float epochs), ``train_loss``, ``train_acc``,
                ``test_loss``, ``test_acc`` (accuracy as a fraction), ``lr``,
                ``momentum``, ``weight_decay``, ``seconds`` (wall-clock since the
                start of training). Other numeric keys become extra columns;
                missing ones are NaN.

        Returns:
            The row's index.
        """
        data = _merge(row, values)
        for key, value in data.items():
            if np.ndim(_as_array(value, key)) != 0:
                raise StoreError(
                    f"{self._live().path}: metric {key!r} must be a scalar, got shape "
                    f"{np.shape(_as_array(value, key))}"
                )
        return self._metrics.append(data, self._live())

    def append_probe(self, row: Mapping[str, Any] | None = None, /, **values: Any) -> int:
        """Commit one probe row.

        Args:
            row, values: column -> value, as a mapping and/or keywords. ``step`` (int)
                is required. Standard columns: ``epoch``; ``top_eigenvalues`` (k,);
                ``bottom_eigenvalue``; ``trace`` and ``trace_stderr``;
                ``ritz_nodes`` and ``ritz_weights`` (n_v, m), the raw SLQ measure
                per random vector; ``num_matvecs`` (Hessian-vector products spent);
                ``seconds`` (wall-clock of the probe). Arrays may be numpy arrays,
                sequences or CPU/GPU tensors. Other numeric keys become extra
                columns; missing ones are NaN.

        Returns:
            The row's index.
        """
        data = _merge(row, values)
        nodes, weights = data.get("ritz_nodes"), data.get("ritz_weights")
        if nodes is not None and weights is not None:
            sn, sw = np.shape(_as_array(nodes, "ritz_nodes")), np.shape(_as_array(weights, "ritz_weights"))
            if sn != sw:
                raise StoreError(
                    f"{self._live().path}: ritz_nodes {sn} and ritz_weights {sw} must have "
                    "the same shape (n_v, m)"
                )
        return self._probes.append(data, self._live())

    def rewind(self, step: int) -> dict[str, int]:
        """Drop the metric and probe rows past optimizer step ``step``.

        For a resume: training from a checkpoint at ``step`` writes its own rows
        for every later step, so rows a stopped run left past that point would
        describe the same steps twice (:func:`spectra.runs.trainer.train` calls this
        when it resumes). Each table drops the rows from the first one whose
        ``step`` exceeds ``step``; the drop is committed like an append (one
        attribute write per table, crash-safe). Checkpoint records are kept:
        re-recording the same file is a no-op (see :meth:`add_checkpoint`).

        Returns:
            ``{"metrics": rows dropped, "probes": rows dropped}``.
        """
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise StoreError(f"{self._live().path}: rewind needs a step >= 0, got {step!r}")
        store = self._live()
        return {"metrics": self._metrics.rewind(int(step), store),
                "probes": self._probes.rewind(int(step), store)}

    def add_checkpoint(self, path: str | os.PathLike[str]) -> int:
        """Record a checkpoint file; stored relative to the directory of the HDF5 file's
        real path (symbolic links resolved, as the reader resolves it: a run written
        through a link reads the same through the link and through the real path).

        A file already recorded (a resumed run writing the same checkpoint again)
        keeps its entry.

        Args:
            path: the ``.pt`` file (absolute, or relative to the working directory).

        Returns:
            The checkpoint's index.
        """
        store = self._live()
        store._f()  # open, and no failed write
        h5dir = checkpoint_base(store.path)
        # its folder resolved too, so that a link above both (runs/ -> /data/runs) keeps
        # the recorded path short (the file's own name is kept: a link stays itself)
        folder, file = os.path.split(os.path.abspath(os.fspath(path)))
        target = os.path.join(os.path.realpath(folder), file)
        try:
            rel = os.path.relpath(target, h5dir)
        except ValueError:  # another drive on Windows
            rel = target
        n = self._num_ckpt
        ds = self._ckpt
        if n:  # the same file, however it was recorded (an older base, another spelling):
            # among the entries of its file name, compared by real path
            same = os.path.realpath(target)
            named = [(i, old) for i, old in enumerate(ds.asstr()[:n])
                     if os.path.basename(old) == file]
            found = resolve_checkpoints(store.path, [old for _, old in named])
            for (i, _), resolved in zip(named, found):
                if os.path.realpath(resolved) == same:
                    return i
        with store._transaction():  # may grow the dataset and the global heap
            if ds.shape[0] <= n:
                ds.resize(max(n + 1, 2 * ds.shape[0], 16), axis=0)
            ds[n] = rel
        ds.attrs.modify(N_ROWS_ATTR, np.int64(n + 1))
        store._flush()
        self._num_ckpt = n + 1
        return n

    def _close_ids(self) -> None:
        self._metrics.close()
        self._probes.close()

    def _trim(self) -> None:
        self._metrics.trim()
        self._probes.trim()
        if self._ckpt.shape[0] != self._num_ckpt:
            self._ckpt.resize(self._num_ckpt, axis=0)


# --------------------------------------------------------------------------- rows, columns, tables


def _merge(row: Mapping[str, Any] | None, values: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(row) if row is not None else {}
    overlap = set(data) & set(values)
    if overlap:
        raise TypeError(f"columns given twice (mapping and keyword): {sorted(overlap)}")
    data.update(values)
    return {k: v for k, v in data.items() if v is not None}  # None: not given


def _as_array(value: Any, key: str, text: bool = False) -> np.ndarray:
    if text and isinstance(value, str):  # a text column (probes only): fixed-width UTF-8, b"" when not given
        raw = value.encode("utf-8")
        if len(raw) > _TEXT_BYTES:
            raise TypeError(f"column {key!r}: text longer than {_TEXT_BYTES} UTF-8 bytes: {value!r}")
        return np.array(raw, dtype=_TEXT)
    if hasattr(value, "detach"):  # torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged sequences and the like
        raise TypeError(f"column {key!r}: cannot convert {type(value).__name__} to an array") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"column {key!r}: expected real numbers, got {arr.dtype} ({type(value).__name__})"
        )
    return arr


class _Rows:
    """A resizable dataset of a table, with what an append needs cached (h5py's
    high-level indexing costs several times more per row)."""

    __slots__ = ("_fspace", "_id", "_mspace", "capacity", "chunk_rows", "ds")

    def __init__(self, ds: h5py.Dataset, row_shape: tuple[int, ...]) -> None:
        self.ds = ds
        self.capacity = int(ds.shape[0])
        self.chunk_rows = int(ds.chunks[0])
        self._id = ds.id
        self._mspace = h5py.h5s.create_simple((1, *row_shape))
        self._fspace = self._id.get_space()

    def resize(self, rows: int) -> None:
        self.ds.resize(rows, axis=0)
        self.capacity = rows
        self._fspace = self._id.get_space()

    def grow(self, rows: int) -> None:
        new = max(self.capacity + max(self.chunk_rows, self.capacity // 4), rows)
        self.resize(-(-new // self.chunk_rows) * self.chunk_rows)


class _Column(_Rows):
    """One column's own dataset (an array or text column; every column in format 1)."""

    __slots__ = ("dtype", "row_shape")

    def __init__(self, ds: h5py.Dataset) -> None:
        self.row_shape: tuple[int, ...] = tuple(ds.shape[1:])
        self.dtype = ds.dtype
        super().__init__(ds, self.row_shape)

    def write(self, index: int, value: np.ndarray) -> None:
        self._fspace.select_hyperslab((index,) + (0,) * len(self.row_shape), (1,) + self.row_shape)
        data = np.ascontiguousarray(value, dtype=self.dtype).reshape((1,) + self.row_shape)
        self._id.write(self._mspace, self._fspace, data)


class _Scalars(_Rows):
    """A format 2 table's ``_scalars`` dataset (n, c): its scalar columns, written a
    whole row at a time."""

    __slots__ = ("index", "names")

    def __init__(self, ds: h5py.Dataset, names: list[str]) -> None:
        self.names = list(names)
        self.index = {name: j for j, name in enumerate(self.names)}
        super().__init__(ds, (len(self.names),))

    @property
    def room(self) -> int:
        """How many more columns fit."""
        return int(self.ds.maxshape[1]) - len(self.names)

    def add(self, names: list[str]) -> None:
        """New columns (NaN in every earlier row); a structural change."""
        self.ds.resize(len(self.names) + len(names), axis=1)
        self.names += names
        self.index = {name: j for j, name in enumerate(self.names)}
        _write_names(self.ds, self.names)
        self._mspace = h5py.h5s.create_simple((1, len(self.names)))
        self._fspace = self._id.get_space()

    def write(self, index: int, row: Mapping[str, np.ndarray]) -> None:
        """Row ``index``: the values ``row`` gives, NaN in the other columns."""
        values = np.full((1, len(self.names)), np.nan)
        for name, value in row.items():
            j = self.index.get(name)
            if j is not None:
                values[0, j] = value
        self._fspace.select_hyperslab((index, 0), (1, len(self.names)))
        self._id.write(self._mspace, self._fspace, values)

    def column(self, name: str, n: int) -> np.ndarray:
        return self.ds[:n, self.index[name]]


class _Scalar:
    """What :meth:`_Table._convert` checks of a column of ``_scalars``."""

    dtype = np.dtype(np.float64)
    row_shape: tuple[int, ...] = ()


class _Table:
    """The columns of one group that share the committed row count ``attrs['n_rows']``:
    the scalar columns in its ``_scalars`` dataset (format 2), the others (array and
    text columns; every column in format 1) one dataset each."""

    def __init__(
        self, group: h5py.Group, path: Path, where: str, row_ndim: Mapping[str, int],
        text: bool = False,
    ) -> None:
        self._g = group
        self._text = text  # str values make text columns
        self._path = path
        self._where = where
        self._row_ndim = row_ndim
        datasets = {k: v for k, v in group.items() if isinstance(v, h5py.Dataset)}
        packed = datasets.pop(SCALARS, None)
        self.n = committed_rows(group.attrs, list(datasets.values()) + (
            [packed] if packed is not None else []), path)
        # the committed row count, written in place by each append (None: not in the file
        # yet, a file of another tool: write_count adds it before the first append)
        self._count = (h5py.h5a.open(group.id, N_ROWS_ATTR.encode())
                       if N_ROWS_ATTR in group.attrs else None)
        self._scalars = None if packed is None else _Scalars(
            packed, scalar_names(packed, path, where))
        self._cols = {k: _Column(ds) for k, ds in datasets.items()}
        self._nan = {k: _missing(c.ds.dtype, c.row_shape) for k, c in self._cols.items()}

    def lacks_count(self) -> bool:
        return self._count is None

    def write_count(self) -> None:
        """Add the ``n_rows`` attribute a file of another tool lacks (a structural change:
        inside a transaction)."""
        if self._count is None:
            self._g.attrs[N_ROWS_ATTR] = np.int64(self.n)
            self._count = h5py.h5a.open(self._g.id, N_ROWS_ATTR.encode())

    def _spec(self, key: str) -> _Column | type[_Scalar] | None:
        if self._scalars is not None and key in self._scalars.index:
            return _Scalar
        return self._cols.get(key)

    def _convert(self, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if "step" not in data:
            raise StoreError(f"{self._path}: a {self._where} row needs a 'step'; got {sorted(data)}")
        out: dict[str, np.ndarray] = {}
        for key, value in data.items():
            _check_column_name(key, self._path, self._where)
            arr = _as_array(value, key, text=self._text)
            if key == "step":
                if arr.ndim != 0 or arr.dtype.kind not in "iuf" or (
                        arr.dtype.kind == "f" and not float(arr).is_integer()):  # bools too
                    raise StoreError(f"{self._path}: 'step' must be an integer, got {value!r}")
                if not 0 <= int(arr) < _STEP_LIMIT:
                    raise StoreError(f"{self._path}: 'step' must be an integer in 0 .. 2**53 - 1 "
                                     f"(optimizer steps taken), got {value!r}")
                out[key] = arr.astype(np.int64)
                continue
            col = self._spec(key)
            if col is not None and (arr.dtype.kind == "S") != (col.dtype.kind == "S"):
                raise StoreError(f"{self._path}: {self._where} column {key!r} holds "
                                 f"{'text' if col.dtype.kind == 'S' else 'numbers'}; got {value!r}")
            if arr.dtype.kind == "S":
                out[key] = arr
                continue
            arr = arr.astype(np.float64)
            if arr.ndim and arr.size == 0:  # e.g. no eigenvalue converged: not given
                continue
            ndim = self._row_ndim.get(key)
            if ndim is not None and arr.ndim != ndim:
                raise StoreError(
                    f"{self._path}: {self._where} column {key!r} takes {ndim}-D rows, "
                    f"got shape {arr.shape}"
                )
            if col is not None:
                shape = col.row_shape
                if arr.ndim != len(shape) or any(a > s for a, s in zip(arr.shape, shape)):
                    raise StoreError(
                        f"{self._path}: {self._where} column {key!r} holds rows of shape "
                        f"{shape} (fixed by its first row); got {arr.shape}. Smaller rows "
                        "are padded with NaN, larger ones do not fit"
                    )
                if arr.shape != shape:
                    padded = np.full(shape, np.nan)
                    padded[tuple(slice(0, a) for a in arr.shape)] = arr
                    arr = padded
            out[key] = arr
        return out

    def append(self, data: Mapping[str, Any], store: RunStore) -> int:
        row = self._convert(data)  # validate everything before touching the file
        store._f()  # open, and no failed write
        n = self.n
        scalars = self._scalars
        # 1. structure: new columns, more capacity; all-or-nothing, before any row data.
        new = [key for key in row if self._spec(key) is None]
        if new or any(c.capacity <= n for c in self._cols.values()) or (
                scalars is not None and scalars.capacity <= n):
            with store._transaction():
                packed = [] if scalars is None else [
                    key for key in new if row[key].ndim == 0 and row[key].dtype.kind != "S"
                ][: scalars.room]
                if packed:
                    assert scalars is not None
                    scalars.add(packed)
                for key in new:  # each column's capacity is its own, in its own chunks
                    if key in packed:
                        continue
                    col = _Column(_create_column(self._g, key, row[key].shape, n + 1,
                                                 text=row[key].dtype.kind == "S"))
                    self._cols[key] = col
                    self._nan[key] = _missing(col.dtype, col.row_shape)
                for col in self._cols.values():
                    if col.capacity <= n:
                        col.grow(n + 1)
                if scalars is not None and scalars.capacity <= n:
                    scalars.grow(n + 1)
        # 2. the row, into every column (overwriting what a killed writer left there);
        # raw data in allocated chunks only.
        if scalars is not None:
            scalars.write(n, row)
        for key, col in self._cols.items():
            col.write(n, row.get(key, self._nan[key]))
        store._flush()  # a failed write stops here, before the commit
        # 3. commit: one attribute value, in place. The row counts as committed from here:
        # an interruption in the flush leaves the count written, and the next append
        # must not take its place
        self._count.write(np.array(n + 1, dtype=np.int64))
        self.n = n + 1
        store._flush()
        return n

    def rewind(self, step: int, store: RunStore) -> int:
        """Uncommit the rows from the first one whose ``step`` exceeds ``step``.

        One attribute write, like an append's commit; the rows' data stay in the
        file until later appends overwrite them. Returns the number of rows dropped.
        """
        if self.n == 0:
            return 0
        if self._scalars is not None and "step" in self._scalars.index:
            steps = self._scalars.column("step", self.n)
        elif "step" in self._cols:
            steps = self._cols["step"].ds[: self.n]
        else:
            return 0
        past = np.flatnonzero(steps > step)
        if past.size == 0:
            return 0
        keep = int(past[0])
        self._count.write(np.array(keep, dtype=np.int64))
        store._flush()
        dropped, self.n = self.n - keep, keep
        return dropped

    def trim(self) -> None:
        # the count on disk may be one ahead of self.n: an append interrupted after it
        # wrote the count (its row is whole by then); never cut below that row
        on_disk = np.zeros((), dtype=np.int64)
        self._count.read(on_disk)
        self.n = max(self.n, int(on_disk))
        for col in self._cols.values():
            if col.capacity != self.n:
                col.resize(self.n)
        if self._scalars is not None and self._scalars.capacity != self.n:
            self._scalars.resize(self.n)
        self.close()

    def close(self) -> None:
        if self._count is not None and self._count.valid:
            self._count.close()


def _missing(dtype: np.dtype, row_shape: tuple[int, ...]) -> np.ndarray:
    """The value of a row that does not give a column: NaN, or b"" in a text column."""
    if dtype.kind == "S":
        return np.zeros(row_shape, dtype=dtype)
    return np.full(row_shape, np.nan)


def _create_column(group: h5py.Group, name: str, row_shape: tuple[int, ...], rows: int,
                   text: bool = False) -> h5py.Dataset:
    """Chunked, resizable, NaN-filled column (``text``: fixed-width UTF-8, b""-filled)
    with chunks allocated at resize time."""
    dtype = _TEXT if text else np.dtype(np.int64 if name == "step" else np.float64)
    row_bytes = dtype.itemsize * math.prod(row_shape)
    chunk_rows = max(1, min(_MAX_CHUNK_ROWS, _CHUNK_BYTES // max(row_bytes, 1)))
    chunk_rows = 1 << (chunk_rows.bit_length() - 1)  # a power of two
    rows = -(-max(rows, chunk_rows) // chunk_rows) * chunk_rows
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk((chunk_rows,) + row_shape)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_ALLOC)
    if not text:  # text: HDF5's default fill, zero bytes, reads as ""
        dcpl.set_fill_value(np.array(-1 if name == "step" else np.nan, dtype=dtype))
    dcpl.set_obj_track_times(False)
    space = h5py.h5s.create_simple((rows,) + row_shape, (h5py.h5s.UNLIMITED,) + row_shape)
    tid = h5py.h5t.py_create(dtype)
    dsid = h5py.h5d.create(group.id, name.encode(), tid, space, dcpl=dcpl)
    return h5py.Dataset(dsid)


def _create_scalars(group: h5py.Group, names: list[str], rows: int) -> h5py.Dataset:
    """A format 2 table's ``_scalars`` dataset: (rows, len(names)) float64, chunked,
    resizable in both dimensions, NaN-filled, chunks allocated at resize time."""
    chunk_rows = _SCALAR_CHUNK[0]
    rows = -(-max(rows, chunk_rows) // chunk_rows) * chunk_rows
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk(_SCALAR_CHUNK)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_ALLOC)
    dcpl.set_fill_value(np.array(np.nan))
    dcpl.set_obj_track_times(False)
    space = h5py.h5s.create_simple((rows, len(names)), (h5py.h5s.UNLIMITED, max(_MAX_SCALAR_COLUMNS, _SCALAR_CHUNK[1])))
    dsid = h5py.h5d.create(group.id, SCALARS.encode(), h5py.h5t.py_create(np.dtype(np.float64)),
                           space, dcpl=dcpl)
    ds = h5py.Dataset(dsid)
    _write_names(ds, names)
    return ds


def _write_names(ds: h5py.Dataset, names: list[str]) -> None:
    """The ``columns`` attribute: fixed-width UTF-8 (kept in the object header)."""
    raw = [name.encode("utf-8") for name in names]
    ds.attrs[SCALARS_COLUMNS_ATTR] = np.array(raw, dtype=f"S{max(len(r) for r in raw)}")


# --------------------------------------------------------------------------- runs and files


def _check_run_name(name: object, path: Path) -> None:
    try:
        check_run_name(name)
    except StoreError as exc:
        raise StoreError(f"{path}: {exc}") from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(
        f"config value of type {type(obj).__name__} is not JSON-able ({obj!r}); "
        "store its name or settings instead"
    )


def _config_json(config: Mapping[str, Any] | None) -> str:
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    text = json.dumps(dict(config), sort_keys=True, default=_json_default, allow_nan=True)
    if len(text.encode()) > _MAX_ATTR_BYTES:
        raise StoreError(
            f"config is {len(text.encode())} bytes of JSON; at most {_MAX_ATTR_BYTES} fit "
            "in an HDF5 attribute. Keep large arrays out of the config"
        )
    return text


def _name_max(folder: str) -> int:
    """The longest file name, in bytes, that ``folder`` (or, while it does not exist, its
    nearest existing ancestor, where it will be made) takes: ``PC_NAME_MAX``; 255 (the
    usual limit) where the system does not say."""
    try:
        limit = os.pathconf(nearest_existing(Path(folder)), "PC_NAME_MAX")
    except (OSError, ValueError):  # no such setting here, or not a folder
        return 255
    return limit if limit > 0 else 255


def check_run_file_name(path: str | os.PathLike[str]) -> None:
    """Refuse a run file whose journal could not be made beside it, before anything is
    created: a writer keeps the journal as ``<file>-journal`` beside the real file
    (:func:`~spectra.runs.journal.journal_path`), a name 8 bytes longer than the
    file's, and a folder takes names of at most ``PC_NAME_MAX`` bytes (255 on most
    file systems).

    Raises:
        StoreError: naming ``path``, the limit and the longest name that fits.
    """
    real = os.path.realpath(path)
    folder, journal_name = os.path.split(journal_path(real))
    size = len(os.fsencode(os.path.basename(real)))
    extra = len(os.fsencode(journal_name)) - size  # the journal's suffix
    limit = _name_max(folder)
    if size + extra > limit:
        shown = f"{path} (a link to {real})" if real != os.path.abspath(path) else str(path)
        raise StoreError(
            f"cannot write {shown}: its file name is {size} bytes long, and the name of its "
            f"journal beside it would be {size + extra}; names in {folder} have at most "
            f"{limit} bytes. Use a file name of at most {limit - extra} bytes")


def _create_file(path: Path) -> None:
    """Create an empty spectra-run file atomically: whole, or not at all. It is written
    under a short temporary name in the same folder (whatever the length of
    ``path``'s name), then linked into place, which fails if another process created
    ``path`` meanwhile (that file is kept); renamed where hard links are not supported.
    A ``path`` that is a link to no file yet makes the file the link names."""
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".spectra-{uuid.uuid4().hex[:16]}.tmp")
    made = False  # tmp is this call's own, to remove
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # claims the name
        made = True
        with h5py.File(tmp, "w", libver="earliest", locking="best-effort") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = np.int64(FORMAT_VERSION)
            f.attrs["created"] = _now()
            f.attrs["spectra_version"] = __version__
        try:
            os.link(tmp, path)  # fails if another process created it meanwhile
        except FileExistsError:
            pass
        except OSError as exc:  # file system without hard links
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            if not path.exists():
                os.replace(tmp, path)
    except OSError as exc:
        err = exc if exc.errno else _errno_in_text(exc)
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            raise _write_error(path, err) from exc
        raise
    finally:
        if made and tmp.exists():
            tmp.unlink()


def _errno_in_text(exc: OSError) -> OSError:
    """h5py's OSError text carries HDF5's ``errno = N``; the errno it names."""
    import re

    m = re.search(r"errno = (\d+)", str(exc))
    n = int(m.group(1)) if m else 0
    return OSError(n, os.strerror(n)) if n else exc


def _check_column_name(key: object, path: Path, where: str) -> None:
    """Refuse a column name the file cannot hold as itself, before anything is written:
    not a non-empty string; ``/`` (a group separator) or ``.`` (the group itself); a
    reserved name; a NUL (names are stored as fixed-width bytes, which drop trailing
    NULs: ``"a\\0"`` would read back as ``"a"``); not encodable as UTF-8 (a lone
    surrogate, as ``os.fsdecode`` makes of undecodable bytes)."""
    bad = (not isinstance(key, str) or not key or "/" in key or key == "."
           or key in (N_ROWS_ATTR, SCALARS, "run") or "\0" in key)
    if not bad:
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            bad = True
    if bad:
        raise StoreError(f"{path}: invalid column name {key!r} in {where} (a non-empty name "
                         "of UTF-8 text, without '/' or NUL, not '.', 'run' (the run column "
                         f"of the CSV export), {N_ROWS_ATTR!r} or {SCALARS!r})")


def _write_error(path: Path, exc: OSError) -> StoreWriteError:
    if isinstance(exc, ChangeAborted):
        return StoreWriteError(f"cannot write {path}: {exc}; the rows committed before are "
                               "intact (close the store and open the file again to go on)")
    reason = "no space left on the device" if exc.errno == errno.ENOSPC else (
        exc.strerror or str(exc))
    return StoreWriteError(
        f"cannot write {path}: {reason}; the rows committed before are intact (free space, "
        "then resume from the last checkpoint)")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")
