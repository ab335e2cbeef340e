"""The HDF5 run format: an append-only, crash-safe writer and a read-only reader.

One file holds one run or several (a comparison of optimizers on the same model,
data and seed)::

    /                   attrs: format="spectra-run", format_version=1, created, spectra_version
    /<run>/             attrs: config (JSON text), created, spectra_version
    /<run>/metrics/     one row per logged step; attr n_rows
                          step (n,) int64; epoch, train_loss, train_acc, test_loss, test_acc,
                          lr, momentum, weight_decay, seconds (n,) float64; any extra column
    /<run>/probes/      one row per probe; attr n_rows
                          step (n,) int64; epoch, bottom_eigenvalue, trace, trace_stderr,
                          num_matvecs, seconds (n,) float64; top_eigenvalues (n, k);
                          ritz_nodes, ritz_weights (n, n_v, m); any extra column
    /<run>/checkpoints  (n,) UTF-8 strings: ``.pt`` paths relative to the HDF5 file's
                          directory; attr n_rows

Rows and missing values
    ``step`` is required in every metrics and probe row. Every other column is
    float64, and a value a row does not give is NaN. The ten standard metric columns
    and the scalar probe columns exist from the run's creation. The array probe
    columns (``top_eigenvalues``, ``ritz_nodes``, ``ritz_weights``) are created by
    the first row that gives them (earlier rows read as NaN) and are absent, read as
    ``None``, in a run that never gave them (e.g. a run without a density). A key
    that is not a standard column becomes an extra column the same way. The first
    value of an array column fixes its row shape: a later, smaller value (fewer
    Ritz nodes after an early Lanczos breakdown) is padded with NaN; a larger one
    is an error; an empty one, or ``None``, counts as not given. No compression: every row must be writable in place.

Committed rows
    Each table (``metrics``, ``probes``, ``checkpoints``) carries an ``n_rows``
    attribute, the committed row count; readers use only rows ``[0, n_rows)``.
    Datasets are allocated ahead in whole chunks (capacity doubles when full,
    chunks allocated at resize time, NaN-filled), so they may be longer than
    ``n_rows`` while a writer is open or after it was killed; a clean
    :meth:`RunStore.close` trims them to ``n_rows``. Tables commit independently:
    a kill between a metrics row and the probe row of the same step keeps the
    first and loses the second. Rows are only ever appended, with one exception:
    :meth:`RunWriter.rewind` lowers ``n_rows`` so that a run resumed from a
    checkpoint writes the steps after it once (the stopped run's rows for those
    steps are replaced by the resumed run's).

Crash safety (SIGKILL at any moment loses no committed row)
    An append (1) creates any new column and grows all columns if needed, inside a
    journaled transaction (below); (2) writes the row into every column (NaN where
    not given) and flushes; (3) writes ``n_rows + 1`` and flushes. Steps 2 and 3
    change no HDF5 structure: they overwrite raw data in allocated chunks and one
    attribute value in place, so a kill between or inside them leaves the old
    ``n_rows`` and the old rows intact; when ``append_*`` returns, the row is in the
    operating system's hands. Structural changes (creating a run, a new column,
    growing, trimming at close, deleting a run) are different: HDF5 writes the
    metadata of one flush in an order of its own, and a kill half-way through can
    leave e.g. a B-tree node pointing past the recorded end of the file, making the
    whole file unreadable. So the writer does its I/O through h5py's ``fileobj``
    driver with an undo journal: during a structural change, every write over the
    file's old bytes first saves those bytes to ``<file>-journal``; the change
    commits by deleting the journal. The next writer to open a file whose journal
    is present and whose writer is dead puts the old bytes back and truncates to
    the old length (a "hot journal", as in SQLite); a reader never writes, and
    reads the file as it was before the change, rebuilt from the journal in
    memory. The journal's header records the file's size and a fingerprint
    (crc32 of its first 64 KiB) before the change, and its device and inode: a
    journal that was not written for the file beside it is never applied (a
    writer renames it to ``<file>-journal.orphan-<time>`` and warns). New files
    are created whole under a temporary name and linked into place.

    The superblock is HDF5's version 0 (``libver`` lower bound "earliest"):
    version 3 (``libver="latest"``, required by SWMR) marks the file as open for
    writing, and after a kill HDF5 refuses to open it until ``h5clear`` is run;
    SWMR also forbids creating datasets while appending. Flushing hands data to
    the operating system but does not ``fsync``: a power loss, unlike a killed
    process, can still lose recent rows. Do not copy a file while a ``-journal``
    sits beside it without copying the journal too.

Locking
    A :class:`RunStore` holds an exclusive ``flock`` on the file (the lock HDF5
    itself takes on Linux; the kernel drops it when the process dies, however it
    dies) for as long as it is open: a second writer, in another process or this
    one, gets :class:`StoreLockedError`, and so does a writer while another
    program has the file open with HDF5's locking on. The reader functions
    (:func:`read_run`, :func:`read_runs`, :func:`list_runs`) open read-only
    *without* a lock, so they never block a writer and work while a run is being
    written: they see the rows committed when they open the file, wait (up to
    5 s) while the writer is inside a structural change, and retry a read that
    overlapped one. Readers in the writer's process read through its handle. On
    file systems without ``flock`` (some network mounts) there is no lock.

Example::

    with RunStore("runs/compare.h5") as store:
        run = store.create_run("sgd", config={"optimizer": "sgd", "lr": 0.1})
        run.append_metrics(step=0, epoch=0.0, train_loss=2.3, lr=0.1)
        run.append_probe(step=0, top_eigenvalues=[12.0, 7.5], trace=80.0)
    data = read_run("runs/compare.h5", "sgd")
    data.metrics.train_loss            # array([2.3])
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import math
import os
import struct
import time
import uuid
import warnings
import weakref
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import h5py
import numpy as np

from spectra._version import __version__

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "METRIC_COLUMNS",
    "PROBE_COLUMNS",
    "Metrics",
    "Probes",
    "RunData",
    "RunStore",
    "RunWriter",
    "StoreError",
    "StoreLockedError",
    "StoreWriteError",
    "check_run_name",
    "list_runs",
    "read_run",
    "read_runs",
]

FORMAT = "spectra-run"
FORMAT_VERSION = 1

METRIC_COLUMNS: tuple[str, ...] = (
    "step", "epoch", "train_loss", "train_acc", "test_loss", "test_acc",
    "lr", "momentum", "weight_decay", "seconds",
)
PROBE_COLUMNS: tuple[str, ...] = (
    "step", "epoch", "top_eigenvalues", "bottom_eigenvalue", "trace", "trace_stderr",
    "ritz_nodes", "ritz_weights", "num_matvecs", "seconds",
)
# Number of dimensions of one row of each standard probe column (0: scalar).
_PROBE_ROW_NDIM = {name: 0 for name in PROBE_COLUMNS} | {
    "top_eigenvalues": 1, "ritz_nodes": 2, "ritz_weights": 2,
}
_PROBE_ARRAY_COLUMNS = ("top_eigenvalues", "ritz_nodes", "ritz_weights")

_N_ROWS = "n_rows"
_RUN_ID = "run_id"
_CHUNK_BYTES = 1 << 16          # target chunk size of one column
_MAX_CHUNK_ROWS = 1024
_MAX_ATTR_BYTES = 60_000        # HDF5 v1 object headers hold attributes below 64 KiB
_STR = h5py.string_dtype("utf-8")


class StoreError(ValueError):
    """A file that is not a readable spectra-run file, or a bad request to one.

    Raised for: not an HDF5 file, not a spectra-run file, an unsupported
    ``format_version``, a duplicate or missing run, a row that does not fit its
    columns. The message names the file and what was expected.
    """


class StoreLockedError(StoreError):
    """The file is already open for writing, by another process or another
    :class:`RunStore` in this one."""


class StoreWriteError(StoreError):
    """The file could not be written (no space left on the device, an I/O error).

    Every row committed before is intact; an unfinished structural change stays
    in the journal and is rolled back by the next writer. The :class:`RunStore`
    is unusable afterwards (close it).
    """


def _errno_in_text(exc: OSError) -> OSError:
    """h5py's OSError text carries HDF5's ``errno = N``; the errno it names."""
    import re

    m = re.search(r"errno = (\d+)", str(exc))
    n = int(m.group(1)) if m else 0
    return OSError(n, os.strerror(n)) if n else exc


def _write_error(path: Path, exc: OSError) -> StoreWriteError:
    reason = "no space left on the device" if exc.errno == errno.ENOSPC else (
        exc.strerror or str(exc))
    return StoreWriteError(
        f"cannot write {path}: {reason}; the rows committed before are intact (free space, "
        "then resume from the last checkpoint)")


# Open writers of this process, by real path: readers in this process go through
# their handle (HDF5 refuses a second, differently locked open of the same file).
_WRITERS: weakref.WeakValueDictionary[str, RunStore] = weakref.WeakValueDictionary()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _key(path: Path) -> str:
    return os.path.realpath(path)


# --------------------------------------------------------------------------- journal

_JOURNAL_MAGIC = b"spectra-journal2"
# magic, old file size, crc32 of the old file's first _FINGERPRINT bytes, st_dev, st_ino,
# crc32 of the fields before it
_JOURNAL_HEADER = struct.Struct("<16sQIQQI")
_JOURNAL_ENTRY = struct.Struct("<QQI")      # offset, length, crc32 of header fields + bytes
_FINGERPRINT = 1 << 16
_MIN_UNCOVERED = 1 << 10


def _journal_path(path: str | os.PathLike[str]) -> str:
    return os.fspath(path) + "-journal"


def _write_all(fd: int, data: bytes | memoryview, offset: int | None = None) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[n:]
        if offset is not None:
            offset += n


def _read_at(fd: int, offset: int, length: int) -> bytes:
    out = bytearray()
    while len(out) < length:
        chunk = os.pread(fd, length - len(out), offset + len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


@dataclass
class _Journal:
    """A parsed undo journal: the file's size and fingerprint before the change
    and the old bytes of every region the change overwrote (a torn last entry,
    whose overwrite never started, is left out)."""

    old_size: int
    fingerprint: int
    dev: int
    ino: int
    entries: list[tuple[int, bytes]]

    @classmethod
    def read(cls, jpath: str) -> _Journal | None:
        """The journal at ``jpath``; None when it has no valid header (it was cut
        before any overwrite began). FileNotFoundError when there is none."""
        with open(jpath, "rb") as j:
            data = j.read()
        head = _JOURNAL_HEADER.size
        if len(data) < head:
            return None
        magic, old_size, fingerprint, dev, ino, crc = _JOURNAL_HEADER.unpack_from(data)
        if magic != _JOURNAL_MAGIC or crc != zlib.crc32(data[:head - 4]):
            return None
        entries, pos = [], head
        while pos + _JOURNAL_ENTRY.size <= len(data):
            offset, length, crc = _JOURNAL_ENTRY.unpack_from(data, pos)
            start = pos + _JOURNAL_ENTRY.size
            blob = data[start:start + length]
            if len(blob) != length or crc != zlib.crc32(blob, zlib.crc32(data[pos:pos + 16])):
                break
            entries.append((offset, blob))
            pos = start + length
        return cls(old_size, fingerprint, dev, ino, entries)

    def old_bytes(self, fd: int, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset + length)`` of the file as it was before the change:
        the file's current bytes with the saved ones put back, cut at the old size."""
        length = max(0, min(length, self.old_size - offset))
        buf = bytearray(_read_at(fd, offset, length).ljust(length, b"\0"))
        for start, blob in reversed(self.entries):  # the oldest bytes win
            lo, hi = max(start, offset), min(start + len(blob), offset + length)
            if lo < hi:
                buf[lo - offset:hi - offset] = blob[lo - start:hi - start]
        return bytes(buf)

    def belongs_to(self, fd: int) -> bool:
        """Whether this journal was written for the file open at ``fd``.

        The file rebuilt from the journal must have the fingerprint recorded when
        the change began (the crc32 of its first 64 KiB), and either be the same
        file (device and inode) or a copy whose recorded bytes were not all
        rewritten by the change (at least 1 KiB of the fingerprinted window comes
        from the file itself, not from the journal), so a journal left beside
        another file is never applied to it.
        """
        window = min(self.old_size, _FINGERPRINT)
        if zlib.crc32(self.old_bytes(fd, 0, window)) != self.fingerprint:
            return False
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == (self.dev, self.ino):
            return True
        covered = bytearray(window)
        for start, blob in self.entries:
            lo, hi = min(start, window), min(start + len(blob), window)
            covered[lo:hi] = b"\1" * (hi - lo)
        return window - sum(covered) >= min(window, _MIN_UNCOVERED)


