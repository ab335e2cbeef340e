"""``spectra train`` end to end on tiny settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

import optim
from spectra.runs.checkpoints import load_checkpoint
from spectra.runs.store import read_run
from tests.cli.conftest import TINY, invoke, invoke_json


def test_train_writes_rows_checkpoints_and_config(trained):
    s = trained["summary"]
    assert s["run"] == "dcao" and s["epochs"] == 2 and s["steps"] == 8  # 200 samples / 50
    assert s["num_probes"] == 3  # epoch 0, 1, 2
    assert s["train_seconds"] > 0 and s["probe_seconds"] > 0
    run = read_run(trained["h5"], "dcao")
    assert len(run.metrics) == 2 and len(run.probes) == 3
    np.testing.assert_array_equal(run.metrics.epoch, [1.0, 2.0])
    np.testing.assert_array_equal(run.probes.epoch, [0.0, 1.0, 2.0])
    assert run.probes.top_eigenvalues.shape == (3, 2)
    assert run.probes.ritz_nodes.shape[1:] == (2, 10)
    assert np.isfinite(run.metrics.test_acc).all()
    # DCAO's own curvature record rides along in the metrics rows
    assert {"lambda1", "gap", "lr_mult"} <= set(run.metrics.extra)
    # the config: model, data, optimizer with hyperparameters, seed, probe settings
    c = run.config
    assert c["model"]["name"] == "mlp" and c["model"]["kwargs"] == {"widths": [16]}
    assert c["data"]["name"] == "digits" and c["data"]["kwargs"]["n_train"] == 200
    assert c["optimizer"]["name"] == "dcao"
    assert c["optimizer"]["hyperparameters"]["lr"] == optim.available()["dcao"].defaults["lr"]
    assert c["seed"] == 0 and c["batch_size"] == 50 and c["epochs"] == 2
    assert c["probe"]["samples"] == 128 and c["probe"]["top_k"] == 2
    assert c["probe"]["density"] == [2, 10] and c["probe"]["trace_matvecs"] == 8
    # checkpoints beside the file, recorded in it, carrying the same config
    assert [p.name for p in run.checkpoints] == ["checkpoint-epoch0001.pt", "checkpoint-epoch0002.pt"]
    assert run.checkpoints[0].parent == trained["dir"] / "demo_ckpt" / "dcao"
    assert all(p.exists() for p in run.checkpoints)
    ck = load_checkpoint(run.checkpoints[-1])
    assert ck["config"] == c and ck["run"]["name"] == "dcao" and ck["epoch"] == 2
    assert ck["model_spec"]["name"] == "mlp" and ck["data_spec"]["name"] == "digits"
    # the JSON summary agrees with the file
    assert math.isclose(s["last_probe"]["top_eigenvalues"][0], run.probes.top_eigenvalues[-1, 0])


def test_train_prints_epoch_lines_and_summary(tmp_path):
    out = tmp_path / "r.h5"
    r = invoke("train", "--optimizer", "adam", "--epochs", "1", "-o", out, *TINY)
    lines = r.stdout.splitlines()
    assert any(line.startswith("epoch 0/1  at initialization  λ1") for line in lines)
    epoch1 = next(line for line in lines if line.startswith("epoch 1/1"))
    assert "train loss" in epoch1 and "test loss" in epoch1 and "λ1" in epoch1
    assert "done: 1 epoch (" in r.stdout and "s of training" in r.stdout and "s of probes" in r.stdout
    assert str(out) in r.stdout
    assert r.stderr == ""


def test_quiet_prints_nothing(tmp_path):
    r = invoke("--quiet", "train", "--optimizer", "sgd", "--epochs", "1", "-o", tmp_path / "q.h5",
               "--probe-every", "0", "--checkpoint-every", "0", *TINY)
    assert r.stdout == "" and r.stderr == ""
    run = read_run(tmp_path / "q.h5", "sgd")
    assert len(run.metrics) == 1 and len(run.probes) == 0 and run.checkpoints == ()
    assert run.config["probe"] is None and run.config["checkpoint"] is None


def test_opt_args_run_name_and_checkpoint_dir(tmp_path):
    s = invoke_json("train", "--optimizer", "sgdm", "--opt-arg", "lr=0.02", "--opt-arg",
                    "nesterov=true", "--run", "mine", "--epochs", "1", "-o", tmp_path / "a.h5",
                    "--checkpoint-dir", tmp_path / "ck", "--probe-every", "0", "--json", *TINY)
    run = read_run(tmp_path / "a.h5", "mine")
    np.testing.assert_allclose(run.metrics.lr, [0.02])
    np.testing.assert_allclose(run.metrics.momentum, [0.9])
    assert run.config["optimizer"]["overrides"] == {"lr": 0.02, "nesterov": True}
    assert s["checkpoints"] == [str(tmp_path / "ck" / "checkpoint-epoch0001.pt")]


def test_schedules_are_wired_by_interval(tmp_path):
    out = tmp_path / "s.h5"
    for name in ("calr-cosine", "lpsgd"):
        invoke("train", "--optimizer", name, "--epochs", "2", "-o", out, "--probe-every", "0",
               "--checkpoint-every", "0", "--json", *TINY)
    lr = read_run(out, "calr-cosine").metrics.lr  # per-step cosine: 0 after the last step
    assert lr[0] < optim.available()["calr-cosine"].defaults["lr"] and lr[-1] < 1e-12
    opt = load_pnorm = read_run(out, "lpsgd").config["optimizer"]
    assert opt["schedule"] and "PNormScheduler" in load_pnorm["schedule"]


def test_loss_is_mse_for_regression(tmp_path):
    s = invoke_json("train", "--optimizer", "adam", "--data", "synthetic", "--data-arg",
                    "task=regression", "--data-arg", "n_train=64", "--data-arg", "n_test=32",
                    "--epochs", "1", "-o", tmp_path / "reg.h5", "--json", "--top-k", "2",
                    "--no-density", "--trace-matvecs", "0", "--checkpoint-every", "0")
    assert s["config"]["loss"] == "mse"
    assert s["final"]["train_acc"] is None  # NaN accuracy for regression, null in JSON


def test_overwrite_replaces_a_run(tmp_path):
    out = tmp_path / "o.h5"
    args = ("train", "--optimizer", "sgd", "-o", out, "--probe-every", "0",
            "--checkpoint-every", "0", *TINY)
    invoke(*args, "--epochs", "1")
    invoke(*args, "--epochs", "2", "--overwrite")
    assert len(read_run(out, "sgd").metrics) == 2


@pytest.mark.parametrize("command", ["train", "compare"])
def test_overwrite_removes_the_replaced_runs_checkpoints(tmp_path, command):
    """A shorter run started with --overwrite left the replaced run's later checkpoints
    in its folder, beside its own."""
    out = tmp_path / "o.h5"
    which = ("--optimizer", "sgd") if command == "train" else ("--optimizers", "sgd,adam")
    args = (command, *which, "-o", out, "--probe-every", "0", *TINY)
    invoke(*args, "--epochs", "3")
    folder = tmp_path / "o_ckpt" / "sgd"
    assert len(list(folder.glob("checkpoint-epoch*.pt"))) == 3
    invoke(*args, "--epochs", "1", "--overwrite")
    assert [p.name for p in folder.glob("checkpoint-epoch*.pt")] == ["checkpoint-epoch0001.pt"]
    assert load_checkpoint(folder / "checkpoint-epoch0001.pt")["run"]["id"] == \
        read_run(out, "sgd").run_id


@pytest.mark.parametrize("first", [1, 2])
def test_resume_continues_the_same_run_identically(tmp_path, first):
    """1 epoch + --resume to 2 epochs writes the rows of a 2-epoch run; so does a run
    that went on to epoch 2 and is resumed from its epoch-1 checkpoint (its epoch-2
    rows are dropped and written again, once, with --overwrite, and its epoch-2 checkpoint
    removed and written again)."""
    full, split = tmp_path / "full.h5", tmp_path / "split.h5"
    common = ("train", "--optimizer", "dcao", "--opt-arg", "period=3", *TINY)
    invoke(*common, "--epochs", "2", "-o", full)
    invoke(*common, "--epochs", str(first), "-o", split)
    ckpt = tmp_path / "split_ckpt" / "dcao" / "checkpoint-epoch0001.pt"
    # resuming before the run's last checkpoint drops its later epochs: --overwrite
    r = invoke("train", "--resume", ckpt, "--epochs", "2", *(["--overwrite"] * (first == 2)))
    assert "resuming run 'dcao'" in r.stdout
    assert ("dropped 1 metric and 1 probe rows past step" in r.stdout) == (first == 2), r.stdout
    # and its checkpoint of the dropped epoch 2, until written again
    assert ("removed 1 checkpoint of the dropped epochs past epoch 1 "
            in r.stderr) == (first == 2), r.stderr
    a, b = read_run(full, "dcao"), read_run(split, "dcao")
    for table in ("metrics", "probes"):
        ta, tb = getattr(a, table), getattr(b, table)
        assert len(ta) == len(tb)
        for col in ("step", "epoch", "train_loss", "test_loss", "lr", "top_eigenvalues",
                    "bottom_eigenvalue", "trace", "ritz_nodes") if table == "probes" else (
                "step", "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr",
                "momentum", "weight_decay"):
            try:
                va, vb = ta[col], tb[col]
            except (KeyError, AttributeError):
                continue
            np.testing.assert_array_equal(va, vb, err_msg=f"{table}.{col}")
    assert [p.name for p in b.checkpoints] == ["checkpoint-epoch0001.pt", "checkpoint-epoch0002.pt"]


def test_resume_summary_tells_this_sessions_numbers_from_the_runs(tmp_path):
    """After a resume the summary mixed the run's totals (epochs, steps) with this
    session's time and probe count ("done: 2 epochs (..) in 0.1 s ... (1 probes, ..)")."""
    out = tmp_path / "r.h5"
    invoke("train", "--optimizer", "sgd", "--epochs", "1", "--top-k", "1", "--no-density",
           "-o", out, *TINY)
    steps = int(read_run(out, "sgd").metrics.step[-1])
    ckpt = tmp_path / "r_ckpt" / "sgd" / "checkpoint-epoch0001.pt"
    r = invoke("train", "--resume", ckpt, "--epochs", "2")
    done = next(line for line in r.stdout.splitlines() if line.startswith("done:"))
    assert done.startswith(f"done: 1 epoch ({steps} steps) this session, in "), done
    assert "(1 probe, " in done, done  # epoch 2's probe; epochs 0 and 1 were probed before
    assert done.endswith(f"; the run: 2 epochs, {2 * steps} steps in all"), done


