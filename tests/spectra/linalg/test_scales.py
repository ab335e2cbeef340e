"""spectra.linalg.scales: the symlog axis, its smooth change of variables, and densities
smoothed in it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spectra.linalg.density import SpectralMeasure, slq
from spectra.linalg.scales import (
    SYMLOG_SLOPE,
    EigenvalueScale,
    asinh_coordinate,
    asinh_inverse,
    asinh_slope,
    choose_linthresh,
    density_grid,
    eigenvalue_scale,
    midpoint_edges,
    smoothed_density,
    symlog,
    symlog_inverse,
)

X = np.sort(np.concatenate([-np.logspace(-3, 3, 50), [0.0], np.logspace(-3, 3, 50)]))
THRESHOLDS = [1e-3, 0.1, 1.0, 30.0]


def _measure(ev: np.ndarray, seed: int, num_steps: int = 40) -> tuple[np.ndarray, np.ndarray]:
    m = slq(torch.diag(torch.from_numpy(ev)), num_vectors=3, num_steps=num_steps,
            generator=torch.Generator().manual_seed(seed))
    return m.nodes, m.weights


# --------------------------------------------------------------------------- coordinates


@pytest.mark.parametrize("t", THRESHOLDS)
def test_symlog_is_matplotlibs_transform(t: float) -> None:
    from matplotlib.scale import SymmetricalLogTransform

    ref = SymmetricalLogTransform(10, t, 1.0).transform_non_affine(X)
    assert np.allclose(symlog(X, t), ref, rtol=1e-12, atol=0)
    inv = SymmetricalLogTransform(10, t, 1.0).inverted().transform_non_affine(ref)
    assert np.allclose(symlog_inverse(ref, t), inv, rtol=1e-12, atol=0)


@pytest.mark.parametrize("t", THRESHOLDS)
def test_coordinates_round_trip_and_keep_order_and_sign(t: float) -> None:
    for fwd, inv in ((symlog, symlog_inverse), (asinh_coordinate, asinh_inverse)):
        u = fwd(X, t)
        assert np.allclose(inv(u, t), X, rtol=1e-12, atol=1e-15)
        assert np.all(np.diff(u) > 0)  # increasing
        assert np.array_equal(np.sign(u), np.sign(X))  # odd, 0 at 0
    assert np.allclose(symlog(X[np.abs(X) <= t], t), SYMLOG_SLOPE * X[np.abs(X) <= t])


@pytest.mark.parametrize("t", THRESHOLDS)
def test_decade_slope_is_the_derivative_of_the_axis_in_decades(t: float) -> None:
    scale = EigenvalueScale(t)
    x = X[np.abs(np.abs(X) - t) > 1e-3 * t]  # not at the kink
    h = 1e-7 * np.maximum(np.abs(x), 1e-3 * t)
    num = (symlog(x + h, t) - symlog(x - h, t)) / (2 * h) / t
    assert np.allclose(scale.decade_slope(x), num, rtol=1e-5)
    assert np.array_equal(EigenvalueScale(None).decade_slope(x), np.ones_like(x))


def test_an_explicit_sigma_keeps_the_grid_near_the_nodes() -> None:
    """A width in the smoothing coordinate far above the threshold used to send the
    grid's ends dozens of decades out (sinh of 3 widths); the margin is now at most a
    tenth of the nodes' extent in that coordinate."""
    scale = EigenvalueScale(1e-3)
    rules = [_measure(np.array([-0.5, -0.01, 0.0, 0.03, 0.2, 8.0]), 0, num_steps=6)]
    for sigma in (1e-4, 0.05, 1.0):
        g = density_grid(scale, rules, 64, sigma)
        s_lo, s_hi = scale.to_smoothing(rules[0][0].min()), scale.to_smoothing(rules[0][0].max())
        pad = min(3 * sigma, 0.1 * (s_hi - s_lo))
        assert scale.to_smoothing(g.edges[-1]) == pytest.approx(s_hi + pad)
        assert scale.to_smoothing(g.edges[0]) == pytest.approx(s_lo - pad)
        assert g.edges[-1] < 8.0 * 10 ** (pad / (0.39 * 1e-3) / math.log(10) + 0.1)
    assert density_grid(scale, rules, 64, 1.0).edges[-1] < 1e3


