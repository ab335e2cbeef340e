import numpy as np
import pytest
import torch

from spectra import HessianOperator, slq
from spectra.linalg.density import nonfinite_rows, strip_padding
from spectra.linalg.lanczos import lanczos_tridiagonal, random_vectors
from tests.spectra.cases import CASES
from tests.spectra.spectra_matrices import SPECTRA, with_spectrum


def test_weights_sum_to_one_and_nodes_inside_the_spectrum():
    ev = SPECTRA["outliers"]
    m = slq(with_spectrum(ev), num_vectors=5, num_steps=40)
    assert m.nodes.shape == (5, 40) and m.weights.shape == (5, 40)
    assert np.allclose(m.weights.sum(axis=1), 1.0)
    assert m.nodes.min() >= ev.min() - 1e-9 and m.nodes.max() <= ev.max() + 1e-9
    assert (m.weights >= 0).all()
    assert m.num_matvecs == 5 * 40


def test_full_steps_give_the_exact_eigenvalues():
    ev = np.array([-3.0, -1.0, 0.5, 2.0, 2.5, 7.0, 11.0])
    m = slq(with_spectrum(ev), num_vectors=3, num_steps=50)  # m >= P
    for i in range(3):
        nodes = m.nodes[i][m.weights[i] > 1e-14]
        assert np.allclose(np.sort(nodes), ev, atol=1e-9)


def test_gauss_quadrature_is_exact_for_low_degree_moments():
    # sum_j w_j tau_j^p == q^T A^p q for p < 2m, for the run's own unit start vector q
    A = with_spectrum(SPECTRA["linear"]) / 150.0
    q = random_vectors(150, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64,
                       device=torch.device("cpu"), distribution="rademacher")[:, 0]
    q = q / q.norm()
    mm = 6
    tri = lanczos_tridiagonal(lambda V: A @ V, q.unsqueeze(1), mm)
    tau, vec = tri.eigh(0)
    w = vec[0] ** 2
    Ap = torch.eye(150, dtype=torch.float64)
    for p in range(2 * mm):
        assert np.isclose((w * tau**p).sum(), float(q @ Ap @ q), rtol=1e-9, atol=1e-12), p
        Ap = Ap @ A


def test_moments_estimate_normalized_traces():
    ev = SPECTRA["outliers"]
    m = slq(with_spectrum(ev), num_vectors=40, num_steps=30, generator=torch.Generator().manual_seed(1))
    for p in (1, 2):
        true = np.mean(ev**p)
        assert abs(m.moment(p) - true) < 0.15 * abs(true), p


def test_moment_takes_non_negative_integer_powers_only():
    m = slq(with_spectrum(SPECTRA["outliers"]), num_vectors=2, num_steps=10)
    assert m.moment(0) == pytest.approx(1.0)
    for bad in (1.5, -1, "2"):
        with pytest.raises((TypeError, ValueError), match="p must be an integer >= 0"):
            m.moment(bad)


def test_density_integrates_to_one_and_peaks_at_outliers():
    ev = SPECTRA["outliers"]
    m = slq(with_spectrum(ev), num_vectors=4, num_steps=60)
    grid = np.linspace(-5, 60, 6000)
    d = m.density(grid, sigma=0.3)
    assert np.isclose(np.trapezoid(d, grid), 1.0, atol=1e-3)
    # the mass near the top outlier is ~1/P
    near = (grid > 48) & (grid < 52)
    assert np.isclose(np.trapezoid(d[near], grid[near]), 1 / 200, rtol=0.5)


def test_on_a_model_hessian_matches_eigvalsh_support():
    case = CASES[0]
    H = HessianOperator(case.model, case.loss_fn, case.batches)
    ev = np.linalg.eigvalsh(case.dense_hessian().numpy())
    m = slq(H, num_vectors=2, num_steps=100)
    assert m.num_steps == len(ev)  # capped at P
    lo, hi = m.support()
    assert np.isclose(hi, ev.max(), rtol=1e-8) and np.isclose(lo, ev.min(), atol=1e-8)


