"""``spectra compare``: one file, one run per optimizer, same start."""

from __future__ import annotations

import numpy as np

import optim
from spectra.runs.store import list_runs, read_run
from tests.cli.conftest import TINY, invoke, invoke_json


def test_compare_same_start_one_file(tmp_path):
    out = tmp_path / "cmp.h5"
    s = invoke_json("compare", "--optimizers", "sgd,adam,dcao", "--opt-arg", "sgd.lr=0.05",
                    "--epochs", "1", "-o", out, "--json", *TINY)
    assert [r["run"] for r in s["runs"]] == ["sgd", "adam", "dcao"]
    assert list_runs(out) == ["sgd", "adam", "dcao"]
    runs = {n: read_run(out, n) for n in list_runs(out)}
    # same initialization and probe set: the epoch-0 probes are identical
    first = [r.probes.top_eigenvalues[0] for r in runs.values()]
    for f in first[1:]:
        np.testing.assert_array_equal(f, first[0])
    assert runs["sgd"].config["optimizer"]["overrides"] == {"lr": 0.05}
    assert runs["adam"].config["optimizer"]["overrides"] == {}
    np.testing.assert_allclose(runs["sgd"].metrics.lr, [0.05])
    for name, r in runs.items():
        assert len(r.metrics) == 1 and len(r.probes) == 2
        assert r.config["model"] == runs["sgd"].config["model"]
        assert r.config["data"] == runs["sgd"].config["data"]
        assert r.checkpoints[0].parent == tmp_path / "cmp_ckpt" / name
        assert r.checkpoints[0].exists()


def test_compare_prints_a_final_table_with_each_runs_lr(tmp_path):
    r = invoke("compare", "--optimizers", "sgd,calr", "--opt-arg", "calr.lr=0.002", "--epochs",
               "1", "-o", tmp_path / "c.h5", "--probe-every", "0", "--checkpoint-every", "0",
               *TINY)
    lines = r.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("optimizer"))
    assert lines[head].split()[:2] == ["optimizer", "lr"]
    for col in ("train loss", "train acc", "test loss", "test acc", "λ1", "train", "probes"):
        assert col in lines[head]
    sgd, calr = lines[head + 2].split(), lines[head + 3].split()
    # sgd at its registry default (tuned for this task), calr at the --opt-arg
    assert sgd[0] == "sgd" and float(sgd[1]) == optim.available()["sgd"].defaults["lr"]
    assert calr[0] == "calr" and float(calr[1]) == 0.002
    assert sgd[-1] == "s" and sgd[-3] == "s"  # the times carry their unit
    assert any(line.startswith("sgd   epoch 1/1") for line in lines)


def test_compare_defaults_differ_per_optimizer_and_json_reports_them(tmp_path):
    s = invoke_json("compare", "--optimizers", "sgd,adam", "--epochs", "1", "-o",
                    tmp_path / "c.h5", "--probe-every", "0", "--checkpoint-every", "0",
                    "--json", *TINY)
    lrs = {r["optimizer"]: r["lr"] for r in s["runs"]}
    assert lrs == {k: optim.available()[k].defaults["lr"] for k in ("sgd", "adam")}
    assert lrs["sgd"] != lrs["adam"]


def test_compare_rejects_existing_runs_before_training(tmp_path):
    out = tmp_path / "c.h5"
    args = ("compare", "--optimizers", "sgd,adam", "--epochs", "1", "-o", out,
            "--probe-every", "0", "--checkpoint-every", "0", *TINY)
    invoke(*args)
    before = out.read_bytes()
    r = invoke(*args, ok=False)
    assert r.exit_code == 2 and "already has runs 'sgd', 'adam'" in r.stderr
    assert out.read_bytes() == before
    invoke(*args, "--overwrite")
    assert list_runs(out) == ["sgd", "adam"]


def test_compare_eval_train_in_every_run_and_its_config(tmp_path):
    out = tmp_path / "ev.h5"
    invoke("compare", "--optimizers", "sgd,adam", "--epochs", "1", "--eval-train", "-o", out,
           "--no-density", "--checkpoint-every", "1", *TINY)
    for name in ("sgd", "adam"):
        run = read_run(out, name)
        assert run.config["eval_train"] is True
        assert list(run.metrics.epoch) == [0.0, 1.0]  # epoch 0: before the first step
        assert np.all(np.isfinite(run.metrics["train_eval_loss"]))
        assert np.all((run.metrics["train_eval_acc"] >= 0) & (run.metrics["train_eval_acc"] <= 1))
    # the checkpoint carries it: train --resume of a compare run goes on evaluating
    ckpt = read_run(out, "adam").checkpoints[-1]
    invoke("train", "--resume", ckpt, "--epochs", "2")
    resumed = read_run(out, "adam")
    assert list(resumed.metrics.epoch) == [0.0, 1.0, 2.0]
    assert np.isfinite(resumed.metrics["train_eval_loss"][-1])
    # without the flag: stored as False, no epoch-0 row, no eval-mode columns
    plain = tmp_path / "plain.h5"
    invoke("compare", "--optimizers", "sgd", "--epochs", "1", "-o", plain, "--probe-every", "0",
           "--checkpoint-every", "0", *TINY)
    run = read_run(plain, "sgd")
    assert run.config["eval_train"] is False and list(run.metrics.epoch) == [1.0]
    assert "train_eval_loss" not in run.metrics.extra


def test_compare_suggests_a_figure_its_file_can_draw(tmp_path):
    """0 epochs write no metrics rows, so `plot curves` would fail: the probe at
    initialization is suggested instead, and the suggested command runs."""
    out = tmp_path / "c0.h5"
    r = invoke("compare", "--optimizers", "sgd,adam", "--epochs", "0", "-o", out,
               "--checkpoint-every", "0", *TINY)
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("next:")]
    cmd = line.removeprefix("next:").split()
    assert cmd[:3] == ["spectra", "plot", "density"]
    invoke(*cmd[1:])
    assert (tmp_path / "c0_density.png").exists()


def test_a_diverged_optimizer_is_a_row_and_the_others_still_train(tmp_path):
    """sgd at lr 1e30 diverges in its first epoch: its rows so far are kept, the table and
    the JSON say where it diverged, and adam after it trains as usual."""
    out = tmp_path / "c.h5"
    args = ("compare", "--optimizers", "sgd,adam", "--opt-arg", "sgd.lr=1e30", "--epochs", "2",
            "--probe-every", "0", "--checkpoint-every", "0", *TINY)
    r = invoke(*args, "-o", out)
    assert "sgd   diverged: the training loss is " in r.stdout
    assert "Going on with the others." in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.split()[:2] == ["sgd", "1e+30"])
    assert "diverged: loss " in row and "(epoch 1)" in row
    assert len(read_run(out, "adam").metrics) == 2
    s = invoke_json(*args, "-o", tmp_path / "d.h5", "--json")
    sgd, adam = s["runs"]
    assert sgd["diverged"]["epoch"] == 1 and sgd["diverged"]["step"] >= 1
    assert adam.get("diverged") is None and adam["final"]["epoch"] == 2


def test_compare_fails_when_every_optimizer_diverged(tmp_path):
    r = invoke("compare", "--optimizers", "sgd,adam", "--opt-arg", "lr=1e30", "--epochs", "1",
               "--probe-every", "0", "--checkpoint-every", "0", "-o", tmp_path / "c.h5", *TINY,
               ok=False)
    assert r.exit_code != 0
    assert "every optimizer diverged (sgd, adam)" in r.stderr
    assert set(list_runs(tmp_path / "c.h5")) == {"sgd", "adam"}  # their rows are kept