@pytest.mark.parametrize("t", THRESHOLDS)
def test_asinh_slope_is_the_derivative(t: float) -> None:
    assert asinh_slope(np.array(0.0), t) == 1.0
    h = 1e-6 * np.maximum(np.abs(X), 1e-3 * t)
    num = (asinh_coordinate(X + h, t) - asinh_coordinate(X - h, t)) / (2 * h)
    assert np.allclose(asinh_slope(X, t), num, rtol=1e-6)


def test_smoothing_widths_on_screen_agree_within_one_and_a_half() -> None:
    """The display coordinate stays within a constant factor of the smoothing one."""
    x = X[X != 0]
    ratio = symlog(x, 0.1) / asinh_coordinate(x, 0.1)
    assert ratio.min() > 1.0 and ratio.max() < 1.7


def test_a_linear_scale_is_the_identity() -> None:
    lin = EigenvalueScale(None)
    for f in (lin.to_display, lin.from_display, lin.to_smoothing, lin.from_smoothing):
        assert np.array_equal(f(X), X)
    assert np.array_equal(lin.smoothing_slope(X), np.ones_like(X))
    log = EigenvalueScale(0.1)
    assert np.array_equal(log.to_display(X), symlog(X, 0.1))
    assert np.array_equal(log.smoothing_slope(X), asinh_slope(X, 0.1))


# --------------------------------------------------------------------------- linthresh


def test_linthresh_is_a_power_of_ten_at_the_bulk() -> None:
    nodes = np.array([[0.02, -0.03, 0.05, 10.0]])
    weights = np.array([[0.3, 0.3, 0.3, 0.1]])
    assert choose_linthresh([(nodes, weights)]) == pytest.approx(0.01)  # median 0.03 -> 1e-2
    # at least 1e-3 of the largest |node|: a bulk at 1e-9 does not pull it down
    assert choose_linthresh([(np.array([[1e-9, 1e3]]), np.array([[0.9, 0.1]]))]) == 1.0
    assert choose_linthresh([(np.zeros((1, 3)), np.full((1, 3), 1 / 3))]) == 1.0
    # nodes of weight 0 are padding
    padded = np.array([[0.02, 1e6]]), np.array([[1.0, 0.0]])
    assert choose_linthresh([padded]) == pytest.approx(0.01)


@pytest.mark.parametrize("seed", range(5))
def test_linthresh_properties(seed: int) -> None:
    """For any measure: a power of ten, within the clipped scale's rounding, and
    equivariant under scaling the eigenvalues by a power of ten."""
    rng = np.random.default_rng(seed)
    nodes = rng.standard_normal((3, 20)) * 10.0 ** rng.uniform(-4, 4, (3, 20))
    weights = rng.uniform(0.0, 1.0, (3, 20))
    weights /= weights.sum(axis=1, keepdims=True)
    t = choose_linthresh([(nodes, weights)])
    k = math.log10(t)
    assert k == pytest.approx(round(k), abs=1e-12)
    amax = np.abs(nodes).max()
    assert amax * 1e-3 / math.sqrt(10) <= t <= amax * math.sqrt(10)
    assert choose_linthresh([(nodes * 100.0, weights)]) == pytest.approx(100.0 * t)
    # splitting one measure into two lists of rules keeps the choice
    assert choose_linthresh([(nodes[:1], weights[:1]), (nodes[1:], weights[1:])]) == t


def test_eigenvalue_scale_by_name() -> None:
    rules = [(np.array([[0.5, 20.0]]), np.array([[0.5, 0.5]]))]
    assert eigenvalue_scale("linear", 0.1, rules) == EigenvalueScale(None)
    assert eigenvalue_scale("symlog", 0.25, rules) == EigenvalueScale(0.25)
    assert eigenvalue_scale("symlog", None, rules) == EigenvalueScale(choose_linthresh(rules))
    with pytest.raises(ValueError, match="xscale must be 'symlog' or 'linear', got 'log'"):
        eigenvalue_scale("log", None, rules)
    with pytest.raises(ValueError, match="linthresh must be a positive number, got -1"):
        eigenvalue_scale("symlog", -1, rules)


# --------------------------------------------------------------------------- grids


