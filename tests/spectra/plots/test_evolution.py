"""spectra.plots.evolution: the density over training as heat maps and as curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from spectra.plots import FIGURE_FORMATS, plot_density, plot_evolution
from spectra.runs import RunStore
from tests.spectra.plots.conftest import EPOCHS, meshes, panels, saved


def test_evolution_heatmap_from_path(store_path: Path, tmp_path: Path) -> None:
    fig = plot_evolution(store_path, grid=200)
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
    assert any("log10 density" in ax.get_ylabel() for ax in fig.axes)
    assert "mlp on digits" in fig.get_suptitle()
    saved(fig, tmp_path, "evolution", tuple(FIGURE_FORMATS))


def test_evolution_heatmap_rows_follow_the_spectrum(runs: dict) -> None:
    """The first probe has mass below -1 (negative eigenvalues), the last has none."""
    fig = plot_evolution(runs["sgdm"], grid=300, decades=8)
    (q,) = meshes(fig)
    logd = q.get_array()
    edges = q.get_coordinates()[0, :, 0]
    centers = 0.5 * (edges[1:] + edges[:-1])
    neg = centers < -1.0
    assert logd[0, neg].max() > logd[-1, neg].max() + 2
    assert logd.max() == pytest.approx(np.max(logd))


def test_evolution_curves_and_options(runs: dict, tmp_path: Path) -> None:
    fig = plot_evolution(runs, kind="curves", sigma=0.05, grid=150, by="step")
    axes = panels(fig)
    assert len(axes) == 2
    assert all(len(ax.get_lines()) == EPOCHS + 1 for ax in axes)  # + the zero line
    assert axes[0].get_yscale() == "log"
    assert any(ax.get_ylabel() == "step" for ax in fig.axes)  # the colour bar
    saved(fig, tmp_path, "evolution_curves")
    fig = plot_evolution([runs["dcao"]], xscale="linear", grid=np.linspace(-5, 30, 50))
    (q,) = meshes(fig)
    assert q.get_array().shape == (EPOCHS, 50)
    assert fig.axes[0].get_xscale() == "linear"


def test_evolution_bad_input(runs: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind must be 'heatmap' or 'curves'"):
        plot_evolution(runs, kind="ridge")
    with pytest.raises(ValueError, match="sigma must be a positive width"):
        plot_evolution(runs, sigma=0.0)
    with pytest.raises(ValueError, match="grid must be"):
        plot_evolution(runs, grid=1)
    with pytest.raises(ValueError, match="strictly increasing"):
        plot_evolution(runs, grid=[1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="xscale"):
        plot_evolution(runs, xscale="log")
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
    with pytest.raises(ValueError, match=r"run 'adam' has no density probes: .*density=\(n_v, m\)"):
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
