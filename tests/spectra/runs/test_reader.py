"""Tests of spectra.runs.reader: damaged runs are refused naming the file, the run
and the object; files of older versions read."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from spectra.runs.store import RunStore, StoreError, read_run, read_runs
from tests.spectra.runs.run_files import format1_file


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


def test_damaged_scalar_columns_are_refused(tmp_path: Path) -> None:
    """Format 2's _scalars dataset must name each of its columns."""
    def damage(g):
        g["metrics/_scalars"].attrs["columns"] = [b"step"]
    path = _damaged(tmp_path / "damaged.h5", damage)
    with pytest.raises(StoreError, match=r"damaged\.h5: run 'r', table 'metrics': /r/metrics/_scalars "
                                         r"is not a table of scalar columns .*1 column names"):
        read_run(path, "r")


def test_the_old_name_of_the_product_counter_reads_as_num_matvecs(tmp_path: Path) -> None:
    path = format1_file(tmp_path / "old.h5")  # the rename predates format 2
    with RunStore(path) as st:
        st.create_run("r").append_probe(step=0, num_matvecs=42.0)
    with h5py.File(path, "r+") as f:  # as files written before the rename hold it
        f["r/probes"].move("num_matvecs", "num_hvps")
    assert read_run(path, "r").probes.num_matvecs.tolist() == [42.0]


@pytest.mark.parametrize("name", ["r/metrics", ".", "/r"])
def test_an_hdf5_path_that_is_not_a_run_name_is_refused(tmp_path: Path, name: str) -> None:
    # these name groups of the file (a run's table, the root): they used to read as an
    # empty run, or a run holding the whole file
    path = _damaged(tmp_path / "runs.h5", lambda g: None)
    with pytest.raises(StoreError, match=rf"has no run {name!r}; runs: \['r'\]"):
        read_run(path, name)


def test_a_misspelt_or_non_string_run_name_is_refused_by_name(tmp_path: Path) -> None:
    path = _damaged(tmp_path / "runs.h5", lambda g: None)
    with pytest.raises(StoreError, match=r"has no run 'rr'; runs: \['r'\]\. Did you mean 'r'\?"):
        read_run(path, "rr")
    with pytest.raises(TypeError, match="the run name must be a str, got NoneType None"):
        read_run(path, None)


def test_reading_a_directory_names_it(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory, not a spectra run file"):
        read_run(tmp_path, "sgd")


def test_rows_appended_to_an_old_file_keep_its_product_counts(tmp_path: Path) -> None:
    """An old file's num_hvps rows and the num_matvecs rows appended after a resume are one
    column: the rename applied only while num_matvecs was absent, so the old counts moved
    to `extra` once a new row was written."""
    path = format1_file(tmp_path / "old.h5")
    with RunStore(path) as st:
        w = st.create_run("r")
        w.append_probe(step=0, num_matvecs=3.0)
        w.append_probe(step=1, num_matvecs=4.0)
    with h5py.File(path, "r+") as f:
        f["r/probes"].move("num_matvecs", "num_hvps")
    with RunStore(path) as st:
        st.open_run("r").append_probe(step=7, num_matvecs=9.0)
    probes = read_run(path, "r").probes
    assert probes.num_matvecs.tolist() == [3.0, 4.0, 9.0]
    assert "num_hvps" not in probes.extra


def test_the_root_generation_counts_structural_changes(tmp_path: Path) -> None:
    """Each committed structural change (a run, a column, growth, the trim at close)
    raises the root's generation; opening the file and appending a row in place do not."""
    from spectra.runs.format import GENERATION_ATTR

    path = tmp_path / "g.h5"

    def generation() -> int:
        with h5py.File(path, "r", locking=False) as f:  # beside the writer's lock
            return int(f.attrs.get(GENERATION_ATTR, 0))

    with RunStore(path) as st:
        w = st.create_run("r")
        after_create = generation()
        w.append_metrics(step=0, train_loss=1.0, my_column=2.0)  # a new column: a change
        after_columns = generation()
        w.append_metrics(step=1, train_loss=0.5, my_column=1.0)  # a row in place
        assert generation() == after_columns > after_create > 0
    closed = generation()
    assert closed > after_columns  # the trim
    with RunStore(path):
        pass
    assert generation() == closed + 1  # an open writes nothing, its close trims


def test_a_change_that_runs_whole_inside_a_read_makes_it_read_again(tmp_path: Path,
                                                                      monkeypatch) -> None:
    """A change that begins and commits while a read runs leaves no journal at either end;
    the generation, read before and after, differs, and the read is taken again."""
    from spectra.runs import reader

    path = _damaged(tmp_path / "g.h5", lambda g: None)
    seen = iter([5, 6, 6, 6])  # the first read straddles one commit, the second none
    calls = []
    monkeypatch.setattr(reader, "_generation", lambda p: (calls.append(p), next(seen))[1])
    assert read_run(path, "r").metrics.train_loss.tolist() == [1.0]
    assert len(calls) == 4  # before and after each of the two reads


def test_a_damaged_file_fails_at_the_second_read_not_after_the_wait(tmp_path: Path,
                                                                    monkeypatch) -> None:
    """A failure with no writer changing the file in between (the journal as it was, the
    generation the same) is the file's own: the read stops at the second one and says
    the file is damaged, where it used to retry for 5 s (about 250 reads) and then
    blame a writer."""
    from spectra.runs import reader

    path = tmp_path / "a.h5"
    with RunStore(path) as st:
        st.create_run("r").append_metrics(step=0, train_loss=1.0)
    with h5py.File(path, "r+") as f:  # the step column renamed: rows without steps
        ds = f["r/metrics/_scalars"]
        key = next(iter(ds.attrs))
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in ds.attrs[key]]
        ds.attrs[key] = ["stop" if n == "step" else n for n in names]
    calls = []
    inner = reader.read_run_from
    monkeypatch.setattr(reader, "read_run_from", lambda *a: calls.append(1) or inner(*a))
    with pytest.raises(StoreError, match="has 1 rows but no steps; it failed twice with no "
                                         "writer changing the file in between: the file is "
                                         "damaged"):
        read_run(path, "r")
    assert len(calls) == 2


