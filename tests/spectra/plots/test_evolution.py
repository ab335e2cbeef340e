"""spectra.plots.evolution: the density over training as heat maps and as curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from spectra.plots import FIGURE_FORMATS, plot_density, plot_evolution
from spectra.runs import RunStore
from tests.spectra.plots.conftest import EPOCHS, meshes, nothing_cut_off, panels, saved


def test_evolution_heatmap_from_path(store_path: Path, tmp_path: Path) -> None:
    fig = plot_evolution(store_path, kind="heatmap", grid=200)
    assert isinstance(fig, Figure)
    qm = meshes(fig)
    assert len(qm) == 2  # one panel per run
    for q in qm:
        assert q.get_array().shape == (EPOCHS, 200)  # one row per probe, one column per point
        assert np.all(np.isfinite(q.get_array()))
    axes = panels(fig)
    assert [ax.get_title() for ax in axes] == ["sgdm", "dcao"]
    assert axes[0].get_xscale() == "symlog"
    assert axes[0].get_xlabel() == "eigenvalue" and axes[0].get_ylabel() == "epoch"
    # shared axes: the same limits, which include the negative eigenvalues
    assert axes[0].get_xlim() == axes[1].get_xlim()
    assert axes[0].get_xlim()[0] < -1.0
    (cbar,) = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert "log10 density per decade of the axis" in cbar.get_ylabel()
    assert "floor" in cbar.get_ylabel()
    assert "mlp on digits" in fig.get_suptitle()
    nothing_cut_off(fig)
    saved(fig, tmp_path, "evolution", tuple(FIGURE_FORMATS))


def test_evolution_heatmap_rows_follow_the_spectrum(runs: dict) -> None:
    """The first probe has mass below -1 (negative eigenvalues), the last has none."""
    fig = plot_evolution(runs["sgdm"], kind="heatmap", grid=300, decades=8)
    (q,) = meshes(fig)
    logd = q.get_array()
    edges = q.get_coordinates()[0, :, 0]
    centers = 0.5 * (edges[1:] + edges[:-1])
    neg = centers < -1.0
    assert logd[0, neg].max() > logd[-1, neg].max() + 2
    assert logd.max() == pytest.approx(np.max(logd))


def test_evolution_heatmap_options(runs: dict) -> None:
    fig = plot_evolution([runs["dcao"]], kind="heatmap", xscale="linear",
                         grid=np.linspace(-5, 30, 50))
    (q,) = meshes(fig)
    assert q.get_array().shape == (EPOCHS, 50)
    assert fig.axes[0].get_xscale() == "linear"


def test_heatmap_explicit_sigma_keeps_the_axis(runs: dict) -> None:
    """An explicit sigma (a width in the asinh coordinate) used to put the symlog axis's
    ends dozens of decades beyond the outliers; the axis now ends near them."""
    top = max(float(np.nanmax(r.probes.top_eigenvalues)) for r in runs.values())
    bottom = min(float(np.nanmin(r.probes.bottom_eigenvalue)) for r in runs.values())
    for sigma in (0.05, 0.5, 3.0):
        fig = plot_evolution(runs, kind="heatmap", sigma=sigma, grid=100)
        lo, hi = panels(fig)[0].get_xlim()
        assert 0.9 * top <= hi <= 30 * top
        assert 30 * bottom <= lo <= 0.9 * bottom


def _curves(ax) -> list:
    return [ln for ln in ax.get_lines() if ln.get_xydata().shape[0] > 10]


def test_evolution_lines_default(runs: dict, tmp_path: Path) -> None:
    """The default: one curve per spread checkpoint on a linear eigenvalue axis, log
    density, top-k marked, every outlier inside the x range and above the y floor."""
    run = runs["sgdm"]
    fig = plot_evolution(run)
    (ax,) = fig.axes
    assert ax.get_xscale() == "linear" and ax.get_yscale() == "log"
    curves = _curves(ax)
    assert [c.get_label() for c in curves] == ["epoch 0", "epoch 1", "epoch 2", "epoch 5"]
    lo, hi = ax.get_xlim()
    top = np.asarray(run.probes.top_eigenvalues)
    bottom = np.asarray(run.probes.bottom_eigenvalue)
    assert lo < bottom.min() and hi > top.max()
    x = curves[0].get_xdata()
    sigma = float(ax.get_xlabel().split("σ = ")[1].rstrip(")"))
    assert hi >= top.max() + 3 * sigma  # the last outlier's peak is not cut in half
    # each outlier (top eigenvalue) of each curve is a visible peak above the floor
    y0 = ax.get_ylim()[0]
    for c, row in zip(curves, (0, 1, 2, 5)):
        y = c.get_ydata()
        for ev in top[row]:
            near = np.abs(x - ev) < sigma
            assert y[near].max() > 2 * y0
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "v" and len(ln.get_xdata())]
    assert len(marks) == 4 and all(len(m.get_xdata()) == 3 for m in marks)
    labels = [t.get_text() for t in fig.legends[0].texts]
    assert "top-3 eigenvalues (Lanczos)" in labels
    assert ax.get_xlabel().startswith("eigenvalue   (Gaussian smoothing σ = ")
    assert "sgdm" in fig.get_suptitle()
    nothing_cut_off(fig)
    saved(fig, tmp_path, "evolution_lines", tuple(FIGURE_FORMATS))


def test_evolution_lines_several_runs_on_one_axis(runs: dict, store_path: Path) -> None:
    fig = plot_evolution(store_path, epochs=[0, 5])
    (ax,) = fig.axes
    curves = _curves(ax)
    assert [c.get_label() for c in curves] == [
        "sgdm, epoch 0", "sgdm, epoch 5", "dcao, epoch 0", "dcao, epoch 5"]
    assert curves[0].get_color() == curves[1].get_color() != curves[2].get_color()
    assert curves[0].get_linestyle() != curves[1].get_linestyle()
    top = max(float(np.nanmax(r.probes.top_eigenvalues)) for r in runs.values())
    assert ax.get_xlim()[1] > top
    nothing_cut_off(fig)
    with pytest.raises(ValueError, match=r"no density probe at epoch 2.5; its probes are at"):
        plot_evolution(store_path, epochs=[2.5])
    fig = plot_evolution(runs, epochs=[10, 30], by="step", sigma=0.2)
    assert [c.get_label() for c in _curves(fig.axes[0])][:2] == ["sgdm, epoch 1", "sgdm, epoch 3"]
    assert fig.axes[0].get_xlabel() == "eigenvalue   (Gaussian smoothing σ = 0.2)"


def test_evolution_bad_input(runs: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind must be 'lines' or 'heatmap'"):
        plot_evolution(runs, kind="ridge")
    with pytest.raises(ValueError, match="sigma must be a positive width"):
        plot_evolution(runs, sigma=0.0)
    with pytest.raises(ValueError, match="grid must be"):
        plot_evolution(runs, grid=1)
    with pytest.raises(ValueError, match="strictly increasing"):
        plot_evolution(runs, grid=[1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="xscale"):
        plot_evolution(runs, xscale="log")
    with pytest.raises(ValueError, match="epochs must be finite numbers"):
        plot_evolution(runs, epochs=[float("nan")])
    with pytest.raises(ValueError, match="decades must be a positive number"):
        plot_evolution(runs, decades=0.0)
    with pytest.raises(ValueError, match="no runs named"):
        plot_evolution(runs, names=["adam"])
    with pytest.raises(TypeError, match="RunData"):
        plot_evolution([1, 2])
    path = tmp_path / "nodensity.h5"
    with RunStore(path) as store:
        run = store.create_run("adam")
        run.append_probe(step=0, epoch=0.0, top_eigenvalues=[3.0, 2.0])
    with pytest.raises(ValueError, match=r"run 'adam' has no density probes: .*spectra train --density"):
        plot_evolution(path)
    with pytest.raises(ValueError, match="has no density probes"):
        plot_density(path)


def test_no_pyplot_state(runs: dict) -> None:
    """Figures are built without pyplot: nothing is registered with a figure manager."""
    import sys

    fig = plot_evolution(runs, grid=50)
    assert fig.canvas.manager is None
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        assert fig.number not in plt.get_fignums() if hasattr(fig, "number") else True


def test_heatmap_of_one_probe_ticks_its_time(tmp_path: Path) -> None:
    """A run stopped after its first probe: one row, spanning epoch 0 +- 0.5. Its y
    ticks are the probe's time, not -0.4 ... 0.4 (epochs before training)."""
    from tests.spectra.plots.conftest import run_with_nodes

    nodes = np.array([[-0.5, 0.0, 1.0, 3.0]])
    weights = np.array([[0.1, 0.6, 0.2, 0.1]])
    path = run_with_nodes(tmp_path / "one.h5", [(nodes, weights)])
    fig = plot_evolution(path, kind="heatmap")
    ax = panels(fig)[0]
    assert list(ax.get_yticks()) == [0.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0"]
    nothing_cut_off(fig)


def test_a_shorter_run_skips_the_default_checkpoints_it_lacks(tmp_path: Path) -> None:
    """The default checkpoints come from the first run; a second run that stopped early
    (diverged, interrupted) draws the ones it has and a warning names the rest. A
    checkpoint the caller asked for is still an error."""
    nodes = np.array([[-0.5, 0.0, 1.0, 3.0]])
    weights = np.array([[0.1, 0.6, 0.2, 0.1]])
    path = tmp_path / "two.h5"
    with RunStore(path) as store:
        for name, n in (("long", 4), ("short", 1)):
            w = store.create_run(name)
            for e in range(n):
                w.append_probe(step=e, epoch=float(e), ritz_nodes=nodes, ritz_weights=weights)
    with pytest.warns(UserWarning, match=r"run 'short' has no density probe at epoch 1, 2, 3 "
                                         r"\(the default checkpoints, from run 'long'\)"):
        fig = plot_evolution(path)
    labels = [line.get_label() for line in _curves(fig.axes[0])]
    assert "short, epoch 0" in labels and "long, epoch 3" in labels
    # the legend: a colour per run, a line style per checkpoint
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert legend[:6] == ["long", "short", "epoch 0", "epoch 1", "epoch 2", "epoch 3"]
    with pytest.raises(ValueError, match="run 'short' has no density probe at epoch 1"):
        plot_evolution(path, epochs=[0, 1])


def test_heatmap_leaves_a_failed_probe_blank_at_its_time(tmp_path: Path) -> None:
    """A probe in the middle whose Ritz nodes are NaN (it failed) keeps its row, blank
    (masked: no colour), and a note names its epoch; its neighbours keep their own
    extents (they used to stretch over its time, showing a density never measured)."""
    from tests.spectra.plots.conftest import run_with_nodes

    good = np.array([[-0.5, 0.0, 1.0, 3.0]])
    weights = np.array([[0.1, 0.6, 0.2, 0.1]])
    failed = good.copy()
    failed[0, 2] = np.nan  # a NaN node with a positive weight: a failed probe
    rows = [(good, weights)] * 2 + [(failed, weights)] + [(good, weights)] * 2
    path = run_with_nodes(tmp_path / "failed.h5", rows)  # epochs 0..4, epoch 2 failed
    with pytest.warns(UserWarning, match=r"probe rows \[2\] are not finite"):
        fig = plot_evolution(path, kind="heatmap", grid=50)
    (q,) = meshes(fig)
    y_edges = q.get_coordinates()[:, 0, 1]
    assert np.allclose(y_edges, [-0.5, 0.5, 1.5, 2.5, 3.5, 4.5])  # one row per epoch
    values = q.get_array()
    assert values.shape == (5, 50)
    assert np.all(np.ma.getmaskarray(values)[2])  # the failed epoch: no colour
    assert not np.any(np.ma.getmaskarray(values)[[0, 1, 3, 4]])
    ax = panels(fig)[0]
    assert any("failed probe (NaN or Inf) at epoch 2" in t.get_text() for t in ax.texts)
    nothing_cut_off(fig)
