"""Two gloo ranks, one of which holds no samples (more ranks than samples), see the
operator of the one process that holds them all."""

import datetime
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from spectra import HessianOperator


def _problem():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (6,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    return model, X, y


def _worker(rank, world, outdir):
    # a file rendezvous (no TCP port to race for); a rank left waiting times out, not hangs
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(outdir, 'rendezvous')}",
                            rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    out = {}
    try:
        torch.set_num_threads(1)
        model, X, y = _problem()
        shard = (X, y) if rank == 0 else (X[:0], y[:0])
        v = torch.linspace(-1, 1, 31, dtype=torch.float64)
        for name, loss_fn in (("declared", nn.CrossEntropyLoss()), ("detected", F.cross_entropy)):
            try:
                op = HessianOperator(model, loss_fn, shard)
                out[name] = (op.reduction, op.num_data, op.matvec(v))
            except Exception as exc:  # noqa: BLE001 - reported to the test
                out[name] = f"{type(exc).__name__}: {exc}"
        torch.save(out, os.path.join(outdir, f"rank{rank}.pt"))
    finally:
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def test_a_rank_without_samples_adds_nothing_and_takes_the_others_reduction(tmp_path):
    """The empty rank's mean loss is NaN: it raised "the loss of batch 0 is nan" (the
    other rank then waited in the all-reduce), and with a detected reduction it could
    not tell the reduction from 0 samples."""
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    model, X, y = _problem()
    v = torch.linspace(-1, 1, 31, dtype=torch.float64)
    expected = HessianOperator(model, nn.CrossEntropyLoss(), (X, y)).matvec(v)
    for name in ("declared", "detected"):
        for r, out in enumerate(ranks):
            assert not isinstance(out[name], str), f"rank {r}, {name}: {out[name]}"
            reduction, N, Hv = out[name]
            assert reduction == "mean" and N == 6
            torch.testing.assert_close(Hv, expected, rtol=1e-12, atol=1e-12)
