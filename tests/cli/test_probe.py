"""``spectra probe``: on a checkpoint of `spectra train`, and appending to a run."""

from __future__ import annotations

import shutil

import numpy as np

from spectra.runs.store import read_run
from tests.cli.conftest import invoke, invoke_json


def test_probe_checkpoint_reproduces_the_monitors_last_lambda1(trained):
    run = read_run(trained["h5"], "dcao")
    tol = run.config["probe"]["tol"]
    lam_monitor = float(run.probes.top_eigenvalues[-1, 0])
    out = invoke_json("probe", "--checkpoint", trained["checkpoints"][-1], "--json")
    lam = out["top_eigenvalues"][0]
    assert abs(lam - lam_monitor) <= tol * abs(lam_monitor)
    # same settings as the monitor: top-2, the probe set of 128 samples, density (2, 10)
    assert len(out["top_eigenvalues"]) == 2 and out["num_samples"] == 128
    assert np.asarray(out["ritz_nodes"]).shape == (2, 10)
    for key in ("bottom_eigenvalue", "trace", "trace_stderr", "num_matvecs", "seconds"):
        assert key in out
    assert out["epoch"] == 2 and out["step"] == 8 and out["model"].startswith("mlp")


def test_probe_checkpoint_table(trained):
    r = invoke("probe", "--checkpoint", trained["checkpoints"][0])
    assert "at epoch 1 (step 4)" in r.stdout
    assert "λ1" in r.stdout and "λmin" in r.stdout and "trace" in r.stdout and "density" in r.stdout
    assert "(mean-reduced over samples)" in r.stdout


def test_probe_append_adds_a_row_to_the_checkpoints_run(trained, tmp_path):
    h5 = tmp_path / "a.h5"
    shutil.copy(trained["h5"], h5)
    before = read_run(h5, "dcao")
    out = invoke_json("probe", "--checkpoint", trained["checkpoints"][0], "--append", h5, "--json")
    assert out["appended"] == {"file": str(h5), "run": "dcao", "row": len(before.probes)}
    after = read_run(h5, "dcao")
    assert len(after.probes) == len(before.probes) + 1
    np.testing.assert_array_equal(after.probes.top_eigenvalues[:-1], before.probes.top_eigenvalues)
    assert after.probes.step[-1] == 4 and after.probes.epoch[-1] == 1.0
    # the appended probe repeats the monitor's probe at that checkpoint (same seed and step)
    np.testing.assert_allclose(after.probes.top_eigenvalues[-1], before.probes.top_eigenvalues[1],
                               rtol=1e-3)
    assert len(after.metrics) == len(before.metrics)


def test_probe_registry_model_json():
    out = invoke_json("probe", "--model-arg", "widths=8", "--data-arg", "n_train=100",
                      "--fit-steps", "3", "--samples", "64", "--top-k", "2",
                      "--trace-matvecs", "8", "--json")
    assert len(out["top_eigenvalues"]) == 2 and out["num_samples"] == 64
    assert out["reduction"] == "mean"
    assert out["top_eigenvalues"][0] >= out["top_eigenvalues"][1]


def test_default_sizes_are_lowered_to_a_tiny_models_parameters():
    # logistic regression on 3 features and 3 classes: 12 parameters, fewer than the
    # defaults' 80 density steps; given explicitly these would be refused (test_errors)
    out = invoke_json("probe", "--model", "logistic", "--data", "synthetic", "--data-arg", "dim=3",
                      "--fit-steps", "2", "--density", "--trace-matvecs", "8", "--json")
    assert out["num_params"] == 12
    assert np.asarray(out["ritz_nodes"]).shape == (4, 12)
    out = invoke_json("probe", "--model", "logistic", "--data", "synthetic", "--data-arg", "dim=1",
                      "--data-arg", "num_classes=2", "--fit-steps", "2", "--trace-matvecs", "0",
                      "--json")
    assert out["num_params"] == 4 and len(out["top_eigenvalues"]) == 4  # default --top-k 5


def test_probe_sample_seed_and_subsamples_report_lambda1_per_subsample():
    args = ["probe", "--model-arg", "widths=8", "--data-arg", "n_train=100", "--fit-steps", "3",
            "--samples", "40", "--top-k", "1", "--no-bottom", "--trace-matvecs", "0",
            "--tol", "1e-8", "--float64", "--json"]
    out = invoke_json(*args, "--sample-seed", "5", "--subsamples", "3")
    spread = out["subsamples"]
    assert spread["seeds"] == [5, 6, 7] and spread["num_samples"] == 40
    # the first subsample is the probe set itself: the same λ1 within both residual bounds
    lam, res = out["top_eigenvalues"][0], out["top_residuals"][0]
    assert abs(spread["values"][0] - lam) <= 2e-8 * abs(lam) + res
    assert np.isclose(spread["mean"], np.mean(spread["values"]), rtol=1e-12)
    assert np.isclose(spread["std"], np.std(spread["values"], ddof=1), rtol=1e-12)
    first = invoke_json(*args)  # default: the first 40 samples, another probe set
    assert first["top_eigenvalues"][0] != lam
    r = invoke(*args, "--samples", "101", "--sample-seed", "0", ok=False)
    assert r.exit_code != 0 and "--samples" in r.output + r.stderr


def test_rel_residual_of_a_zero_eigenvalue_is_against_the_spectrums_scale(capsys):
    """λ2 = -5e-11 of a zeroed model, residual 2e-9: converged, not 'rel. residual 34'."""
    from types import SimpleNamespace

    from cli.probe import _print_result

    res = SimpleNamespace(top_eigenvalues=np.array([0.1, -5.4e-11]),
                          top_residuals=np.array([1.5e-8, 1.8e-9]), measure=None,
                          converged=True, num_matvecs=16, seconds=0.01)
    _print_result(res, top_k=2, bottom=False, trace_matvecs=0, tol=1e-3)
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("λ")]
    assert [float(r[-1]) for r in rows] == [1.5e-7, 1.8e-5]
