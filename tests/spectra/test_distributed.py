"""Two gloo ranks, each with a shard of the data, see the same operator as one
process with all of it, and the solvers give identical results on both ranks."""

import contextlib
import datetime
import os

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from spectra import HessianOperator, eigsh, slq, trace


def _problem():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    # uneven shards and batches: rank 0 holds 3 + 9 samples, rank 1 holds 18
    shards = [[(X[:3], y[:3]), (X[3:12], y[3:12])], [(X[12:30], y[12:30])]]
    return model, shards


def _results(op):
    v = torch.linspace(-1, 1, op.shape[0], dtype=torch.float64)
    res = eigsh(op, k=2, which="LA", tol=1e-10, generator=torch.Generator().manual_seed(1))
    m = slq(op, num_vectors=2, num_steps=12, generator=torch.Generator().manual_seed(2))
    t = trace(op, num_matvecs=12, generator=torch.Generator().manual_seed(3))
    return {
        "Hv": op.matvec(v),
        "eigenvalues": res.eigenvalues,
        "eigenvectors": res.eigenvectors,
        "nodes": torch.as_tensor(m.nodes),
        "trace": torch.tensor(t.value),
        "N": torch.tensor(op.num_data),
    }


def _init(rank, world, outdir):
    """A file rendezvous in the test's folder: no TCP port to race for under load; a rank
    left waiting for the other (one that skipped a collective) times out, not hangs."""
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(outdir, 'rendezvous')}",
                            rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))


def _worker(rank, world, outdir):
    with _joined(rank, world, outdir):
        model, shards = _problem()
        op = HessianOperator(model, nn.CrossEntropyLoss(), shards[rank])
        torch.save(_results(op), os.path.join(outdir, f"rank{rank}.pt"))


@contextlib.contextmanager
def _joined(rank, world, outdir):
    """The block of one rank: in the group (:func:`_init`), one thread, and torn down
    together (:func:`_teardown`) however it ends."""
    _init(rank, world, outdir)
    try:
        torch.set_num_threads(1)
        yield
    finally:
        _teardown()


def _teardown():
    """Both ranks reach the end before either tears gloo down: a rank that destroys its
    group while the other is still in flight can abort it ("terminate called without an
    active exception", seen under load)."""
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_match_one_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    for key in r0:
        assert torch.equal(r0[key], r1[key]), f"ranks differ in {key}"
    model, shards = _problem()
    single = _results(HessianOperator(model, nn.CrossEntropyLoss(), shards[0] + shards[1]))
    assert int(r0["N"]) == 30
    for key in ("Hv", "eigenvalues", "trace"):
        assert torch.allclose(r0[key], single[key], atol=1e-10), key
    assert np.allclose(r0["nodes"].numpy(), single["nodes"].numpy(), atol=1e-8)


def _detect_worker(rank, world, outdir):
    out = {}
    with _joined(rank, world, outdir):
        model, shards = _problem()
        summed = lambda o, t: F.cross_entropy(o, t, reduction="sum")
        op = HessianOperator(model, summed, shards[rank])
        out["reduction"] = op.reduction
        out["Hv"] = op.matvec(torch.linspace(-1, 1, op.shape[0], dtype=torch.float64))
        # rank 1's first batch holds one sample: it cannot tell, so neither rank goes on
        if rank == 1:
            X, y = shards[1][0]
            shards[1] = [(X[:1], y[:1]), (X[1:], y[1:])]
        try:
            HessianOperator(model, summed, shards[rank])
        except ValueError as exc:
            out["error"] = str(exc)
        torch.save(out, os.path.join(outdir, f"rank{rank}.pt"))


def test_ranks_detect_the_reduction_together(tmp_path):
    mp.spawn(_detect_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0["reduction"] == r1["reduction"] == "sum"
    model, shards = _problem()
    single = HessianOperator(model, nn.CrossEntropyLoss(reduction="sum"), shards[0] + shards[1])
    v = torch.linspace(-1, 1, single.shape[0], dtype=torch.float64)
    assert torch.allclose(r0["Hv"], single.matvec(v), atol=1e-10)
    assert "holds 1 sample" in r1["error"]
    assert "the ranks disagree" in r0["error"]


def _drift(model, rank):
    """What a GPU's non-deterministic kernels do to a replica, made large: rank 1's
    weights move away from rank 0's."""
    if rank == 1:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05)


def _replica_worker(rank, world, outdir):
    from spectra.runs.monitor import SpectralMonitor
    from spectra.utils.distributed import replicate_

    with _joined(rank, world, outdir):
        model, shards = _problem()
        norm = nn.BatchNorm1d(3).double()  # buffers, an integer one among them
        norm.running_mean.fill_(float(rank))
        norm.num_batches_tracked.fill_(7 + rank)
        replicate_(norm)
        _drift(model, rank)
        mon = SpectralMonitor(model, nn.CrossEntropyLoss(), shards[rank], None, top_k=2,
                              density=(2, 8), trace=8, tol=1e-10)
        res = mon.probe(step=0)
        torch.save({"weights": [p.detach().clone() for p in model.parameters()],
                    "top": torch.as_tensor(res.top_eigenvalues),
                    "norm": (norm.running_mean.clone(), int(norm.num_batches_tracked))},
                   os.path.join(outdir, f"rank{rank}.pt"))


