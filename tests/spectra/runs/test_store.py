"""Tests of spectra.runs.store: format, round trips, errors, locking, and SIGKILL safety."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from spectra.runs import store
from spectra.runs.store import (
    FORMAT,
    FORMAT_VERSION,
    METRIC_COLUMNS,
    RunStore,
    StoreError,
    StoreLockedError,
    list_runs,
    read_run,
    read_runs,
)

PKG_DIR = str(Path(store.__file__).resolve().parent)

# Child processes import spectra.runs.store without running spectra/__init__.py (which
# may pull in torch and the rest of the package): a bare package module is put in
# sys.modules first, so a child starts in a fraction of a second.
_CHILD_PRELUDE = f"""
import sys, types
_pkg = types.ModuleType("spectra"); _pkg.__path__ = [{PKG_DIR!r}]
sys.modules["spectra"] = _pkg
"""

# ----------------------------------------------------------------- expected rows
# The writer child and the checks below compute rows with the same code, so a
# committed row must read back bit for bit.
_ROWS = """
import numpy as np
K, NV, M = 5, 3, 12

def metric_row(rid, j):
    row = dict(step=j, epoch=j / 8, train_loss=rid * 1000 + j + 0.5, train_acc=(j % 100) / 100,
               test_loss=rid + 1 / (j + 1), test_acc=0.25, lr=0.1 * (rid + 1), momentum=0.9,
               weight_decay=1e-4, seconds=j * 0.25)
    if j >= 7:  # an extra column that appears mid-run
        row["grad_norm"] = 2.0 * j
    return row

def probe_row(rid, p):
    row = dict(step=3 * p, epoch=3 * p / 8, top_eigenvalues=rid + p + 0.5 * np.arange(K),
               bottom_eigenvalue=-float(p), trace=10.0 * p, trace_stderr=0.5,
               num_matvecs=100 + p, seconds=0.01 * p)
    if p >= 1:  # the first probe has no density; every 5th has fewer Ritz nodes
        m = M - 2 if p % 5 == 4 else M
        row["ritz_nodes"] = p + np.arange(NV * m, dtype=float).reshape(NV, m) / 64
        row["ritz_weights"] = np.full((NV, m), 1.0 / m)
    return row
"""
_rows_ns: dict = {}
exec(_ROWS, _rows_ns)  # noqa: S102  (the same code runs in the writer child)
metric_row, probe_row = _rows_ns["metric_row"], _rows_ns["probe_row"]
K, NV, M = _rows_ns["K"], _rows_ns["NV"], _rows_ns["M"]

_WRITER = _CHILD_PRELUDE + _ROWS + """
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


def _expected_probe_column(rid: int, n: int, key: str) -> np.ndarray:
    rows = []
    for p in range(n):
        value = probe_row(rid, p).get(key)
        full = np.full({"top_eigenvalues": (K,)}.get(key, (NV, M)), np.nan)
        if value is not None:
            full[tuple(slice(0, s) for s in np.shape(value))] = value
        rows.append(full)
    return np.array(rows).reshape((n,) + full.shape) if n else np.zeros((0,) + full.shape)


def check_run_file(path: Path) -> dict[str, tuple[int, int, int]]:
    """Assert that every committed row of every run is exactly what was written.

    Returns run name -> (metric rows, probe rows, checkpoints).
    """
    counts = {}
    for name, run in read_runs(path).items():
        rid = int(name[3:])
        assert run.config == {"run": rid, "seed": run.config["seed"]}
        m = run.metrics
        n = len(m)
        assert np.array_equal(m.step, np.arange(n)) and m.step.dtype == np.int64
        for col in METRIC_COLUMNS[1:]:
            expected = [metric_row(rid, j)[col] for j in range(n)]
            assert np.array_equal(m[col], expected), (name, col)
        if n > 7:
            expected = [metric_row(rid, j).get("grad_norm", np.nan) for j in range(n)]
            np.testing.assert_array_equal(m.extra["grad_norm"], expected)
        pr = run.probes
        q = len(pr)
        for col in ("step", "epoch", "bottom_eigenvalue", "trace", "trace_stderr",
                    "num_matvecs", "seconds"):
            assert np.array_equal(pr[col], [probe_row(rid, p)[col] for p in range(q)]), (name, col)
        if q:
            np.testing.assert_array_equal(
                pr.top_eigenvalues, _expected_probe_column(rid, q, "top_eigenvalues"))
        if q > 1:
            for col in ("ritz_nodes", "ritz_weights"):
                np.testing.assert_array_equal(pr[col], _expected_probe_column(rid, q, col))
        # tables commit independently: a kill between the metric row and its probe
        # row loses only the probe row, so probes never run ahead of metrics
        assert q <= (n + 2) // 3
        c = len(run.checkpoints)
        assert run.checkpoints == tuple(
            path.parent / "ckpt" / f"{name}_{i}.pt" for i in range(c))
        counts[name] = (n, q, c)
    return counts


