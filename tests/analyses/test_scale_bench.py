"""analyses.scale_bench's time-share report: the Gram-Schmidt timing it adds to a
worker, the basis read speeds, and the section it renders."""

from __future__ import annotations

import pytest
import torch

from analyses import scale_bench
from spectra.linalg import lanczos


def test_gram_schmidt_timing_counts_the_semi_steps_that_subtract(monkeypatch):
    monkeypatch.setattr(lanczos, "orthogonalize_", lanczos.orthogonalize_)
    monkeypatch.setattr(lanczos, "semi_orthogonalize_", lanczos.semi_orthogonalize_)
    monkeypatch.setattr(lanczos, "row_segments", lanczos.row_segments)
    acc = scale_bench._time_gram_schmidt()
    g = torch.Generator().manual_seed(0)
    # a spectrum with outliers loses orthogonality within 60 steps without reorthogonalization
    ev = torch.cat([torch.linspace(0, 1, 190, dtype=torch.float64),
                    torch.tensor([5.0, 8.0, 20.0], dtype=torch.float64)])
    U, _ = torch.linalg.qr(torch.randn(193, 193, generator=g, dtype=torch.float64))
    A = ((U * ev) @ U.T).float()
    V0 = lanczos.random_vectors(193, 2, generator=g, dtype=torch.float32,
                                device=torch.device("cpu"))
    lanczos.lanczos_tridiagonal(lambda V: A @ V, V0, 60, reorthogonalize="semi")
    assert acc["calls"] == 2 * 59  # every step but the last, each run
    assert 0 < acc["subtracted"] < acc["calls"]
    assert acc["seconds"] > 0
    assert 0 < acc["rows_read"] <= acc["rows"]


def test_kernel_speeds_are_positive():
    r = scale_bench.kernel_speeds(10_000, 4, repeats=3)
    assert r["rows"] == 4 and r["P"] == 10_000
    assert all(r[k] > 0 for k in ("coefficients_gbs", "subtraction_gbs", "read_gbs",
                                  "first_write_ms", "write_ms"))


@pytest.mark.parametrize("reorth", ["semi", "full"])
def test_gram_schmidt_timing_times_restarts_and_counts_the_basis_rows(monkeypatch, reorth):
    from spectra.linalg import eigsh

    krylov = lanczos.ThickRestartLanczos
    for name in ("orthogonalize_", "semi_orthogonalize_", "row_segments"):
        monkeypatch.setattr(lanczos, name, getattr(lanczos, name))
    for name in ("expand", "restart"):
        monkeypatch.setattr(krylov, name, getattr(krylov, name))
    acc = scale_bench._time_gram_schmidt()
    g = torch.Generator().manual_seed(0)
    ev = torch.cat([torch.linspace(0, 1, 290, dtype=torch.float64),
                    torch.tensor([5.0, 8.0, 20.0], dtype=torch.float64)])
    U, _ = torch.linalg.qr(torch.randn(293, 293, generator=g, dtype=torch.float64))
    A = ((U * ev) @ U.T).float()
    r = eigsh(A, k=1, which="SA", ncv=20, tol=1e-4, generator=g, warn=False,
              reorthogonalize=reorth)
    assert r.num_restarts >= 1 and acc["restarts"] == r.num_restarts
    assert acc["restart_seconds"] > 0 and acc["seconds"] > 0
    assert acc["basis_rows"] == 20  # it filled the basis before restarting
    if reorth == "semi":  # one semi step per product; some, not all, subtract
        assert acc["calls"] == r.num_matvecs
        assert 0 < acc["subtracted"] < acc["calls"]
    else:
        assert acc["calls"] == 0


def test_share_section_has_the_ceiling_and_the_notes():
    jobs = scale_bench.share_jobs()
    assert [(j["task"], j.get("reorth")) for j in jobs] == [
        ("top5", "semi"), ("lmin", "semi"), ("top5", "full"), ("lmin", "full"),
        ("density", None), ("density", None)]
    jobs = [jobs[0], jobs[3], jobs[4], jobs[5]]  # semi top-5, full lambda_min, both SLQ
    results = [
        {"num_matvecs": 14, "seconds": 10.0, "hvp_seconds": 9.0, "gs_seconds": 0.5,
         "gs_calls": 0, "gs_subtracted": 0, "values": [1.0] * 5, "converged": True,
         "restarts": 2, "restart_seconds": 0.25, "basis_rows": 50},
        {"error": "boom"},
        {"num_matvecs": 320, "seconds": 100.0, "hvp_seconds": 80.0, "gs_seconds": 10.0,
         "gs_calls": 316, "gs_subtracted": 261, "gs_rows": 1000, "gs_rows_read": 600,
         "range": [-0.1, 20.0]},
        {"num_matvecs": 320, "seconds": 50.0, "hvp_seconds": 49.0, "gs_seconds": 0.0,
         "gs_calls": 0, "gs_subtracted": 0, "range": [-0.1, 20.0]},
    ]
    kernels = {"rows": 40, "P": 100, "coefficients_gbs": 23.0, "subtraction_gbs": 22.0,
               "read_gbs": 25.0, "first_write_ms": 2.5, "write_ms": 0.5}
    text = scale_bench.share_section(list(zip(jobs, results)), (1.0, 2.0), 60.0, kernels)
    assert "| 90.0% | 1.0 s | 0.5 s | 94.7% | yes |" in text  # 9 / (9 + 0.5)
    assert "FAILED boom" in text
    assert "| 80.0% | 20.0 s | 10.0 s | 88.9% | no |" in text  # 80 / 90
    assert "subtraction at 261 of 316 steps (83%)" in text
    assert "read 600 of their 1000 basis rows again" in text
    assert "at 23 GB/s" in text and "at 25 GB/s" in text
    assert "2 thick restart(s) took 0.25 s" in text
    assert "about 0.20 s more" in text  # 2 * 50 rows * (2.5 - 0.5) ms
    assert "eigsh top-5 (semi): 2 thick restart(s)" in text
    assert "those, 0.05 s, is the copies" in text  # 10 - 9 - 0.5 - 0.25 - 0.2
    assert "| eigsh top-5 | semi, with the Gram matrix (default) | 14 |" in text
    assert "| eigsh lambda_min | full | | FAILED boom" in text
    assert "2.50 ms per row the first time" in text


def test_median_run_picks_the_middle_share_and_keeps_the_range():
    runs = [{"seconds": 10.0, "hvp_seconds": 9.0, "tag": "a"},
            {"error": "boom"},
            {"seconds": 10.0, "hvp_seconds": 8.0, "tag": "b"},
            {"seconds": 10.0, "hvp_seconds": 8.5, "tag": "c"}]
    med = scale_bench.median_run(runs)
    assert med["tag"] == "c" and med["shares"] == [0.8, 0.85, 0.9]
    assert scale_bench.median_run([{"error": "x"}]) == {"error": "x"}
    job = scale_bench.share_jobs()[0]
    text = scale_bench.share_section([(job, dict(med, num_matvecs=14, values=[1.0]))],
                                     (0.5, 0.5), 60.0)
    assert "| 85.0% (80.0%-90.0%) |" in text and "3 rounds of them" in text

