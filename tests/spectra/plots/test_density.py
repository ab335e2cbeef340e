"""spectra.plots.density: one smoothed density, of a measure or of a run's probe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spectra.linalg.density import SpectralMeasure, slq
from spectra.plots import plot_density
from tests.spectra.plots.conftest import nothing_cut_off, saved


def _curve(fig) -> tuple[np.ndarray, np.ndarray]:
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "SLQ density"]
    return line.get_data()


def test_density_from_run_and_measure(runs: dict, store_path: Path, tmp_path: Path) -> None:
    fig = plot_density(store_path, "sgdm", probe=0)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and ax.get_xscale() == "linear"
    assert ax.get_xlabel().startswith("eigenvalue   (Gaussian smoothing σ = ")
    assert "epoch 0" in fig.get_suptitle()
    labels = [t.get_text() for t in fig.legends[0].texts]
    assert "top-3 eigenvalues (Lanczos)" in labels
    assert "smallest eigenvalue (Lanczos)" in labels
    top = runs["sgdm"].probes.top_eigenvalues[0]
    lo, hi = ax.get_xlim()
    assert hi > top.max() and lo < runs["sgdm"].probes.bottom_eigenvalue[0]
    nothing_cut_off(fig)
    saved(fig, tmp_path, "density")
    fig = plot_density(store_path, "sgdm", probe=0, xscale="symlog")
    assert fig.axes[0].get_xscale() == "symlog"

    ev = np.concatenate([np.linspace(-1, 1, 50), [10.0, 20.0]])
    measure = slq(torch.diag(torch.from_numpy(ev)), num_vectors=2, num_steps=20,
                  generator=torch.Generator().manual_seed(0))
    fig = plot_density(measure, xscale="linear", grid=400)
    x, y = _curve(fig)
    assert np.trapezoid(y, x) == pytest.approx(1.0, abs=0.02)  # a density per eigenvalue
    with pytest.raises(ValueError, match="probe=6 is out of range"):
        plot_density(runs["sgdm"], probe=6)



def test_density_overlays_several_runs(runs: dict, store_path: Path) -> None:
    fig = plot_density(store_path)  # every run of the file, last probe, one axis
    (ax,) = fig.axes
    curves = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 10]
    assert [c.get_label() for c in curves] == ["sgdm at epoch 5", "dcao at epoch 5"]
    assert curves[0].get_color() != curves[1].get_color()
    top = max(float(r.probes.top_eigenvalues[-1].max()) for r in runs.values())
    assert ax.get_xlim()[1] > top
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "v" and len(ln.get_xdata())]
    assert {m.get_color() for m in marks} == {c.get_color() for c in curves}
    nothing_cut_off(fig)


def test_density_is_the_measures_smoothing() -> None:
    """With a linear axis and an explicit sigma, the curve is SpectralMeasure.density."""
    ev = np.linspace(0.0, 5.0, 40)
    measure = slq(torch.diag(torch.from_numpy(ev)), num_vectors=2, num_steps=10,
                  generator=torch.Generator().manual_seed(1))
    grid = np.linspace(-1.0, 6.0, 300)
    fig = plot_density(measure, xscale="linear", grid=grid, sigma=0.2, decades=12)
    x, y = _curve(fig)
    assert np.allclose(x, grid)
    assert np.allclose(y, measure.density(grid, 0.2), rtol=1e-12)


def test_symlog_density_integrates_to_one_and_is_smooth_at_linthresh() -> None:
    ev = np.concatenate([np.linspace(-0.5, 0.5, 80), [-3.0, 40.0, 400.0]])
    measure = slq(torch.diag(torch.from_numpy(ev)), num_vectors=3, num_steps=40,
                  generator=torch.Generator().manual_seed(2))
    fig = plot_density(measure, grid=2000, decades=14, xscale="symlog")
    xs, ys = _curve(fig)
    assert np.trapezoid(ys, xs) == pytest.approx(1.0, abs=0.02)
    assert fig.axes[0].get_xscale() == "symlog"
    # no jump at +-linthresh (the density per unit eigenvalue is smooth there)
    grid = np.linspace(0.05, 0.2, 301)
    fig = plot_density(measure, grid=grid, linthresh=0.1, sigma=0.05, decades=14,
                       xscale="symlog")
    _, y = _curve(fig)
    assert np.max(np.abs(np.diff(np.log(y)))) < 0.05


def test_non_finite_measure_is_refused_by_row() -> None:
    nodes = np.array([[0.0, 1.0], [np.nan, 2.0]])
    m = SpectralMeasure(nodes=nodes, weights=np.full((2, 2), 0.5), num_matvecs=4, dim=2)
    with pytest.raises(ValueError, match=r"SpectralMeasure's nodes or weights are not finite .* "
                                         r"in rows \[1\]"):
        plot_density(m)
    empty = SpectralMeasure(nodes=np.zeros((1, 2)), weights=np.zeros((1, 2)), num_matvecs=2,
                            dim=2)
    with pytest.raises(ValueError, match="no node with positive weight"):
        plot_density(empty)


def test_a_run_without_density_among_others_is_left_out_with_a_warning(tmp_path: Path) -> None:
    """One run of the file stopped before its first probe: the others are drawn and a
    warning names it; when no run has a density it is an error that says why."""
    import warnings

    from spectra.plots import plot_evolution
    from spectra.runs import RunStore

    path = tmp_path / "two.h5"
    nodes = np.array([[-0.5, 0.0, 1.0, 3.0]])
    weights = np.array([[0.1, 0.6, 0.2, 0.1]])
    with RunStore(path) as store:
        w = store.create_run("good")
        for e in range(2):
            w.append_probe(step=e, epoch=float(e), ritz_nodes=nodes, ritz_weights=weights)
        store.create_run("stopped")
    for plot in (plot_density, plot_evolution):
        with pytest.warns(UserWarning, match="run 'stopped' has no density probes: its probes "
                                             "table has no rows.*left out of the figure"):
            fig = plot(path)
        assert "good" in fig.get_suptitle()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="'stopped' has no density probes"):
            plot_density(path, "stopped")


def test_probe_out_of_range_says_which_are_valid(tmp_path: Path) -> None:
    from tests.spectra.plots.conftest import run_with_nodes

    rows = [(np.array([[0.0, 1.0]]), np.array([[0.5, 0.5]]))]
    path = run_with_nodes(tmp_path / "one.h5", rows)
    with pytest.raises(ValueError, match="run 'r' has 1 probe with a density: use -1 to 0$"):
        plot_density(path, probe=3)


def test_sigma_default_is_documented_for_both_axes() -> None:
    """plot_density's default sigma on a symlog axis is the one density_grid chooses
    (as draw_lines says), not the drawn range over RESOLUTION, which holds on a linear
    axis only."""
    from spectra.plots.lines import draw_lines

    doc = " ".join(plot_density.__doc__.split())
    assert "on symlog, the width :func:`~spectra.linalg.scales.density_grid` chooses" in doc
    assert "density_grid` chooses" in " ".join(draw_lines.__doc__.split())
