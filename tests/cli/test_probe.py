"""``spectra probe``: on a checkpoint of `spectra train`, and appending to a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spectra.runs.store import read_run
from tests.cli.conftest import TINY, invoke, invoke_json


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


def test_probe_append_adds_rows_in_step_order_on_the_monitors_probe_set(tmp_path):
    """Appended rows extend the run's series: a checkpoint's probe, in step order, on its
    monitor's probe set. A row at or before the last probe, or on another probe set, was
    appended too, and 'info', 'plot evolution' and 'export' then read the wrong row as
    the run's last probe."""
    sparse, every = tmp_path / "sparse.h5", tmp_path / "every.h5"
    # no monitor: the probes come from --append, with the monitor settings of TINY
    summary = invoke_json("train", "--optimizer", "sgd", "--epochs", "2", "--probe-every", "0",
                          "--out", sparse, "--json", *TINY)
    first, second = (Path(p) for p in summary["checkpoints"])
    same = ["--top-k", "2", "--density", "--density-vectors", "2", "--density-steps", "10",
            "--trace-matvecs", "8", "--samples", "128"]
    out = invoke_json("probe", "--checkpoint", first, "--append", sparse, "--json", *same)
    assert out["appended"] == {"file": str(sparse), "run": "sgd", "row": 0}
    invoke_json("probe", "--checkpoint", second, "--append", sparse, "--json", *same)
    run = read_run(sparse, "sgd")
    assert run.probes.step.tolist() == [4, 8] and run.probes.epoch.tolist() == [1.0, 2.0]
    r = invoke("probe", "--checkpoint", first, "--append", sparse, *same, ok=False)
    assert r.exit_code == 2 and "the run's probes end at step 8, and this checkpoint is at " \
                                "step 4" in r.stderr
    assert len(read_run(sparse, "sgd").probes) == 2  # nothing appended by a refusal
    # a monitor every 2 epochs (steps 0 and 8): epoch 3's checkpoint (step 12) may follow
    ckpts = invoke_json("train", "--optimizer", "sgd", "--epochs", "3", "--probe-every", "2",
                        "--out", every, "--json", *TINY)["checkpoints"]
    monitored = read_run(every, "sgd")
    assert monitored.probes.step.tolist() == [0, 8]
    # the appended probe repeats the monitor's at that checkpoint (same seed and step)
    np.testing.assert_allclose(run.probes.top_eigenvalues[1], monitored.probes.top_eigenvalues[1],
                               rtol=1e-3)
    r = invoke("probe", "--checkpoint", ckpts[1], "--append", every, ok=False)  # step 8 again
    assert r.exit_code == 2 and "end at step 8, and this checkpoint is at step 8" in r.stderr
    for other, named in ((["--sample-seed", "3"], "--sample-seed"),
                         (["--samples", "64"], "--samples 64 (the monitor's: 128)"),
                         (["--data-arg", "n_train=150"], "--data-arg")):
        r = invoke("probe", "--checkpoint", ckpts[2], "--append", every, *other, ok=False)
        assert r.exit_code == 2 and f"this probe is not ({named}" in r.stderr, r.stderr
    out = invoke_json("probe", "--checkpoint", ckpts[2], "--append", every, "--json")
    assert out["appended"]["row"] == 2 and read_run(every, "sgd").probes.step.tolist() == [0, 8, 12]


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
