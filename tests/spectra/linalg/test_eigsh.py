import warnings

import numpy as np
import pytest
import scipy.sparse.linalg
import torch

from spectra import DenseOperator, HessianOperator, eigsh, power_iteration
from tests.spectra.cases import CASES
from tests.spectra.spectra_matrices import SPECTRA, with_spectrum


def _expected(ev: np.ndarray, which: str, k: int) -> np.ndarray:
    s = np.sort(ev)
    if which == "LA":
        return s[::-1][:k]
    if which == "SA":
        return s[:k]
    if which == "LM":
        return s[np.argsort(-np.abs(s), kind="stable")][:k]
    top = (k + 1) // 2
    return np.sort(np.concatenate([s[::-1][:top], s[: k - top]]))[::-1]


@pytest.mark.parametrize("name", sorted(SPECTRA))
@pytest.mark.parametrize("which", ["LA", "SA", "BE", "LM"])
def test_known_spectra(name, which):
    ev = SPECTRA[name]
    A = with_spectrum(ev)
    k, tol = 5, 1e-6
    # multiplicity 3 needs a block of 3 (a single-vector Krylov space sees one copy)
    block = 3 if name == "repeated" else 1
    res = eigsh(A, k=k, which=which, tol=tol, block_size=block, max_matvecs=5000)
    want = _expected(ev, which, k)
    if which == "LM":  # ties in magnitude: compare as sets of magnitudes
        assert np.allclose(np.sort(np.abs(res.eigenvalues.numpy())), np.sort(np.abs(want)), atol=1e-4)
    else:
        assert np.allclose(res.eigenvalues.numpy(), want, rtol=tol, atol=10 * tol), (res.eigenvalues, want)
    assert bool(res.converged.all())
    # residuals are real: recompute them independently
    X = res.eigenvectors
    R = A @ X - X * res.eigenvalues
    assert torch.allclose(R.norm(dim=0), res.residuals, rtol=1e-3, atol=1e-10)
    assert bool((res.residuals <= tol * res.eigenvalues.abs() + 1e-12).all())
    # orthonormal eigenvectors: no eigenvalue is reported twice as a ghost
    assert torch.allclose(X.T @ X, torch.eye(k, dtype=X.dtype), atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("which, k", [("LA", 5), ("SA", 3), ("BE", 4)])
def test_semi_and_full_reorthogonalization_give_the_same_pairs(dtype, which, k):
    """The default (semi, with the Gram matrix) and full reorthogonalization: the
    eigenvalues of a dense eigensolver within tol, orthonormal eigenvectors, residuals
    that are the real ones, through several thick restarts (ncv=20)."""
    ev = np.concatenate([np.linspace(-1.0, 1.0, 395), [3.0, 5.0, 8.0, 13.0, 20.0]])
    A = with_spectrum(ev).to(dtype)
    tol = 1e-6 if dtype == torch.float64 else 1e-4
    eps = float(torch.finfo(dtype).eps)
    want = _expected(ev, which, k)
    got = {}
    for reorth in ("semi", "full"):
        r = eigsh(A, k=k, which=which, tol=tol, ncv=20, reorthogonalize=reorth,
                  generator=torch.Generator().manual_seed(1))
        assert r.all_converged and (which == "LA" or r.num_restarts >= 3)
        vals = r.eigenvalues.numpy()
        assert np.abs(vals - want).max() <= 2 * tol * np.abs(want).max(), (reorth, vals)
        X = r.eigenvectors.double()
        assert float((X.T @ X - torch.eye(k, dtype=torch.float64)).abs().max()) <= 100 * eps
        R = A.double() @ X - X * r.eigenvalues
        torch.testing.assert_close(R.norm(dim=0), r.residuals, rtol=0.05, atol=100 * eps * 20)
        got[reorth] = r
    assert got["semi"].num_matvecs <= got["full"].num_matvecs + 5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reorth", ["semi", "full"])
def test_all_pairs_of_a_rank_deficient_operator(dtype, reorth):
    """k = P on an operator of rank 30 of 43: the Krylov space becomes invariant and the
    rest of the basis comes from random directions, taken orthogonal to a basis that
    (under "semi") is not orthonormal; every pair is still found, vectors orthonormal."""
    ev = np.concatenate([np.linspace(0.5, 3.0, 30), np.zeros(13)])
    A = with_spectrum(ev).to(dtype)
    eps = float(torch.finfo(dtype).eps)
    r = eigsh(A, k=43, which="LA", tol=1e-6 if dtype == torch.float64 else 1e-3,
              atol=1e-4, reorthogonalize=reorth, warn=False)
    assert np.abs(np.sort(r.eigenvalues.numpy()) - np.sort(ev)).max() <= 1e-4
    X = r.eigenvectors.double()
    assert float((X.T @ X - torch.eye(43, dtype=torch.float64)).abs().max()) <= 1000 * eps


def test_reorthogonalize_must_be_semi_or_full():
    with pytest.raises(ValueError, match="reorthogonalize must be one of semi, full, got 'none'"):
        eigsh(with_spectrum(SPECTRA["outliers"]), reorthogonalize="none")
    with pytest.raises(ValueError, match="reorthogonalize must be one of semi, full, got True"):
        eigsh(with_spectrum(SPECTRA["outliers"]), reorthogonalize=True)


def test_no_ghosts_and_orthonormal_without_blocks():
    ev = SPECTRA["outliers"]
    res = eigsh(with_spectrum(ev), k=8, which="LA", tol=1e-8)
    vals = res.eigenvalues.numpy()
    # every returned value is a distinct true eigenvalue
    assert len(np.unique(np.round(vals, 6))) == len(vals)
    assert np.allclose(vals, np.sort(ev)[::-1][:8], atol=1e-6)


@pytest.mark.parametrize("which", ["LA", "SA"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_against_eigvalsh_of_model_hessians(case, which):
    H = HessianOperator(case.model, case.loss_fn, case.batches, params=case.params)
    ev = np.linalg.eigvalsh(case.dense_hessian().numpy())
    k = min(3, len(ev))
    res = eigsh(H, k=k, which=which, tol=1e-8)
    assert np.allclose(res.eigenvalues.numpy(), _expected(ev, which, k), rtol=1e-6, atol=1e-9)
    assert res.num_matvecs == H.num_matvecs


def test_requested_tolerance_on_float32_operator():
    ev = SPECTRA["outliers"]
    A = with_spectrum(ev).float()
    res = eigsh(A, k=5, which="LA", tol=1e-3)
    assert res.eigenvectors.dtype == torch.float32
    rel = np.abs(res.eigenvalues.numpy() - np.sort(ev)[::-1][:5]) / np.sort(ev)[::-1][:5]
    assert (rel <= 1e-3).all()


def test_matches_scipy_eigsh():
    A = with_spectrum(SPECTRA["clusters"], seed=3)
    ours = eigsh(A, k=4, which="LA", tol=1e-10).eigenvalues.numpy()
    theirs = np.sort(scipy.sparse.linalg.eigsh(A.numpy(), k=4, which="LA", tol=1e-12)[0])[::-1]
    assert np.allclose(ours, theirs, atol=1e-8)


def test_exact_on_breakdown_small_invariant_space():
    # rank-2 matrix: the Krylov space is invariant after 2-3 steps
    u = torch.randn(50, 2, dtype=torch.float64)
    A = u @ torch.diag(torch.tensor([3.0, -2.0], dtype=torch.float64)) @ u.T
    res = eigsh(A, k=2, which="BE", tol=1e-10)
    ev = np.linalg.eigvalsh(A.numpy())
    assert np.allclose(res.eigenvalues.numpy(), [ev.max(), ev.min()], atol=1e-9)
    assert res.num_matvecs <= 10


def test_k_equals_dimension():
    A = with_spectrum([3.0, 1.0, -1.0, 2.0])
    res = eigsh(A, k=4, which="SA", tol=1e-10)
    assert np.allclose(res.eigenvalues.numpy(), [-1.0, 1.0, 2.0, 3.0])


def test_generator_reproducible_and_global_rng_untouched():
    A = with_spectrum(SPECTRA["linear"])
    torch.manual_seed(123)
    state = torch.get_rng_state()
    r1 = eigsh(A, k=2, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    r2 = eigsh(A, k=2, generator=torch.Generator().manual_seed(7))
    assert torch.equal(r1.eigenvectors, r2.eigenvectors)


def test_warm_start_needs_fewer_products():
    A = with_spectrum(SPECTRA["linear"])
    cold = eigsh(A, k=1, tol=1e-8)
    warm = eigsh(A, k=1, tol=1e-8, v0=cold.eigenvectors[:, 0] + 1e-3 * torch.randn(150, dtype=torch.float64))
    assert warm.num_matvecs < cold.num_matvecs


def test_budget_exhaustion_warns_and_flags():
    A = with_spectrum(SPECTRA["linear"])
    with pytest.warns(UserWarning, match="converged"):
        res = eigsh(A, k=3, tol=1e-12, max_matvecs=25, ncv=10)
    assert not bool(res.converged.all())
    assert res.num_matvecs <= 25


def test_accepts_scipy_and_callback_operators():
    A = with_spectrum(SPECTRA["outliers"])
    lin = scipy.sparse.linalg.aslinearoperator(A.numpy())
    r = eigsh(lin, k=2, tol=1e-8)
    assert np.allclose(r.eigenvalues.numpy(), [50.0, 30.0])

    class Op:
        shape = (200, 200)

        def matvec(self, v):
            return A @ v

    r = eigsh(Op(), k=1, tol=1e-8)
    assert np.isclose(float(r.eigenvalues[0]), 50.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 0}, "k must"),
        ({"k": 300}, "k must"),
        ({"which": "XX"}, "which"),
        ({"tol": -1.0}, "tol"),
        ({"tol": "1e-3"}, "tol must be a positive number, got '1e-3'"),
        ({"tol": None}, "tol must be a positive number, got None"),
        ({"atol": "x"}, "atol must be a finite number >= 0, got 'x'"),
        ({"block_size": 0}, "block_size"),
        ({"v0": torch.zeros(200)}, "v0"),
        ({"v0": torch.ones(3)}, "v0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        eigsh(with_spectrum(SPECTRA["outliers"]), **kwargs)


def test_dense_operator_rejects_asymmetric():
    with pytest.raises(ValueError, match="symmetric"):
        DenseOperator(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))


def test_power_iteration_baseline():
    A = with_spectrum(SPECTRA["outliers"])
    res = power_iteration(A, k=2, tol=1e-10, max_matvecs=4000)
    assert np.allclose(res.eigenvalues.numpy(), [50.0, 30.0], rtol=1e-6)


def test_power_iteration_draws_each_start_from_one_stream():
    # without a generator, one seeded at 0: each pair starts from the next draw of it, not
    # from the first pair's start again
    from spectra.linalg.lanczos import random_vectors

    A = DenseOperator(with_spectrum(SPECTRA["outliers"]))
    P = A.shape[0]
    seen: list[torch.Tensor] = []
    matmat = A.matmat

    def spy(V):
        seen.append(V[:, 0].clone())
        return matmat(V)

    A.matmat = spy
    power_iteration(A, k=2, tol=1e-3, max_matvecs=2)  # one product per pair, then the check
    g = torch.Generator().manual_seed(0)
    starts = [random_vectors(P, 1, generator=g, dtype=A.dtype, device=A.device)[:, 0]
              for _ in range(2)]
    starts = [v / v.norm() for v in starts]
    assert torch.allclose(seen[0], starts[0])
    # the second pair's first product is its start with the first pair's vector deflated
    first = matmat(seen[0][:, None])[:, 0]
    first = first / first.norm()
    expect = starts[1] - (first @ starts[1]) * first
    assert torch.allclose(seen[1], expect)


def test_atol_bounds_the_error_of_an_eigenvalue_in_a_cluster_near_zero():
    # a few outliers and a dense cluster straddling 0, like a trained network's Hessian
    ev = np.concatenate([[10.0, 6.0], np.linspace(-1e-3, 1e-3, 300)])
    A = with_spectrum(ev, seed=2).float()
    res = eigsh(A, k=1, which="SA", tol=1e-3, atol=1e-3 * 10.0, max_matvecs=400)
    assert bool(res.converged.all())
    assert abs(float(res.eigenvalues[0]) - ev.min()) <= 1e-2  # within atol of the true minimum
    with pytest.raises(ValueError, match="atol"):
        eigsh(A, k=1, atol=-1.0)


# ----------------------------------------------------------------- argument checks
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": True}, r"k must be an integer in \[1, 200\], got True \(a bool\)"),
        ({"k": 2.0}, r"k must be an integer in \[1, 200\], got 2.0"),
        ({"block_size": True}, r"block_size must be an integer in \[1, 200\], got True"),
        ({"ncv": True}, r"ncv must be an integer >= 1, got True"),
        ({"ncv": 30.5}, r"ncv must be an integer >= 1, got 30.5"),
        ({"ncv": 3, "k": 5}, r"ncv must be at least k \+ block_size = 6, got 3"),
        ({"max_matvecs": True}, r"max_matvecs must be an integer >= 1, got True"),
        ({"max_matvecs": "100"}, r"max_matvecs must be an integer >= 1, got '100'"),
    ],
)
def test_integer_arguments_refuse_bools_and_non_integers(kwargs, match):
    with pytest.raises(ValueError, match=match):
        eigsh(with_spectrum(SPECTRA["outliers"]), **kwargs)


def test_numpy_integers_are_integers():
    res = eigsh(with_spectrum(SPECTRA["outliers"]), k=np.int64(2), ncv=np.int32(30), tol=1e-8)
    assert np.allclose(res.eigenvalues.numpy(), [50.0, 30.0])


def test_power_iteration_refuses_bools():
    with pytest.raises(ValueError, match="k must be an integer"):
        power_iteration(with_spectrum(SPECTRA["outliers"]), k=True)


class _Huge:
    """An operator of 10^12 rows whose products must never be computed."""

    shape = (10**12, 10**12)

    def matvec(self, v):
        raise AssertionError("no product may be computed")


class _NaN:
    shape = (10, 10)

    def matvec(self, v):
        return torch.full_like(v, float("nan"))


@pytest.mark.parametrize("matrix", [torch.zeros(0, 0), np.zeros((0, 0))])
def test_empty_operator_is_refused(matrix):
    with pytest.raises(ValueError, match="0 x 0"):
        DenseOperator(matrix)
    with pytest.raises(ValueError, match="0 x 0"):
        eigsh(matrix)

    class Empty:
        shape = (0, 0)

        def matvec(self, v):
            return v

    with pytest.raises(ValueError, match="0 x 0"):
        eigsh(Empty())


def test_non_finite_dense_matrix_is_refused_by_name():
    A = with_spectrum(SPECTRA["outliers"])
    A[3, 7] = A[7, 3] = float("nan")
    with pytest.raises(ValueError, match=r"2 non-finite entries \(NaN or Inf\), the first at \(3, 7\)"):
        DenseOperator(A)
    with pytest.raises(ValueError, match="non-finite entries"):  # not numpy's LinAlgError
        eigsh(A, k=2)
    B = with_spectrum([1.0, 2.0]).numpy()
    B[0, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        eigsh(B, k=1)


def test_non_finite_products_raise_floating_point_error():
    # a callback operator, like a curvature operator, names a NaN product
    with pytest.raises(FloatingPointError, match="_NaN: the product has NaN or Inf entries"):
        eigsh(_NaN(), k=1)
    # a finite dense matrix whose product overflows
    big = DenseOperator(torch.full((4, 4), 3e38, dtype=torch.float32))
    with pytest.raises(FloatingPointError, match="DenseOperator: the product has NaN or Inf"):
        big.matmat(torch.ones(4, 1))


def test_a_basis_beyond_the_memory_is_refused_before_any_product():
    with pytest.raises(ValueError, match=r"eigsh with k=3 .* P=1,000,000,000,000 .* needs "
                                         r"[\d,.]+ GiB but the cpu memory is .*; lower k"):
        eigsh(_Huge(), k=3)


def test_eigenvectors_are_contiguous_columns_with_their_largest_entry_positive():
    """The sign rule, on contiguous ``(P, k)`` columns (the Ritz vectors are formed as
    ``Q^T Y``, not transposed from rows), including a column whose largest magnitude
    is reached twice with opposite signs: the first one decides."""
    from spectra.linalg.eigsh import _fix_signs

    res = eigsh(with_spectrum(SPECTRA["outliers"]), k=4, which="LA", tol=1e-8)
    X = res.eigenvectors
    assert X.shape == (200, 4) and X.is_contiguous()
    top = X[X.abs().argmax(dim=0), torch.arange(4)]
    assert bool((top > 0).all())
    tie = torch.tensor([[0.5, 0.0], [-0.5, -0.2], [0.1, 0.1]])
    fixed = _fix_signs(tie.clone())
    torch.testing.assert_close(fixed, torch.tensor([[0.5, 0.0], [-0.5, 0.2], [0.1, -0.1]]))
    tie2 = torch.tensor([[-0.5], [0.5]])
    torch.testing.assert_close(_fix_signs(tie2.clone()), torch.tensor([[0.5], [-0.5]]))


def test_an_integer_start_vector_is_taken_as_numbers():
    A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    res = eigsh(A, k=1, tol=1e-10, v0=torch.ones(10, dtype=torch.int64))
    assert float(res.eigenvalues[0]) == pytest.approx(10.0, rel=1e-9)
    res = eigsh(A, k=1, tol=1e-10, v0=[1] * 10)
    assert float(res.eigenvalues[0]) == pytest.approx(10.0, rel=1e-9)


@pytest.mark.parametrize("solver", ["eigsh", "power_iteration", "slq", "trace"])
def test_a_seed_given_for_the_generator_is_refused_by_name(solver):
    import spectra

    A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None, got int; "
                                        r"for a seed use generator=torch.Generator\(\)"):
        getattr(spectra, solver)(A, generator=3)


@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_a_warm_start_that_misses_the_top_eigenvector_still_finds_it(eps):
    """Started near the eigenvector of 30 (the last probe's top one, say) while 50 is the
    top: it stopped after 1-2 products at 30, flagged converged. With a warm start no
    pair counts as converged before the basis held max(20, 2k + 1) vectors."""
    ev = SPECTRA["outliers"]
    A = with_spectrum(ev)
    _, V = np.linalg.eigh(A.numpy())
    rng = np.random.default_rng(0)
    v0 = torch.tensor(V[:, -2] + eps * rng.standard_normal(len(ev)))
    r = eigsh(A, k=1, which="LA", tol=1e-3, v0=v0)
    assert r.converged.all() and abs(float(r.eigenvalues[0]) - ev.max()) <= 1e-3 * ev.max()
    assert r.num_matvecs >= 20
    # what it did before, when a budgeted caller asks for it (DCAO's probes)
    quick = eigsh(A, k=1, which="LA", tol=1e-3, v0=v0, min_basis=1, warn=False)
    assert quick.num_matvecs < 20


def test_min_basis_lets_a_random_start_see_past_a_huge_cluster():
    """Half the eigenvalues at 1.0 just below the top one, 1.1: a random start can meet
    tol at 1.0 after two products (eigsh's docstring says so); min_basis=20 finds 1.1."""
    P = 4000
    d = torch.zeros(P, dtype=torch.float64)
    d[: P // 2] = 1.0
    d[-1] = 1.1
    A = torch.diag(d)
    r = eigsh(A, k=1, which="LA", tol=1e-3, min_basis=20)
    assert abs(float(r.eigenvalues[0]) - 1.1) <= 1.1e-3 and r.num_matvecs >= 20


def test_a_budget_below_k_is_refused_before_any_product():
    """It spent the products, then raised a RuntimeError."""
    A = DenseOperator(with_spectrum(SPECTRA["outliers"]))
    with pytest.raises(ValueError, match="max_matvecs must be at least 3"):
        eigsh(A, k=3, max_matvecs=2)
    assert A.num_matvecs == 0


def test_half_precision_warns_when_a_pair_met_only_the_rounding_floor():
    A = with_spectrum(SPECTRA["outliers"]).to(torch.bfloat16)
    with pytest.warns(UserWarning, match="only to the rounding of torch.bfloat16"):
        eigsh(A, k=1, which="SA", tol=1e-3)


def test_a_matrix_that_requires_grad_is_read_as_its_values():
    W = torch.nn.Parameter(torch.randn(30, 30, dtype=torch.float64,
                                       generator=torch.Generator().manual_seed(0)))
    G = W @ W.T
    r = eigsh(G, k=2, which="LA", tol=1e-8)
    expected = np.linalg.eigvalsh(G.detach().numpy())[::-1][:2]
    np.testing.assert_allclose(r.eigenvalues.numpy(), expected, rtol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rotated", [False, True])
def test_a_half_precision_matrix_gets_its_top_eigenvalues_to_its_floor(dtype, rotated):
    """A bfloat16 basis lost its vectors: diag(1..40) gave 32.6 and 30.9, its space
    declared exhausted after 15 products. The basis is now float32, the products bfloat16."""
    lam = np.arange(1.0, 41.0)
    A = (with_spectrum(lam) if rotated else torch.diag(torch.as_tensor(lam))).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # converged to the rounding floor only: said, tested above
        r = eigsh(A, k=2, which="LA")
    floor = 2 * torch.finfo(dtype).eps * 40  # EigenResult.converged
    assert bool(r.converged.all())
    assert np.all(np.abs(r.eigenvalues.numpy() - [40.0, 39.0]) <= floor)
    assert np.all(r.residuals.numpy() <= floor)
    assert r.eigenvectors.dtype == dtype
