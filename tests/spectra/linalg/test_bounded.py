"""The memory-bounded modes: SLQ without a stored basis, eigsh with its basis on the host
or on disk. Each is compared with the full mode on matrices with known spectra and on the
Hessian of a trained digits model (float64), and the mode chosen is the one recorded."""

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance
from torch import nn

from spectra import HessianOperator, eigsh, slq
from spectra.linalg.dense import DenseOperator
from spectra.linalg.density import plan_memory
from spectra.linalg.lanczos import random_vectors
from spectra.linalg.memory import MemoryPlan, budget, format_bytes, parse_memory
from tests.spectra.spectra_matrices import SPECTRA, with_spectrum

EPS64 = float(torch.finfo(torch.float64).eps)
# a trained network's Hessian: outliers far above a narrow bulk around zero
HESSIAN_LIKE = np.concatenate([[80.0, 50.0, 40.0, 30.0, 20.0, 15.0, 12.0, 10.0, 9.0, 8.0],
                               np.random.default_rng(0).normal(0.0, 0.05, 290)])


def w1(a, b) -> float:
    """Wasserstein-1 distance between two SLQ measures (each row weighs 1 / n_v)."""
    return wasserstein_distance(a.nodes.ravel(), b.nodes.ravel(), a.weights.ravel(), b.weights.ravel())


def w1_to_truth(m, ev: np.ndarray) -> float:
    return wasserstein_distance(m.nodes.ravel(), ev, m.weights.ravel())


def assert_bounded_matches_full(full, bounded, lo: float, hi: float, steps: int,
                                truth: np.ndarray | None = None) -> None:
    """Moments to float64 rounding, W1 far below SLQ's own sampling error, nodes inside."""
    assert full.plan.mode == "full" and bounded.plan.mode == "bounded"
    scale = max(abs(lo), abs(hi))
    for p in (1, 2, 3, 4):
        # both are Gauss rules of the same start vectors: exact for degree < 2m
        ref = np.mean(np.sum(full.weights * np.abs(full.nodes) ** p, axis=1))
        assert abs(bounded.moment(p) - full.moment(p)) <= 1e-9 * ref + 1e-12 * scale**p, p
    dist = w1(full, bounded)
    assert dist <= 1e-3 * (hi - lo), dist
    if truth is not None:  # the modes differ by much less than SLQ differs from the spectrum
        assert dist <= 0.2 * w1_to_truth(full, truth), (dist, w1_to_truth(full, truth))
    slack = 100 * steps * EPS64 * scale
    live = bounded.weights > 0
    assert bounded.nodes[live].min() >= lo - slack and bounded.nodes[live].max() <= hi + slack


@pytest.mark.parametrize("name", ["outliers", "hessian-like", "linear"])
def test_bounded_slq_matches_full_on_known_spectra(name):
    ev = HESSIAN_LIKE if name == "hessian-like" else SPECTRA[name]
    A = DenseOperator(with_spectrum(ev))
    m = 80
    full = slq(A, num_vectors=4, num_steps=m, mode="full")
    bounded = slq(A, num_vectors=4, num_steps=m, mode="bounded")
    assert bounded.num_matvecs == full.num_matvecs == 4 * m
    assert_bounded_matches_full(full, bounded, ev.min(), ev.max(), m, truth=ev)


def test_bounded_mode_loses_orthogonality_and_still_keeps_the_outliers_weight():
    # past convergence, plain Lanczos repeats the top outlier ("ghosts"); the copies
    # share the outlier's weight, so the mass near it is the same as with a basis
    ev = SPECTRA["outliers"]
    A = DenseOperator(with_spectrum(ev))
    full = slq(A, num_vectors=3, num_steps=120, mode="full")
    bounded = slq(A, num_vectors=3, num_steps=120, mode="bounded")
    near = lambda mm: np.sum(mm.weights * (np.abs(mm.nodes - 50.0) < 1e-6), axis=1)
    copies = np.sum((np.abs(bounded.nodes - 50.0) < 1e-6) & (bounded.weights > 0), axis=1)
    assert copies.max() >= 2  # ghosts appeared: the run really had no basis
    assert np.sum((np.abs(full.nodes - 50.0) < 1e-6) & (full.weights > 0), axis=1).max() == 1
    assert np.allclose(near(bounded), near(full), rtol=1e-8, atol=1e-14)


