"""Crash safety of ``spectra train``: SIGKILL a real training process at random moments.

Each round starts ``python -m cli.main train`` as a subprocess writing a new run into
the same HDF5 file, kills it with SIGKILL at a random moment after the file appears
(during probes, metric appends, checkpoint writes, column creation or growth), and
reopens the file: it must open, every committed row of every run must be complete and
consistent, and the runs of earlier rounds must be unchanged. A last step resumes a
killed run from its last checkpoint in the same file.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from spectra.runs.checkpoints import later_checkpoints, load_checkpoint
from spectra.runs.store import read_run, read_runs
from tests.cli.conftest import assert_same_rows, invoke, rows_of

ROUNDS = 3
STEPS_PER_EPOCH = 4  # 200 samples, batch 50
ARGS = ["--data", "synthetic", "--data-arg", "n_train=200", "--data-arg", "n_test=64",
        "--data-arg", "dim=16", "--model-arg", "widths=16", "--top-k", "2",
        "--density-vectors", "2", "--density-steps", "10", "--trace-matvecs", "8",
        "--probe-samples", "128", "--batch-size", "50"]


def _check_run(path: Path, name: str, context: str) -> int:
    """Every committed row of run ``name`` is complete; returns its metrics row count."""
    run = read_run(path, name)
    m, p = run.metrics, run.probes
    n = len(m)
    np.testing.assert_array_equal(m.epoch, np.arange(1, n + 1), err_msg=context)
    np.testing.assert_array_equal(m.step, STEPS_PER_EPOCH * np.arange(1, n + 1), err_msg=context)
    for col in ("train_loss", "test_loss", "train_acc", "test_acc", "lr", "seconds"):
        assert np.isfinite(m[col]).all(), f"{context}: metrics.{col} {m[col]}"
    # probes at epoch 0, 1, ...: the probe of an epoch comes after its metrics row
    k = len(p)
    assert k in (n, n + 1), f"{context}: {n} metrics rows but {k} probe rows"
    np.testing.assert_array_equal(p.epoch, np.arange(k), err_msg=context)
    if k:
        assert p.top_eigenvalues.shape == (k, 2) and np.isfinite(p.top_eigenvalues).all(), context
        assert np.isfinite(p.trace).all() and np.isfinite(p.bottom_eigenvalue).all(), context
        assert p.ritz_nodes.shape == (k, 2, 10), context
        w = np.nan_to_num(p.ritz_weights)
        np.testing.assert_allclose(w.sum(axis=2), 1.0, atol=1e-6, err_msg=context)
    # checkpoints: written after the probe of their epoch, recorded after they are whole
    c = len(run.checkpoints)
    assert c in (n - 1, n) and c >= 0, f"{context}: {c} checkpoints for {n} epochs"
    assert [q.name for q in run.checkpoints] == [f"checkpoint-epoch{e:04d}.pt" for e in range(1, c + 1)]
    for q in run.checkpoints:
        assert q.exists(), f"{context}: recorded checkpoint {q} is missing"
    if c:
        ck = load_checkpoint(run.checkpoints[-1])
        assert ck["epoch"] == c and ck["run"]["name"] == name
    return n


def test_sigkill_at_random_moments_leaves_a_consistent_file(tmp_path):
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    out = tmp_path / "killed.h5"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    previous: dict = {}
    completed = []
    for i in range(ROUNDS):
        name = f"run{i}"
        cmd = [sys.executable, "-m", "cli.main", "--quiet", "train", "--optimizer", "sgdm",
               "--opt-arg", "lr=0.05", "--epochs", "1000", "--run", name, "-o", str(out), *ARGS]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while not _has_run(out, name, proc):  # the run exists: training has begun
                assert time.monotonic() < deadline, "the training process did not start"
                time.sleep(0.02)
            delay = rng.uniform(0.0, 1.5)
            time.sleep(delay)
            assert proc.poll() is None, proc.stderr.read().decode()
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            proc.stderr.close()
        context = f"round {i}, killed {delay:.2f} s after the run appeared (seed {seed})"
        assert proc.returncode == -signal.SIGKILL, context
        runs = read_runs(out)  # opens (a killed writer's journal is rolled back)
        assert list(runs) == [f"run{j}" for j in range(i + 1)], context
        completed.append(_check_run(out, name, context))
        now = rows_of(out)
        assert_same_rows(previous, {k: v for k, v in now.items() if k in previous})
        previous = now

    # a killed run resumes from its last checkpoint, into the same file
    name = next((f"run{i}" for i in range(ROUNDS) if read_run(out, f"run{i}").checkpoints), None)
    if name is not None:
        ckpt = read_run(out, name).checkpoints[-1]
        # a kill between writing a checkpoint and recording it leaves a later one in the
        # folder, whose epochs the run file holds: the resume must start from that one
        later = later_checkpoints(load_checkpoint(ckpt), sorted(ckpt.parent.glob("*.pt")))
        ckpt = later[-1] if later else ckpt
        done = load_checkpoint(ckpt)["epoch"]
        invoke("--quiet", "train", "--resume", ckpt, "--epochs", str(done + 1))
        run = read_run(out, name)
        assert run.metrics.epoch[-1] == done + 1 and run.checkpoints[-1].name == \
            f"checkpoint-epoch{done + 1:04d}.pt"


def _has_run(path: Path, name: str, proc: subprocess.Popen) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"training exited early ({proc.returncode}): {proc.stderr.read().decode()}")
    if not path.exists():
        return False
    try:
        return name in read_runs(path)
    except Exception:  # noqa: BLE001 - a writer mid-change: try again
        return False
