"""Tests of spectra.runs.writer: round trips, row shapes, rewinding, locking, and
write errors (disk full) that keep every committed row."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import spectra
from spectra.runs import journal
from spectra.runs.store import (
    FORMAT,
    FORMAT_VERSION,
    METRIC_COLUMNS,
    RunStore,
    StoreError,
    StoreLockedError,
    StoreWriteError,
    list_runs,
    read_run,
    read_runs,
)
from tests.spectra.runs.run_files import (
    CHILD_PRELUDE,
    NV,
    K,
    M,
    check_run_file,
    format1_file,
    metric_row,
    probe_row,
    write_run0,
)

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
        assert f.attrs["spectra_version"] == spectra.__version__ and "created" in f.attrs
        assert json.loads(f["sgd"].attrs["config"])["widths"] == [4, 4]
        # the scalar columns share one dataset; a clean close trims every dataset
        # to its committed rows
        assert list(f["sgd/metrics"]) == ["_scalars"]
        scalars = f["sgd/metrics/_scalars"]
        assert scalars.shape == (4, len(METRIC_COLUMNS) + 1) and scalars.dtype == np.float64
        assert [c.decode() for c in scalars.attrs["columns"]] == [*METRIC_COLUMNS, "my_metric"]
        assert sorted(f["sgd/probes"]) == ["_scalars", "ritz_nodes", "ritz_weights", "top_eigenvalues"]
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


def _damage(kind: str):
    """A change to a run's group that leaves nothing to append to, by ``kind``."""
    def apply(group: h5py.Group) -> None:
        if kind == "no metrics":
            del group["metrics"]
        elif kind == "probes a dataset":
            del group["probes"]
            group["probes"] = np.zeros(3)
        elif kind == "a column a group":
            group["metrics"].create_group("loss")
        elif kind == "a fixed-size column":
            group["metrics"]["loss"] = np.ones(group["metrics"].attrs["n_rows"])
        elif kind == "fixed checkpoints":
            del group["checkpoints"]
            group["checkpoints"] = np.array([b"a.pt"])
    return apply


