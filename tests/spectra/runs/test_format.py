"""Tests of spectra.runs.format: files that are not spectra-run files of this
version are refused, by readers and writers alike, naming the file and what was
expected."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest

from spectra.runs.store import FORMAT_VERSION, RunStore, StoreError, list_runs, read_run


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
    with pytest.raises(StoreError, match=rf"newer\.h5 has format_version={FORMAT_VERSION + 1}.*upgrade"):
        read_run(newer, "x")
    with pytest.raises(StoreError, match="format_version"):
        RunStore(newer)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        read_run(tmp_path / "missing.h5", "x")
    good = tmp_path / "good.h5"
    RunStore(good).close()
    with pytest.raises(StoreError, match=r"good\.h5 has no run 'x'"):
        read_run(good, "x")

