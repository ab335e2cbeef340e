"""Tests of spectra.plots: every figure from a small synthetic store, saved as PNG/PDF/SVG.

The store holds two runs ("sgdm" and "dcao") of 6 epochs. Each probe's SLQ nodes and
weights come from ``spectra.slq`` on a diagonal matrix with a known spectrum that
evolves like LPSGD's Fig. 1: a bulk near zero that narrows, outliers that shrink, and
negative eigenvalues that disappear after a few epochs.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure

from optim.testfunctions import get_function
from spectra.linalg.density import slq
from spectra.plots import (
    FIGURE_FORMATS,
    plot_curves,
    plot_density,
    plot_evolution,
    plot_hparams,
    plot_sharpness,
    plot_trajectories,
    save_figure,
)
from spectra.runs.store import RunStore, read_runs

EPOCHS = 6
STEPS_PER_EPOCH = 10
P, NV, M, K = 300, 3, 24, 3


def spectrum(epoch: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Eigenvalues (P,) at an epoch: bulk near 0, outliers, early negative eigenvalues."""
    width = 0.5 * math.exp(-epoch / 3)
    bulk = rng.normal(0.02, width, P - 8) * np.abs(rng.normal(0, 0.5, P - 8))
    outliers = scale * 17.5 * math.exp(-epoch / 4) * np.array([1.0, 0.7, 0.45, 0.3, 0.2])
    n_neg = max(0, 3 - epoch)
    negatives = -2.5 * (1 - epoch / 4) * np.linspace(1.0, 0.4, 3) if n_neg else np.zeros(0)
    ev = np.concatenate([bulk, outliers, negatives[:n_neg], np.zeros(3 - n_neg)])
    return np.sort(ev)