def test_probes_one_at_a_time_when_the_block_does_not_fit():
    ev = HESSIAN_LIKE
    A = DenseOperator(with_spectrum(ev))
    P, m = len(ev), 40
    # room for the vectors of one run in the bounded mode, not for two
    one = 4 * P * 8 + P * 8
    bounded = slq(A, num_vectors=3, num_steps=m, max_memory=one + 8,
                  generator=torch.Generator().manual_seed(3))
    assert bounded.plan.mode == "bounded" and bounded.plan.probes_per_pass == 1
    assert "1 random vector(s) at a time" in bounded.plan.reason
    # each row is the Gauss rule of its own start vector, drawn one after another
    g = torch.Generator().manual_seed(3)
    Ad = with_spectrum(ev)
    for i in range(3):
        q = random_vectors(P, 1, generator=g, dtype=torch.float64, device=torch.device("cpu"),
                           distribution="rademacher")[:, 0]
        q = q / q.norm()
        v = q.clone()
        for p in range(1, 5):
            v = Ad @ v
            exact = float(q @ v)
            est = float(np.sum(bounded.weights[i] * bounded.nodes[i] ** p))
            assert abs(est - exact) <= 1e-9 * np.mean(np.abs(ev) ** p), (i, p)


def test_passes_without_a_generator_draw_new_vectors():
    """One run per pass and no generator: each pass draws the next vectors of one seed-0
    stream (a fresh seed-0 generator per pass repeated the first vector: 3 equal rows)."""
    A = DenseOperator(with_spectrum(HESSIAN_LIKE))
    P = len(HESSIAN_LIKE)
    one = 4 * P * 8 + P * 8
    r = slq(A, num_vectors=3, num_steps=10, max_memory=one + 8)
    assert r.plan.probes_per_pass == 1
    assert not np.array_equal(r.nodes[0], r.nodes[1])
    assert not np.array_equal(r.nodes[1], r.nodes[2])
    np.testing.assert_array_equal(slq(A, num_vectors=3, num_steps=10, max_memory=one + 8).nodes,
                                  r.nodes)  # and seeded: the same call, the same rule


def test_a_budget_above_the_devices_memory_falls_back_to_bounded():
    """"auto" with max_memory larger than the machine: full reorthogonalization's 745 GiB
    would not fit whatever the budget says, so the bounded mode runs (it raised)."""
    plan = plan_memory(10**6, 10, 10_000, torch.float64, "cpu", "10TB", "auto")
    assert plan.mode == "bounded"
    assert "exceed the max_memory=9313.2 GiB capped at the cpu's total memory of" in plan.reason


def test_the_budget_chooses_the_mode_and_the_result_says_why():
    A = DenseOperator(with_spectrum(SPECTRA["outliers"]))
    P = 200
    roomy = slq(A, num_vectors=2, num_steps=20, max_memory="1GB")
    assert roomy.plan.mode == "full" and roomy.plan.probes_per_pass == 2
    assert "fit in the max_memory=" in roomy.plan.reason
    full_bytes = (2 * 20 + 4 * 2) * P * 8 + 2 * P * 8
    assert roomy.plan.nbytes == full_bytes
    tight = slq(A, num_vectors=2, num_steps=20, max_memory=full_bytes - 1)
    assert tight.plan.mode == "bounded" and tight.plan.probes_per_pass == 2
    assert tight.plan.nbytes < full_bytes
    assert tight.plan.reason.startswith("the full mode's") and "exceed the max_memory=" in tight.plan.reason
    default = slq(A, num_vectors=2, num_steps=20)
    assert default.plan.mode == "full" and "default max_memory" in default.plan.reason
    forced = slq(A, num_vectors=2, num_steps=20, max_memory=1, mode="full")
    assert forced.plan.mode == "full" and forced.plan.reason == "requested"
    with pytest.raises(ValueError, match=r"mode must be one of auto, full, bounded, got 'fast'"):
        slq(A, mode="fast")
    with pytest.raises(ValueError, match=r"max_memory must be a number of bytes or a size such as "
                                         r"'2GB', '512MiB', got '2 parsecs'"):
        slq(A, max_memory="2 parsecs")


