"""The torchrun environment and the shards of a data set."""

import pytest

from spectra.utils.distributed import env_processes, processes_from_env, shard


@pytest.mark.parametrize("n,world", [(10, 3), (101, 2), (2, 2), (7, 1), (3, 5)])
def test_shards_cover_every_sample_once_and_differ_by_at_most_one(n, world):
    parts = [shard(n, r, world) for r in range(world)]
    assert [i for p in parts for i in range(n)[p]] == list(range(n))
    sizes = [len(range(n)[p]) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_env_processes_reads_torchrun_variables(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert env_processes().world_size == 1
    with processes_from_env() as p:  # one process: no group
        assert (p.rank, p.world_size, p.backend, p.is_main) == (0, 1, None, True)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    p = env_processes()
    assert (p.rank, p.world_size, p.local_rank, p.is_main) == (3, 4, 1, False)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4"):
        env_processes()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        env_processes()


def test_collective_device_is_cuda_under_nccl_and_cpu_otherwise(monkeypatch):
    """nccl all-reduces CUDA tensors only; gloo (and a mixed cpu:gloo,cuda:nccl group) CPU ones."""
    import torch
    import torch.distributed as dist

    from spectra.utils.distributed import collective_device

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    assert collective_device() == torch.device("cuda", 1)
    # the caller's CUDA device wins: a process that never called set_device is on cuda:0
    assert collective_device(None, torch.device("cuda", 3)) == torch.device("cuda", 3)
    assert collective_device(None, "cuda") == torch.device("cuda", 1)
    assert collective_device(None, "cpu") == torch.device("cuda", 1)  # nccl: CUDA only
    for backend in ("gloo", "cpu:gloo,cuda:nccl"):
        monkeypatch.setattr(dist, "get_backend", lambda group=None, b=backend: b)
        assert collective_device() == torch.device("cpu")
        assert collective_device(None, torch.device("cuda", 3)) == torch.device("cpu")


def test_the_operators_count_and_agreement_run_on_the_collective_device(monkeypatch):
    """The sample count and the reduction agreement of a sharded operator are all-reduced on
    the device of the group's collectives (a CPU tensor under nccl fails), never on a fixed CPU."""
    import torch
    from torch import nn

    from spectra import HessianOperator
    from spectra.operators import base

    group = object()
    asked, reduced = [], []

    def device_of(g, device=None):
        asked.append((g, device))
        return torch.device("cpu")  # the stand-in for the nccl device on this machine

    def all_reduce(t, op=None, group=None):  # one rank: the sum and the max are t itself
        reduced.append((t.device, group))

    monkeypatch.setattr(base, "_resolve_group", lambda g: group)
    monkeypatch.setattr(base, "collective_device", device_of)
    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    X, y = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 1, dtype=torch.float64)
    summed = lambda out, t: ((out - t) ** 2).sum()  # no reduction attribute: detected
    op = HessianOperator(nn.Linear(2, 1).double(), summed, (X, y))
    assert op.reduction == "sum" and op.num_data == 6
    assert asked == [(group, torch.device("cpu"))] * 2  # the model's device
    assert reduced == [(torch.device("cpu"), group)] * 2