# ----------------------------------------------------------------- format / round trip


def test_round_trip_and_format(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "cmp.h5"  # parent directory is created
    with RunStore(path) as st:
        w = st.create_run("sgd", config={"optimizer": "sgd", "lr": np.float32(0.5),
                                         "widths": (4, 4), "dir": tmp_path})
        for j in range(3):
            w.append_metrics(metric_row(0, j))
        w.append_metrics({"step": 3}, train_loss=0.5, my_metric=7)
        for p in range(3):
            w.append_probe(probe_row(0, p))
        w.add_checkpoint(tmp_path / "runs" / "ck" / "a.pt")
        st.create_run("adam")
        assert st.run_names() == ["sgd", "adam"]
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT and f.attrs["format_version"] == FORMAT_VERSION
        assert f.attrs["spectra_version"] == store.__version__ and "created" in f.attrs
        assert json.loads(f["sgd"].attrs["config"])["widths"] == [4, 4]
        # a clean close trims every dataset to its committed rows
        assert {k: v.shape for k, v in f["sgd/metrics"].items()} == {
            k: (4,) for k in METRIC_COLUMNS + ("my_metric",)}
        assert f["sgd/probes/ritz_nodes"].shape == (3, NV, M)
        assert f["sgd/checkpoints"].asstr()[:].tolist() == ["ck/a.pt"]
    assert list_runs(path) == ["sgd", "adam"]
    run = read_run(path, "sgd")
    assert run.config == {"optimizer": "sgd", "lr": 0.5, "widths": [4, 4], "dir": str(tmp_path)}
    assert run.metrics.step.tolist() == [0, 1, 2, 3]
    assert run.metrics.train_loss[3] == 0.5 and np.isnan(run.metrics.epoch[3])
    assert np.isnan(run.metrics["my_metric"][:3]).all() and run.metrics["my_metric"][3] == 7
    assert run.probes.top_eigenvalues.shape == (3, K)
    assert np.isnan(run.probes.ritz_nodes[0]).all()  # first probe had no density
    assert run.checkpoints == (tmp_path / "runs" / "ck" / "a.pt",)
    with pytest.raises(ValueError):
        run.metrics.step[0] = 5  # read-only arrays
    empty = read_run(path, "adam")
    assert len(empty.metrics) == 0 and len(empty.probes) == 0
    assert empty.probes.top_eigenvalues is None and empty.probes.ritz_nodes is None
    assert empty.metrics.train_loss.shape == (0,)


def test_rewind_drops_rows_past_a_step_and_later_appends_take_their_place(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    with RunStore(path) as st:
        w = st.create_run("r")
        for j in range(10):
            w.append_metrics(metric_row(0, j))
        for p in range(4):  # steps 0, 3, 6, 9
            w.append_probe(probe_row(0, p))
        ck = tmp_path / "ck" / "e1.pt"
        assert w.add_checkpoint(ck) == 0
        assert w.rewind(4) == {"metrics": 5, "probes": 2}
        assert (w.num_metrics, w.num_probes) == (5, 2)
        assert w.rewind(4) == {"metrics": 0, "probes": 0}  # idempotent
        # the resumed run writes steps 5.. again, and the same checkpoint file again
        for j in range(5, 7):
            w.append_metrics(metric_row(1, j))
        w.append_probe(probe_row(1, 2))
        assert w.add_checkpoint(ck) == 0 and w.num_checkpoints == 1
        with pytest.raises(StoreError, match="step >= 0"):
            w.rewind(-1)
    run = read_run(path, "r")
    assert run.metrics.step.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert run.metrics.train_loss.tolist() == [j + 0.5 for j in range(5)] + [1005.5, 1006.5]
    assert run.probes.step.tolist() == [0, 3, 6]
    assert run.probes.top_eigenvalues[2, 0] == 1 + 2  # the new row, not the dropped one
    assert run.checkpoints == (ck,)
    with RunStore(path) as st:  # a rewind past every row, after reopening, is a no-op
        assert st.open_run("r").rewind(100) == {"metrics": 0, "probes": 0}


def test_padding_shapes_and_bad_rows(tmp_path: Path) -> None:
    with RunStore(tmp_path / "a.h5") as st:
        w = st.create_run("r")
        w.append_probe(step=0, top_eigenvalues=[3.0, 2.0, 1.0])
        w.append_probe(step=1, top_eigenvalues=[5.0])  # fewer: NaN padded
        w.append_probe(step=2, top_eigenvalues=[], ritz_nodes=np.zeros((0, 3)), trace=None)
        with pytest.raises(StoreError, match="fixed by its first row"):
            w.append_probe(step=3, top_eigenvalues=[1.0, 2.0, 3.0, 4.0])
        with pytest.raises(StoreError, match="2-D rows"):
            w.append_probe(step=2, ritz_nodes=[1.0, 2.0])
        with pytest.raises(StoreError, match="same shape"):
            w.append_probe(step=2, ritz_nodes=np.ones((2, 3)), ritz_weights=np.ones((2, 4)))
        with pytest.raises(StoreError, match="needs a 'step'"):
            w.append_metrics(train_loss=1.0)
        with pytest.raises(StoreError, match="integer"):
            w.append_metrics(step=1.5)
        with pytest.raises(StoreError, match="scalar"):
            w.append_metrics(step=1, train_loss=[1.0, 2.0])
        with pytest.raises(TypeError, match="real numbers"):
            w.append_metrics(step=1, note="hello")
        with pytest.raises(TypeError, match="given twice"):
            w.append_metrics({"step": 1}, step=2)
        assert w.num_probes == 3 and w.num_metrics == 0  # failed rows wrote nothing
    run = read_run(tmp_path / "a.h5", "r")
    np.testing.assert_array_equal(
        run.probes.top_eigenvalues, [[3, 2, 1], [5, np.nan, np.nan], [np.nan] * 3])
    assert run.probes.ritz_nodes is None
    assert len(run.metrics) == 0


def test_torch_tensors_are_accepted(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    with RunStore(tmp_path / "t.h5") as st:
        w = st.create_run("r")
        w.append_probe(step=torch.tensor(4), top_eigenvalues=torch.tensor([2.0, 1.0]),
                       trace=torch.tensor(3.0, requires_grad=True))
    run = read_run(tmp_path / "t.h5", "r")
    assert run.probes.step.tolist() == [4] and run.probes.trace.tolist() == [3.0]


def test_existing_file_adds_runs_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    with RunStore(path) as st:
        st.create_run("sgd", {"lr": 1}).append_metrics(step=0, train_loss=1.0)
    with RunStore(path) as st:
        with pytest.raises(StoreError, match="already has a run named 'sgd'"):
            st.create_run("sgd", {"lr": 2})
        st.create_run("adam").append_metrics(step=0, train_loss=2.0)
        w = st.open_run("sgd")  # resume: appends after the committed rows
        w.append_metrics(step=1, train_loss=0.5)
        assert st.open_run("sgd") is w
        with pytest.raises(StoreError, match="has no run 'nope'"):
            st.open_run("nope")
        with pytest.raises(StoreError, match="invalid run name"):
            st.create_run("a/b")
        with pytest.raises(TypeError, match="not JSON-able"):
            st.create_run("bad", {"f": object()})
    assert read_run(path, "sgd").metrics.train_loss.tolist() == [1.0, 0.5]
    assert read_run(path, "sgd").config == {"lr": 1}
    with RunStore(path) as st:
        st.create_run("sgd", {"lr": 3}, overwrite=True).append_metrics(step=9)
    runs = read_runs(path)
    assert list(runs) == ["adam", "sgd"]  # creation order
    assert runs["sgd"].config == {"lr": 3} and runs["sgd"].metrics.step.tolist() == [9]
    assert runs["adam"].metrics.train_loss.tolist() == [2.0]


def test_errors_name_the_file_and_what_was_expected(tmp_path: Path) -> None:
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    for call in (lambda: read_run(text, "x"), lambda: RunStore(text), lambda: list_runs(text)):
        with pytest.raises(StoreError, match=r"notes\.h5 is not an HDF5 file.*spectra-run"):
            call()
    assert text.read_text() == "not hdf5"  # untouched
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1, 2]
    with pytest.raises(StoreError, match=r"other\.h5 is an HDF5 file but not a spectra-run"):
        RunStore(other)
    with pytest.raises(StoreError, match="not a spectra-run file"):
        list_runs(other)
    newer = tmp_path / "newer.h5"
    RunStore(newer).close()
    with h5py.File(newer, "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(StoreError, match=r"newer\.h5 has format_version=2.*upgrade"):
        read_run(newer, "x")
    with pytest.raises(StoreError, match="format_version"):
        RunStore(newer)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        read_run(tmp_path / "missing.h5", "x")
    good = tmp_path / "good.h5"
    RunStore(good).close()
    with pytest.raises(StoreError, match=r"good\.h5 has no run 'x'"):
        read_run(good, "x")


def test_closed_store_and_replaced_run(tmp_path: Path) -> None:
    st = RunStore(tmp_path / "a.h5")
    w = st.create_run("r")
    w2 = st.create_run("r", overwrite=True)
    with pytest.raises(StoreError, match="replaced"):
        w.append_metrics(step=0)
    st.close()
    st.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        w2.append_metrics(step=0)
    with pytest.raises(StoreError, match="closed"):
        st.create_run("s")


# ----------------------------------------------------------------- locking


def test_second_writer_in_this_process_is_refused_and_readers_work(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    with RunStore(path) as st:
        st.create_run("r").append_metrics(step=0)
        with pytest.raises(StoreLockedError, match="already open for writing"):
            RunStore(path)
        assert read_run(path, "r").metrics.step.tolist() == [0]  # through the writer
        st.open_run("r").append_metrics(step=1)
        assert len(read_run(path, "r").metrics) == 2
    with RunStore(path):  # released on close
        pass


def test_second_writer_in_another_process_gets_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    with RunStore(path) as st:
        st.create_run("r").append_metrics(step=0)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD_PRELUDE + textwrap.dedent("""
            from spectra.runs.store import RunStore
            st = RunStore(sys.argv[1])
            st.open_run("r").append_metrics(step=1)
            print("ready", flush=True)
            sys.stdin.readline()
            st.open_run("r").append_metrics(step=2)
            st.close()
        """), str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match=r"a\.h5 is locked: another process"):
            RunStore(path)
        # readers take no lock: they see the committed rows while the writer runs
        assert read_run(path, "r").metrics.step.tolist() == [0, 1]
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
    with RunStore(path) as st:  # the lock went with the writer
        assert st.open_run("r").num_metrics == 3
    assert read_run(path, "r").metrics.step.tolist() == [0, 1, 2]


# ----------------------------------------------------------------- crash safety


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


_STRUCTURAL_KILLER = _CHILD_PRELUDE + _ROWS + """
import os, signal
import spectra.runs.store as S
from spectra.runs.store import RunStore
path, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
S._MAX_CHUNK_ROWS = 4  # grow often
state = {"armed": False, "writes": 0, "old": 0, "columns": 0}
_write, _commit = S._JournaledFile.write, S._JournaledFile.commit

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

S._JournaledFile.write, S._JournaledFile.commit = write, commit
_column_write = S._Column.write

def column_write(self, index, value):  # ... or before the n-th column value of a row
    if state["armed"] and mode == "column":
        state["columns"] += 1
        if state["columns"] == n:
            os.kill(os.getpid(), signal.SIGKILL)
    return _column_write(self, index, value)

S._Column.write = column_write
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
    with RunStore(template) as st:
        w = st.create_run("run0", config={"run": 0, "seed": 0})
        for j in range(20):
            w.append_metrics(metric_row(0, j))
            if j % 3 == 0:
                w.append_probe(probe_row(0, w.num_probes))

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
    store._JournaledFile(path).close()  # a writer's open rolls it back
    assert path.read_bytes() == template.read_bytes()
    assert not Path(str(path) + "-journal").exists()


def test_sigkill_anywhere_in_structural_changes_is_rolled_back(killer) -> None:
    """Kill before the N-th write of any structural change (new run, new columns,
    growth, trimming at close), N spread over the whole session."""
    done, _, _ = killer("any", 0)
    assert done.returncode == 0, done.stderr
    total = int(done.stdout)
    assert total > 100
    for n in sorted({1, total // 4, total // 2, 3 * total // 4, total}):
        proc, path, _ = killer("any", n)
        _check_rolled_back(proc, path, 20)


@pytest.mark.parametrize("n, committed", [(5, (0, 0, 0)), (40, (3, 1, 0))])
def test_sigkill_in_the_middle_of_a_row_hides_the_row(killer, n: int, committed) -> None:
    """Rows of run1 take 10 metric and 8 probe column writes; a kill before write
    5 cuts metric row 0, before write 40 metric row 3 (after probe row 0)."""
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
    store._JournaledFile(copy).close()
    assert copy.read_bytes() == template.read_bytes()


# ----------------------------------------------------------------- disk full


def _session(path: Path) -> tuple[int, int]:
    """Add run1 to a file holding run0 (new columns, growth, trimming at close);
    return (metric rows, probe rows) of run1 that its appends reported committed."""
    done = [0, 0]
    with RunStore(path) as st:
        w = st.create_run("run1", config={"run": 1, "seed": 0})
        for j in range(12):
            w.append_metrics(metric_row(1, j))
            done[0] += 1
            if j % 3 == 0:
                w.append_probe(probe_row(1, w.num_probes))
                done[1] += 1
    return done[0], done[1]


def test_disk_full_at_any_write_fails_cleanly_and_loses_no_row(tmp_path: Path, monkeypatch) -> None:
    """ENOSPC injected at the N-th write to the file or its journal, N over every
    write of a session (run creation, rows, new columns, growth, the trim at
    close): StoreWriteError naming the file and "no space left", every row
    committed before intact, and the file writable again."""
    template = tmp_path / "template.h5"
    with RunStore(template) as st:
        w = st.create_run("run0", config={"run": 0, "seed": 0})
        for j in range(20):
            w.append_metrics(metric_row(0, j))
            if j % 3 == 0:
                w.append_probe(probe_row(0, w.num_probes))
    real = store._write_all
    calls = {"n": 0, "fail_at": 0}

    def write_all(fd, data, offset=None):
        calls["n"] += 1
        if calls["fail_at"] and calls["n"] >= calls["fail_at"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(store, "_write_all", write_all)
    path = tmp_path / "full.h5"
    path.write_bytes(template.read_bytes())
    assert _session(path) == (12, 4)
    total = calls["n"]
    assert total > 50
    for n in sorted({1, 2, 3, *range(5, total + 1, max(1, total // 25)), total}):
        path.write_bytes(template.read_bytes())
        Path(str(path) + "-journal").unlink(missing_ok=True)
        calls.update(n=0, fail_at=n)
        with pytest.raises(store.StoreWriteError, match="no space left") as err:
            _session(path)
        assert str(path) in str(err.value)
        calls["fail_at"] = 0
        counts = check_run_file(path)  # every committed row exactly as written
        assert counts["run0"] == (20, 7, 0)
        with RunStore(path) as st:  # writable again: rolls back an unfinished change
            w = st.open_run("run0")
            w.append_metrics(metric_row(0, 20))
        assert check_run_file(path)["run0"] == (21, 7, 0)


def test_disk_full_when_creating_the_file(tmp_path: Path, monkeypatch) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.h5py, "File", full)
    with pytest.raises(store.StoreWriteError, match="no space left"):
        RunStore(tmp_path / "new.h5")
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind


# ----------------------------------------------------------------- damaged runs
def _damaged(path: Path, damage) -> Path:
    """A run 'r' with a metrics, a probe and a checkpoint row, then ``damage(run_group)``."""
    with RunStore(path) as st:
        run = st.create_run("r", config={"optimizer": "sgd"})
        run.append_metrics(step=0, train_loss=1.0)
        run.append_probe(step=0, top_eigenvalues=[2.0, 1.0])
        run.add_checkpoint(path.parent / "c.pt")
    with h5py.File(path, "r+") as f:
        damage(f["r"])
    return path


def _replace(group, name, make):
    del group[name]
    make(group)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda g: _replace(g, "probes", lambda r: r.create_dataset("probes", data=[1, 2, 3])),
         (r"run 'r', table 'probes' is a dataset of shape \(3,\) and dtype int64; expected a "
          r"group of column datasets")),
        (lambda g: _replace(g, "metrics", lambda r: r.create_dataset("metrics", data=1.0)),
         r"run 'r', table 'metrics' is a dataset .*; expected a group"),
        (lambda g: _replace(g, "checkpoints", lambda r: r.create_group("checkpoints")),
         r"run 'r', table 'checkpoints' is a group; expected a dataset of path strings"),
        (lambda g: g.attrs.__setitem__("config", "[1, 2]"),
         r"run 'r' has a config that is a JSON list \('\[1, 2\]'\); expected a JSON object"),
        (lambda g: g.attrs.__setitem__("config", "3.5"), r"run 'r' has a config that is a JSON float"),
        (lambda g: g.attrs.__setitem__("config", 7), r"run 'r' has a config attribute of type int64; expected JSON"),
        (lambda g: g["metrics"].attrs.__setitem__("n_rows", -1),
         r"run 'r', table 'metrics' has n_rows=-1; expected the committed row count, an integer >= 0"),
        (lambda g: g["probes"].attrs.__setitem__("n_rows", "1"),
         r"run 'r', table 'probes' has n_rows='1'; expected the committed row count"),
        (lambda g: g["probes"].attrs.__setitem__("n_rows", 0.5), r"run 'r', table 'probes' has n_rows=0.5"),
        (lambda g: g["checkpoints"].attrs.__setitem__("n_rows", -2),
         r"run 'r', table 'checkpoints' has n_rows=-2"),
        (lambda g: g["metrics"].create_dataset("note", data=[b"x"]),
         r"run 'r', table 'metrics': column 'note' holds strings; expected real numbers"),
        (lambda g: g["probes"].create_dataset("scalar", data=1.0),
         r"run 'r', table 'probes': /r/probes/scalar is a scalar dataset"),
    ],
)
def test_damaged_runs_are_refused_naming_the_file_run_and_object(tmp_path: Path, damage, match) -> None:
    path = _damaged(tmp_path / "damaged.h5", damage)
    for read in (lambda: read_run(path, "r"), lambda: read_runs(path)):
        with pytest.raises(StoreError, match=r"damaged\.h5: " + match):
            read()


def test_the_old_name_of_the_product_counter_reads_as_num_matvecs(tmp_path: Path) -> None:
    path = tmp_path / "old.h5"
    with RunStore(path) as st:
        st.create_run("r").append_probe(step=0, num_matvecs=42.0)
    with h5py.File(path, "r+") as f:  # as files written before the rename hold it
        f["r/probes"].move("num_matvecs", "num_hvps")
    assert read_run(path, "r").probes.num_matvecs.tolist() == [42.0]
