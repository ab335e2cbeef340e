"""Runs outside spectra: tables as dicts, pandas frames and CSV files
(spectra.runs.reader's table protocol, spectra.runs.export)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from spectra.runs.export import csv_paths, export_csv
from spectra.runs.store import METRIC_COLUMNS, RunStore, StoreError, read_run
from tests.spectra.runs.run_files import NV, K, probe_row, write_run0


@pytest.fixture(scope="module")
def run0(tmp_path_factory) -> Path:
    """run0 (20 metric rows, an extra column from row 7; 7 probes, the first without a
    density, the fifth with fewer Ritz nodes) and run1 (no density, another extra)."""
    path = tmp_path_factory.mktemp("export") / "cmp.h5"
    write_run0(path)
    with RunStore(path) as st:
        w = st.create_run("run1", config={})
        for j in range(3):
            w.append_metrics(step=j, train_loss=0.5 * j, lr_mult=1.0 + j)
            w.append_probe(step=j, top_eigenvalues=[3.0 + j, 1.0], trace=2.0)
    return path


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


def _as_float(field: str) -> float:
    return float("nan") if field == "" else float(field)


# ----------------------------------------------------------------- the table protocol


def test_tables_iterate_like_a_dataframe(run0: Path) -> None:
    run = read_run(run0, "run0")
    m, p = run.metrics, run.probes
    assert len(m) == 20 and len(p) == 7  # rows
    assert list(m) == [*METRIC_COLUMNS, "grad_norm"]  # iterating: the column names
    assert list(m) == list(m.columns) and "grad_norm" in m and "nope" not in m
    assert set(dict(m)) == set(m.columns)
    assert all(dict(m)[c] is m[c] for c in m)
    assert list(p)[:3] == ["step", "epoch", "top_eigenvalues"]
    assert {"ritz_nodes", "ritz_weights"} <= set(p)
    with pytest.raises(TypeError, match=r"read by name.*got 0.*to_pandas"):
        m[0]
    with pytest.raises(KeyError, match=r"no column 'grad_nrom'.*grad_norm"):
        m["grad_nrom"]
    # a run without a density does not list its density columns
    p1 = read_run(run0, "run1").probes
    assert "ritz_nodes" not in p1 and p1.ritz_nodes is None and "top_eigenvalues" in p1


def test_to_dict_copies_and_flattens(run0: Path) -> None:
    p = read_run(run0, "run0").probes
    d = p.to_dict()
    assert list(d) == list(p.columns)
    for name, a in d.items():
        np.testing.assert_array_equal(a, p[name])
        assert a.flags.writeable and not np.shares_memory(a, p[name])
    flat = p.to_dict(flat=True)
    assert [c for c in flat if c.startswith("top_eigenvalues")] == [
        f"top_eigenvalues_{j}" for j in range(1, K + 1)]
    for j in range(K):
        np.testing.assert_array_equal(flat[f"top_eigenvalues_{j + 1}"], p.top_eigenvalues[:, j])
    assert "ritz_nodes" not in flat and all(a.shape == (len(p),) for a in flat.values())


def test_density_long_holds_every_ritz_node_once(run0: Path) -> None:
    p = read_run(run0, "run0").probes
    long = p.density_long()
    n = len(long["node"])
    assert all(len(a) == n for a in long.values())
    assert n == int(np.isfinite(p.ritz_nodes).sum())  # NaN padding dropped
    expected = sum(NV * len(probe_row(0, i).get("ritz_nodes", np.zeros((NV, 0)))[0])
                   for i in range(len(p)))
    assert n == expected  # the first probe has none, the fifth fewer than M
    for i, step in enumerate(p.step):
        for v in range(NV):
            sel = (long["step"] == step) & (long["vector"] == v)
            if i == 0:
                assert not sel.any()
                continue
            row = probe_row(0, i)
            np.testing.assert_array_equal(long["node"][sel], row["ritz_nodes"][v])
            np.testing.assert_array_equal(long["weight"][sel], row["ritz_weights"][v])
            assert abs(long["weight"][sel].sum() - 1.0) < 1e-12
            assert (long["epoch"][sel] == p.epoch[i]).all()
    empty = read_run(run0, "run1").probes.density_long()
    assert set(empty) == set(long) and all(len(a) == 0 for a in empty.values())


def test_to_pandas(run0: Path) -> None:
    pd = pytest.importorskip("pandas")
    run = read_run(run0, "run0")
    df = run.metrics.to_pandas()
    assert isinstance(df, pd.DataFrame) and list(df.columns) == list(run.metrics.columns)
    assert len(df) == 20 and df["step"].dtype == np.int64
    np.testing.assert_array_equal(df["grad_norm"].to_numpy(), run.metrics["grad_norm"])
    pf = run.probes.to_pandas()
    assert "top_eigenvalues_1" in pf.columns and "ritz_nodes" not in pf.columns
    assert len(pd.DataFrame(run.probes.density_long())) == int(np.isfinite(run.probes.ritz_nodes).sum())


def test_to_pandas_without_pandas_says_how_to_install(run0: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    m = read_run(run0, "run0").metrics
    with pytest.raises(ImportError, match=r"Metrics.to_pandas\(\) needs pandas.*pip install pandas"):
        m.to_pandas()
    assert m.to_dict()  # numpy still works


# ----------------------------------------------------------------- CSV


def test_export_csv_round_trips_every_value(run0: Path, tmp_path: Path) -> None:
    out = tmp_path / "csv"
    written = export_csv(run0, out)
    paths = csv_paths(run0, out)
    assert [p.name for p in paths.values()] == ["cmp.metrics.csv", "cmp.probes.csv",
                                                "cmp.density.csv", "cmp.layer_density.csv"]
    del paths["layer_density"]  # no run of run0's file recorded per-block densities
    assert {t: p for t, (p, _) in written.items()} == paths
    r0 = read_run(run0, "run0")

    header, rows = _read_csv(paths["metrics"])
    assert header == ["run", *METRIC_COLUMNS, "grad_norm", "lr_mult"]  # union, first seen
    assert written["metrics"][1] == len(rows) == 20 + 3
    assert [r["run"] for r in rows] == ["run0"] * 20 + ["run1"] * 3
    for c in r0.metrics:
        got = np.array([_as_float(r[c]) for r in rows[:20]])
        np.testing.assert_array_equal(got, r0.metrics[c])  # bit for bit, NaN as ""
    assert rows[0]["grad_norm"] == "" and rows[7]["grad_norm"] == repr(14.0)
    assert [r["lr_mult"] for r in rows] == [""] * 20 + ["1.0", "2.0", "3.0"]

    header, rows = _read_csv(paths["probes"])
    assert header[:4] == ["run", "step", "epoch", "top_eigenvalues_1"]
    assert "top_eigenvalues_5" in header and "ritz_nodes" not in header
    assert len(rows) == 7 + 3
    np.testing.assert_array_equal([_as_float(r["top_eigenvalues_2"]) for r in rows[:7]],
                                  r0.probes.top_eigenvalues[:, 1])
    assert rows[7]["top_eigenvalues_3"] == ""  # run1 has k=2: its lines leave the rest empty

    header, rows = _read_csv(paths["density"])
    assert header == ["run", "step", "epoch", "vector", "node", "weight"]
    long = r0.probes.density_long()
    assert len(rows) == len(long["node"]) and {r["run"] for r in rows} == {"run0"}
    np.testing.assert_array_equal([float(r["node"]) for r in rows], long["node"])
    np.testing.assert_array_equal([int(r["vector"]) for r in rows], long["vector"])


def test_export_csv_chosen_runs_and_errors(run0: Path, tmp_path: Path) -> None:
    written = export_csv(run0, tmp_path, ["run1"])
    assert set(written) == {"metrics", "probes"}  # run1 has no density: no density file
    _, rows = _read_csv(written["metrics"][0])
    assert {r["run"] for r in rows} == {"run1"}
    with pytest.raises(FileExistsError, match=r"cmp.metrics.csv.*already exist"):
        export_csv(run0, tmp_path)
    assert not csv_paths(run0, tmp_path)["density"].exists()  # nothing written
    written = export_csv(run0, tmp_path, overwrite=True)
    assert written["metrics"][1] == 23
    with pytest.raises(StoreError, match=r"no run 'run2'; runs: run0, run1"):
        export_csv(run0, tmp_path / "x", ["run0", "run2"])
    assert not (tmp_path / "x").exists()


def test_overwriting_an_export_without_a_density_removes_the_older_density(run0: Path,
                                                                          tmp_path: Path) -> None:
    """An export with a density, then one of a run without (overwriting): the folder no
    longer pairs the new metrics and probes with the first export's density file."""
    first = export_csv(run0, tmp_path)
    density = first["density"][0]
    assert density.exists()
    second = export_csv(run0, tmp_path, ["run1"], overwrite=True)
    assert set(second) == {"metrics", "probes"}
    assert not density.exists()


def test_an_array_columns_entries_stay_together_when_runs_differ_in_k(tmp_path: Path) -> None:
    """A second run with top-3 where the first had top-2: its top_eigenvalues_3 came
    after 'seconds' in the header; the entries now stay together, by index."""
    path = tmp_path / "k.h5"
    with RunStore(path) as store:
        for name, k in (("a", 2), ("b", 3)):
            w = store.create_run(name)
            w.append_probe(step=0, epoch=0.0, top_eigenvalues=np.arange(k, 0, -1.0),
                           trace=1.0, seconds=0.5)
    written = export_csv(path, tmp_path / "csv")
    probes, _ = written["probes"]
    with open(probes, newline="") as fh:
        header = next(csv.reader(fh))
    i = header.index("top_eigenvalues_1")
    assert header[i:i + 3] == ["top_eigenvalues_1", "top_eigenvalues_2", "top_eigenvalues_3"]
    assert header.index("seconds") > i + 2
