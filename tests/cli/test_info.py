"""``spectra info RUN.h5``."""

from __future__ import annotations

from tests.cli.conftest import invoke, invoke_json


def test_info_run_file_json(trained):
    out = invoke_json("info", trained["h5"], "--json")
    (run,) = out["runs"]
    assert run["name"] == "dcao"
    assert run["metrics_rows"] == 2 and run["probe_rows"] == 3
    assert run["top_k"] == 2 and run["density_shape"] == [2, 10]
    assert run["config"]["optimizer"]["name"] == "dcao"
    assert [c["exists"] for c in run["checkpoints"]] == [True, True]
    assert run["last"]["epoch"] == 2 and run["last"]["lambda1"] > 0
    assert out["journal"] is False


def test_info_run_file_text(trained):
    r = invoke("info", trained["h5"])
    for text in ("1 run", "run 'dcao'", "model: mlp", "optimizer: dcao",
                 "2 metrics, 3 probes (top-2, density (2, 10))", "last probe: λ1",
                 "checkpoints: 2"):
        assert text in r.stdout, text


def test_info_rows_line_without_probes_has_no_empty_brackets(tmp_path):
    out = tmp_path / "r.h5"
    invoke("train", "--optimizer", "sgd", "--epochs", "1", "--probe-every", "0",
           "--checkpoint-every", "0", "-o", out)
    r = invoke("info", out)
    assert "rows: 1 metrics, 0 probes\n" in r.stdout, r.stdout


def test_info_without_file_still_reports_the_environment():
    out = invoke_json("info", "--json")
    assert "torch" in out and "dcao" in out["optimizers"]


def test_info_never_applies_another_files_journal(run_copy, tmp_path):
    """A journal left beside a different, complete run file (a copy of another run's
    leftover) is not applied: `spectra info` reads the file and changes no byte."""
    from pathlib import Path

    from spectra.runs.journal import JournaledFile
    from spectra.runs.store import RunStore

    other = tmp_path / "other.h5"
    with RunStore(other) as st:
        st.create_run("x").append_metrics(step=0)
    jf = JournaledFile(other)  # a structural change cut off after its first overwrite
    jf.begin()
    jf.seek(0)
    jf.write(b"\0" * 512)
    journal = Path(str(other) + "-journal").read_bytes()
    jf.commit()
    jf.close()
    stray = Path(str(run_copy) + "-journal")
    stray.write_bytes(journal)
    before = run_copy.read_bytes()
    out = invoke_json("info", run_copy, "--json")
    assert [r["name"] for r in out["runs"]] == ["dcao"] and out["runs"][0]["metrics_rows"] == 2
    assert run_copy.read_bytes() == before and stray.read_bytes() == journal


def test_info_sets_apart_checkpoints_past_the_last_row(trained, tmp_path):
    """A run rewound to epoch 1 (what a resume from its epoch-1 checkpoint does first)
    still records its epoch-2 checkpoint: info marks it stale and does not count it."""
    import shutil

    from spectra.runs.store import RunStore

    shutil.copytree(trained["dir"], tmp_path / "run")
    h5 = tmp_path / "run" / "demo.h5"
    with RunStore(h5) as st:
        st.open_run("dcao").rewind(4)  # 200 samples / batch 50: epoch 1 ends at step 4
    (run,) = invoke_json("info", h5, "--json")["runs"]
    assert [(c["exists"], c["stale"]) for c in run["checkpoints"]] == [(True, False), (True, True)]
    text = invoke("info", h5).stdout
    assert "checkpoints: 1, last " in text and "checkpoint-epoch0001.pt;" in text, text
    assert "1 more recorded past the last row" in text, text
    (run,) = invoke_json("info", trained["h5"], "--json")["runs"]
    assert [c["stale"] for c in run["checkpoints"]] == [False, False]


def test_info_prints_names_of_any_json_type(tmp_path):
    """A foreign run file (written by hand, or its config edited) whose config names a
    model, data set or optimizer with a number, null or list failed with "error:
    unsupported operand type(s) for +: 'int' and 'str'"; the names now print as
    they are."""
    from spectra.runs.store import RunStore

    out = tmp_path / "foreign.h5"
    with RunStore(out) as st:
        st.create_run("x", config={"model": {"name": 3, "kwargs": {"widths": 4}},
                                   "data": {"name": None}, "optimizer": {"name": ["sgd"]}})
    text = invoke("info", out).stdout
    for row in ("model: 3 {'widths': 4}", "data: None", "optimizer: ['sgd']"):
        assert row in text, (row, text)


def test_info_prints_counts_overrides_and_densities_of_any_json_type(tmp_path):
    """The same for a parameter count that is not an integer, optimizer overrides that are
    not a mapping and a probe density that is a number (each raised before)."""
    from spectra.runs.store import RunStore

    out = tmp_path / "foreign.h5"
    with RunStore(out) as st:
        st.create_run("x", config={"model": {"name": "m"}, "num_params": "many",
                                   "optimizer": {"name": "sgd", "overrides": [1, 2]},
                                   "probe": {"every": 1, "density": 7}})
    text = invoke("info", out).stdout
    for row in ("model: m, many parameters", "optimizer: sgd [1, 2]", "density 7,"):
        assert row in text, (row, text)


def test_info_shows_the_last_probe_without_top_k_and_its_trace(tmp_path):
    """A run probed with --top-k 0 records λmin and the trace, but info showed no
    'last probe' line (it needed λ1), and never showed the trace; its probe interval
    read 'every 10 step'."""
    from spectra.runs.store import RunStore

    out = tmp_path / "k0.h5"
    with RunStore(out) as st:
        w = st.create_run("sgd", config={"probe": {"every": 10, "unit": "step", "top_k": 0}})
        w.append_probe(step=10, epoch=0.5, bottom_eigenvalue=-0.25, trace=12.5)
        w = st.create_run("adam", config={"probe": {"every": 1, "unit": "epoch"}})
        w.append_probe(step=3, epoch=1.0, top_eigenvalues=[4.0], trace=7.0)
    text = invoke("info", out).stdout
    assert "last probe: λmin -0.25, trace 12.5 at epoch 0.5" in text, text
    assert "last probe: λ1 4, trace 7 at epoch 1" in text, text
    assert "every 10 steps," in text and "every 1 epoch," in text, text
    assert invoke_json("info", out, "--json")["runs"][0]["last"]["trace"] == 12.5