def _rollback(fd: int, jpath: str) -> bool:
    """Undo an unfinished structural change of a killed writer, if any.

    The caller holds the exclusive lock on ``fd``. Entries hold the bytes a
    change overwrote, each written whole before the overwrite; a torn last entry
    (its overwrite never started) is ignored. A journal that was not written for
    this file (:meth:`_Journal.belongs_to`) is never applied: it is renamed to
    ``<journal>.orphan-<time>`` with a warning. Returns whether a journal was found.
    """
    try:
        journal = _Journal.read(jpath)
    except FileNotFoundError:
        return False
    if journal is not None and not journal.belongs_to(fd):
        orphan = f"{jpath}.orphan-{_dt.datetime.now():%Y%m%d-%H%M%S-%f}"
        os.replace(jpath, orphan)
        warnings.warn(
            f"{jpath} was not written for the file beside it (another file's journal); it "
            f"was not applied and is kept as {orphan}", RuntimeWarning, stacklevel=3)
        return True
    if journal is not None:
        for offset, blob in reversed(journal.entries):  # the oldest bytes win
            _write_all(fd, blob, offset)
        os.ftruncate(fd, journal.old_size)
        os.fsync(fd)
    # a journal without a valid header was cut before any overwrite began
    os.unlink(jpath)
    return True


