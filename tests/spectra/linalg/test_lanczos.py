"""The Krylov engine itself: Gram-Schmidt and the orthonormality of its bases."""

import math

import numpy as np
import pytest
import torch

from spectra.linalg import lanczos
from spectra.linalg.lanczos import ThickRestartLanczos, lanczos_tridiagonal, orthogonalize_, select
from tests.spectra.spectra_matrices import SPECTRA, with_spectrum


def _orthonormal_rows(n: int, P: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(P, n, generator=g, dtype=torch.float64))
    return Q.T.contiguous().to(dtype)


@pytest.mark.parametrize("batched", [False, True])
def test_orthogonalize_removes_the_span_and_returns_the_coefficients(batched):
    P, n, k = 500, 12, 3
    Q = _orthonormal_rows(n, P, 0, torch.float64)
    W = torch.randn(k, P, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected_coef = W @ Q.T
    expected = W - expected_coef @ Q
    if batched:
        Qb, Wb = torch.stack([Q, 2 * Q[[1, 0, *range(2, n)]] / 2]), torch.stack([W, W])
        coef = orthogonalize_(Wb, Qb)
        assert coef.shape == (2, k, n)
        torch.testing.assert_close(Wb[0], expected)
        torch.testing.assert_close(Wb[1], expected)  # same span, rows permuted
        torch.testing.assert_close(coef[0], expected_coef)
        torch.testing.assert_close(coef[1], expected_coef[:, [1, 0, *range(2, n)]])
    else:
        coef = orthogonalize_(W, Q)
        torch.testing.assert_close(W, expected)
        torch.testing.assert_close(coef, expected_coef)


def test_second_pass_only_after_cancellation(monkeypatch):
    """A row that is almost inside span(Q) loses most of its norm in the first pass:
    one pass leaves it far from orthogonal in float32; the DGKS test adds the second.

    Built to hold for any correct rounding, not one machine's (the first version kept
    1/650 of the norm: 1.3e-4 here, 4.3e-5 on another AVX-512 machine, against a bound
    of 1e-4). Now the row keeps 1/65,000 of its norm (|w| ~ 4.5e6, |x| ~ 63), so the
    first pass is off by at least the rounding of its coefficients, ~ 6e-8 * 4.5e6 / 63
    relative: 7.5e-4 with every operation exactly rounded (products in float64, each
    result rounded to float32), 6e-3 to 8e-3 with MKL's blocked float32 sums. A second
    pass starts from a row without cancellation and ends at rounding level (2e-8 to
    5e-8 measured; 7e-10 exactly rounded). Orthogonality is measured in float64, so the
    measurement adds no rounding of its own, and whether the second pass ran is
    counted, not inferred from equal bits."""
    P, n = 4000, 20
    Q = _orthonormal_rows(n, P, 0)
    g = torch.Generator().manual_seed(2)
    inside = 1e6 * (torch.randn(1, n, generator=g) @ Q)
    w = inside + torch.randn(1, P, generator=g)
    passes = []
    subtract = lanczos._subtract_
    monkeypatch.setattr(lanczos, "_subtract_", lambda *a: (passes.append(1), subtract(*a)))

    def loss_of_orthogonality(x, passes_asked):
        x = x.clone()
        passes.clear()
        orthogonalize_(x, Q, passes=passes_asked)
        x64 = x.double()
        return float((x64 @ Q.double().T).abs().max() / x64.norm()), len(passes)

    (one, n1), (adaptive, na), (two, n2) = (loss_of_orthogonality(w, p) for p in (1, None, 2))
    assert (n1, na, n2) == (1, 2, 2)  # the criterion asked for the second pass
    assert one > 1e-4  # the failure the criterion exists for (7.5e-4 at best)
    assert adaptive < 1e-6 and two < 1e-6
    assert one > 100 * max(adaptive, two)
    # no cancellation: the adaptive rule stops after one pass
    _, na = loss_of_orthogonality(torch.randn(2, P, generator=g), None)
    assert na == 1


def test_bad_passes():
    with pytest.raises(ValueError, match="passes"):
        orthogonalize_(torch.zeros(1, 3), torch.zeros(1, 3), passes=3)


def test_independent_runs_keep_orthonormal_bases_in_float32():
    """Each run's Lanczos vectors (recorded from the products asked for) stay
    orthonormal to float32 precision over many steps on a wide spectrum, where
    plain Lanczos loses orthogonality completely."""
    ev = np.concatenate([[1e3, 500.0, 200.0], np.geomspace(1e-3, 10.0, 597)])
    A = with_spectrum(ev).to(torch.float32)
    P, b, m = A.shape[0], 3, 150
    V0 = torch.randn(P, b, generator=torch.Generator().manual_seed(0))

    def run(reorth):
        seen = []

        def matmat(V):
            seen.append(V.clone())
            return A @ V

        lanczos_tridiagonal(matmat, V0, m, reorthogonalize=reorth)
        return torch.stack(seen, dim=2).double()  # (P, b, m)

    for reorth in (True, "semi", False):
        basis = run(reorth)
        worst = max(
            float((basis[:, i].T @ basis[:, i] - torch.eye(m, dtype=torch.float64)).abs().max())
            for i in range(b)
        )
        if reorth is True:
            assert worst < 1e-5, worst
        elif reorth == "semi":  # semi-orthogonal: sqrt(eps), up to the rounding of the measure
            assert 1e-5 < worst <= 2 * math.sqrt(torch.finfo(torch.float32).eps), worst
        else:
            assert worst > 1e-1, worst  # the test can tell


# spectra where plain Lanczos loses orthogonality fast: converged outliers over a bulk
# (a trained network's Hessian), clusters with tiny gaps, a power law, an indefinite one
SEMI_SPECTRA = {
    "hessian-like": np.concatenate([[20.5, 18.5, 12.8, 11.3, 9.0],
                                    np.random.default_rng(0).normal(0.0, 0.03, 595)]),
    "clusters": SPECTRA["clusters"],
    "power-law": 100.0 * np.arange(1, 401) ** -1.5,
    "indefinite": np.concatenate([np.linspace(-20, -1, 150), np.linspace(-0.1, 0.1, 100),
                                  [0.5, 1.0, 4.0, 30.0]]),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(SEMI_SPECTRA))
def test_semi_orthogonal_bases_stay_within_sqrt_eps_on_hard_spectra(name, dtype):
    """Policy "semi": every run's basis, recorded from the products asked for, stays
    within ``2 sqrt(eps)`` of orthonormal (max |Q Q^T - I|, measured in float64) over
    m = 100 steps on spectra where plain Lanczos loses orthogonality (checked: the
    test can tell); the nodes are those of full reorthogonalization to rounding, and
    no eigenvalue comes back as a ghost."""
    ev = SEMI_SPECTRA[name]
    A = with_spectrum(ev).to(dtype)
    P, b, m = A.shape[0], 3, 100
    V0 = torch.randn(P, b, generator=torch.Generator().manual_seed(0), dtype=dtype)
    eps = float(torch.finfo(dtype).eps)

    def run(reorth):
        seen = []

        def matmat(V):
            seen.append(V.clone())
            return A @ V

        tri = lanczos_tridiagonal(matmat, V0, m, reorthogonalize=reorth)
        return tri, torch.stack(seen, dim=2).double()

    def loss(basis, i):  # max |Q Q^T - I| of run i, in float64
        return float((basis[:, i].T @ basis[:, i] - torch.eye(m, dtype=torch.float64)).abs().max())

    semi, basis = run("semi")
    full, _ = run("full")
    _, plain_basis = run("none")
    top, near = ev.max(), 1e-3 * np.abs(ev).max()
    for i in range(b):
        assert loss(basis, i) <= 2 * math.sqrt(eps), (i, loss(basis, i))
        assert loss(plain_basis, i) > 1e-2  # the test can tell: plain Lanczos loses it
        ts, tf = semi.eigh(i)[0], full.eigh(i)[0]
        assert np.abs(ts - tf).max() <= 1000 * eps * np.abs(ev).max(), np.abs(ts - tf).max()
        # no ghost: as many nodes near the top eigenvalue as full reorthogonalization has
        assert np.sum(np.abs(ts - top) < near) == np.sum(np.abs(tf - top) < near)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_semi_orthogonal_runs_give_the_nodes_of_full_reorthogonalization(dtype):
    # Simon (1984): a semi-orthogonal basis gives T = (orthonormal projection) + O(eps ||A||)
    ev = np.concatenate([[80.0, 50.0, 40.0, 30.0, 20.0, 15.0, 12.0, 10.0, 9.0, 8.0],
                         np.random.default_rng(0).normal(0.0, 0.05, 490)])
    A = with_spectrum(ev).to(dtype)
    V0 = torch.randn(500, 3, generator=torch.Generator().manual_seed(1), dtype=dtype)
    full = lanczos_tridiagonal(lambda V: A @ V, V0, 100, reorthogonalize="full")
    semi = lanczos_tridiagonal(lambda V: A @ V, V0, 100, reorthogonalize="semi")
    eps = float(torch.finfo(dtype).eps)
    for i in range(3):
        tf, sf = full.eigh(i)
        ts, ss = semi.eigh(i)
        # nodes within rounding of each other (k eps ||A||), weights within sqrt(eps)
        assert np.abs(tf - ts).max() <= 1000 * eps * ev.max(), np.abs(tf - ts).max()
        assert np.abs(sf[0] ** 2 - ss[0] ** 2).max() <= 10 * math.sqrt(eps)
        # no ghosts: the top eigenvalue appears once
        assert np.sum(np.abs(ts - 80.0) < 1e-3 * 80.0) == 1
    with pytest.raises(ValueError, match=r"reorthogonalize must be one of full, semi, none"):
        lanczos_tridiagonal(lambda V: A @ V, V0, 5, reorthogonalize="partial")


def _steps(eng: ThickRestartLanczos, count: int):
    """Expand ``eng`` ``count`` times, restarting (keeping the top 10 Ritz vectors) when
    its basis is full; yields after each expansion the number of restarts so far."""
    restarts = 0
    for _ in range(count):
        if eng.needs_restart:
            theta, Y = eng.ritz()
            eng.restart(select(theta, "LA", 10), theta, Y)
            restarts += 1
        eng.expand()
        yield restarts


@pytest.mark.parametrize("block", [1, 3])
def test_thick_restart_basis_stays_orthonormal_across_restarts(block):
    ev = np.concatenate([[40.0, 30.0, 30.0, 20.0], np.linspace(-1.0, 5.0, 396)])
    A = with_spectrum(ev).to(torch.float32)
    start = torch.randn(A.shape[0], block, generator=torch.Generator().manual_seed(0))
    eng = ThickRestartLanczos(lambda V: A @ V, start, max_basis=24)
    for restarts in _steps(eng, 60):
        n = eng.n
        Q = torch.cat([eng.Q[:n], eng.F]).double()
        err = float((Q @ Q.T - torch.eye(Q.shape[0], dtype=torch.float64)).abs().max())
        assert err < 1e-5, (restarts, n, err)
        # the stored products are the products, and H is the projection
        torch.testing.assert_close(eng.AQ[:n], eng.Q[:n] @ A, rtol=1e-4, atol=1e-4)
        H = (eng.Q[:n].double() @ A.double() @ eng.Q[:n].double().T).numpy()
        np.testing.assert_allclose(eng.H[:n, :n], H, atol=1e-4)
    assert restarts >= 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_semi_thick_restart_keeps_the_gram_matrix_the_projection_and_the_relation(dtype):
    """reorthogonalize="semi": the basis is only semi-orthogonal (it is, within sqrt(eps),
    and is measurably not orthonormal), but the Gram matrix the engine keeps from the
    measured coefficients is ``Q Q^T``, ``H`` is ``Q A Q^T``, the next vector's inner
    products are known, and the free residual estimates are the exact residuals, also
    after restarts (which make the next vector orthogonal to the whole old basis)."""
    ev = np.concatenate([[40.0, 30.0, 25.0, 20.0], np.linspace(-1.0, 5.0, 396)])
    A = with_spectrum(ev).to(dtype)
    start = torch.randn(A.shape[0], 1, generator=torch.Generator().manual_seed(0), dtype=dtype)
    eng = ThickRestartLanczos(lambda V: A @ V, start, max_basis=24, reorthogonalize="semi")
    eps = float(torch.finfo(dtype).eps)
    lost = 0.0
    for restarts in _steps(eng, 80):
        n = eng.n
        Q = eng.Q[:n].double()
        QQ = (Q @ Q.T).numpy()
        lost = max(lost, float(np.abs(QQ - np.eye(n)).max()))
        assert lost <= math.sqrt(eps)  # semi-orthogonal, by measurement
        np.testing.assert_allclose(eng.G[:n, :n], QQ, rtol=0, atol=100 * eps)
        H = (Q @ A.double() @ Q.T).numpy()
        np.testing.assert_allclose(eng.H[:n, :n], H, rtol=0, atol=20 * eps * 40.0)
        if eng._g_next is not None:
            np.testing.assert_allclose(eng._g_next, (eng.F.double() @ Q.T).numpy(),
                                       rtol=0, atol=20 * eps)
            # the coupling S = w f of the last product w, computed without reading either
            w = eng.AQ[eng._last_block[0]].double()
            np.testing.assert_allclose(eng._coupling, [[float(eng.F[0].double() @ w)]],
                                       rtol=0, atol=20 * eps * 40.0)
            if n < eng.max_basis:  # f is formed in the basis row it takes: no copy
                assert eng.F.data_ptr() == eng.Q[n].data_ptr()
        theta, Y = eng.ritz()
        X, res = eng.ritz_pairs(theta, Y)
        # Ritz vectors orthonormal although Q is not: Y^T G Y = I
        XX = (X.double() @ X.double().T).numpy()
        assert np.abs(XX - np.eye(n)).max() <= 200 * eps
        # the relation's estimates are the residuals computed from the stored products
        assert np.abs(eng.residual_estimates(Y) - res).max() <= 100 * eps * 40.0
    assert restarts >= 3
    assert lost > 100 * eps  # the test can tell: the basis is not orthonormal


def test_semi_engine_refuses_an_unknown_policy_and_blocks_and_half_precision_use_full():
    A = with_spectrum(np.linspace(1.0, 2.0, 50))
    start = torch.randn(50, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(ValueError, match="reorthogonalize must be one of semi, full, got 'none'"):
        ThickRestartLanczos(lambda V: A @ V, start, max_basis=10, reorthogonalize="none")
    block = torch.cat([start, start.flip(0)], dim=1)
    eng = ThickRestartLanczos(lambda V: A @ V, block, max_basis=10, reorthogonalize="semi")
    assert not eng.semi and ThickRestartLanczos(lambda V: A @ V, start, max_basis=10,
                                                reorthogonalize="semi").semi
    half = ThickRestartLanczos(lambda V: A.bfloat16() @ V, start.bfloat16(), max_basis=10,
                               reorthogonalize="semi")
    assert not half.semi  # sqrt(eps) of bfloat16 is 9%: too loose for the Gram matrix


@pytest.mark.parametrize("reorth", ["semi", "full"])
def test_ritz_problems_run_on_one_blas_thread(monkeypatch, reorth):
    """The small dense eigenproblems between products run with numpy's and scipy's BLAS
    limited to one thread, whose helpers would otherwise spin on after each call."""
    from threadpoolctl import threadpool_info

    seen = []
    dense = lanczos._dense_eigh

    def spy(*args, **kwargs):
        seen.append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return dense(*args, **kwargs)

    monkeypatch.setattr(lanczos, "_dense_eigh", spy)
    A = with_spectrum(np.linspace(1.0, 2.0, 60))
    start = torch.randn(60, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eng = ThickRestartLanczos(lambda V: A @ V, start, max_basis=16, reorthogonalize=reorth)
    for _ in _steps(eng, 25):
        eng.ritz()
    assert seen and set(seen) == {1}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_products_come_back_as_contiguous_rows(dtype):
    """``as_rows``: the columns of a ``(P, b)`` product as contiguous rows, equal to
    the transpose, whatever the product's layout (numpy's copy on the CPU for float32
    and float64, torch's otherwise)."""
    g = torch.Generator().manual_seed(0)
    for X in (torch.randn(50, 3, generator=g).to(dtype), torch.randn(50, 1, generator=g).to(dtype),
              torch.randn(3, 50, generator=g).to(dtype).T,
              torch._neg_view(torch.randn(50, 3, generator=g).to(dtype))):
        R = lanczos.as_rows(X)
        assert R.is_contiguous() and R.stride() == (X.shape[0], 1) and R.dtype == dtype
        assert torch.equal(R, X.T)


def test_row_segments_merge_gaps_of_up_to_two_rows():
    from spectra.linalg.lanczos import row_segments

    rows = np.array([0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1], dtype=bool)
    assert row_segments(rows) == [(1, 6), (9, 11)]  # rows 3-4 read, rows 6-8 skipped
    assert row_segments(rows, gap=0) == [(1, 3), (5, 6), (9, 11)]
    assert row_segments(np.zeros(4, dtype=bool)) == []
    assert row_segments(np.array([True])) == [(0, 1)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_semi_step_subtracts_only_the_large_coefficients(dtype):
    """Coefficients above half of sqrt(eps) ||w|| are removed; the small ones are
    left as they were (those rows are not read again); all below sqrt(eps) / 2 after."""
    from spectra.linalg.lanczos import semi_orthogonalize_

    g = torch.Generator().manual_seed(0)
    P, n = 3000, 30
    Q = torch.linalg.qr(torch.randn(P, n + 1, generator=g, dtype=torch.float64))[0].T
    eps = float(torch.finfo(dtype).eps)
    tau = math.sqrt(eps)
    coef = torch.full((n,), 0.1 * tau, dtype=torch.float64)  # small: kept
    coef[[3, 17, 18]] = torch.tensor([30.0, -5.0, 0.8], dtype=torch.float64) * tau  # large
    w64 = Q[n] + coef @ Q[:n]  # a unit vector plus the coefficients on Q's rows
    w = w64.to(dtype)
    Qd = Q[:n].to(dtype).contiguous()
    before = float(w.norm())
    step = semi_orthogonalize_(w, Qd)
    after = (Q[:n] @ w.double()) / before
    big = [3, 17, 18]
    small = [i for i in range(n) if i not in big]
    # the measured coefficients, and those subtracted: only the large ones here
    c, d = step.first, step.after
    assert step.subtracted and np.array_equal(step.last, c)
    np.testing.assert_allclose(c, coef.numpy(), rtol=0, atol=10 * eps)
    assert set(np.flatnonzero(d)) == set(big) and np.array_equal(d[big], c[big])
    # what is left, from them: Q w = c - (Q Q^T) d
    np.testing.assert_allclose(step.left(np.eye(n)) / before, after.numpy(), rtol=0,
                               atol=10 * eps)
    assert after[big].abs().max() <= 10 * eps  # removed, to rounding
    torch.testing.assert_close(after[small], coef[small], rtol=0, atol=10 * eps)  # untouched
    assert after.abs().max() <= tau / 2
    # all below the threshold: nothing subtracted, w unchanged
    w2 = (Q[n] + torch.full((n,), 0.1 * tau, dtype=torch.float64) @ Q[:n]).to(dtype)
    same = w2.clone()
    step2 = semi_orthogonalize_(w2, Qd)
    assert not step2.subtracted and step2.first.shape == (n,)
    assert torch.equal(w2, same)


def test_random_vectors_refuse_a_generator_off_the_cpu():
    class CudaGenerator:  # stands in for torch.Generator(device="cuda") on a CPU-only build
        device = torch.device("cuda", 0)

    with pytest.raises(ValueError, match="generator must be a CPU torch.Generator, got one on cuda:0"):
        lanczos.random_vectors(10, 2, generator=CudaGenerator(), dtype=torch.float32,  # type: ignore[arg-type]
                               device=torch.device("cpu"))
    # a CPU generator draws the same vectors whatever the target dtype's precision
    a = lanczos.random_vectors(10, 2, generator=torch.Generator().manual_seed(3),
                               dtype=torch.float64, device=torch.device("cpu"))
    b = lanczos.random_vectors(10, 2, generator=torch.Generator().manual_seed(3),
                               dtype=torch.float32, device=torch.device("cpu"))
    torch.testing.assert_close(a.float(), b)