@pytest.mark.parametrize("kind, match", [
    ("no metrics", "its 'metrics' should be an HDF5 group, it has none"),
    ("probes a dataset", "its 'probes' should be an HDF5 group, it has a dataset"),
    ("a column a group", "'metrics/loss' is not a dataset"),
    ("a fixed-size column", "'metrics/loss' has shape (1,) and maximum shape (1,)"),
    ("fixed checkpoints", "'checkpoints' has shape (1,) and maximum shape (1,)"),
])
def test_open_run_refuses_a_run_it_cannot_append_to_by_name(tmp_path: Path, kind, match) -> None:
    """A run written by another tool, or damaged: a StoreError naming what is wrong
    (it was a KeyError, or a TypeError at the first append), and its rows still read."""
    path = tmp_path / "a.h5"
    with RunStore(path) as st:
        st.create_run("sgd").append_metrics(step=0, train_loss=1.0)
    with h5py.File(path, "r+") as f:
        _damage(kind)(f["sgd"])
    with RunStore(path) as st, pytest.raises(StoreError, match=re.escape(match)):
        st.open_run("sgd")
    if kind in ("a fixed-size column", "fixed checkpoints"):
        assert read_run(path, "sgd").metrics.step.tolist() == [0]


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
        [sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent("""
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
    write_run0(template)
    real = journal.write_all
    calls = {"n": 0, "fail_at": 0}

    def write_all(fd, data, offset=None):
        calls["n"] += 1
        if calls["fail_at"] and calls["n"] >= calls["fail_at"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(journal, "write_all", write_all)
    path = tmp_path / "full.h5"
    path.write_bytes(template.read_bytes())
    assert _session(path) == (12, 4)
    total = calls["n"]
    assert total > 50
    for n in sorted({1, 2, 3, *range(5, total + 1, max(1, total // 25)), total}):
        path.write_bytes(template.read_bytes())
        Path(str(path) + "-journal").unlink(missing_ok=True)
        calls.update(n=0, fail_at=n)
        with pytest.raises(StoreWriteError, match="no space left") as err:
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

    monkeypatch.setattr(h5py, "File", full)
    with pytest.raises(StoreWriteError, match="no space left"):
        RunStore(tmp_path / "new.h5")
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind



def test_a_format_1_file_is_read_and_appended_to_in_format_1(tmp_path: Path) -> None:
    """Files written before format 2 (one dataset per column, step int64) read as
    before, and a writer keeps them in their format, new runs and columns included,
    so older spectra still read them."""
    path = format1_file(tmp_path / "old.h5")
    with RunStore(path) as st:
        w = st.create_run("sgd")
        for j in range(9):
            w.append_metrics(metric_row(0, j))
        w.append_probe(probe_row(0, 0), threshold=2.0, threshold_kind="2/lr")
    with RunStore(path) as st:  # reopened: appends, and a second run
        st.open_run("sgd").append_metrics(metric_row(0, 9))
        st.create_run("adam").append_metrics(step=0, train_loss=1.0)
    with h5py.File(path, "r") as f:
        assert int(f.attrs["format_version"]) == 1
        for run in ("sgd", "adam"):
            assert "_scalars" not in f[f"{run}/metrics"] and "_scalars" not in f[f"{run}/probes"]
        assert f["sgd/metrics/step"].dtype == np.int64 and f["sgd/metrics/grad_norm"].shape == (10,)
    run = read_run(path, "sgd")
    assert run.metrics.step.tolist() == list(range(10)) and run.metrics.step.dtype == np.int64
    assert run.metrics["grad_norm"][7:].tolist() == [14.0, 16.0, 18.0]
    assert run.probes.extra["threshold_kind"].tolist() == ["2/lr"]
    assert read_run(path, "adam").metrics.train_loss.tolist() == [1.0]


def test_scalar_columns_past_the_packed_limit_get_datasets_of_their_own(
        tmp_path: Path, monkeypatch) -> None:
    """Scalar columns live in _scalars up to its column limit; later ones are
    datasets of their own, and read back the same."""
    from spectra.runs import writer as W

    monkeypatch.setattr(W, "_MAX_SCALAR_COLUMNS", 40)
    path = tmp_path / "wide.h5"
    first = {f"a{i:02d}": float(i) for i in range(29)}
    with RunStore(path) as st:
        w = st.create_run("r")
        w.append_metrics(step=0, **first)
        w.append_metrics(step=1, b=2.0, c=3.0, d=4.0)
    with h5py.File(path, "r") as f:
        names = [c.decode() for c in f["r/metrics/_scalars"].attrs["columns"]]
        assert len(names) == 40 and names[-2:] == ["a28", "b"]
        assert {"c", "d"} <= set(f["r/metrics"])
    m = read_run(path, "r").metrics
    assert np.isnan(m["b"][0]) and m["b"][1] == 2.0 and m["d"][1] == 4.0 and np.isnan(m["c"][0])
    assert m["a05"].tolist()[0] == 5.0 and np.isnan(m["a05"][1])
    assert list(m.extra) == [*first, "b", "c", "d"]


def test_steps_beyond_float64_integers_negative_or_bools_are_refused(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.h5") as st:
        w = st.create_run("r")
        with pytest.raises(StoreError, match=r"'step' must be an integer in 0 \.\. 2\*\*53 - 1"):
            w.append_metrics(step=2**53)
        with pytest.raises(StoreError, match=r"'step' must be an integer in 0 \.\. 2\*\*53 - 1 "
                                             r"\(optimizer steps taken\), got -1"):
            w.append_metrics(step=-1)
        for flag in (True, np.bool_(False)):  # stored as 1 and 0 before
            with pytest.raises(StoreError, match=r"'step' must be an integer, got"):
                w.append_probe(step=flag)
        w.append_metrics(step=2**53 - 1)
        w.append_metrics(step=np.int64(3))
        assert w.read().metrics.step.tolist() == [2**53 - 1, 3]


def _data_bytes(path: Path) -> tuple[int, int]:
    """(bytes of the committed rows as numpy arrays, number of columns) of a file."""
    nbytes = columns = 0
    for run in read_runs(path).values():
        for table in (run.metrics, run.probes):
            arrays = [getattr(table, c) for c in table.__dataclass_fields__ if c != "extra"]
            arrays = [a for a in arrays + list(table.extra.values()) if a is not None]
            nbytes += sum(a.nbytes for a in arrays)
            columns += len(arrays)
    return nbytes, columns


@pytest.mark.parametrize("epochs", [3, 5, 10, 20])
def test_file_size_in_proportion_to_its_data(tmp_path: Path, epochs: int) -> None:
    """A run shaped like `spectra train`'s (10 + 16 metric columns, a probe per epoch
    with top-5 and a (4, 80) SLQ measure): the closed file is within 2x of its data
    from 3 epochs on. (Before the per-column chunks, a 3-epoch run took 3 MB for 22
    KB; with a dataset per column, 59 KB.)"""
    rng = np.random.default_rng(epochs)
    path = tmp_path / "r.h5"
    with RunStore(path) as store:
        w = store.create_run("dcao", config={"optimizer": "dcao"})
        for i in range(epochs + 1):
            w.append_metrics(step=23 * i, epoch=float(i), train_loss=rng.random(),
                             test_loss=rng.random(), lr=0.05, momentum=0.9,
                             **{f"extra{j}": rng.random() for j in range(16)})
            w.append_probe(step=23 * i, epoch=float(i), top_eigenvalues=rng.random(5),
                           bottom_eigenvalue=-rng.random(), trace=rng.random(),
                           trace_stderr=rng.random(), ritz_nodes=rng.random((4, 80)),
                           ritz_weights=rng.random((4, 80)), num_matvecs=400.0, seconds=1.0)
    data, columns = _data_bytes(path)
    size = path.stat().st_size
    assert size <= 2 * data, (size, data, columns)
    with h5py.File(path, "r") as f:  # 1.10's dataset formats; the superblock stays version 0
        assert f.id.get_create_plist().get_version()[0] == 0


@pytest.mark.parametrize("name", ["bad\udcffname", "a\0", ".", "", "run"])
def test_column_names_the_file_cannot_hold_are_refused_before_writing(tmp_path: Path,
                                                                      name: str) -> None:
    """A lone surrogate (os.fsdecode's undecodable bytes) failed after the table was
    widened; "a\\0" read back as "a", merged with column "a"; "." named the group; "run"
    doubled the CSV export's run column."""
    path = tmp_path / "r.h5"
    with RunStore(path) as st:
        w = st.create_run("sgd", config={})
        w.append_metrics(step=0, a=1.0)
        with pytest.raises(StoreError, match="invalid column name"):
            w.append_metrics(step=1, a=2.0, **{name: 3.0})
        with pytest.raises(StoreError, match="invalid column name"):
            w.append_probe(step=1, **{name: np.arange(3.0)})
        w.append_metrics(step=1, a=2.0)
    assert list(read_run(path, "sgd").metrics["a"]) == [1.0, 2.0]


# ----------------------------------------------------------------- file names


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) ``folder`` takes."""
    limit = os.pathconf(folder, "PC_NAME_MAX")
    return limit if limit > 0 else 255


def test_the_longest_name_that_leaves_room_for_the_journal_is_created(tmp_path: Path) -> None:
    """A name 8 bytes under the folder's limit (its journal's name then fits) failed with
    "[Errno 36] File name too long: '.rrrr….h5.<pid>.<ns>.tmp'": the temporary file of
    the creation added 33 characters to the name. Now it is short, and leaves nothing."""
    path = tmp_path / ("r" * (_name_max(tmp_path) - len("-journal") - 3) + ".h5")
    with RunStore(path) as st:
        st.create_run("sgd").append_metrics(step=0, train_loss=1.0)  # journals a change
    assert list(read_run(path, "sgd").metrics.train_loss) == [1.0]
    assert os.listdir(tmp_path) == [path.name]


def test_a_name_without_room_for_its_journal_is_refused_naming_the_file(tmp_path: Path) -> None:
    """One byte longer, the file could be made but never written (its journal's name is
    too long): it is refused before anything is created, naming the file and the limit."""
    limit = _name_max(tmp_path)
    path = tmp_path / "new" / ("r" * (limit - len("-journal") - 2) + ".h5")
    with pytest.raises(StoreError, match=re.escape(
            f"cannot write {path}: its file name is {limit - 7} bytes long, and the name of "
            f"its journal beside it would be {limit + 1}; names in {path.parent} have at most "
            f"{limit} bytes. Use a file name of at most {limit - 8} bytes")):
        RunStore(path)
    assert os.listdir(tmp_path) == []


def test_a_link_to_no_file_yet_makes_the_file_it_names(tmp_path: Path) -> None:
    """``RunStore(link)`` of a link whose target does not exist yet found the link in the
    way of its temporary file's, created nothing, and failed with "[Errno 2] No such
    file or directory" naming the link. The file is now made where the link points."""
    link = tmp_path / "runs" / "latest.h5"
    link.parent.mkdir()
    link.symlink_to(Path("..") / "archive" / "x.h5")
    with RunStore(link) as st:
        st.create_run("sgd").append_metrics(step=0, train_loss=1.0)
    assert link.is_symlink() and (tmp_path / "archive" / "x.h5").is_file()
    assert list(read_run(tmp_path / "archive" / "x.h5", "sgd").metrics.train_loss) == [1.0]
    assert sorted(os.listdir(tmp_path / "archive")) == ["x.h5"]