@pytest.mark.parametrize("text, nbytes", [
    ("2GB", 2 * 10**9), ("512MiB", 512 * 2**20), ("1.5g", 15 * 10**8), ("4096", 4096),
    (" 3 kib ", 3072), (10**6, 10**6), (2.5e3, 2500), ("1e3", 1000),
    (np.int64(2**30), 2**30), (np.float32(1e6), 10**6),  # numpy numbers are numbers
])
def test_memory_sizes_are_parsed(text, nbytes):
    assert parse_memory(text) == nbytes


@pytest.mark.parametrize("bad", ["", "GB", "-1GB", "1 GBB", True, [1], 0, 0.5, float("inf")])
def test_bad_memory_sizes_are_refused_by_name(bad):
    with pytest.raises((ValueError, TypeError), match=r"^budget_x must be"):
        parse_memory(bad, "budget_x")


def test_default_budget_is_a_fraction_of_the_available_memory():
    limit, said = budget(None, "cpu")
    assert 0 < limit < float("inf") and "available on cpu" in said
    assert budget("1GiB", "cpu") == (float(2**30), "max_memory=1.0 GiB")
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(10) == "10 B"
    plan = MemoryPlan("bounded", "x", 10, float("inf"), 1)
    assert plan.to_dict()["budget"] is None


def test_a_cuda_devices_budget_counts_the_allocators_unused_cache(monkeypatch):
    # no GPU here: CUDA's memory queries faked. 3 GiB free to the driver, and PyTorch's
    # cache holds 5 GiB of which 1 GiB is in use: 7 GiB can be had for a new tensor
    from spectra.linalg.memory import available_memory

    GiB = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev: (3 * GiB, 80 * GiB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda dev: 5 * GiB)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda dev: 1 * GiB)
    assert available_memory("cuda:0") == 7 * GiB