def write_store(path: Path) -> Path:
    """A comparison file: runs 'sgdm' and 'dcao' with metrics, probes and densities."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny products: threads only add overhead (and contention)
    try:
        return _write_store(path)
    finally:
        torch.set_num_threads(threads)


def _write_store(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with RunStore(path) as store:
        for r, name in enumerate(("sgdm", "dcao")):
            run = store.create_run(
                name, config={"model": "mlp", "data": "digits", "optimizer": name, "lr": 0.1,
                              "num_params": P},
            )
            for e in range(EPOCHS):
                for s in range(STEPS_PER_EPOCH):
                    step = e * STEPS_PER_EPOCH + s
                    lr = 0.05 + 0.05 * math.cos(math.pi * step / (EPOCHS * STEPS_PER_EPOCH))
                    last = s == STEPS_PER_EPOCH - 1
                    run.append_metrics(
                        step=step, epoch=step / STEPS_PER_EPOCH,
                        train_loss=2.3 * math.exp(-step / (20 + 10 * r)) + 0.05,
                        train_acc=1 - 0.9 * math.exp(-step / (15 + 5 * r)),
                        test_loss=2.3 * math.exp(-step / (25 + 10 * r)) + 0.1 if last else math.nan,
                        test_acc=0.95 - 0.85 * math.exp(-step / (18 + 6 * r)) if last else math.nan,
                        lr=lr, momentum=0.9 if r == 0 else 0.9 - 0.01 * e,
                        weight_decay=5e-4 * (1 + 0.1 * e * r), seconds=0.1 * step,
                    )
                ev = spectrum(e, rng, scale=1.0 + 0.5 * r)
                measure = slq(torch.diag(torch.from_numpy(ev)), num_vectors=NV, num_steps=M,
                              generator=torch.Generator().manual_seed(e))
                row = {
                    "step": e * STEPS_PER_EPOCH, "epoch": float(e),
                    "top_eigenvalues": ev[::-1][:K].copy(), "bottom_eigenvalue": float(ev[0]),
                    "trace": float(ev.sum()), "trace_stderr": 0.1,
                    "ritz_nodes": measure.nodes, "ritz_weights": measure.weights,
                    "num_matvecs": float(measure.num_matvecs), "seconds": 0.5,
                }
                if name == "dcao":
                    row.update(lambda1=float(ev[-1]), gap=float(ev[-1] - ev[-2]),
                               lr_mult=1.0 - 0.05 * e, momentum_mult=1.0 + 0.02 * e,
                               wd_mult=1.0 + 0.1 * e)
                run.append_probe(row)
    return path


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("plots") / "compare.h5")


@pytest.fixture(scope="module")
def runs(store_path: Path) -> dict:
    return read_runs(store_path)


def saved(fig: Figure, tmp_path: Path, stem: str, suffixes: tuple[str, ...] = (".png",)) -> None:
    """Save (at a low dpi, for speed); each file is non-empty and starts like its format."""
    magic = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}
    assert set(magic) == set(FIGURE_FORMATS)
    for suffix in suffixes:
        out = save_figure(fig, tmp_path / f"{stem}{suffix}", dpi=50)
        data = out.read_bytes()
        assert len(data) > 1000
        assert data.startswith(magic[suffix])


def meshes(fig: Figure) -> list[QuadMesh]:
    return [c for ax in panels(fig) for c in ax.collections if isinstance(c, QuadMesh)]


def panels(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


# ----------------------------------------------------------------- evolution


def test_evolution_heatmap_from_path(store_path: Path, tmp_path: Path) -> None:
    fig = plot_evolution(store_path, grid=200)
    assert isinstance(fig, Figure)
    qm = meshes(fig)
    assert len(qm) == 2  # one panel per run
    for q in qm:
        assert q.get_array().shape == (EPOCHS, 200)  # one row per probe, one column per point
        assert np.all(np.isfinite(q.get_array()))
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels] == ["sgdm", "dcao"]
    assert panels[0].get_xscale() == "symlog"
    assert panels[0].get_xlabel() == "eigenvalue" and panels[0].get_ylabel() == "epoch"
    # shared axes: the same limits, which include the negative eigenvalues
    assert panels[0].get_xlim() == panels[1].get_xlim()
    assert panels[0].get_xlim()[0] < -1.0
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
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2
    assert all(len(ax.get_lines()) == EPOCHS + 1 for ax in panels)  # + the zero line
    assert panels[0].get_yscale() == "log"
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


# ----------------------------------------------------------------- density


def test_density_from_run_and_measure(runs: dict, store_path: Path, tmp_path: Path) -> None:
    fig = plot_density(store_path, "sgdm", probe=0)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and ax.get_xscale() == "symlog"
    assert ax.get_xlabel() == "eigenvalue"
    assert "epoch 0" in fig.get_suptitle()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "top-3 eigenvalues (Lanczos)" in labels
    saved(fig, tmp_path, "density")

    ev = np.concatenate([np.linspace(-1, 1, 50), [10.0, 20.0]])
    measure = slq(torch.diag(torch.from_numpy(ev)), num_vectors=2, num_steps=20,
                  generator=torch.Generator().manual_seed(0))
    fig = plot_density(measure, xscale="linear", grid=400)
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "SLQ density"]
    x, y = line.get_data()
    assert np.trapezoid(y, x) == pytest.approx(1.0, abs=0.02)  # a density per eigenvalue
    with pytest.raises(ValueError, match="probe=6 is out of range"):
        plot_density(runs["sgdm"], probe=6)
    with pytest.raises(ValueError, match="pass name="):
        plot_density(store_path)


def test_density_is_the_measures_smoothing(tmp_path: Path) -> None:
    """With a linear axis and an explicit sigma, the curve is SpectralMeasure.density."""
    ev = np.linspace(0.0, 5.0, 40)
    measure = slq(torch.diag(torch.from_numpy(ev)), num_vectors=2, num_steps=10,
                  generator=torch.Generator().manual_seed(1))
    grid = np.linspace(-1.0, 6.0, 300)
    fig = plot_density(measure, xscale="linear", grid=grid, sigma=0.2, decades=12)
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "SLQ density"]
    x, y = line.get_data()
    assert np.allclose(x, grid)
    assert np.allclose(y, measure.density(grid, 0.2), rtol=1e-12)


def test_symlog_smoothing_matches_matplotlib_and_integrates() -> None:
    from matplotlib.scale import SymmetricalLogTransform

    from spectra.plots import _EigAxis

    axis = _EigAxis(0.1)
    x = np.concatenate([-np.logspace(-3, 3, 50), [0.0], np.logspace(-3, 3, 50)])
    ref = SymmetricalLogTransform(10, 0.1, 1.0).transform_non_affine(x)
    assert np.allclose(axis.fwd(x), ref)
    assert np.allclose(axis.inv(axis.fwd(x)), x)
    # the smoothing coordinate: derivative 1 at 0, matches its numerical derivative
    assert axis.sderiv(0.0) == 1.0
    h = 1e-6 * np.maximum(np.abs(x), 1e-3)
    num = (axis.sfwd(x + h) - axis.sfwd(x - h)) / (2 * h)
    assert np.allclose(axis.sderiv(x), num, rtol=1e-6)
    # ... and on screen it is within a constant factor of the symlog coordinate
    ratio = axis.fwd(x[x != 0]) / axis.sfwd(x[x != 0])
    assert ratio.min() > 1.0 and ratio.max() < 1.7  # widths on screen agree within 1.5x
    # a density per unit eigenvalue: still integrates to ~1 after the change of variable
    ev = np.concatenate([np.linspace(-0.5, 0.5, 80), [-3.0, 40.0, 400.0]])
    measure = slq(torch.diag(torch.from_numpy(ev)), num_vectors=3, num_steps=40,
                  generator=torch.Generator().manual_seed(2))
    fig = plot_density(measure, grid=2000, decades=14)
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "SLQ density"]
    xs, ys = line.get_data()
    assert np.trapezoid(ys, xs) == pytest.approx(1.0, abs=0.02)
    assert fig.axes[0].get_xscale() == "symlog"
    # no jump at +-linthresh (the density per unit eigenvalue is smooth there)
    grid = np.linspace(0.05, 0.2, 301)
    fig = plot_density(measure, grid=grid, linthresh=0.1, sigma=0.05, decades=14)
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "SLQ density"]
    y = line.get_ydata()
    assert np.max(np.abs(np.diff(np.log(y)))) < 0.05


# ----------------------------------------------------------------- sharpness


def test_sharpness(runs: dict, tmp_path: Path) -> None:
    fig = plot_sharpness(runs)
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert r"$\lambda_1$ (top)" in labels and r"$\lambda_{\min}$" in labels
    (thr,) = [ln for ln in ax.get_lines() if "edge of stability" in ln.get_label()]
    assert "2+2" in thr.get_label()  # momentum recorded: (2 + 2 beta) / lr
    x, y = thr.get_data()
    m = runs["sgdm"].metrics
    assert np.allclose(y, (2 + 2 * m.momentum) / m.lr)
    assert np.allclose(x, m.epoch)
    assert ax.get_yscale() == "symlog"  # lambda_min < 0 early on
    assert ax.get_xlabel() == "epoch"
    saved(fig, tmp_path, "sharpness")


def test_sharpness_without_momentum_and_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "gd.h5"
    with RunStore(path) as store:
        run = store.create_run("gd", config={"optimizer": {"name": "sgd", "lr": 0.02}})
        for s in range(5):
            run.append_metrics(step=s, epoch=float(s), lr=0.02, train_loss=1.0 / (s + 1))
            run.append_probe(step=s, epoch=float(s), top_eigenvalues=[50.0 + 10 * s, 20.0],
                             bottom_eigenvalue=0.5)
        empty = store.create_run("empty")
        empty.append_metrics(step=0, lr=0.1)
    fig = plot_sharpness(path, "gd")
    ax = fig.axes[0]
    (thr,) = [ln for ln in ax.get_lines() if "edge of stability" in ln.get_label()]
    assert thr.get_label().startswith(r"$2/\eta$")
    assert np.allclose(thr.get_data()[1], 100.0)
    assert ax.get_yscale() == "log"
    assert "gd (sgd)" in fig.get_suptitle()
    with pytest.raises(ValueError, match="run 'empty' has no eigenvalue probes"):
        plot_sharpness(path, "empty")
    with pytest.raises(ValueError, match="by must be"):
        plot_sharpness(path, "gd", by="time")


# ----------------------------------------------------------------- curves


def test_curves(runs: dict, store_path: Path, tmp_path: Path) -> None:
    fig = plot_curves(store_path)
    panels = fig.axes
    assert [ax.get_title() for ax in panels] == [
        "train loss", "test loss", "train accuracy", "test accuracy"]
    assert all(len(ax.get_lines()) == 2 for ax in panels)
    assert panels[0].get_yscale() == "log"
    assert panels[2].get_ylabel() == "accuracy (%)"
    # test metrics are logged once per epoch: NaN rows are skipped
    assert len(panels[1].get_lines()[0].get_xdata()) == EPOCHS
    assert max(panels[3].get_lines()[0].get_ydata()) <= 100
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["sgdm", "dcao"]
    saved(fig, tmp_path, "curves")


def test_curves_missing_data(tmp_path: Path) -> None:
    path = tmp_path / "sparse.h5"
    with RunStore(path) as store:
        store.create_run("a").append_metrics(step=0, lr=0.1)
        b = store.create_run("b")
        for s in range(3):
            b.append_metrics(step=s, train_loss=1.0 - 0.1 * s)
    with pytest.raises(ValueError, match="record no train/test loss or accuracy"):
        plot_curves(path, "a")
    fig = plot_curves(path)  # by step: rows without an epoch
    assert fig.axes[0].get_xlabel() == "step"
    assert "not recorded" in fig.axes[1].texts[0].get_text()


# ----------------------------------------------------------------- hparams


def test_hparams(runs: dict, tmp_path: Path) -> None:
    fig = plot_hparams(runs["dcao"])
    titles = {ax.get_title() for ax in fig.axes}
    assert {"hyperparameters used", "curvature seen by the controller",
            "DCAO multipliers"} <= titles
    ylabels = {ax.get_ylabel() for ax in fig.axes}
    assert {r"learning rate $\eta$", r"momentum $\beta$", "weight decay",
            "multiplier (1 = unchanged)"} <= ylabels
    curv = next(ax for ax in fig.axes if ax.get_title() == "curvature seen by the controller")
    assert [ln.get_label() for ln in curv.get_lines()][:2] == [
        r"$\lambda_1$", r"gap $\lambda_1 - \lambda_2$"]
    saved(fig, tmp_path, "hparams")
    # a run without DCAO columns falls back to the probes' top eigenvalues
    fig = plot_hparams(runs["sgdm"], by="epoch")
    curv = next(ax for ax in fig.axes if ax.get_title() == "top Hessian eigenvalues (probes)")
    assert curv.get_lines()[0].get_label() == r"$\lambda_1$ (probe)"
    assert not any(ax.get_title() == "DCAO multipliers" for ax in fig.axes)


def test_hparams_bad_input(store_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pass name="):
        plot_hparams(store_path)
    path = tmp_path / "nohp.h5"
    with RunStore(path) as store:
        store.create_run("x").append_metrics(step=0, train_loss=1.0)
    with pytest.raises(ValueError, match="run 'x' records no hyperparameters"):
        plot_hparams(path)


# ----------------------------------------------------------------- trajectories


def test_trajectories(tmp_path: Path) -> None:
    from optim.testfunctions import ROSENBROCK, run

    t = np.linspace(0, 1, 80)[:, None]
    straight = (1 - t) * np.array([-1.2, 1.0]) + t * np.array([0.9, 0.8])
    fig = plot_trajectories(get_function("rosenbrock"), {
        "line": straight,
        "sgd": run("sgd", "rosenbrock", steps=100, lr=1e-3),  # a Trajectory object
        "tensor": torch.tensor([[-1.2, 1.0], [1e6, 1e6]]),  # leaves the view
    }, resolution=80)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("line (final f = ")
    assert "global minimum" in labels and "start" in labels
    star = next(ln for ln in ax.get_lines() if ln.get_label() == "global minimum")
    assert np.allclose(np.c_[star.get_data()], np.array(ROSENBROCK.minima))
    assert ax.get_xlim() == (-2.0, 2.0)  # the far point does not stretch the view
    assert "Rosenbrock" in fig.get_suptitle()
    assert isinstance(ax.collections[0].norm, matplotlib.colors.LogNorm)  # log-spaced levels
    saved(fig, tmp_path, "trajectories")
    fig = plot_trajectories(get_function("himmelblau"), {"a": np.array([[0.0, 0.0], [3.0, 2.0]])},
                            resolution=60)
    assert "global minima" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    fig = plot_trajectories(get_function("saddle"), {"a": np.array([[1.0, 0.01], [0.5, 0.5]])},  # f < 0
                            resolution=60)
    assert fig.axes[0].get_xlabel() == "x"


def test_trajectories_bad_input() -> None:
    with pytest.raises(TypeError, match="test function object"):
        plot_trajectories("rosenbrock", {"a": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"trajectory 'a' must have shape \(T, 2\), got \(4,\)"):
        plot_trajectories(get_function("beale"), {"a": np.zeros(4)})
    with pytest.raises(ValueError, match="non-empty mapping"):
        plot_trajectories(get_function("beale"), {})
    with pytest.raises(ValueError, match="bounds"):
        plot_trajectories(get_function("beale"), {"a": np.zeros((2, 2))}, bounds=((1, 0), (0, 1)))


# ----------------------------------------------------------------- save_figure


def test_save_figure_suffixes(runs: dict, tmp_path: Path) -> None:
    fig = plot_curves(runs)
    out = save_figure(fig, tmp_path / "sub" / "dir" / "CURVES.PNG")  # parents made; any case
    assert out.stat().st_size > 0
    with pytest.raises(ValueError, match=r"suffix '\.jpeg'.*\.png, \.pdf, \.svg"):
        save_figure(fig, tmp_path / "curves.jpeg")
    with pytest.raises(ValueError, match="no suffix"):
        save_figure(fig, tmp_path / "curves")
    assert not (tmp_path / "curves.jpeg").exists()


def test_no_pyplot_state(runs: dict) -> None:
    """Figures are built without pyplot: nothing is registered with a figure manager."""
    import sys

    fig = plot_evolution(runs, grid=50)
    assert fig.canvas.manager is None
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        assert fig.number not in plt.get_fignums() if hasattr(fig, "number") else True


# ----------------------------------------------------------------- non-finite nodes


def _run_with_nodes(path: Path, rows: list[tuple[np.ndarray, np.ndarray]]) -> Path:
    with RunStore(path) as store:
        run = store.create_run("r")
        for i, (nodes, weights) in enumerate(rows):
            run.append_probe(step=10 * i, epoch=float(i), ritz_nodes=nodes, ritz_weights=weights)
    return path


def test_non_finite_nodes_are_named_not_taken_for_missing_densities(tmp_path: Path) -> None:
    w = np.full((2, 4), 0.25)
    good = np.array([[-1.0, 0.0, 1.0, 5.0], [-0.5, 0.5, 2.0, 4.0]])
    nan_node = good.copy()
    nan_node[1, 2] = np.nan  # a NaN node with a positive weight: not padding
    inf_node = good.copy()
    inf_node[0, 3] = np.inf
    path = _run_with_nodes(tmp_path / "bad.h5", [(nan_node, w), (inf_node, w)])
    for plot in (plot_evolution, plot_density):
        with pytest.raises(ValueError, match=r"run 'r': the stored Ritz nodes or weights of probe "
                                             r"rows \[0, 1\] are not finite \(NaN or Inf"):
            plot(path)
    # with a good row left: the bad one is skipped, and said so
    mixed = _run_with_nodes(tmp_path / "mixed.h5", [(good, w), (nan_node, w), (good, w)])
    with pytest.warns(UserWarning, match=r"probe rows \[1\] are not finite.*; skipped"):
        fig = plot_evolution(mixed)
    assert len(meshes(fig)) == 1
    # NaN in both arrays is padding (a shorter Lanczos run): no warning
    padded_nodes, padded_w = good.copy(), w.copy()
    padded_nodes[0, 3] = padded_w[0, 3] = np.nan
    padded = _run_with_nodes(tmp_path / "padded.h5", [(padded_nodes, padded_w)])
    plot_evolution(padded)


def test_non_finite_measure_is_refused_by_row() -> None:
    from spectra.linalg.density import SpectralMeasure

    nodes = np.array([[0.0, 1.0], [np.nan, 2.0]])
    m = SpectralMeasure(nodes=nodes, weights=np.full((2, 2), 0.5), num_matvecs=4, dim=2)
    with pytest.raises(ValueError, match=r"SpectralMeasure's nodes or weights are not finite .* "
                                         r"in rows \[1\]"):
        plot_density(m)
