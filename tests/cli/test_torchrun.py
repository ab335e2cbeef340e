"""`spectra probe` under torchrun: 2 gloo processes, each with half of the probe set,
give the one-process probe, and rank 0 alone prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import invoke_json

ROOT = Path(__file__).resolve().parents[2]
# 101 samples: shards of 51 and 50; float64 and a tight tol make the comparison sharp
ARGS = ["probe", "--samples", "101", "--fit-steps", "3", "--top-k", "2", "--trace-matvecs", "10",
        "--float64", "--tol", "1e-8", "--model-arg", "widths=16", "--data-arg", "n_train=200",
        "--data-arg", "n_test=50", "--json"]


def _torchrun(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    # --standalone: a rendezvous on a free local port, chosen by torchrun itself; "--" ends
    # torchrun's options (else its parser claims prefixes of its own: --run of --run-path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "--", "cli.main", "--threads", "1", *args]
    return subprocess.run(cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def test_probe_on_two_gloo_processes_matches_one_process(tmp_path):
    two = _torchrun(tmp_path, *ARGS)
    assert two.returncode == 0, two.stderr[-3000:]
    dist = json.loads(two.stdout)  # one JSON object: rank 0 alone prints
    one = invoke_json(*ARGS)
    assert dist["processes"] == 2 and one["processes"] == 1
    assert dist["num_samples"] == one["num_samples"] == 101
    assert dist["reduction"] == one["reduction"]
    # the fit is replicated: the same weights, the same loss up to the sum's rounding
    assert dist["loss"] == pytest.approx(one["loss"], rel=1e-12)
    # each Ritz value is within its residual of an eigenvalue of the same H (products of the
    # sharded and the whole probe set differ by float64 rounding, ~1e-15 relative)
    for a, b, ra, rb in zip(dist["top_eigenvalues"], one["top_eigenvalues"],
                            dist["top_residuals"], one["top_residuals"]):
        assert abs(a - b) <= ra + rb + 1e-10 * abs(b)
    scale = abs(one["top_eigenvalues"][0])
    assert abs(dist["bottom_eigenvalue"] - one["bottom_eigenvalue"]) <= 2 * 1e-8 * scale + 1e-10
    # Hutch++ with the same seeded vectors: the same estimate up to rounding
    assert dist["trace"] == pytest.approx(one["trace"], rel=1e-9)


@pytest.mark.slow  # a second torchrun launch (~10 s of start-up) for one error message
def test_probe_refuses_alignment_under_torchrun(tmp_path):
    two = _torchrun(tmp_path, *ARGS, "--alignment")
    assert two.returncode != 0
    assert "--alignment is not available under torchrun" in two.stderr


@pytest.mark.slow  # two trainings, one of them through torchrun (~30 s on a loaded machine)
def test_train_on_two_gloo_processes_replicates_training_and_shards_the_probes(tmp_path):
    import numpy as np

    from spectra.runs.store import read_run
    from tests.cli.conftest import invoke

    args = ["train", "--optimizer", "sgd", "--epochs", "2", "--data-arg", "n_train=200",
            "--data-arg", "n_test=50", "--model-arg", "widths=16", "--top-k", "2",
            "--density-vectors", "2", "--density-steps", "10", "--trace-matvecs", "8",
            "--probe-samples", "101", "--batch-size", "50", "--json"]
    two = _torchrun(tmp_path, *args, "-o", str(tmp_path / "two.h5"))
    assert two.returncode == 0, two.stderr[-3000:]
    json.loads(two.stdout)  # one summary: rank 0 alone prints
    invoke(*args, "-o", str(tmp_path / "one.h5"))
    a, b = read_run(tmp_path / "one.h5", "sgd"), read_run(tmp_path / "two.h5", "sgd")
    # replicated training: the same steps on the same batches, rank 0's rows written once
    np.testing.assert_array_equal(np.asarray(a.metrics["train_loss"]),
                                  np.asarray(b.metrics["train_loss"]))
    ta, tb = np.asarray(a.probes["top_eigenvalues"]), np.asarray(b.probes["top_eigenvalues"])
    assert ta.shape == tb.shape == (3, 2)
    # float32 products of halves vs the whole: both within the probe's tol 1e-3 of H's λ
    assert np.all(np.abs(ta - tb) <= 2e-3 * np.abs(ta))
    assert sorted(p.name for p in (tmp_path / "two_ckpt" / "sgd").iterdir()) == sorted(
        p.name for p in (tmp_path / "one_ckpt" / "sgd").iterdir())


@pytest.mark.slow  # two trainings, one of them through torchrun (~30 s on a loaded machine)
def test_dcao_under_torchrun_probes_the_one_process_batch_on_every_rank(tmp_path):
    """DCAO's probes on its time budget (the default): the ranks agree when to probe
    (else one would wait for the other's all-reduce), each probes its shard of the
    probe batch, and the first probe, at the initial weights, is the one-process one."""
    import torch

    from tests.cli.conftest import invoke

    args = ["train", "--optimizer", "dcao", "--epochs", "2", "--data-arg", "n_train=200",
            "--data-arg", "n_test=50", "--model-arg", "widths=16", "--probe-every", "0",
            "--probe-samples", "101", "--batch-size", "20", "--json"]
    two = _torchrun(tmp_path, *args, "-o", str(tmp_path / "two.h5"))
    assert two.returncode == 0, two.stderr[-3000:]
    invoke(*args, "-o", str(tmp_path / "one.h5"))

    def history(stem: str) -> list[dict]:
        ckpt = torch.load(tmp_path / f"{stem}_ckpt" / "dcao" / "checkpoint-epoch0002.pt",
                          weights_only=True)
        return ckpt["optimizer_state"]["dcao"]["history"]

    h1, h2 = history("one"), history("two")
    assert len(h2) >= 2 and all(r["ok"] for r in h2), [r["reason"] for r in h2]
    assert h1[0]["step"] == h2[0]["step"] == 0
    # float32 products of two shards against the whole batch: rounding, far below probe_tol
    assert abs(h2[0]["lambda1"] - h1[0]["lambda1"]) <= 1e-4 * abs(h1[0]["lambda1"])
