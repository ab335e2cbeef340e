"""``--max-memory`` and ``--density-mode`` (issue 14) on `spectra probe`, `train` and
`compare`: the mode that ran and why in `probe` text and --json, the settings in each
run's config and taken back by `probe --checkpoint`, and bad sizes refused."""

from __future__ import annotations

import pytest

from spectra.runs.store import read_run
from tests.cli.conftest import DATA, MODEL, invoke, invoke_json

DENSITY = ["--density", "--density-vectors", "2", "--density-steps", "8"]
PROBE = [*DATA, *MODEL, "--fit-steps", "2", "--samples", "64", "--top-k", "2",
         "--trace-matvecs", "0", *DENSITY]
TRAIN = [*DATA, *MODEL, "--epochs", "1", "--top-k", "2", "--no-bottom", "--trace-matvecs", "0",
         "--density-vectors", "2", "--density-steps", "8", "--probe-samples", "64",
         "--batch-size", "100"]


@pytest.mark.parametrize("mode", ["full", "bounded"])
def test_probe_reports_the_requested_density_mode(mode):
    out = invoke_json("probe", *PROBE, "--max-memory", "1MB", "--density-mode", mode, "--json")
    density = out["memory"]["density"]
    assert density["mode"] == mode and density["reason"] == "requested"
    assert density["budget"] == 10**6
    # the eigensolver's basis of this small model fits the budget: kept on the device
    assert out["memory"]["top"]["mode"] == "device" and out["memory"]["bottom"]["mode"] == "device"
    assert len(out["ritz_nodes"]) == 2 and len(out["ritz_nodes"][0]) == 8
    table = invoke("probe", *PROBE, "--max-memory", "1MB", "--density-mode", mode).stdout
    assert f"SLQ density: {mode} (" in table and "top-k eigensolver basis: device" in table


def test_probe_auto_mode_follows_the_budget():
    out = invoke_json("probe", *PROBE, "--max-memory", "10GB", "--json")
    assert out["memory"]["density"]["mode"] == "full"
    assert "fit in the max_memory" in out["memory"]["density"]["reason"]
    # a budget below the full mode's bases (2 x 8 vectors of P floats) but above the
    # bounded mode's: auto falls back to bounded
    P = out["num_params"]
    small = invoke_json("probe", *PROBE, "--max-memory", str(6 * 2 * P * 4), "--json")
    assert small["memory"]["density"]["mode"] == "bounded"
    assert small["memory"]["density"]["reason"] != "requested"


@pytest.mark.parametrize("size", ["2XB", "-1GB", "lots"])
def test_bad_max_memory_is_refused(size):
    r = invoke("probe", *PROBE, "--max-memory", size, ok=False)
    assert r.exit_code == 2 and "--max-memory" in r.output


def test_bad_density_mode_is_refused():
    r = invoke("probe", *PROBE, "--density-mode", "half", ok=False)
    assert r.exit_code == 2 and "--density-mode" in r.output


def test_train_stores_the_settings_and_probe_checkpoint_reuses_them(tmp_path):
    out = tmp_path / "t.h5"
    invoke("train", "--optimizer", "sgd", *TRAIN, "--max-memory", "512MiB", "--density-mode",
           "bounded", "-o", out)
    run = read_run(out, "sgd")
    assert run.config["probe"]["max_memory"] == 512 * 2**20
    assert run.config["probe"]["density_mode"] == "bounded"
    res = invoke_json("probe", "--checkpoint", run.checkpoints[-1], "--json")
    assert res["memory"]["density"]["mode"] == "bounded"
    assert res["memory"]["density"]["budget"] == 512 * 2**20
    # an option given on the command line wins over the run's
    res = invoke_json("probe", "--checkpoint", run.checkpoints[-1], "--density-mode", "full",
                      "--json")
    assert res["memory"]["density"]["mode"] == "full"


def test_compare_stores_the_settings_in_every_run(tmp_path):
    out = tmp_path / "c.h5"
    invoke("compare", "--optimizers", "sgd,adam", *TRAIN, "--checkpoint-every", "0",
           "--max-memory", "1GB", "--density-mode", "bounded", "-o", out)
    for name in ("sgd", "adam"):
        probe_cfg = read_run(out, name).config["probe"]
        assert probe_cfg["max_memory"] == 10**9 and probe_cfg["density_mode"] == "bounded"
