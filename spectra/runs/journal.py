"""Crash safety of a run file: an undo journal around HDF5's structural changes.

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

    The superblock is HDF5's version 0 (the file is created with ``libver`` lower
    bound "earliest"; the datasets and groups the writer adds use HDF5 1.10's
    formats, which leave the superblock as it is):
    version 3 (``libver="latest"``, required by SWMR) marks the file as open for
    writing, and after a kill HDF5 refuses to open it until ``h5clear`` is run;
    SWMR also forbids creating datasets while appending. Flushing hands data to
    the operating system but does not ``fsync``: a power loss, unlike a killed
    process, can still lose recent rows. Do not copy a file while a ``-journal``
    sits beside it without copying the journal too.

Journal layout (``<file>-journal``)
    A header (magic, the file's size before the change, the crc32 of its first
    64 KiB, its device and inode, a crc32 of these fields), then one entry per
    overwrite: offset, length, a crc32 of both and of the saved bytes, then the
    bytes the overwrite replaced. Each entry is written whole before its
    overwrite begins, so a torn last entry belongs to an overwrite that never
    started and is ignored.

:class:`JournaledFile` is the writer's file object: it takes the lock, keeps the
journal, and rolls back a killed writer's change when it opens.
:class:`PreChangeView` is a reader's: the file as it was before an unfinished
change, rebuilt in memory. :func:`abandoned_journal` tells a reader which of
the two it is looking at.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spectra.runs.format import StoreLockedError

__all__ = ["ChangeAborted", "Journal", "JournaledFile", "PreChangeView", "abandoned_journal", "journal_path",
           "write_all"]

_JOURNAL_MAGIC = b"spectra-journal2"
# magic, old file size, crc32 of the old file's first _FINGERPRINT bytes, st_dev, st_ino,
# crc32 of the fields before it
_JOURNAL_HEADER = struct.Struct("<16sQIQQI")
_JOURNAL_ENTRY = struct.Struct("<QQI")      # offset, length, crc32 of header fields + bytes
_FINGERPRINT = 1 << 16
_MIN_UNCOVERED = 1 << 10


def journal_path(path: str | os.PathLike[str]) -> str:
    """The journal of the run file at ``path``: ``<path>-journal``, beside the file itself
    (symbolic links resolved), so that a writer and a reader that name the file through
    different links find the same journal."""
    return os.path.realpath(path) + "-journal"


def write_all(fd: int, data: bytes | memoryview, offset: int | None = None) -> None:
    """Write all of ``data`` to ``fd`` at ``offset`` (at its position when None).

    Every byte the writer puts into a run file or its journal goes through here
    (tests inject write errors at this point).
    """
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
class Journal:
    """A parsed undo journal: the file's size and fingerprint before the change
    and the old bytes of every region the change overwrote (a torn last entry,
    whose overwrite never started, is left out)."""

    old_size: int
    fingerprint: int
    dev: int
    ino: int
    entries: list[tuple[int, bytes]]

    @classmethod
    def read(cls, jpath: str) -> Journal | None:
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
    this file (:meth:`Journal.belongs_to`) is never applied: it is renamed to
    ``<journal>.orphan-<time>`` with a warning. Returns whether a journal was found.
    """
    try:
        journal = Journal.read(jpath)
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
            write_all(fd, blob, offset)
        os.ftruncate(fd, journal.old_size)
        os.fsync(fd)
    # a journal without a valid header was cut before any overwrite began
    os.unlink(jpath)
    return True


class PreChangeView:
    """A read-only file object for h5py: the file as it was before a killed
    writer's unfinished change, rebuilt from its journal in memory. Readers use it
    instead of rolling the change back, so reading never writes."""

    def __init__(self, path: Path, journal: Journal) -> None:
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


class ChangeAborted(OSError):
    """The error a :class:`JournaledFile` keeps after a structural change stopped half-way
    (:meth:`JournaledFile.abort`): from then on it writes nothing."""


class JournaledFile:
    """The writer's file, for h5py's ``fileobj`` driver: takes the lock and keeps
    an undo journal of structural changes.

    HDF5 writes the metadata of one flush (B-tree nodes, object headers, the
    superblock's end-of-file address) in an order of its own, so a kill in the
    middle of a flush that changes structure (new group or dataset, resize) can
    leave a node that points past the recorded end of the file. Between
    :meth:`begin` and :meth:`commit`, every write over the file's old bytes first
    saves those bytes to ``<file>-journal``; the next opener (writer or reader)
    of a file with a journal and no live writer puts them back (a reader reads
    around them, see :class:`PreChangeView`). Row appends run
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
        self._jpath = journal_path(path)
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
        write_all(self._jfd, fields + struct.pack("<I", zlib.crc32(fields)))

    def abort(self, exc: BaseException) -> None:
        """Stop after a change that stopped half-way (``exc`` interrupted it): nothing more
        is written (as after a failed write) and the journal is kept; :meth:`undo` then
        puts the file's old bytes back, once HDF5 has let go of the file."""
        if self.error is None:
            self.error = ChangeAborted(
                f"a change of its structure was interrupted ({type(exc).__name__}"
                + (f": {exc}" if str(exc) else "") + ") and not committed: it was undone")
        if self._jfd is not None:
            os.close(self._jfd)
            self._jfd = None

    def undo(self) -> None:
        """After :meth:`abort`: put back the bytes the unfinished change overwrote and the
        file's old length (the lock is still held), so that readers see the file as it was
        before the change. Should that fail, the journal stays for the next writer."""
        if isinstance(self.error, ChangeAborted):
            with contextlib.suppress(OSError):
                _rollback(self._fd, self._jpath)

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
        write_all(self._jfd, fields + struct.pack("<I", crc) + blob)

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
                write_all(self._fd, view, self._pos)
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


def abandoned_journal(path: Path) -> tuple[bool, Journal | None]:
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
            journal = Journal.read(journal_path(path))
        except FileNotFoundError:
            return False, None
        return False, journal if journal is not None and journal.belongs_to(fd) else None
    finally:
        os.close(fd)