def test_a_run_that_cannot_be_opened_leaves_the_store_usable(tmp_path: Path) -> None:
    """open_run's checks of a damaged run raised inside a structural change, which undid
    the (empty) change and stopped the whole store: the file's other runs could no longer
    be appended to. The checks now run before any change."""
    path = tmp_path / "r.h5"
    with RunStore(path) as st:
        st.create_run("good", config={}).append_metrics(step=0, train_loss=1.0)
        st.create_run("bad", config={}).append_metrics(step=0, train_loss=1.0)
    with h5py.File(path, "r+") as f:
        f["bad/metrics"].attrs["n_rows"] = np.int64(1000)
    with RunStore(path) as st:
        with pytest.raises(StoreError, match="shorter than the committed n_rows=1000"):
            st.open_run("bad")
        assert not st.closed
        st.open_run("good").append_metrics(step=1, train_loss=0.5)
    assert list(read_run(path, "good").metrics["train_loss"]) == [1.0, 0.5]


def test_open_run_adds_the_row_counts_a_foreign_file_lacks(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    with RunStore(path) as st:
        st.create_run("sgd", config={}).append_metrics(step=0, train_loss=1.0)
    with h5py.File(path, "r+") as f:
        for table in ("metrics", "probes"):
            del f[f"sgd/{table}"].attrs["n_rows"]
    with RunStore(path) as st:
        st.open_run("sgd").append_metrics(step=1, train_loss=0.5)
    with h5py.File(path, "r") as f:
        assert int(f["sgd/metrics"].attrs["n_rows"]) == 2
    assert list(read_run(path, "sgd").metrics["train_loss"]) == [1.0, 0.5]
