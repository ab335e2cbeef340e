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
    for text in ("1 run", "run 'dcao'", "model: mlp", "optimizer: dcao", "2 metrics, 3 probes",
                 "last probe: λ1", "checkpoints: 2"):
        assert text in r.stdout, text


def test_info_without_file_still_reports_the_environment():
    out = invoke_json("info", "--json")
    assert "torch" in out and "dcao" in out["optimizers"]
