"""``spectra export RUN.h5 --csv DIR``."""

from __future__ import annotations

import csv

import numpy as np

from spectra.runs.store import read_run
from tests.cli.conftest import invoke


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_export_csv_of_a_trained_run(trained, tmp_path):
    out = tmp_path / "csv"
    r = invoke("export", trained["h5"], "--csv", out)
    for table in ("metrics", "probes", "density"):
        assert f"demo.{table}.csv" in r.stdout
    run = read_run(trained["h5"], "dcao")
    metrics = _rows(out / "demo.metrics.csv")
    assert len(metrics) == len(run.metrics) and {m["run"] for m in metrics} == {"dcao"}
    np.testing.assert_array_equal([float(m["test_loss"] or "nan") for m in metrics],
                                  run.metrics.test_loss)
    probes = _rows(out / "demo.probes.csv")
    assert [int(p["step"]) for p in probes] == run.probes.step.tolist()
    np.testing.assert_array_equal([float(p["top_eigenvalues_1"]) for p in probes],
                                  run.probes.top_eigenvalues[:, 0])
    density = _rows(out / "demo.density.csv")
    assert list(density[0]) == ["run", "step", "epoch", "vector", "node", "weight"]
    assert len(density) == int(np.isfinite(run.probes.ritz_nodes).sum())
    # a second export into the same folder is refused, --overwrite replaces
    again = invoke("export", trained["h5"], "--csv", out, ok=False)
    assert again.exit_code == 2
    assert "demo.metrics.csv" in again.stderr and "--overwrite" in again.stderr
    invoke("export", trained["h5"], "--csv", out, "--overwrite", "--run", "dcao")


def test_export_unknown_run_lists_the_runs(trained, tmp_path):
    r = invoke("export", trained["h5"], "--run", "dcoa", "--csv", tmp_path, ok=False)
    assert r.exit_code == 2
    assert "--run dcoa: no run of that name" in r.stderr
    assert "Did you mean 'dcao'?" in r.stderr and "Runs: dcao" in r.stderr
    assert not list(tmp_path.iterdir())


def test_export_of_a_file_without_runs_is_an_error(tmp_path):
    """--tensorboard alone used to write nothing, print 'view: tensorboard ...' and
    exit 0; --csv raised a StoreError with a --debug hint."""
    from spectra.runs import RunStore

    path = tmp_path / "none.h5"
    with RunStore(path):
        pass
    for opts in (("--tensorboard", tmp_path / "tb"), ("--csv", tmp_path / "csv")):
        r = invoke("export", path, *opts, ok=False)
        assert r.exit_code == 2
        assert r.stderr.strip() == f"error: {path} holds no runs; nothing to export"
        assert "view:" not in r.stdout
    assert not (tmp_path / "tb").exists() and not (tmp_path / "csv").exists()


def test_export_a_run_named_twice_writes_it_once(trained, tmp_path):
    """--run dcao --run dcao --tensorboard used to write the run's events twice (two
    event files of the same steps in tb/dcao)."""
    import pytest

    pytest.importorskip("tensorboard")
    tb = tmp_path / "tb"
    r = invoke("export", trained["h5"], "--run", "dcao", "--run", "dcao", "--tensorboard", tb,
               "--csv", tmp_path / "csv")
    assert r.stdout.count("tensorboard: ") == 1
    assert len(list((tb / "dcao").iterdir())) == 1
    assert len(_rows(tmp_path / "csv" / "demo.metrics.csv")) == len(read_run(trained["h5"],
                                                                             "dcao").metrics)


def test_export_layer_densities_and_named_block_columns(tmp_path):
    """A run trained with --layers module --layer-density: its blocks' densities were
    left out of every CSV without a word, its block columns numbered by position."""
    from spectra.runs import RunStore

    path = tmp_path / "ly.h5"
    with RunStore(path) as st:
        w = st.create_run("adam", config={"probe": {"layer_names": ["1", "3"]}})
        w.append_probe(step=0, epoch=0.0, layer_trace=[1.0, 2.0],
                       layer_ritz_nodes=np.ones((2, 1, 2)),
                       layer_ritz_weights=np.full((2, 1, 2), 0.5))
    r = invoke("export", path, "--csv", tmp_path / "csv")
    assert "layer_density: " in r.stdout and "ly.layer_density.csv  (4 lines)" in r.stdout
    probes = _rows(tmp_path / "csv" / "ly.probes.csv")
    assert (probes[0]["layer_trace_1"], probes[0]["layer_trace_3"]) == ("1.0", "2.0")
    layers = _rows(tmp_path / "csv" / "ly.layer_density.csv")
    assert [(d["layer"], d["node"], d["weight"]) for d in layers] == [
        ("1", "1.0", "0.5"), ("1", "1.0", "0.5"), ("3", "1.0", "0.5"), ("3", "1.0", "0.5")]
