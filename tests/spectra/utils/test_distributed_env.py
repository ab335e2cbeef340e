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
