"""Tests of spectra.runs.journal: SIGKILL at any moment, anywhere in a structural
change or a row, loses no committed row; a killed change is rolled back to the exact
bytes; a journal is applied only to the file it was written for."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spectra.runs.journal import JournaledFile
from spectra.runs.store import RunStore, StoreError, list_runs, read_run
from tests.spectra.runs.run_files import CHILD_PRELUDE, ROWS, check_run_file, metric_row, write_run0

_WRITER = CHILD_PRELUDE + ROWS + """
import random
from spectra.runs.store import RunStore
path, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
print("ready", flush=True)
while True:  # until killed: open, append a burst of rows, close, and again
    with RunStore(path) as st:
        names = st.run_names()
        if names and rng.random() < 0.7:
            w = st.open_run(names[-1])
        else:
            w = st.create_run(f"run{len(names)}", config={"run": len(names), "seed": seed})
        rid = int(w.name[3:])
        for _ in range(rng.randint(5, 150)):
            j = w.num_metrics
            w.append_metrics(metric_row(rid, j))
            if j % 3 == 0:
                w.append_probe(probe_row(rid, w.num_probes))
            if j % 20 == 0:
                w.add_checkpoint(f"ckpt/{w.name}_{w.num_checkpoints}.pt")
"""



def _kill_and_check(tmp_path: Path, kills: int, seed: int, max_delay: float) -> list[dict]:
    """Start writers that append as fast as they can; SIGKILL each at a random
    moment; after each kill, check the file row by row. Returns the counts seen."""
    path = tmp_path / "crash.h5"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    rng = random.Random(seed)
    seen: list[dict] = []
    for i in range(kills):
        child = subprocess.Popen(
            [sys.executable, str(script), str(path), str(seed * 1000 + i)],
            stdout=subprocess.PIPE, cwd=tmp_path,
        )
        try:
            assert child.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.0, max_delay))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        assert child.returncode == -signal.SIGKILL
        if not path.exists():  # killed before it created the file: nothing to lose
            assert not seen
            continue
        journal = Path(str(path) + "-journal")
        state = (path.read_bytes(), journal.read_bytes() if journal.exists() else None)
        counts = check_run_file(path)  # reads around a hot journal, and never writes
        assert state == (path.read_bytes(), journal.read_bytes() if journal.exists() else None)
        if seen:  # nothing committed before is lost
            for name, (n, q, c) in seen[-1].items():
                n2, q2, c2 = counts[name]
                assert n2 >= n and q2 >= q and c2 >= c
        seen.append(counts)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with RunStore(path) as st:  # writable again: no stale lock or open-for-write flag
        st.create_run("final").append_metrics(step=0)
    return seen


def test_sigkill_at_random_moments_loses_no_committed_row(tmp_path: Path) -> None:
    seen = _kill_and_check(tmp_path, kills=8, seed=1, max_delay=0.3)
    assert len(seen) >= 6
    total = sum(n for n, _, _ in seen[-1].values())
    assert total > 50, seen[-1]  # the writers did get rows in
    assert len(seen[-1]) >= 2  # several runs, resumed and new


_STRUCTURAL_KILLER = CHILD_PRELUDE + ROWS + """
import os, signal
import spectra.runs.writer as W
from spectra.runs.journal import JournaledFile
from spectra.runs.store import RunStore
path, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
W._MAX_CHUNK_ROWS = 4  # grow often
state = {"armed": False, "writes": 0, "old": 0, "columns": 0}
_write, _commit = JournaledFile.write, JournaledFile.commit

def write(self, data):  # SIGKILL before the n-th write of a structural change...
    if state["armed"] and self._jfd is not None:
        state["writes"] += 1
        state["old"] += self._pos < self._old_size
        if (mode == "any" and state["writes"] == n) or (
                mode == "old" and self._pos < self._old_size and state["old"] == n):
            os.kill(os.getpid(), signal.SIGKILL)
    return _write(self, data)

def commit(self):  # ... or once all its writes are done, before the journal goes
    if state["armed"] and mode == "commit" and self._jfd is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    return _commit(self)

JournaledFile.write, JournaledFile.commit = write, commit

