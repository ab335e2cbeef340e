"""Tests of spectra.runs.reader: damaged runs are refused naming the file, the run
and the object; files of older versions read."""

from __future__ import annotations

from pathlib import Path

import h5py
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