# ---------------------------------------------------------------------- eigsh storage
@pytest.mark.parametrize("which", ["LA", "SA"])
def test_eigsh_with_the_basis_on_disk_or_host_equals_in_memory(which, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    A = DenseOperator(with_spectrum(SPECTRA["clusters"]))
    kw = {"k": 4, "which": which, "tol": 1e-10, "ncv": 20}  # small basis: several restarts
    ref = eigsh(A, storage="device", **kw)
    assert ref.plan.mode == "device" and ref.num_restarts >= 1
    for storage in ("host", "disk"):
        res = eigsh(A, storage=storage, **kw)
        assert res.plan.mode == storage and res.plan.reason == "requested"
        assert res.num_matvecs == ref.num_matvecs and res.num_restarts == ref.num_restarts
        assert torch.allclose(res.eigenvalues, ref.eigenvalues, rtol=1e-13, atol=1e-13)
        assert torch.allclose(res.eigenvectors, ref.eigenvectors, atol=1e-10)
        assert bool(res.converged.all())
    # the memmap's file was unlinked at once: nothing is left in the temp folder
    assert list(Path(tmp_path).iterdir()) == []


def test_eigsh_moves_its_basis_to_disk_when_it_exceeds_the_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ev = SPECTRA["outliers"]
    A = DenseOperator(with_spectrum(ev))
    ncv = 30
    basis = 2 * ncv * 200 * 8
    res = eigsh(A, k=3, tol=1e-10, ncv=ncv, max_memory=basis - 1)
    assert res.plan.mode == "disk" and res.plan.nbytes == basis
    assert "exceed the max_memory=" in res.plan.reason and str(tmp_path) in res.plan.reason
    assert np.allclose(res.eigenvalues.numpy(), np.sort(ev)[::-1][:3], rtol=1e-10)
    assert eigsh(A, k=3, tol=1e-10, ncv=ncv, max_memory=basis).plan.mode == "device"
    with pytest.raises(ValueError, match=r"storage must be one of auto, device, host, disk, got 'gpu'"):
        eigsh(A, k=1, storage="gpu")


def test_eigsh_budget_above_the_devices_memory_still_moves_the_basis(tmp_path, monkeypatch):
    """"auto" with max_memory above the device's total memory: a basis larger than the
    device goes to disk as it would under a smaller budget (it raised)."""
    from spectra.linalg.eigsh import plan_memory as eigsh_plan
    from spectra.utils import checks

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(checks, "device_memory", lambda device: 50_000)  # a tiny device
    basis = 2 * 30 * 200 * 8  # 96,000 bytes
    plan = eigsh_plan(200, 3, 30, 1, torch.float64, "cpu", "1GB", "auto")
    assert plan.mode == "disk" and plan.nbytes == basis
    assert plan.budget == 50_000 and "capped at the cpu's total memory of" in plan.reason


# ---------------------------------------------------------------------- dtypes (#15)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("storage", ["device", "disk"])
def test_eigenvalues_are_float64_and_eigenvectors_in_the_operator_dtype(dtype, storage):
    A = DenseOperator(with_spectrum(SPECTRA["outliers"]).to(dtype))
    res = eigsh(A, k=2, tol=1e-4, storage=storage)
    assert res.eigenvalues.dtype == torch.float64 and res.residuals.dtype == torch.float64
    assert res.eigenvectors.dtype == dtype and res.eigenvectors.device == A.device
    assert res.eigenvectors.shape == (200, 2)


# ---------------------------------------------------------------------- a trained model
def _trained_digits_hessian() -> tuple[HessianOperator, float, float]:
    """A 64-16-10 tanh MLP (P = 1,210) trained on 300 digits: its float64 Hessian as an
    operator, and its extreme eigenvalues (eigsh to 1e-10, itself checked against dense
    Hessians in test_eigsh.py)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X = torch.tensor(d.data[:300] / 16.0, dtype=torch.float64)
    y = torch.tensor(d.target[:300])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10)).double()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    op = HessianOperator(model, nn.functional.cross_entropy, (X, y))
    top = eigsh(op, k=1, which="LA", tol=1e-10)
    bottom = eigsh(op, k=1, which="SA", tol=1e-10, atol=1e-10 * float(top.eigenvalues[0]))
    return op, float(bottom.eigenvalues[0]), float(top.eigenvalues[0])


def test_bounded_slq_matches_full_on_a_trained_digits_model():
    op, lo, hi = _trained_digits_hessian()
    m = 50
    full = slq(op, num_vectors=2, num_steps=m, mode="full")
    bounded = slq(op, num_vectors=2, num_steps=m, mode="bounded")
    # outliers far above a bulk around zero, as in practice
    assert hi > 20 * abs(np.median(full.nodes))
    assert_bounded_matches_full(full, bounded, lo, hi, m)
    # and eigsh's basis on disk gives the in-memory eigenpairs
    ref = eigsh(op, k=3, tol=1e-8)
    disk = eigsh(op, k=3, tol=1e-8, storage="disk")
    assert disk.plan.mode == "disk" and math.isclose(float(ref.eigenvalues[0]), hi, rel_tol=1e-8)
    assert torch.allclose(disk.eigenvalues, ref.eigenvalues, rtol=1e-12)
    assert torch.allclose(disk.eigenvectors, ref.eigenvectors, atol=1e-8)


# ---------------------------------------------------------------------- probe settings
def test_probe_settings_pass_the_budget_to_the_solvers():
    from spectra.probe import ProbeSettings, probe

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    X = torch.randn(20, 4, dtype=torch.float64)
    y = torch.arange(20) % 3
    s = ProbeSettings(top_k=2, trace_matvecs=0, density=(2, 10), max_memory="2KB")
    assert s.max_memory == 2000 and s.to_dict()["max_memory"] == 2000
    res = probe(model, nn.functional.cross_entropy, (X, y), s)
    assert res.measure.plan.mode == "bounded" and "max_memory=2.0 KiB" in res.measure.plan.reason
    roomy = probe(model, nn.functional.cross_entropy, (X, y),
                  ProbeSettings(top_k=2, trace_matvecs=0, density=(2, 10)))
    assert roomy.measure.plan.mode == "full"
    assert np.allclose(res.top_eigenvalues, roomy.top_eigenvalues, rtol=1e-6)
    with pytest.raises(ValueError, match=r"max_memory must be a number of bytes"):
        ProbeSettings(max_memory="lots")


@pytest.mark.parametrize("num_vectors", [3, 10**9])
def test_the_bounded_plan_runs_as_many_vectors_together_as_fit(num_vectors):
    from spectra.linalg.density import _bounded_bytes, plan_memory

    P = 1000
    per_run = _bounded_bytes(P, 1, 4)
    plan = plan_memory(P, num_vectors, 60, torch.float32, "cpu", max_memory=2.5 * per_run)
    assert plan.mode == "bounded" and plan.probes_per_pass == min(2, num_vectors)
    assert plan_memory(P, num_vectors, 60, torch.float32, "cpu", max_memory=per_run / 2).probes_per_pass == 1


@pytest.mark.parametrize("mode, num_vectors, P", [("bounded", 4, 100_000), ("full", 1, 1_000_000)])
def test_float32_nodes_stay_inside_the_spectrum(mode, num_vectors, P):
    """The recurrence sums alpha and beta pairwise. With torch.dot's sums the nodes went
    past lambda_max by 1.2e-3 of the width without a basis (100k entries; 3.7e-4 on the
    1.13M MLP's Hessian) and by 1.2e-4 with the semi-orthogonal basis (1M entries); now
    within 1e-5 of it."""
    rng = np.random.default_rng(0)
    d = np.concatenate([[20.56, 18.52, 12.8, 11.34, 8.96],
                        rng.normal(0, 0.02, P - 5) * np.abs(rng.normal(0, 1, P - 5))])
    D = torch.tensor(d, dtype=torch.float32)

    class Diagonal:
        shape, dtype, device = (P, P), torch.float32, torch.device("cpu")

        def matmat(self, V):
            return D[:, None] * V

    m = slq(Diagonal(), num_vectors=num_vectors, num_steps=80, mode=mode,
            generator=torch.Generator().manual_seed(0))
    assert m.plan.mode == mode
    width = d.max() - d.min()
    live = m.weights > 0
    assert m.nodes[live].max() <= d.max() + 1e-5 * width
    assert m.nodes[live].min() >= d.min() - 1e-5 * width


def test_a_float16_operator_with_a_large_norm_keeps_its_spectrum():
    """The pairwise sums of float16 vectors squared past float16's range (a norm above
    256): beta came out inf, then 0, and every node collapsed onto one value."""
    d = torch.linspace(1.0, 3000.0, 2000)
    D = d.half()

    class Diagonal:
        shape, dtype, device = (2000, 2000), torch.float16, torch.device("cpu")

        def matmat(self, V):
            return D[:, None] * V

    m = slq(Diagonal(), num_vectors=2, num_steps=30, mode="bounded",
            generator=torch.Generator().manual_seed(0))
    live = m.weights > 0
    assert live.sum() >= 2 * 20  # not one node per run
    assert m.nodes[live].max() >= 0.9 * 3000 and m.nodes[live].min() <= 0.1 * 3000