def test_help_lists_the_options():
    r = invoke("train", "--help")
    for opt in ("--optimizer", "--opt-arg", "--model-arg", "--data-arg", "--data-dir",
                "--batch-size", "--seed", "--loss", "--probe-every", "--probe-unit", "--top-k",
                "--density / --no-density", "--density-vectors", "--density-steps",
                "--trace-matvecs", "--probe-samples", "--checkpoint-dir", "--checkpoint-every",
                "--resume", "--overwrite", "--run", "--out", "--json"):
        assert opt in r.stdout, opt
    top = invoke("--help").stdout
    for cmd in ("train", "compare", "probe", "plot", "landscape", "info"):
        assert f"  {cmd} " in top, cmd


def test_probe_every_n_steps(tmp_path):
    """--probe-unit step probes every N optimizer steps, also inside an epoch."""
    out = tmp_path / "st.h5"
    invoke("train", "--optimizer", "sgd", "--epochs", "3", "-o", out, "--probe-unit", "step",
           "--probe-every", "3", "--checkpoint-every", "0", "--json", *TINY)
    run = read_run(out, "sgd")  # 4 steps per epoch
    np.testing.assert_array_equal(run.probes.step, [0, 3, 6, 9, 12])
    np.testing.assert_allclose(run.probes.epoch, [0, 0.75, 1.5, 2.25, 3.0])
    assert len(run.metrics) == 3