def killing_at_nth_column(write):  # ... or before the n-th column value of a row
    def counted(self, index, value):  # (a row's scalar columns: one _Scalars write)
        if state["armed"] and mode == "column":
            state["columns"] += 1
            if state["columns"] == n:
                os.kill(os.getpid(), signal.SIGKILL)
        return write(self, index, value)
    return counted

W._Column.write = killing_at_nth_column(W._Column.write)
W._Scalars.write = killing_at_nth_column(W._Scalars.write)
with RunStore(path) as st:
    state["armed"] = True
    w = st.create_run("run1", config={"run": 1, "seed": 0})
    for j in range(12):  # new columns (grad_norm, ritz_*), growth, then trimming at close
        w.append_metrics(metric_row(1, j))
        if j % 3 == 0:
            w.append_probe(probe_row(1, w.num_probes))
print(state["writes"])
"""


@pytest.fixture
def killer(tmp_path: Path):
    """Runs the writer above on a copy of a file holding run0; returns the result
    of the child, the file, and the template it was copied from."""
    script = tmp_path / "killer.py"
    script.write_text(_STRUCTURAL_KILLER)
    template = tmp_path / "template.h5"
    write_run0(template)

    def run(mode: str, n: int) -> tuple[subprocess.CompletedProcess, Path, Path]:
        path = tmp_path / f"{mode}{n}.h5"
        path.write_bytes(template.read_bytes())
        proc = subprocess.run([sys.executable, str(script), str(path), mode, str(n)],
                              capture_output=True, text=True, timeout=60, check=False)
        return proc, path, template

    return run


def _check_rolled_back(proc: subprocess.CompletedProcess, path: Path, rows0: int) -> None:
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    journal = Path(str(path) + "-journal")
    assert journal.exists()  # a hot journal: the change was cut off
    cut = path.read_bytes()
    counts = check_run_file(path)  # the reader sees the file as before the change...
    assert journal.exists() and path.read_bytes() == cut  # ... and writes nothing
    assert counts["run0"][0] == rows0
    with RunStore(path) as st:  # the next writer rolls it back; the file takes new rows
        w = st.open_run("run0")
        w.append_metrics(metric_row(0, w.num_metrics))
    assert check_run_file(path)["run0"][0] == rows0 + 1


@pytest.mark.parametrize("mode, n", [("old", 1), ("old", 2), ("commit", 0)])
def test_sigkill_inside_run_creation_restores_the_exact_bytes(killer, mode: str, n: int) -> None:
    """Kill while HDF5 flushes a new run into a file holding one: before its first
    or second write over existing bytes (root B-tree, symbol table, heap), or after
    its last write. The rollback gives back the file byte for byte."""
    proc, path, template = killer(mode, n)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert Path(str(path) + "-journal").exists()
    cut = path.read_bytes()
    assert cut != template.read_bytes()  # the kill left a change
    assert list_runs(path) == ["run0"]  # read as before the change, without writing
    assert path.read_bytes() == cut
    JournaledFile(path).close()  # a writer's open rolls it back
    assert path.read_bytes() == template.read_bytes()
    assert not Path(str(path) + "-journal").exists()


def test_sigkill_anywhere_in_structural_changes_is_rolled_back(killer) -> None:
    """Kill before the N-th write of any structural change (new run, new columns,
    growth, trimming at close), N spread over the whole session."""
    done, _, _ = killer("any", 0)
    assert done.returncode == 0, done.stderr
    total = int(done.stdout)
    assert total > 40
    for n in sorted({1, total // 4, total // 2, 3 * total // 4, total}):
        proc, path, _ = killer("any", n)
        _check_rolled_back(proc, path, 20)


@pytest.mark.parametrize("n, committed", [(1, (0, 0, 0)), (3, (1, 0, 0)), (6, (3, 1, 0))])
def test_sigkill_in_the_middle_of_a_row_hides_the_row(killer, n: int, committed) -> None:
    """A metrics row of run1 is one write (its scalar columns), a probe row two (its
    scalars, then top_eigenvalues): a kill before write 1 cuts metric row 0, before
    write 3 probe row 0 (between its two writes), before write 6 metric row 3."""
    proc, path, _ = killer("column", n)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not Path(str(path) + "-journal").exists()  # not a structural change
    counts = check_run_file(path)
    assert counts == {"run0": (20, 7, 0), "run1": committed}


def test_a_journal_beside_another_file_is_never_applied(killer, tmp_path: Path) -> None:
    """A killed writer's journal placed beside a different, complete file: readers
    ignore it and write nothing; a writer keeps it aside, unapplied, and warns."""
    proc, path, _ = killer("old", 1)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    other = tmp_path / "other.h5"
    with RunStore(other) as st:
        w = st.create_run("mine", config={"x": 1})
        for j in range(30):
            w.append_metrics(metric_row(0, j))
    stray = Path(str(other) + "-journal")
    stray.write_bytes(Path(str(path) + "-journal").read_bytes())
    size, data = other.stat().st_size, other.read_bytes()
    assert list_runs(other) == ["mine"] and len(read_run(other, "mine").metrics) == 30
    assert other.read_bytes() == data and stray.exists()  # a reader never writes
    with pytest.warns(RuntimeWarning, match="not written for the file beside it"), \
            RunStore(other) as st:
        assert st.run_names() == ["mine"]
    assert not stray.exists() and other.stat().st_size >= size
    assert [p.name.split("-journal")[1][:8] for p in tmp_path.glob("other.h5-journal*")] == [".orphan-"]
    assert len(read_run(other, "mine").metrics) == 30


def test_a_file_copied_with_its_journal_rolls_back(killer, tmp_path: Path) -> None:
    """The journal identifies its file by content, so a copy of the pair (another
    inode) still rolls back to the exact bytes before the change."""
    proc, path, template = killer("old", 2)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    copy = tmp_path / "copy.h5"
    copy.write_bytes(path.read_bytes())
    Path(str(copy) + "-journal").write_bytes(Path(str(path) + "-journal").read_bytes())
    assert list_runs(copy) == ["run0"]
    JournaledFile(copy).close()
    assert copy.read_bytes() == template.read_bytes()



_COLUMN_ADDER = CHILD_PRELUDE + """
import time
from spectra.runs.store import RunStore
path = sys.argv[1]
with RunStore(path) as st:
    w = st.create_run("a", config={})
    print("ready", flush=True)
    for i in range(100000):  # until killed
        # the first 150 rows: a new column every third row, a new run every 50 (a change
        # every 30 ms or so); then rows only, which change no structure
        extra = {f"c{i // 3}": float(i)} if i % 3 == 0 and i < 150 else {}
        w.append_metrics(step=i, train_loss=float(i), **extra)
        if i % 50 == 49 and i < 150:
            st.create_run(f"r{i}", config={})
        time.sleep(0.01)