@pytest.mark.parametrize("scale", [EigenvalueScale(None), EigenvalueScale(0.1)])
def test_grid_is_even_on_screen_and_covers_the_nodes(scale: EigenvalueScale) -> None:
    rules = [_measure(np.array([-2.0, -0.01, 0.0, 0.03, 0.2, 50.0]), 0, num_steps=6)]
    g = density_grid(scale, rules, 64, None)
    assert g.centers.shape == (64,) and g.edges.shape == (65,)
    du = np.diff(scale.to_display(g.edges))
    assert np.allclose(du, du[0], rtol=1e-9)
    assert np.all((g.edges[:-1] < g.centers) & (g.centers < g.edges[1:]))
    s = scale.to_smoothing
    lo, hi = rules[0][0].min(), rules[0][0].max()
    assert s(g.edges[0]) == pytest.approx(s(lo) - 3 * g.sigma_s)
    assert s(g.edges[-1]) == pytest.approx(s(hi) + 3 * g.sigma_s)
    assert g.sigma_s == pytest.approx((s(hi) - s(lo)) / 150.0)


def test_grid_from_eigenvalues_and_bad_grids() -> None:
    scale = EigenvalueScale(1.0)
    rules = [(np.array([[1.0, 2.0]]), np.array([[0.5, 0.5]]))]
    x = np.array([-10.0, 0.0, 0.5, 100.0])
    g = density_grid(scale, rules, x, 0.2)
    assert np.array_equal(g.centers, x) and g.sigma_s == 0.2
    assert np.allclose(scale.to_display(g.edges), midpoint_edges(scale.to_display(x)))
    point = density_grid(scale, [(np.array([[3.0]]), np.array([[1.0]]))], 10, None)
    assert point.sigma_s > 0  # a single node still gets a width
    with pytest.raises(ValueError, match="sigma must be a positive width"):
        density_grid(scale, rules, 10, 0.0)
    with pytest.raises(ValueError, match="grid must be at least 2 points"):
        density_grid(scale, rules, 1, None)
    with pytest.raises(ValueError, match="1-D array of at least 2 finite"):
        density_grid(scale, rules, np.array([0.0, np.nan]), None)
    with pytest.raises(ValueError, match="strictly increasing"):
        density_grid(scale, rules, np.array([0.0, 0.0, 1.0]), None)


def test_midpoint_edges() -> None:
    assert np.array_equal(midpoint_edges(np.array([0.0, 1.0, 3.0])), [-0.5, 0.5, 2.0, 4.0])


# --------------------------------------------------------------------------- densities


@pytest.mark.parametrize("t", [0.01, 0.1, 1.0])
def test_smoothed_density_keeps_its_mass(t: float) -> None:
    """A density per unit eigenvalue: integrates to 1 over the eigenvalues, whatever the
    threshold, although it is smoothed in another coordinate."""
    ev = np.concatenate([np.linspace(-0.5, 0.5, 80), [-3.0, 40.0, 400.0]])
    nodes, weights = _measure(ev, 2)
    scale = EigenvalueScale(t)
    g = density_grid(scale, [(nodes, weights)], 20000, None)
    y = smoothed_density(scale, g, nodes, weights)
    assert np.all(y >= 0)
    assert np.trapezoid(y, g.centers) == pytest.approx(1.0, abs=5e-3)
    # ... and so does the smoothed density in the smoothing coordinate, on its own grid
    s = scale.to_smoothing(g.centers)
    assert np.trapezoid(y / scale.smoothing_slope(g.centers), s) == pytest.approx(1.0, abs=5e-3)


def test_linear_smoothing_is_the_measures_own() -> None:
    nodes, weights = _measure(np.linspace(0.0, 5.0, 40), 1, num_steps=10)
    measure = SpectralMeasure(nodes=nodes, weights=weights, num_matvecs=30, dim=40)
    scale = EigenvalueScale(None)
    g = density_grid(scale, [(nodes, weights)], np.linspace(-1.0, 6.0, 300), 0.2)
    assert np.allclose(smoothed_density(scale, g, nodes, weights),
                       measure.density(g.centers, 0.2), rtol=1e-12)


def test_smoothed_density_is_symmetric_and_smooth_at_the_threshold() -> None:
    nodes = np.array([[-0.5, -0.02, 0.02, 0.5]])
    weights = np.full((1, 4), 0.25)
    scale = EigenvalueScale(0.1)
    g = density_grid(scale, [(nodes, weights)], np.linspace(-0.3, 0.3, 601), 0.05)
    y = smoothed_density(scale, g, nodes, weights)
    assert np.allclose(y, y[::-1], rtol=1e-10)
    assert np.max(np.abs(np.diff(np.log(y)))) < 0.05  # no jump at +-0.1
