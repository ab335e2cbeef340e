"""spectra.plots.hparams: DCAO's hyperparameters and the curvature behind them."""

from __future__ import annotations

from pathlib import Path

import pytest

from spectra.plots import plot_hparams
from spectra.runs import RunStore
from tests.spectra.plots.conftest import nothing_cut_off, saved


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
    mult = next(ax for ax in fig.axes if ax.get_title() == "DCAO multipliers")
    last_step = float(runs["dcao"].metrics.step[-1])
    assert all(ln.get_xdata()[-1] == last_step for ln in mult.get_lines()[:3])  # held to the end
    nothing_cut_off(fig)
    saved(fig, tmp_path, "hparams")
    # legends sit below their panels, never over the lines
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw_without_rendering()
    for ax in (curv, mult):
        legend = ax.get_legend().get_window_extent(renderer)
        assert legend.y1 <= ax.get_window_extent(renderer).y0
    # the clamp of the multipliers, when given
    fig = plot_hparams(runs["dcao"], multiplier_limits=(0.5, 2.0))
    mult = next(ax for ax in fig.axes if ax.get_title() == "DCAO multipliers")
    clamp = [ln for ln in mult.get_lines() if list(ln.get_ydata()) in ([0.5, 0.5], [2.0, 2.0])]
    assert len(clamp) == 2
    lo, hi = mult.get_ylim()
    assert lo < 0.5 and hi > 2.0
    assert "clamp [0.5, 2]" in [t.get_text() for t in mult.get_legend().get_texts()]
    # a run without DCAO columns falls back to the probes' top eigenvalues
    fig = plot_hparams(runs["sgdm"], by="epoch")
    curv = next(ax for ax in fig.axes if ax.get_title() == "top Hessian eigenvalues (probes)")
    assert [ln.get_label() for ln in curv.get_lines()] == [
        r"$\lambda_1$ (probe)", r"gap $\lambda_1 - \lambda_2$ (probe)"]
    assert not any(ax.get_title() == "DCAO multipliers" for ax in fig.axes)


def test_hparams_without_curvature(tmp_path: Path) -> None:
    path = tmp_path / "lr.h5"
    with RunStore(path) as store:
        run = store.create_run("x")
        for s in range(4):
            run.append_metrics(step=s, lr=0.1 * 2.0**-s, train_loss=1.0)
    fig = plot_hparams(path)
    assert len(fig.axes) == 1  # lr only: no empty panels for what is not recorded
    assert fig.axes[0].get_yscale() == "log"  # lr spans 8x
    assert not fig.axes[0].texts


def test_hparams_of_other_optimizers(tmp_path: Path) -> None:
    """LPSGD's p and CALR's effective step get panels when the metrics record them."""
    path = tmp_path / "lp.h5"
    with RunStore(path) as store:
        run = store.create_run("lpsgd")
        for s in range(4):
            run.append_metrics(step=s, lr=0.01, p=8.0 - 2 * s, effective_lr=1e-3 * (s + 1))
    fig = plot_hparams(path)
    assert [ax.get_ylabel() for ax in fig.axes] == [
        r"learning rate $\eta$", "LPSGD's p-norm $p$", "effective step (CALR)"]
    assert list(fig.axes[1].get_lines()[0].get_ydata()) == [8.0, 6.0, 4.0, 2.0]


def test_hparams_bad_input(store_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pass name="):
        plot_hparams(store_path)
    path = tmp_path / "nohp.h5"
    with RunStore(path) as store:
        store.create_run("x").append_metrics(step=0, train_loss=1.0)
    with pytest.raises(ValueError, match="run 'x' records no hyperparameters"):
        plot_hparams(path)
    stopped = tmp_path / "stopped.h5"  # diverged in its first epoch: a probe, no metrics
    with RunStore(stopped) as store:
        store.create_run("s").append_probe(step=0, epoch=0.0, top_eigenvalues=[1.0])
    with pytest.raises(ValueError, match="run 's' records no hyperparameters: its metrics "
                                         "table has no rows"):
        plot_hparams(stopped)


def test_an_optimizers_probe_is_drawn_where_it_was_taken(tmp_path: Path) -> None:
    """Metrics rows carry DCAO's last probe with its own step (``probe_step``); the
    curvature is drawn at that step, not at the row's, and rows without a probe
    (NaN) draw nothing."""
    path = tmp_path / "d.h5"
    with RunStore(path) as store:
        run = store.create_run("dcao")
        nan = float("nan")
        for s, probe, lam in ((4, 0, 2.0), (8, nan, nan), (12, 10, 3.0), (16, nan, nan)):
            run.append_metrics(step=s, epoch=s / 4, lr=0.1, train_loss=1.0, probe_step=probe,
                               lambda1=lam, gap=lam - 1.0)
    fig = plot_hparams(path, by="step")
    curv = next(ax for ax in fig.axes if ax.get_title() == "curvature seen by the controller")
    assert list(curv.get_lines()[0].get_xdata()) == [0.0, 10.0]
    assert list(curv.get_lines()[0].get_ydata()) == [2.0, 3.0]
    fig = plot_hparams(path, by="epoch")  # the probe's epoch, interpolated from the rows
    curv = next(ax for ax in fig.axes if ax.get_title() == "curvature seen by the controller")
    assert list(curv.get_lines()[0].get_xdata()) == [0.0, 2.5]


def test_probes_without_a_finite_lambda1_are_named(tmp_path: Path) -> None:
    """Probes of a run that diverged (NaN eigenvalues) are not dropped silently."""
    path = tmp_path / "div.h5"
    with RunStore(path) as store:
        run = store.create_run("sgd", config={"optimizer": "sgd"})
        for s, top in enumerate([[2.0, 1.0], [float("nan")] * 2, [float("nan")] * 2]):
            run.append_metrics(step=s, epoch=float(s), lr=0.1, momentum=0.9, weight_decay=0.0)
            run.append_probe(step=s, epoch=float(s), top_eigenvalues=top)
    fig = plot_hparams(path)
    titles = [ax.get_title() for ax in fig.axes]
    assert any(r"no finite $\lambda_1$ at step 1, 2" in t for t in titles), titles
    nothing_cut_off(fig)