class _OldView:
    """A read-only file object for h5py: the file as it was before a killed
    writer's unfinished change, rebuilt from its journal in memory. Readers use it
    instead of rolling the change back, so reading never writes."""

    def __init__(self, path: Path, journal: _Journal) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self._journal = journal
        self._pos = 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos}.get(whence, self._journal.old_size)
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        data = self._journal.old_bytes(self._fd, self._pos, len(view))
        view[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = max(0, self._journal.old_size - self._pos)
        data = self._journal.old_bytes(self._fd, self._pos, size)
        self._pos += len(data)
        return data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _JournaledFile:
    """The writer's file, for h5py's ``fileobj`` driver: takes the lock and keeps
    an undo journal of structural changes.

    HDF5 writes the metadata of one flush (B-tree nodes, object headers, the
    superblock's end-of-file address) in an order of its own, so a kill in the
    middle of a flush that changes structure (new group or dataset, resize) can
    leave a node that points past the recorded end of the file. Between
    :meth:`begin` and :meth:`commit`, every write over the file's old bytes first
    saves those bytes to ``<file>-journal``; the next opener (writer or reader)
    of a file with a journal and no live writer puts them back (a reader reads
    around them, see :class:`_OldView`). Row appends run
    outside transactions: they overwrite raw data in allocated chunks and one
    attribute value, which a kill cannot leave half-structured.
    """

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise StoreLockedError(
                f"{path} is locked: another process (or another open handle in this one) "
                "has it open with a lock, as HDF5 takes. "
                "Only one writer at a time; read it with spectra.runs.store.read_run(), which "
                "takes no lock, or wait for the writer to close"
            ) from None
        except OSError as exc:  # no flock on this file system: best effort
            if exc.errno not in (errno.ENOLCK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(self._fd)
                raise
        self._jpath = _journal_path(path)
        self._jfd: int | None = None
        self._old_size = 0
        self._pos = 0
        # The first failed write (ENOSPC, EIO). HDF5 must not see it (an exception
        # inside its callbacks leaves it in a broken state): from then on nothing is
        # written, and the change's journal is kept for the next writer to roll back.
        self.error: OSError | None = None
        _rollback(self._fd, self._jpath)

    # -- transactions
    def begin(self) -> None:
        if self._jfd is not None or self.error is not None:
            return
        try:
            self._begin()
        except OSError as exc:  # nothing was overwritten yet: no journal is needed
            if self._jfd is not None:
                os.close(self._jfd)
                self._jfd = None
            with contextlib.suppress(OSError):
                os.unlink(self._jpath)
            self.error = exc

    def _begin(self) -> None:
        st = os.fstat(self._fd)
        self._old_size = st.st_size
        fingerprint = zlib.crc32(_read_at(self._fd, 0, min(self._old_size, _FINGERPRINT)))
        self._jfd = os.open(self._jpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        fields = _JOURNAL_HEADER.pack(_JOURNAL_MAGIC, self._old_size, fingerprint, st.st_dev,
                                      st.st_ino, 0)[:-4]
        _write_all(self._jfd, fields + struct.pack("<I", zlib.crc32(fields)))

    def commit(self) -> None:
        if self._jfd is None:
            return
        os.close(self._jfd)
        self._jfd = None
        if self.error is None:
            os.unlink(self._jpath)  # the commit point
        # else the change stays hot: the next writer rolls it back

    def _save(self, offset: int, length: int) -> None:
        end = min(offset + length, self._old_size)
        if self._jfd is None or offset >= end:
            return
        blob = os.pread(self._fd, end - offset, offset)
        fields = struct.pack("<QQ", offset, len(blob))
        crc = zlib.crc32(blob, zlib.crc32(fields))
        _write_all(self._jfd, fields + struct.pack("<I", crc) + blob)

    # -- the file-object methods h5py's fileobj driver calls
    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            self._pos = offset
        elif whence == os.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = os.fstat(self._fd).st_size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        total = 0
        while total < len(view):
            n = os.preadv(self._fd, [view[total:]], self._pos + total)
            if n == 0:
                break
            total += n
        self._pos += total
        return total

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = max(0, os.fstat(self._fd).st_size - self._pos)
        buf = bytearray(size)
        return bytes(buf[: self.readinto(buf)])

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                self._save(self._pos, len(view))  # no overwrite before its undo is saved
                _write_all(self._fd, view, self._pos)
            except OSError as exc:
                self.error = exc
        self._pos += len(view)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                current = os.fstat(self._fd).st_size
                if size != current:
                    if size < current:
                        self._save(size, current - size)
                    os.ftruncate(self._fd, size)
            except OSError as exc:
                self.error = exc
        return size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the lock
            self._fd = -1


# --------------------------------------------------------------------------- writer


class RunStore:
    """Writer of a spectra-run HDF5 file: creates it, or opens it to add runs.

    Args:
        path: the ``.h5`` file. Created (with missing parent directories) when
            absent; an existing file must be a spectra-run file of this
            ``format_version`` and is only ever appended to.

    Raises:
        StoreLockedError: another process or another ``RunStore`` of this process
            has the file open for writing (or another program holds HDF5's lock).
        StoreError: the file is not a spectra-run file of a supported version.

    Use as a context manager, or call :meth:`close`; both trim the datasets to
    their committed rows. Not thread-safe.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._error_reported = False
        self._writers: dict[str, RunWriter] = {}
        key = _key(self.path)
        other = _WRITERS.get(key)
        if other is not None and other._file is not None:
            raise StoreLockedError(
                f"{self.path} is already open for writing by another RunStore in this "
                "process; use that one, or close it first"
            )
        if not self.path.exists():
            _create_file(self.path)
        self._io: _JournaledFile | None = _JournaledFile(self.path)
        try:
            if not _has_hdf5_signature(self.path):
                raise StoreError(_not_hdf5_message(self.path))
            with self._transaction():
                try:
                    self._file = h5py.File(self._io, "r+")
                except OSError as exc:
                    raise StoreError(f"cannot open {self.path} for writing: {exc}") from exc
            _check_root(self._file, self.path)
        except BaseException:
            if self._file is not None:
                self._file.close()
                self._file = None
            self._io.close()
            self._io = None
            raise
        _WRITERS[key] = self

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """Make the HDF5 structure changes inside all-or-nothing under SIGKILL."""
        assert self._io is not None
        self._check_io()
        self._io.begin()
        try:
            yield
        finally:
            if self._file is not None:
                self._file.flush()
            self._io.commit()
        self._check_io()

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
        if self._file is None:
            return
        assert self._io is not None
        io_ = self._io
        try:
            self._io.begin()
            try:
                if self._io.error is None:  # after a failed write, leave the file as it is
                    for writer in self._writers.values():
                        writer._trim()
            finally:
                self._file.close()
                self._file = None
                self._io.commit()
        finally:
            for writer in self._writers.values():
                writer._store = None
            self._writers.clear()
            self._io.close()
            self._io = None
            if _WRITERS.get(_key(self.path)) is self:
                del _WRITERS[_key(self.path)]
        if io_.error is not None and not self._error_reported:  # failed in the trim
            self._error_reported = True
            raise _write_error(self.path, io_.error)

    def _f(self) -> h5py.File:
        if self._file is None:
            raise StoreError(f"{self.path}: this RunStore is closed")
        self._check_io()
        return self._file

    # -- runs
    def run_names(self) -> list[str]:
        """Names of the runs in the file, in creation order."""
        return _run_names(self._f())

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
            group.attrs[_RUN_ID] = uuid.uuid4().hex
            group.attrs["config"] = config_text
            group.attrs["created"] = _now()
            group.attrs["spectra_version"] = __version__
            metrics = group.create_group("metrics")
            for column in METRIC_COLUMNS:
                _create_column(metrics, column, (), 0)
            metrics.attrs[_N_ROWS] = np.int64(0)
            probes = group.create_group("probes")
            for column in PROBE_COLUMNS:
                if column not in _PROBE_ARRAY_COLUMNS:
                    _create_column(probes, column, (), 0)
            probes.attrs[_N_ROWS] = np.int64(0)
            ckpt = group.create_dataset(
                "checkpoints", shape=(0,), maxshape=(None,), dtype=_STR, chunks=(64,),
                track_times=False,
            )
            ckpt.attrs[_N_ROWS] = np.int64(0)
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
                raise StoreError(f"{self.path} has no run {name!r}; runs: {_run_names(f)}")
            with self._transaction():  # a file from other tools may lack n_rows
                self._writers[name] = RunWriter(self, name)
        return self._writers[name]

    def read_run(self, name: str) -> RunData:
        """The committed data of run ``name`` (see :func:`read_run`)."""
        return _read_run(self._f(), self.path, name)


class RunWriter:
    """Appends rows to one run of an open :class:`RunStore`.

    Get one from :meth:`RunStore.create_run` or :meth:`RunStore.open_run`. Each
    ``append_*`` call commits one row (flushed, crash-safe; see the module
    docstring) and returns its row index.
    """

    def __init__(self, store: RunStore, name: str) -> None:
        self._store: RunStore | None = store
        self.name = name
        group = store._f()[name]
        self._metrics = _Table(group["metrics"], store.path, f"{name}/metrics", {})
        self._probes = _Table(group["probes"], store.path, f"{name}/probes", _PROBE_ROW_NDIM)
        self._ckpt = group["checkpoints"]
        self._num_ckpt = _committed_rows(self._ckpt.attrs, [self._ckpt], store.path)

    def __repr__(self) -> str:
        return (
            f"RunWriter({self.name!r}, metrics={self.num_metrics}, probes={self.num_probes}, "
            f"checkpoints={self._num_ckpt})"
        )

    def _live(self) -> RunStore:
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
        return _run_id(self._live()._f()[self.name])

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
        """Record a checkpoint file; stored relative to the HDF5 file's directory.

        A file already recorded (a resumed run writing the same checkpoint again)
        keeps its entry.

        Args:
            path: the ``.pt`` file (absolute, or relative to the working directory).

        Returns:
            The checkpoint's index.
        """
        store = self._live()
        store._f()  # open, and no failed write
        h5dir = os.path.dirname(os.path.abspath(store.path))
        target = os.path.abspath(os.fspath(path))
        try:
            rel = os.path.relpath(target, h5dir)
        except ValueError:  # another drive on Windows
            rel = target
        n = self._num_ckpt
        ds = self._ckpt
        if n:
            recorded = list(ds.asstr()[:n])
            if rel in recorded:
                return recorded.index(rel)
        with store._transaction():  # may grow the dataset and the global heap
            if ds.shape[0] <= n:
                ds.resize(max(n + 1, 2 * ds.shape[0], 16), axis=0)
            ds[n] = rel
        ds.attrs.modify(_N_ROWS, np.int64(n + 1))
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


def _merge(row: Mapping[str, Any] | None, values: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(row) if row is not None else {}
    overlap = set(data) & set(values)
    if overlap:
        raise TypeError(f"columns given twice (mapping and keyword): {sorted(overlap)}")
    data.update(values)
    return {k: v for k, v in data.items() if v is not None}  # None: not given


def _as_array(value: Any, key: str) -> np.ndarray:
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


class _Column:
    """One dataset of a table, with what an append needs cached (h5py's high-level
    indexing costs ~5x more per row)."""

    __slots__ = ("_fspace", "_id", "_mspace", "capacity", "chunk_rows", "ds", "dtype", "row_shape")

    def __init__(self, ds: h5py.Dataset) -> None:
        self.ds = ds
        self.row_shape: tuple[int, ...] = tuple(ds.shape[1:])
        self.dtype = ds.dtype
        self.capacity = int(ds.shape[0])
        self.chunk_rows = int(ds.chunks[0])
        self._id = ds.id
        self._mspace = h5py.h5s.create_simple((1,) + self.row_shape)
        self._fspace = self._id.get_space()

    def resize(self, rows: int) -> None:
        self.ds.resize(rows, axis=0)
        self.capacity = rows
        self._fspace = self._id.get_space()

    def grow(self, rows: int) -> None:
        new = max(2 * self.capacity, rows)
        self.resize(-(-new // self.chunk_rows) * self.chunk_rows)

    def write(self, index: int, value: np.ndarray) -> None:
        self._fspace.select_hyperslab((index,) + (0,) * len(self.row_shape), (1,) + self.row_shape)
        data = np.ascontiguousarray(value, dtype=self.dtype).reshape((1,) + self.row_shape)
        self._id.write(self._mspace, self._fspace, data)


class _Table:
    """Columns of one group that share the committed row count ``attrs['n_rows']``."""

    def __init__(
        self, group: h5py.Group, path: Path, where: str, row_ndim: Mapping[str, int]
    ) -> None:
        self._g = group
        self._path = path
        self._where = where
        self._row_ndim = row_ndim
        datasets = [v for v in group.values() if isinstance(v, h5py.Dataset)]
        self.n = _committed_rows(group.attrs, datasets, path)
        if _N_ROWS not in group.attrs:
            group.attrs[_N_ROWS] = np.int64(self.n)
        self._count = h5py.h5a.open(group.id, _N_ROWS.encode())
        self._cols = {ds.name.rsplit("/", 1)[-1]: _Column(ds) for ds in datasets}
        self._nan = {k: np.full(c.row_shape, np.nan) for k, c in self._cols.items()}

    def _convert(self, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if "step" not in data:
            raise StoreError(f"{self._path}: a {self._where} row needs a 'step'; got {sorted(data)}")
        out: dict[str, np.ndarray] = {}
        for key, value in data.items():
            if not isinstance(key, str) or not key or "/" in key or key == _N_ROWS:
                raise StoreError(f"{self._path}: invalid column name {key!r} in {self._where}")
            arr = _as_array(value, key)
            if key == "step":
                if arr.ndim != 0 or (arr.dtype.kind == "f" and not float(arr).is_integer()):
                    raise StoreError(f"{self._path}: 'step' must be an integer, got {value!r}")
                out[key] = arr.astype(np.int64)
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
            col = self._cols.get(key)
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
        # 1. structure: new columns, more capacity; all-or-nothing, before any row data.
        new = [key for key in row if key not in self._cols]
        if new or any(c.capacity <= n for c in self._cols.values()):
            capacity = max([c.capacity for c in self._cols.values()] + [n + 1])
            with store._transaction():
                for key in new:
                    col = _Column(_create_column(self._g, key, row[key].shape, capacity))
                    self._cols[key] = col
                    self._nan[key] = np.full(col.row_shape, np.nan)
                for col in self._cols.values():
                    if col.capacity <= n:
                        col.grow(n + 1)
        # 2. the row, into every column (overwriting what a killed writer left there);
        # raw data in allocated chunks only.
        for key, col in self._cols.items():
            col.write(n, row.get(key, self._nan[key]))
        store._flush()  # a failed write stops here, before the commit
        # 3. commit: one attribute value, in place.
        self._count.write(np.array(n + 1, dtype=np.int64))
        store._flush()
        self.n = n + 1
        return n

    def rewind(self, step: int, store: RunStore) -> int:
        """Uncommit the rows from the first one whose ``step`` exceeds ``step``.

        One attribute write, like an append's commit; the rows' data stay in the
        file until later appends overwrite them. Returns the number of rows dropped.
        """
        col = self._cols.get("step")
        if self.n == 0 or col is None:
            return 0
        steps = col.ds[: self.n]
        past = np.flatnonzero(steps > step)
        if past.size == 0:
            return 0
        keep = int(past[0])
        self._count.write(np.array(keep, dtype=np.int64))
        store._flush()
        dropped, self.n = self.n - keep, keep
        return dropped

    def trim(self) -> None:
        for col in self._cols.values():
            if col.capacity != self.n:
                col.resize(self.n)
        self.close()

    def close(self) -> None:
        if self._count.valid:
            self._count.close()


def _create_column(group: h5py.Group, name: str, row_shape: tuple[int, ...], rows: int) -> h5py.Dataset:
    """Chunked, resizable, NaN-filled column with chunks allocated at resize time."""
    dtype = np.dtype(np.int64 if name == "step" else np.float64)
    row_bytes = dtype.itemsize * math.prod(row_shape)
    chunk_rows = max(1, min(_MAX_CHUNK_ROWS, _CHUNK_BYTES // max(row_bytes, 1)))
    chunk_rows = 1 << (chunk_rows.bit_length() - 1)  # a power of two
    rows = -(-max(rows, chunk_rows) // chunk_rows) * chunk_rows
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk((chunk_rows,) + row_shape)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_ALLOC)
    dcpl.set_fill_value(np.array(-1 if name == "step" else np.nan, dtype=dtype))
    dcpl.set_obj_track_times(False)
    space = h5py.h5s.create_simple((rows,) + row_shape, (h5py.h5s.UNLIMITED,) + row_shape)
    tid = h5py.h5t.py_create(dtype)
    dsid = h5py.h5d.create(group.id, name.encode(), tid, space, dcpl=dcpl)
    return h5py.Dataset(dsid)


def _committed_rows(
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
    if _N_ROWS in attrs:
        n = _row_count(attrs[_N_ROWS], path, where)
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


def _kind(obj: Any) -> str:
    if isinstance(obj, h5py.Dataset):
        return f"a dataset of shape {obj.shape} and dtype {obj.dtype}"
    if isinstance(obj, h5py.Group):
        return "a group"
    return f"a {type(obj).__name__}"


def check_run_name(name: object) -> None:
    """Raise :class:`StoreError` unless ``name`` can name a run (a non-empty string
    without ``/``, NUL, and other than ``.`` and ``..``)."""
    if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or "\0" in name:
        raise StoreError(f"invalid run name {name!r} (a non-empty string without '/')")


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


def _create_file(path: Path) -> None:
    """Create an empty spectra-run file atomically: whole, or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
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
        if tmp.exists():
            tmp.unlink()


# --------------------------------------------------------------------------- reader


@dataclass(frozen=True)
class Metrics:
    """Committed metric rows of a run: read-only (n,) arrays.

    ``step`` int64 (optimizer steps); the others float64, NaN where a row gave no
    value: ``epoch``, ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``
    (fractions), ``lr``, ``momentum``, ``weight_decay``, ``seconds`` (wall-clock).
    ``extra`` holds any other column. ``metrics["name"]`` reads any column.
    """

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

    def __len__(self) -> int:
        return int(self.step.shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        if name in METRIC_COLUMNS:
            return getattr(self, name)
        return self.extra[name]

    @property
    def columns(self) -> tuple[str, ...]:
        return METRIC_COLUMNS + tuple(self.extra)


@dataclass(frozen=True)
class Probes:
    """Committed probe rows of a run: read-only arrays with n rows.

    ``step`` (n,) int64; ``epoch``, ``bottom_eigenvalue``, ``trace``,
    ``trace_stderr``, ``num_matvecs``, ``seconds`` (n,) float64; ``top_eigenvalues``
    (n, k); ``ritz_nodes`` and ``ritz_weights`` (n, n_v, m), the raw SLQ measure
    per random vector. Array columns a run never wrote are ``None``; NaN marks a
    value a row did not give (and padding of shorter rows). ``extra`` holds any
    other column.
    """

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

    def __len__(self) -> int:
        return int(self.step.shape[0])

    def __getitem__(self, name: str) -> np.ndarray | None:
        if name in PROBE_COLUMNS:
            return getattr(self, name)
        return self.extra[name]


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
        checkpoints: the ``.pt`` files, resolved against the HDF5 file's directory.
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

    Opens read-only without the HDF5 file lock (see the module docstring).
    """
    return _with_reader(Path(path), lambda f, p: _run_names(f))


def read_run(path: str | os.PathLike[str], name: str) -> RunData:
    """Read the committed rows of one run.

    Opens read-only without the HDF5 file lock, so it works while a writer is
    appending (it sees the rows committed when it opens the file).

    Raises:
        FileNotFoundError: no such file.
        StoreError: not a spectra-run file, unsupported version, or no such run.
    """
    return _with_reader(Path(path), lambda f, p: _read_run(f, p, name))


def read_runs(path: str | os.PathLike[str]) -> dict[str, RunData]:
    """Read every run of a file: name -> :class:`RunData`, in creation order."""
    return _with_reader(
        Path(path), lambda f, p: {name: _read_run(f, p, name) for name in _run_names(f)}
    )


def _with_reader(path: Path, fn: Any, wait: float = 5.0) -> Any:
    """Run ``fn(h5py_file, path)`` on the file opened read-only, without the lock.

    Reading never writes. A journal left by a killed writer is not rolled back
    here (the next writer does that): the file is read as it was before the
    killed change, rebuilt from the journal in memory; a journal that was not
    written for this file is ignored. While a live writer is inside a structural
    change (its journal exists) the read waits, up to ``wait`` seconds; a read
    that fails or overlaps such a change is retried.
    """
    writer = _WRITERS.get(_key(path)) if path.exists() else None
    if writer is not None and writer._file is not None:
        return fn(writer._file, path)
    if not path.exists():
        raise FileNotFoundError(f"no such spectra run file: {path}")
    if not _has_hdf5_signature(path):
        raise StoreError(_not_hdf5_message(path))
    jpath = _journal_path(path)
    deadline = time.monotonic() + wait
    error: Exception | None = None
    while True:
        before = _stat_or_none(jpath)
        busy, journal = _abandoned_journal(path) if before is not None else (False, None)
        if not busy:
            try:
                with contextlib.ExitStack() as stack:
                    if journal is not None:
                        view = stack.enter_context(contextlib.closing(_OldView(path, journal)))
                        f = stack.enter_context(h5py.File(view, "r"))
                    else:
                        f = stack.enter_context(h5py.File(path, "r", locking=False))
                    _check_root(f, path)
                    result = fn(f, path)
                if _stat_or_none(jpath) == before:  # no change began or ended meanwhile
                    return result
                error = None
            except StoreError:
                raise
            except (OSError, KeyError, RuntimeError, ValueError) as exc:
                error = exc
        if time.monotonic() > deadline:
            raise StoreError(
                f"cannot read {path}: "
                + (f"{error}" if not busy else f"{jpath} stayed in place for {wait:g} s")
                + "; a writer may be changing its structure, or another program holds the "
                "file's lock"
            )
        time.sleep(0.02)


def _stat_or_none(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _abandoned_journal(path: Path) -> tuple[bool, _Journal | None]:
    """``(busy, journal)`` for a file whose journal exists: busy while a live writer
    holds the lock (its change is under way); else the killed writer's journal
    when it belongs to this file, or None (no valid header, or another file's)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released at close
        except BlockingIOError:
            return True, None
        except OSError:  # no flock on this file system
            pass
        try:
            journal = _Journal.read(_journal_path(path))
        except FileNotFoundError:
            return False, None
        return False, journal if journal is not None and journal.belongs_to(fd) else None
    finally:
        os.close(fd)


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _has_hdf5_signature(path: Path) -> bool:
    """HDF5's signature at offset 0, 512, 1024, 2048, ... (after a user block)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        offset = 0
        while offset + len(_HDF5_SIGNATURE) <= size:
            fh.seek(offset)
            if fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else 2 * offset
    return False


def _not_hdf5_message(path: Path) -> str:
    return (
        f"{path} is not an HDF5 file (no HDF5 signature); expected a spectra-run file "
        f"(format={FORMAT!r}, format_version={FORMAT_VERSION}) written by spectra.runs.store.RunStore"
    )


def _check_root(f: h5py.File, path: Path) -> None:
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
    if version is None or int(version) != FORMAT_VERSION:
        hint = (
            "it was written by a newer spectra; upgrade spectra to read it"
            if version is not None and int(version) > FORMAT_VERSION
            else "it cannot be read by this version"
        )
        raise StoreError(
            f"{path} has format_version={None if version is None else int(version)}; "
            f"spectra {__version__} reads and writes format_version={FORMAT_VERSION}: {hint}"
        )


def _run_names(f: h5py.File) -> list[str]:
    runs = [(str(g.attrs.get("created", "")), k) for k, g in f.items() if isinstance(g, h5py.Group)]
    return [k for _, k in sorted(runs)]


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _read_table(group: Any, path: Path, where: str) -> tuple[int, dict[str, np.ndarray]]:
    """The committed rows of one table (a group of column datasets; ``None``: no table)."""
    if group is None:
        return 0, {}
    if not isinstance(group, h5py.Group):
        raise StoreError(
            f"{path}: {where} is {_kind(group)}; expected a group of column datasets "
            "(the file is damaged or was not written by spectra)"
        )
    cols = {k: v for k, v in group.items() if isinstance(v, h5py.Dataset)}
    for k, v in cols.items():
        if v.dtype.kind not in "biuf":
            held = "strings" if h5py.check_string_dtype(v.dtype) is not None else f"{v.dtype} values"
            raise StoreError(f"{path}: {where}: column {k!r} holds {held}; expected real numbers")
    n = _committed_rows(group.attrs, list(cols.values()), path, where)
    return n, {k: _frozen(v[:n]) for k, v in cols.items()}


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


def _run_id(group: h5py.Group) -> str | None:
    value = group.attrs.get(_RUN_ID)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _read_run(f: h5py.File, path: Path, name: str) -> RunData:
    group = f.get(name)
    if not isinstance(group, h5py.Group):
        raise StoreError(f"{path} has no run {name!r}; runs: {_run_names(f)}")
    config = _read_config(group, path, name)

    def nan(n: int) -> np.ndarray:
        return _frozen(np.full(n, np.nan))

    n, cols = _read_table(group.get("metrics"), path, f"run {name!r}, table 'metrics'")
    step = cols.pop("step", _frozen(np.zeros(0, np.int64)))
    metrics = Metrics(
        step=step,
        **{c: cols.pop(c, nan(n)) for c in METRIC_COLUMNS if c != "step"},
        extra=MappingProxyType(cols),
    )
    n, cols = _read_table(group.get("probes"), path, f"run {name!r}, table 'probes'")
    if "num_hvps" in cols and "num_matvecs" not in cols:  # the column's name before 0.1.1
        cols["num_matvecs"] = cols.pop("num_hvps")
    step = cols.pop("step", _frozen(np.zeros(0, np.int64)))
    probes = Probes(
        step=step,
        **{
            c: cols.pop(c, None if c in _PROBE_ARRAY_COLUMNS else nan(n))
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
        k = _committed_rows(ckpt.attrs, [ckpt], path, where)
        base = Path(os.path.dirname(os.path.abspath(path)))
        checkpoints = tuple(
            Path(os.path.normpath(base / s)) for s in ckpt.asstr()[:k]
        )
    return RunData(
        name=name,
        path=path,
        config=config,
        created=str(group.attrs.get("created", "")),
        spectra_version=str(group.attrs.get("spectra_version", "")),
        metrics=metrics,
        probes=probes,
        checkpoints=checkpoints,
        run_id=_run_id(group),
    )