@pytest.mark.parametrize("kw", [{"num_vectors": 0}, {"num_steps": 0}, {"distribution": "x"}])
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        slq(with_spectrum([1.0, 2.0, 3.0]), **kw)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"num_vectors": True}, r"num_vectors must be an integer >= 1, got True \(a bool\)"),
        ({"num_steps": True}, r"num_steps must be an integer >= 1, got True \(a bool\)"),
        ({"num_steps": 2.5}, r"num_steps must be an integer >= 1, got 2.5"),
        ({"num_vectors": "4"}, r"num_vectors must be an integer >= 1, got '4'"),
    ],
)
def test_integer_arguments_refuse_bools_and_non_integers(kw, match):
    with pytest.raises(ValueError, match=match):
        slq(with_spectrum([1.0, 2.0, 3.0]), **kw)


def test_empty_operator_is_refused():
    with pytest.raises(ValueError, match="0 x 0"):
        slq(torch.zeros(0, 0))


def test_bases_beyond_the_memory_are_refused_before_any_product():
    class Huge:
        shape = (10**11, 10**11)

        def matvec(self, v):
            raise AssertionError("no product may be computed")

    with pytest.raises(ValueError, match=r"slq with num_vectors=4, num_steps=80 .* needs [\d,.]+ GiB "
                                         r"but the cpu memory is .*; the operator is too large"):
        slq(Huge(), num_vectors=4, num_steps=80)
    with pytest.raises(ValueError, match=r"slq with num_vectors=4, num_steps=80 \(a Lanczos basis .*"
                                         r"lower num_vectors or num_steps, or use mode='bounded'"):
        slq(Huge(), num_vectors=4, num_steps=80, mode="full")


@pytest.mark.parametrize("num", [0, 1, True, 10.0])
def test_grid_needs_two_points(num):
    m = slq(with_spectrum(SPECTRA["outliers"]), num_vectors=2, num_steps=10)
    with pytest.raises(ValueError, match=r"num must be an integer >= 2"):
        m.grid(num=num)
    assert m.grid(num=2).shape == (2,)
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        m.grid(sigma=0.0)
    for bad in (0.0, float("nan"), float("inf")):  # NaN gave NaN everywhere, inf zeros
        with pytest.raises(ValueError, match="sigma must be a positive number"):
            m.density(sigma=bad)


def test_progress_bar_over_the_products(capsys):
    slq(with_spectrum(SPECTRA["outliers"]), num_vectors=2, num_steps=10, progress=True)
    err = capsys.readouterr().err
    assert "slq:" in err and "/20 " in err  # a bar over the 2 x 10 products


def test_strip_padding_keeps_a_probability_measure():
    nodes = np.array([[1.0, 2.0, np.nan], [np.nan, np.nan, np.nan], [3.0, -1.0, 5.0]])
    weights = np.array([[0.5, 0.5, np.nan], [np.nan, np.nan, np.nan], [0.25, 0.75, 0.0]])
    x, w = strip_padding(nodes, weights)
    assert np.array_equal(x, [[1.0, 2.0, 0.0], [3.0, -1.0, 5.0]])  # the empty vector dropped
    assert np.array_equal(w, [[0.5, 0.5, 0.0], [0.25, 0.75, 0.0]])
    assert np.allclose(w.sum(axis=1), 1.0)
    assert strip_padding(np.full((2, 2), np.nan), np.full((2, 2), np.nan)) is None


def test_nonfinite_rows_tell_damage_from_padding():
    nodes = np.zeros((4, 2, 3))
    weights = np.full((4, 2, 3), 1 / 3)
    nodes[0, 1, 2] = weights[0, 1, 2] = np.nan  # padding: NaN in both
    nodes[1, 0, 0] = np.nan  # a NaN node with a weight
    weights[2, 1, 1] = np.inf
    assert nonfinite_rows(nodes, weights) == [1, 2]
    assert nonfinite_rows(nodes[1], weights[1]) == [0]  # (n_v, m): rows are vectors
