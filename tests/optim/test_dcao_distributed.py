"""DCAO on two gloo ranks: each rank's probe data is its shard, the probe's products
are all-reduced, so both ranks probe the Hessian of the union (mean and summed loss
alike) and get the one-process lambda_1; on the time budget the ranks agree when to
probe, so a slower rank never probes (and all-reduces) alone."""

from __future__ import annotations

import datetime
import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from optim.dcao import DCAO

SHARDS = (slice(0, 25), slice(25, 40))  # uneven: 25 and 15 samples


def _problem():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    return model, X, y


def _history(probe, reduction: str, *, steps: int = 3, period: int | None = 1,
             overhead: float = 0.05, pause: float = 0.0) -> list[dict]:
    """DCAO's probe records over ``steps`` full-batch steps, probing ``probe``;
    ``pause`` seconds of other work after each step (this rank's clock only)."""
    model, X, y = _problem()
    loss_fn = nn.CrossEntropyLoss(reduction=reduction)
    # 57 parameters: 30 products and a tight tol give lambda_1 to rounding
    opt = DCAO(model.parameters(), lr=0.01, model=model, loss_fn=loss_fn, probe_data=probe,
               probe_batch_size=None, period=period, overhead=overhead, lanczos_steps=30,
               cold_lanczos_steps=30, probe_tol=1e-10)

    def closure():
        opt.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
        time.sleep(pause)
    return [{k: r[k] for k in ("step", "lambda1", "ok", "reason")} for r in opt.history]


def _worker(rank: int, world: int, outdir: str) -> None:
    # a rank left waiting by the other times out (a failed probe, a failed test), never hangs
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(outdir, 'rendezvous')}",
                            rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        torch.set_num_threads(1)
        _, X, y = _problem()
        part = SHARDS[rank]
        out = {}
        for reduction in ("mean", "sum"):
            out["shard", reduction] = _history((X[part], y[part]), reduction)
            out["replicated", reduction] = _history((X, y), reduction)
        # rank 1's steps take 5 ms longer: on its own clock it would probe before rank 0
        out["budget"] = _history((X[part], y[part]), "mean", steps=60, period=None,
                                 overhead=0.5, pause=0.005 * rank)
        torch.save(out, os.path.join(outdir, f"rank{rank}.pt"))
    finally:
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    d = tmp_path_factory.mktemp("dcao_distributed")
    mp.spawn(_worker, args=(2, str(d)), nprocs=2, join=True)
    return [torch.load(d / f"rank{r}.pt") for r in range(2)]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_both_ranks_probe_the_union_of_their_shards(ranks, reduction):
    r0, r1 = ranks[0]["shard", reduction], ranks[1]["shard", reduction]
    _, X, y = _problem()
    one = _history((X, y), reduction)  # one process with all 40 samples
    assert len(r0) == len(r1) == len(one) == 3
    for a, b, c in zip(r0, r1, one):
        assert a["ok"] and b["ok"], (a["reason"], b["reason"])
        assert a["lambda1"] == b["lambda1"]  # the same all-reduced products on both ranks
        # the union's Hessian: the sharded sum differs from the whole one by rounding
        assert abs(a["lambda1"] - c["lambda1"]) <= 1e-9 * abs(c["lambda1"])


@pytest.mark.parametrize(("reduction", "copies"), [("mean", 1), ("sum", 2)])
def test_replicated_probe_data_is_a_union_of_copies(ranks, reduction, copies):
    """The whole probe set on every rank: right for a mean loss, twice the Hessian for
    a summed one on two ranks (why `spectra train` shards DCAO's probe set)."""
    _, X, y = _problem()
    # the first probe, at the same weights (later ones follow the multipliers it set)
    a, c = ranks[0]["replicated", reduction][0], _history((X, y), reduction, steps=1)[0]
    assert abs(a["lambda1"] - copies * c["lambda1"]) <= 1e-9 * abs(c["lambda1"])


def test_ranks_agree_when_to_probe_on_the_time_budget(ranks):
    b0, b1 = ranks[0]["budget"], ranks[1]["budget"]
    assert [r["step"] for r in b0] == [r["step"] for r in b1]
    assert len(b0) >= 2  # the first probe and the warm-up's second, at least
    # a rank probing alone would wait for the other and fail on the timeout
    assert all(r["ok"] for r in b0 + b1), [r["reason"] for r in b0 + b1 if not r["ok"]]
    assert [r["lambda1"] for r in b0] == [r["lambda1"] for r in b1]


def _failing_worker(rank: int, world: int, outdir: str) -> None:
    """Rank 1's probe shard has 4 features where the model takes 5: its probe raises
    in its first product, before the all-reduce rank 0 is waiting in."""
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(outdir, 'rendezvous')}",
                            rank=rank, world_size=world, timeout=datetime.timedelta(seconds=20))
    try:
        torch.set_num_threads(1)
        model, X, y = _problem()
        probe = (X[:25], y[:25]) if rank == 0 else (X[25:, :4], y[25:])
        loss_fn = nn.CrossEntropyLoss()
        opt = DCAO(model.parameters(), lr=0.01, model=model, loss_fn=loss_fn, probe_data=probe,
                   probe_batch_size=None, period=1, lanczos_steps=10, cold_lanczos_steps=10)

        def closure():
            opt.zero_grad()
            loss = loss_fn(model(X), y)
            loss.backward()
            return loss

        for _ in range(3):
            opt.step(closure)
    finally:
        dist.destroy_process_group()


def test_a_probe_failing_on_one_rank_stops_the_job(tmp_path):
    """In one process a failed probe is recorded and skipped; across processes it
    raises, naming the rank and the cause (before, rank 1 went on training while rank
    0 waited in the probe's all-reduce until the timeout)."""
    with pytest.raises(mp.ProcessRaisedException, match="DCAO: the probe at step 0 failed on rank"):
        mp.spawn(_failing_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
