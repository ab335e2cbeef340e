"""The issue-13 options of `spectra train` and `spectra probe`: the run file's columns,
the checkpoint's optimizer in `probe --checkpoint`, `probe --json`, and CLI errors."""

from __future__ import annotations

import numpy as np
import pytest

from spectra.runs.store import read_run
from tests.cli.conftest import DATA, MODEL, invoke, invoke_json

SMALL = DATA + MODEL + ["--top-k", "2", "--no-bottom", "--no-density", "--trace-matvecs", "8",
                        "--probe-samples", "64", "--batch-size", "50"]


@pytest.fixture(scope="module")
def adam_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("curv") / "a.h5"
    invoke("train", "--optimizer", "adam", "--opt-arg", "lr=0.01", "--epochs", "1", *SMALL,
           "--preconditioned", "--alignment", "--layers", "module", "-o", out)
    return out


def test_train_records_the_columns(adam_run):
    run = read_run(adam_run, "adam")
    p = run.probes
    np.testing.assert_allclose(p["threshold"], 38 / 0.01, rtol=1e-12)
    assert set(p["threshold_kind"]) == {"(2+2b1)/((1-b1)lr)"}
    assert set(p["threshold_preconditioned"]) == {1.0}  # Adam's bounds lambda_1(P^-1 H)
    assert np.isnan(p["preconditioned_top"][0]) and np.all(p["preconditioned_top"][1:] > 0)
    assert np.all((p["alignment_full"] >= 0) & (p["alignment_full"] <= 1))
    assert p["layer_top_eigenvalue"].shape == (2, 2)
    probe_cfg = run.config["probe"]
    assert probe_cfg["preconditioned"] and probe_cfg["alignment"] and probe_cfg["layers"] == "module"
    assert probe_cfg["layer_names"] == ["1", "3"]


def test_probe_checkpoint_json_repeats_the_monitor(adam_run):
    run = read_run(adam_run, "adam")
    ckpt = run.checkpoints[-1]
    out = invoke_json("probe", "--checkpoint", ckpt, "--json")
    # the monitor's settings, and the checkpoint's optimizer with its state: the same numbers
    assert out["threshold"]["kind"] == "(2+2b1)/((1-b1)lr)"
    assert out["threshold"]["preconditioned"] is True  # the column threshold_preconditioned
    assert out["preconditioned_top"] == pytest.approx(float(run.probes["preconditioned_top"][-1]), rel=1e-3)
    assert out["alignment"]["full_batch"] == pytest.approx(float(run.probes["alignment_full"][-1]), abs=1e-3)
    assert [b["name"] for b in out["layers"]["blocks"]] == ["1", "3"]
    table = invoke("probe", "--checkpoint", ckpt).stdout
    assert "stability threshold" in table and "preconditioned sharpness" in table and "layer" in table
    assert "for λ1(P⁻¹H)" in table  # what the threshold bounds


def test_probe_says_what_the_threshold_bounds(tmp_path):
    # the same kind, 2/lr, bounds lambda_1(H) for SGD and lambda_1(P^-1 H) for RMSprop
    said = {}
    for name, opt in (("sgd", "sgd"), ("rms", "rmsprop")):
        out = tmp_path / f"{name}.h5"
        invoke("train", "--optimizer", opt, "--opt-arg", "lr=0.01", "--epochs", "1", *SMALL,
               "--trace-matvecs", "0", "--checkpoint-every", "1", "-o", out)
        run = read_run(out, opt)
        assert set(run.probes["threshold_kind"]) == {"2/lr"}
        column = set(run.probes["threshold_preconditioned"])
        js = invoke_json("probe", "--checkpoint", run.checkpoints[-1], "--json")
        assert js["threshold"]["kind"] == "2/lr"
        assert column == {float(js["threshold"]["preconditioned"])}
        table = invoke("probe", "--checkpoint", run.checkpoints[-1]).stdout
        said[name] = (column, [line for line in table.splitlines() if "stability threshold" in line])
    assert said["sgd"][0] == {0.0} and said["sgd"][1][0].endswith("for λ1")
    assert said["rms"][0] == {1.0} and said["rms"][1][0].endswith("for λ1(P⁻¹H)")


def test_cli_errors(tmp_path):
    r = invoke("train", "--optimizer", "sgd", "--epochs", "1", *SMALL, "--preconditioned",
               "-o", tmp_path / "s.h5", ok=False)
    assert r.exit_code != 0 and "--preconditioned" in r.stderr and not (tmp_path / "s.h5").exists()
    r = invoke("train", "--optimizer", "sgd", "--epochs", "1", *SMALL, "--layer-density",
               "-o", tmp_path / "s.h5", ok=False)
    assert r.exit_code != 0 and "--layer-density needs --layers" in r.stderr
    r = invoke("probe", *DATA, *MODEL, "--fit-steps", "0", "--preconditioned", ok=False)
    assert r.exit_code != 0 and "--preconditioned" in r.stderr


def test_compare_preconditioned_probes_the_adaptive_runs_and_skips_the_others(tmp_path):
    out = tmp_path / "cmp.h5"
    r = invoke("compare", "--optimizers", "sgd,adam", "--epochs", "1", *SMALL, "--trace-matvecs", "0",
               "--preconditioned", "--checkpoint-every", "0", "-o", out)
    assert "sgd has no diagonal preconditioner; probed without it" in r.stdout
    adam, sgd = read_run(out, "adam"), read_run(out, "sgd")
    assert adam.config["probe"]["preconditioned"] and not sgd.config["probe"]["preconditioned"]
    assert np.all(adam.probes["preconditioned_top"][1:] > 0)
    assert "preconditioned_top" not in sgd.probes or np.all(np.isnan(sgd.probes["preconditioned_top"]))
