"""``--schedule`` of ``spectra train`` and ``spectra compare``: the lr sequence, the
config, a bit-identical resume, and bad options refused before anything is written."""

from __future__ import annotations

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

from spectra.runs.checkpoints import load_checkpoint
from spectra.runs.store import read_run
from tests.cli.conftest import TINY, assert_same_rows, invoke, rows_of

FAST = [*TINY, "--probe-every", "0"]  # 200 samples in batches of 50: 4 steps per epoch
SPE = 4


def _reference_lrs(epochs: int, lr: float) -> list[float]:
    """warmup-cosine with a 1-epoch warm-up, by hand from torch's schedulers: the lr
    after each step (what a step's metrics row records)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    total = epochs * SPE
    sched = SequentialLR(opt, [LinearLR(opt, start_factor=0.01, total_iters=SPE),
                               CosineAnnealingLR(opt, T_max=total - SPE)], [SPE])
    out = []
    for _ in range(total):
        opt.step()
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def test_train_records_the_scheduled_lr_and_the_schedule(tmp_path):
    out = tmp_path / "s.h5"
    invoke("train", "--optimizer", "sgdm", "--opt-arg", "lr=0.1", "--epochs", "3",
           "--schedule", "warmup-cosine", "--warmup", "1", "--log-every", "1", "-o", out, *FAST)
    run = read_run(out, "sgdm")
    # one row per step (and the epoch rows, at the same steps, with the same lr)
    lrs = {int(s): float(lr) for s, lr in zip(run.metrics.step, run.metrics.lr)}
    assert [lrs[t + 1] for t in range(3 * SPE)] == _reference_lrs(3, 0.1)
    spec = run.config["optimizer"]["lr_schedule"]
    assert spec == {"name": "warmup-cosine", "warmup": 1}
    ck = load_checkpoint(run.checkpoints[-1])
    assert ck["config"]["optimizer"]["lr_schedule"] == spec
    assert len(ck["schedulers"]["step"]) == 1 and ck["schedulers"]["epoch"] == []
    info = invoke("info", out).stdout
    assert "lr schedule" in info and "warmup-cosine per step, warmup 1" in info


def test_resume_with_a_schedule_is_bit_identical(tmp_path):
    """lpsgd (its p schedule per epoch) with warmup-cosine per step: a 3-epoch run, and
    the same run resumed from its epoch-1 checkpoint (the schedule's length is the
    run's --epochs, so the run to resume is a 3-epoch run too), give the same rows and
    weights."""
    full, split = tmp_path / "full.h5", tmp_path / "split.h5"
    common = ("train", "--optimizer", "lpsgd", "--opt-arg", "lr=0.05", "--schedule",
              "warmup-cosine", "--warmup", "1", *FAST)
    invoke(*common, "--epochs", "3", "-o", full)
    invoke(*common, "--epochs", "3", "-o", split)
    ckpt = tmp_path / "split_ckpt" / "lpsgd" / "checkpoint-epoch0001.pt"
    assert len(load_checkpoint(ckpt)["schedulers"]["epoch"]) == 1  # p
    invoke("train", "--resume", ckpt, "--epochs", "3", "--overwrite")  # drops epochs 2, 3
    rows = [rows_of(full), rows_of(split)]
    for r in rows:
        r["lpsgd"].pop("checkpoints", None)  # paths differ
    assert_same_rows(*rows)
    a = load_checkpoint(tmp_path / "full_ckpt" / "lpsgd" / "checkpoint-epoch0003.pt")
    b = load_checkpoint(tmp_path / "split_ckpt" / "lpsgd" / "checkpoint-epoch0003.pt")
    for k, v in a["model_state"].items():
        assert torch.equal(v, b["model_state"][k]), k
    assert a["schedulers"]["step"] == b["schedulers"]["step"]


def test_resume_refuses_a_schedule_option(tmp_path):
    out = tmp_path / "r.h5"
    invoke("train", "--optimizer", "sgd", "--epochs", "1", "-o", out, *FAST)
    ckpt = tmp_path / "r_ckpt" / "sgd" / "checkpoint-epoch0001.pt"
    r = invoke("train", "--resume", ckpt, "--epochs", "2", "--schedule", "cosine", ok=False)
    assert r.exit_code == 2 and "--schedule" in r.stderr and "cannot be changed" in r.stderr


@pytest.mark.parametrize("args, what", [
    (["--optimizer", "sgd", "--schedule", "cosine"], "lr schedule (cosine"),
    (["--optimizer", "lpsgd"], "schedule (p annealed"),
])
def test_resume_past_the_end_of_a_fixed_length_schedule_is_refused(tmp_path, args, what):
    """A cosine lr or lpsgd's p spans the run's planned epochs: resuming to more
    epochs would run it past its end (a cosine lr rises again), so it is refused,
    naming the schedule and the way out; a run without one resumes to more epochs."""
    out = tmp_path / "r.h5"
    invoke("train", *args, "--epochs", "2", "-o", out, *FAST)
    name = args[1]
    ckpt = tmp_path / "r_ckpt" / name / "checkpoint-epoch0001.pt"
    r = invoke("train", "--resume", ckpt, "--epochs", "3", ok=False)
    assert r.exit_code == 2, r.output
    assert "planned for 2 epochs" in r.stderr and what in r.stderr and "--epochs 2" in r.stderr
    assert len(read_run(out, name).metrics) == 2  # nothing written: the rows of epochs 1, 2
    # to the planned end: fine (--overwrite: it drops epoch 2, of a later checkpoint)
    invoke("train", "--resume", ckpt, "--epochs", "2", "--overwrite")
    plain = tmp_path / "p.h5"
    invoke("train", "--optimizer", "sgd", "--schedule", "step", "--schedule-arg", "step_size=1",
           "--epochs", "1", "-o", plain, *FAST)
    invoke("train", "--resume", tmp_path / "p_ckpt" / "sgd" / "checkpoint-epoch0001.pt",
           "--epochs", "2")
    assert len(read_run(plain, "sgd").metrics) == 2


BAD = [
    (["--schedule", "cosin"], "Did you mean 'cosine'"),
    (["--schedule", "warmup-cosine"], "needs warmup > 0"),
    (["--schedule", "cosine", "--schedule-arg", "gama=0.5"], "Unknown schedule option 'gama'"),
    (["--schedule", "step", "--schedule-arg", "gamma=2"], "gamma=2"),
    (["--schedule", "step"], "exactly one of step_size"),
    (["--schedule", "cosine", "--schedule-arg", "interval=batch"], "interval='batch'"),
    (["--schedule", "cosine", "--warmup", "1", "--schedule-arg", "warmup=2"], "--warmup"),
    (["--schedule", "warmup-cosine", "--warmup", "2"], "warmup=2 epochs (8 steps) leaves nothing"),
    (["--optimizer", "calr-cosine", "--schedule", "cosine"], "'calr-cosine' already has an lr"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_schedule_options_write_nothing(tmp_path, args, message):
    out = tmp_path / "bad.h5"
    opt = [] if "--optimizer" in args else ["--optimizer", "sgd"]
    r = invoke("train", *opt, *args, "--epochs", "2", "-o", out, *FAST, ok=False)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --"), r.stderr
    assert message in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_compare_gives_every_optimizer_the_schedule(tmp_path):
    out = tmp_path / "c.h5"
    invoke("compare", "--optimizers", "sgd,lpsgd", "--epochs", "2", "--schedule", "step",
           "--schedule-arg", "step_size=1", "--schedule-arg", "gamma=0.5", "-o", out, *FAST)
    for name in ("sgd", "lpsgd"):
        run = read_run(out, name)
        assert run.config["optimizer"]["lr_schedule"] == {"name": "step", "step_size": 1,
                                                          "gamma": 0.5}
        lr0 = run.config["optimizer"]["hyperparameters"]["lr"]
        assert list(run.metrics.lr) == pytest.approx([lr0 * 0.5, lr0 * 0.25])
    bad = tmp_path / "bad.h5"
    r = invoke("compare", "--optimizers", "sgd,calr-cosine", "--schedule", "cosine", "-o", bad,
               *FAST, ok=False)
    assert r.exit_code == 2 and "calr-cosine" in r.stderr and not bad.exists()