def test_a_probe_under_several_ranks_probes_the_first_rank_model(tmp_path):
    """Replicas that drifted apart are made one model (rank 0's, parameters and buffers)
    before the monitor's all-reduced probe: both ranks hold rank 0's weights afterwards
    and report the one-process probe of that model over all the data."""
    from spectra.runs.monitor import SpectralMonitor

    mp.spawn(_replica_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    model, shards = _problem()
    for w0, w1, w in zip(r0["weights"], r1["weights"], model.parameters()):
        assert torch.equal(w0, w1) and torch.equal(w0, w.detach())
    assert torch.equal(r0["top"], r1["top"])
    single = SpectralMonitor(model, nn.CrossEntropyLoss(), shards[0] + shards[1], None, top_k=2,
                             density=(2, 8), trace=8, tol=1e-10).probe(step=0)
    assert torch.allclose(r0["top"], torch.as_tensor(single.top_eigenvalues), rtol=1e-8)
    for r in (r0, r1):
        assert torch.equal(r["norm"][0], torch.zeros(3, dtype=torch.float64))
        assert r["norm"][1] == 7


def _empty_shard_worker(rank, world, outdir):
    out = {}
    with _joined(rank, world, outdir):
        model, shards = _problem()
        everything = shards[0] + shards[1]
        data = everything if rank == 0 else [(X[:0], y[:0]) for X, y in everything[:1]]
        v = torch.linspace(-1, 1, sum(p.numel() for p in model.parameters()),
                           dtype=torch.float64)
        for name, loss_fn in (("declared", nn.CrossEntropyLoss()), ("detected", F.cross_entropy)):
            try:
                op = HessianOperator(model, loss_fn, data)
                out[name] = (op.reduction, op.num_data, op.matvec(v))
            except Exception as exc:  # noqa: BLE001 - reported to the test
                out[name] = f"{type(exc).__name__}: {exc}"
        torch.save(out, os.path.join(outdir, f"rank{rank}.pt"))


def test_a_rank_without_samples_adds_nothing_and_takes_the_others_reduction(tmp_path):
    """More ranks than samples: the empty rank's mean loss is NaN. It raised "the loss of
    batch 0 is nan" (the other rank then waited in the all-reduce), and with a detected
    reduction it could not tell the reduction from 0 samples."""
    mp.spawn(_empty_shard_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    model, shards = _problem()
    single = HessianOperator(model, nn.CrossEntropyLoss(), shards[0] + shards[1])
    expected = single.matvec(torch.linspace(-1, 1, single.shape[0], dtype=torch.float64))
    for name in ("declared", "detected"):
        for r, out in enumerate(ranks):
            assert not isinstance(out[name], str), f"rank {r}, {name}: {out[name]}"
            reduction, N, Hv = out[name]
            assert reduction == "mean" and N == 30
            torch.testing.assert_close(Hv, expected, rtol=1e-12, atol=1e-12)


def _planning_worker(rank, world, outdir):
    from spectra.linalg import memory
    from spectra.operators.sampling import top_eigenvalue_spread
    from spectra.probe import ProbeSettings, probe

    out = {}
    with _joined(rank, world, outdir):
        model, shards = _problem()
        if rank == 1:  # less free memory here (another node or GPU): full SLQ does not fit
            memory.available_memory = lambda device: 1
        op = HessianOperator(model, nn.CrossEntropyLoss(), shards[rank])
        m = slq(op, num_vectors=4, num_steps=10, generator=torch.Generator().manual_seed(2))
        out["plan"], out["nodes"] = m.plan.mode, torch.as_tensor(m.nodes)
        # a wrapper of the operator (as probe's preconditioned sharpness) plans alike too
        from spectra import PreconditionedOperator

        wrapped = PreconditionedOperator(op, torch.ones(op.shape[0], dtype=torch.float64))
        out["wrapped"] = eigsh(wrapped, k=1, generator=torch.Generator().manual_seed(1)).plan.mode
        X, y = (torch.cat(t) for t in zip(*(shards[0] + shards[1])))
        # the whole data on each rank: the spread shards each subsample itself
        out["spread"] = top_eigenvalue_spread(model, nn.CrossEntropyLoss(reduction="sum"), (X, y),
                                              12, [0, 1]).values
        try:
            probe(model, nn.CrossEntropyLoss(), shards[rank],
                  ProbeSettings(top_k=1, bottom=False, trace_matvecs=0, alignment=True),
                  optimizer=torch.optim.SGD(model.parameters(), lr=0.1), batch=shards[rank][0])
        except ValueError as exc:
            out["alignment"] = str(exc)
        torch.save(out, os.path.join(outdir, f"rank{rank}.pt"))


def test_ranks_plan_alike_shard_their_subsamples_and_refuse_a_shards_alignment(tmp_path):
    """Each rank took its own free memory for SLQ's budget: a rank with less chose another
    mode and gloo aborted on mismatched all-reduces. top_eigenvalue_spread's defaults
    (rank 0 of 1) gave every rank the whole subsample while the operator all-reduced:
    twice the Hessian of a summed loss. The alignment was each rank's shard's."""
    from spectra.operators.sampling import top_eigenvalue_spread

    mp.spawn(_planning_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert r0["plan"] == r1["plan"] == "bounded" and torch.equal(r0["nodes"], r1["nodes"])
    assert r0["wrapped"] == r1["wrapped"] == "disk"
    model, shards = _problem()
    X, y = (torch.cat(t) for t in zip(*(shards[0] + shards[1])))
    single = top_eigenvalue_spread(model, nn.CrossEntropyLoss(reduction="sum"), (X, y), 12,
                                   [0, 1]).values
    np.testing.assert_allclose(r0["spread"], single, rtol=1e-6)
    assert r0["spread"] == r1["spread"]
    for r in (r0, r1):
        assert "alignment is not available across processes" in r["alignment"]
