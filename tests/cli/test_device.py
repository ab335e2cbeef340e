"""``--device`` of the commands that compute: checked before anything runs, recorded
in the run's config, and (on a machine with CUDA) every command end to end on the GPU."""

from __future__ import annotations

import pytest
import torch

from cli._build import rank_probe_data, run_device
from cli._errors import CLIError
from spectra.utils.distributed import Processes
from tests.cli.conftest import TINY, invoke, invoke_json

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("command", [
    ["train", *TINY], ["compare", "--optimizers", "sgd", *TINY], ["probe", "--fit-steps", "0"],
    ["landscape", "--checkpoint", "missing.pt", "--json"],
])
def test_cuda_without_cuda_is_one_clear_error_before_anything_runs(monkeypatch, tmp_path,
                                                                    command):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    r = invoke(*command, "--device", "cuda", ok=False)
    assert r.exit_code == 2
    assert "Invalid value for '--device': cuda was asked for, but torch.cuda.is_available() " \
           "is False" in r.stderr
    assert "Available: cpu; use --device cpu" in r.stderr
    assert list(tmp_path.iterdir()) == []  # no run file, no checkpoint


def test_the_run_config_records_the_device(trained):
    # the session's run: --device left at auto, which is the CPU without CUDA
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert trained["summary"]["config"]["device"] == device
    from spectra.runs.store import read_run

    assert read_run(trained["h5"], "dcao").config["device"] == device


def test_resume_takes_device(trained, run_copy):
    """--device is not one of the settings --resume takes from the checkpoint."""
    out = invoke_json("train", "--resume", trained["checkpoints"][0], "--out", run_copy,
                      "--epochs", "3", "--device", "cpu", "--json")
    assert out["epochs"] == 3


def test_each_torchrun_process_takes_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    ranks = Processes(rank=3, world_size=4, local_rank=3, backend="gloo")
    assert run_device("cuda", ranks) == torch.device("cuda", 1)
    assert run_device("cuda:0", ranks) == torch.device("cuda", 0)  # named: as named
    assert run_device("cpu", ranks) == torch.device("cpu")
    assert run_device("cuda") == torch.device("cuda")


def test_dcao_gets_its_shard_of_the_probe_batch_under_torchrun():
    X, y = torch.arange(300.0).reshape(150, 2), torch.arange(150)
    assert rank_probe_data("dcao", (X, y), {}, None)[1] is y  # one process: all of it
    assert rank_probe_data("sgd", (X, y), {}, Processes(0, 2, 0, "gloo"))[1] is y
    parts = [rank_probe_data("dcao", (X, y), {}, Processes(r, 2, r, "gloo"))[1]
             for r in range(2)]
    # the union is the first probe_batch_size (128, DCAO's default) samples
    assert torch.equal(torch.cat(parts), y[:128]) and len(parts[0]) == 64
    parts = [rank_probe_data("dcao", (X, y), {"probe_batch_size": 5}, Processes(r, 2, r, "gloo"))[1]
             for r in range(2)]
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4]]
    with pytest.raises(CLIError, match="dcao's probe batch holds 1 samples, fewer than the 2 "
                                       "torchrun processes"):
        rank_probe_data("dcao", (X, y), {"probe_batch_size": 1}, Processes(1, 2, 1, "gloo"))


# --------------------------------------------------------------------------- on a GPU


@pytest.mark.cuda
@cuda
def test_train_probe_and_landscape_on_cuda(tmp_path):
    out = tmp_path / "gpu.h5"
    s = invoke_json("train", "--optimizer", "dcao", "--epochs", "2", "--device", "cuda",
                    "-o", out, "--json", *TINY)
    assert s["config"]["device"] == "cuda"
    assert s["final"]["train_loss"] == s["final"]["train_loss"]  # finite, not NaN
    top = s["last_probe"]["top_eigenvalues"]
    ckpt = s["checkpoints"][-1]
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    hist = state["optimizer_state"]["dcao"]["history"]
    assert hist and all(r["ok"] for r in hist), [r["reason"] for r in hist]

    # the checkpoint (its tensors written from the GPU) probed on the GPU and on the CPU
    args = ["probe", "--checkpoint", ckpt, "--trace-matvecs", "0", "--no-bottom", "--json"]
    gpu = invoke_json(*args, "--device", "cuda")
    cpu = invoke_json(*args, "--device", "cpu")
    assert gpu["device"] == "cuda" and cpu["device"] == "cpu"
    # the monitor's last probe repeated: the same weights and probe set
    for a, b, c in zip(gpu["top_eigenvalues"], cpu["top_eigenvalues"], top):
        assert abs(a - b) <= 1e-2 * abs(b) and abs(a - c) <= 1e-2 * abs(c)

    # resumed on the GPU, and a comparison and a landscape there
    r = invoke_json("train", "--resume", s["checkpoints"][-1], "--epochs", "3",
                    "--device", "cuda", "--json")
    assert r["epochs"] == 3
    c = invoke_json("compare", "--optimizers", "sgd,adam", "--epochs", "1", "--device",
                    "cuda:0", "-o", tmp_path / "cmp.h5", "--json", *TINY)
    assert [run["optimizer"] for run in c["runs"]] == ["sgd", "adam"]
    land = invoke_json("landscape", "--checkpoint", ckpt, "--points", "5", "--device", "cuda",
                       "--json")
    assert len(land["eigenvalues"]) == 1


@pytest.mark.cuda
@cuda
def test_probe_from_the_registry_on_cuda_matches_the_cpu():
    args = ["probe", "--fit-steps", "5", "--samples", "200", "--top-k", "2", "--float64",
            "--tol", "1e-8", "--trace-matvecs", "0", "--model-arg", "widths=16",
            "--data-arg", "n_train=200", "--data-arg", "n_test=50", "--json"]
    gpu, cpu = invoke_json(*args, "--device", "cuda"), invoke_json(*args, "--device", "cpu")
    # the same fit in float32 on two devices (rounding), then float64 probes
    for a, b in zip(gpu["top_eigenvalues"], cpu["top_eigenvalues"]):
        assert abs(a - b) <= 1e-3 * abs(b)