def test_a_truncated_file_fails_at_the_second_read_not_after_the_wait(tmp_path: Path) -> None:
    """A file HDF5 cannot open at all (truncated) gave no generation to compare, so the
    read retried for 5 s and then blamed a writer or another program's lock."""
    import time

    path = tmp_path / "a.h5"
    with RunStore(path) as st:
        st.create_run("r").append_metrics(step=0, train_loss=1.0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    start = time.monotonic()
    with pytest.raises(StoreError, match="failed twice with no writer changing the file in "
                                         "between: the file is damaged"):
        read_run(path, "r")
    assert time.monotonic() - start < 4.0  # two reads, not the 5 s wait


def _linked(tmp_path: Path) -> tuple[Path, Path]:
    """An empty run file ``archive/x.h5`` and the link ``runs/latest.h5`` to it."""
    real = tmp_path / "archive" / "x.h5"
    RunStore(real).close()
    link = tmp_path / "runs" / "latest.h5"
    link.parent.mkdir()
    link.symlink_to(Path("..") / "archive" / "x.h5")
    return real, link


def test_checkpoints_recorded_through_a_link_are_found_through_the_link_and_the_file(
        tmp_path: Path) -> None:
    """A run written through ``runs/latest.h5 -> ../archive/x.h5`` recorded its
    checkpoints relative to runs/ (the link's folder), while a reader of archive/x.h5
    resolved them against archive/: they read as missing. Both now use the real
    file's folder."""
    real, link = _linked(tmp_path)
    beside_link = tmp_path / "runs" / "latest_ckpt" / "a.pt"
    beside_file = tmp_path / "archive" / "ck" / "b.pt"
    for ck in (beside_link, beside_file):
        ck.parent.mkdir()
        ck.write_bytes(b"checkpoint")
    with RunStore(link) as st:
        run = st.create_run("r")
        run.append_metrics(step=0, train_loss=1.0)
        run.add_checkpoint(beside_link)
        run.add_checkpoint(beside_file)
    for path in (real, link):
        found = read_run(path, "r").checkpoints
        assert [c.resolve() for c in found] == [beside_link.resolve(), beside_file.resolve()], path
        assert all(c.exists() for c in found), (path, found)


def test_checkpoints_recorded_against_the_links_folder_are_still_found(tmp_path: Path) -> None:
    """A file written through a link before the base was the real file's folder recorded
    its checkpoints relative to the link's folder: read through the link they are still
    found there, and recording the same file again (a resume) keeps its one entry."""
    real, link = _linked(tmp_path)
    ck = tmp_path / "runs" / "latest_ckpt" / "a.pt"
    ck.parent.mkdir()
    ck.write_bytes(b"checkpoint")
    with RunStore(link) as st:
        st.create_run("r").append_metrics(step=0, train_loss=1.0)
    with h5py.File(real, "r+") as f:  # the old rule's entry: relative to runs/
        ds = f["r/checkpoints"]
        ds.resize((1,))
        ds[0] = "latest_ckpt/a.pt"
        ds.attrs["n_rows"] = np.int64(1)
    assert read_run(link, "r").checkpoints == (ck,)
    with RunStore(link) as st:
        assert st.open_run("r").add_checkpoint(ck) == 0
    assert read_run(link, "r").checkpoints == (ck,)


def test_a_flat_view_refuses_a_column_named_like_a_flattened_entry(tmp_path: Path) -> None:
    """An (n, 2) extra column x beside a column x_1: the flat view (to_dict(flat=True),
    to_pandas, the probes CSV) kept one of the two x_1 and silently dropped the other."""
    from spectra.runs.export import export_csv

    path = tmp_path / "r.h5"
    with RunStore(path) as store:
        store.create_run("a").append_probe(step=0, epoch=0.0, x=[1.0, 2.0], x_1=9.0)
    p = read_run(path, "a").probes
    assert p.to_dict()["x"].tolist() == [[1.0, 2.0]] and p.to_dict()["x_1"].tolist() == [9.0]
    with pytest.raises(StoreError, match="'x_1' is both a column and an entry of a flattened"):
        p.to_dict(flat=True)
    with pytest.raises(StoreError, match="'x_1' is both a column"):
        export_csv(path, tmp_path / "csv")


def test_fixed_length_string_attributes_read_as_text(tmp_path: Path) -> None:
    """Attributes many tools other than h5py write as fixed-length strings (bytes) read
    back as "b'0.1.0'"."""
    import numpy as np

    path = tmp_path / "a.h5"
    with RunStore(path) as st:
        st.create_run("r").append_metrics(step=0, train_loss=1.0)
    with h5py.File(path, "r+") as f:
        f["r"].attrs["spectra_version"] = np.bytes_(b"0.1.0")
        f["r"].attrs["created"] = np.bytes_(b"2024-01-01T00:00:00+00:00")
    run = read_run(path, "r")
    assert run.spectra_version == "0.1.0" and run.created == "2024-01-01T00:00:00+00:00"


def test_a_standard_probe_column_of_another_rank_is_named(tmp_path: Path) -> None:
    """ritz_nodes stored (n, m) by another tool read without complaint, then
    density_long and the CSV export failed with a bare 'not enough values to unpack'."""
    import numpy as np

    path = tmp_path / "a.h5"
    with RunStore(path) as st:
        st.create_run("r").append_probe(step=0, epoch=0.0, ritz_nodes=np.ones((2, 3)),
                                        ritz_weights=np.full((2, 3), 0.5))
    with h5py.File(path, "r+") as f:
        g = f["r/probes"]
        for c in ("ritz_nodes", "ritz_weights"):
            data = g[c][()]
            del g[c]
            g.create_dataset(c, data=data[:, 0, :], maxshape=(None, 3))
    with pytest.raises(StoreError, match=r"column 'ritz_nodes' has shape \(1, 3\); expected 3 "
                                         "dimensions"):
        read_run(path, "r")


def test_a_format1_float32_column_reads_as_float64(tmp_path: Path) -> None:
    """Format 1 kept each column's own dtype: a float32 train_loss read as float32."""
    import numpy as np

    path = tmp_path / "a.h5"
    with RunStore(format1_file(path)) as st:
        st.create_run("r").append_metrics(step=0, train_loss=0.1)
    with h5py.File(path, "r+") as f:
        g = f["r/metrics"]
        del g["train_loss"]
        g.create_dataset("train_loss", data=np.array([0.1], np.float32), maxshape=(None,))
    m = read_run(path, "r").metrics
    assert m.train_loss.dtype == np.float64 and m.step.dtype == np.int64
    assert m.train_loss[0] == np.float64(np.float32(0.1))


def test_a_damaged_step_or_format_version_is_named(tmp_path: Path) -> None:
    """A NaN step read as int64's minimum (with a RuntimeWarning); format_version 2.7
    read as 2."""
    import numpy as np

    path = tmp_path / "a.h5"
    with RunStore(path) as st:
        st.create_run("r").append_metrics(step=3, train_loss=0.1)
    with h5py.File(path, "r+") as f:
        ds = f["r/metrics/_scalars"]
        key = next(iter(ds.attrs))
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in ds.attrs[key]]
        block = ds[()]
        block[0, names.index("step")] = np.nan
        ds[...] = block
    with pytest.raises(StoreError, match="column 'step' holds nan; steps are whole numbers"):
        read_run(path, "r")
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 2.7
    with pytest.raises(StoreError, match="format_version=2.7; a format version is a whole number"):
        read_run(path, "r")