"""


def test_reads_beside_a_writer_that_adds_columns_are_never_torn(tmp_path: Path) -> None:
    """A writer that keeps changing the file's structure, a reader that keeps reading:
    every read is a committed state (steps and losses agree, every column present). A
    change that began and committed inside a read used to go unseen, and h5py's items()
    dropped members it could not open: 107 of 122 such reads came back torn (no steps,
    all-NaN columns, no extra columns)."""
    import numpy as np

    path = tmp_path / "race.h5"
    script = tmp_path / "adder.py"
    script.write_text(_COLUMN_ADDER)
    child = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE)
    reads, torn = 0, []
    try:
        assert child.stdout.readline().strip() == b"ready"
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            try:
                m = read_run(path, "a").metrics
            except StoreError:  # the structure changed during every try for 5 s: not torn
                continue
            reads += 1
            n = len(m.train_loss)
            extra = sorted(m.extra, key=lambda c: int(c[1:]))
            expected = [f"c{j}" for j in range((min(n, 150) + 2) // 3)]
            if not (len(m.step) == n and np.array_equal(np.asarray(m.step, float), m.train_loss)
                    and extra == expected):
                torn.append((n, len(m.step), len(extra)))
    finally:
        child.kill()
        child.wait()
    assert reads >= 1 and not torn, (reads, torn[:5])


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_a_change_stopped_half_way_is_undone_not_committed(tmp_path: Path, monkeypatch,
                                                           interrupt) -> None:
    """Ctrl-C (or an error) between widening the scalar table and writing its column names
    left a wider table without names, committed: every row of the run unreadable. The
    change is now undone at once from its journal: nothing more is written, readers see
    the file as before it, and the next writer goes on."""
    from spectra.runs import writer as writer_module

    path = tmp_path / "r.h5"
    with RunStore(path) as st:
        w = st.create_run("sgd", config={})
        for step in range(3):
            w.append_metrics(step=step, train_loss=0.5 - step / 10)
    before = read_run(path, "sgd").metrics["train_loss"]

    def stopped(*args, **kwargs):
        raise interrupt("stopped half-way")

    with RunStore(path) as st:
        w = st.open_run("sgd")
        monkeypatch.setattr(writer_module, "_write_names", stopped)
        with pytest.raises(interrupt):
            w.append_metrics(step=3, train_loss=0.1, new_column=1.0)
        monkeypatch.undo()
        with pytest.raises(StoreError, match="interrupted .* and not committed: it was undone"):
            w.append_metrics(step=3, train_loss=0.1)
        assert list(read_run(path, "sgd").metrics["train_loss"]) == list(before)
    assert list(read_run(path, "sgd").metrics["train_loss"]) == list(before)
    with RunStore(path) as st:  # rolled back: appends go on
        st.open_run("sgd").append_metrics(step=3, train_loss=0.1, new_column=1.0)
    data = read_run(path, "sgd").metrics
    assert list(data["train_loss"]) == [*before, 0.1]
    assert list(data["step"]) == [0, 1, 2, 3]
    assert os.listdir(tmp_path) == ["r.h5"]


def test_a_writer_through_a_link_keeps_the_journal_the_file_is_read_with(tmp_path: Path) -> None:
    """A writer that opened the file through a symbolic link keeps its journal beside the
    file itself, where a reader (and a writer) naming the file finds it."""
    real = tmp_path / "real.h5"
    with RunStore(real) as st:
        st.create_run("sgd", config={}).append_metrics(step=0, train_loss=1.0)
    link = tmp_path / "link.h5"
    link.symlink_to(real)
    io = JournaledFile(link)
    try:
        io.begin()
        assert (tmp_path / "real.h5-journal").exists()
        assert not (tmp_path / "link.h5-journal").exists()
    finally:
        io.commit()
        io.close()
    assert sorted(os.listdir(tmp_path)) == ["link.h5", "real.h5"]
    assert list(read_run(real, "sgd").metrics["train_loss"]) == [1.0]


def test_an_append_interrupted_after_its_count_keeps_its_row_at_close(tmp_path: Path,
                                                                      monkeypatch) -> None:
    """Ctrl-C after an append wrote its row count (in the flush that follows) left the
    writer one row behind the file; closing trimmed the table to the writer's count,
    below the count on disk: every row unreadable. The row, whole by then, is kept."""
    path = tmp_path / "r.h5"
    with RunStore(path) as st:
        w = st.create_run("sgd", config={})
        for step in range(3):
            w.append_metrics(step=step, train_loss=1.0 + step)
    flushes = {"n": 0}
    real = RunStore._flush

    def interrupted(self):
        real(self)
        flushes["n"] += 1
        if flushes["n"] == 2:  # the flush after the count was written
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), RunStore(path) as st:
        w = st.open_run("sgd")
        monkeypatch.setattr(RunStore, "_flush", interrupted)
        w.append_metrics(step=3, train_loss=4.0)
    monkeypatch.undo()
    assert list(read_run(path, "sgd").metrics["train_loss"]) == [1.0, 2.0, 3.0, 4.0]


def test_a_caught_interruption_after_the_count_does_not_lose_the_row(tmp_path: Path,
                                                                     monkeypatch) -> None:
    """The same interruption, caught, and the writer used again: it was one row behind
    the count on disk, and its next append overwrote the committed row."""
    path = tmp_path / "r.h5"
    flushes = {"n": 0}
    real = RunStore._flush

    def interrupted(self):
        real(self)
        flushes["n"] += 1
        if flushes["n"] == 2:
            raise KeyboardInterrupt

    with RunStore(path) as st:
        w = st.create_run("sgd", config={})
        for step in range(3):
            w.append_metrics(step=step, train_loss=1.0 + step)
        monkeypatch.setattr(RunStore, "_flush", interrupted)
        with pytest.raises(KeyboardInterrupt):
            w.append_metrics(step=3, train_loss=4.0)
        monkeypatch.undo()
        w.append_metrics(step=4, train_loss=5.0)
    assert list(read_run(path, "sgd").metrics["step"]) == [0, 1, 2, 3, 4]
