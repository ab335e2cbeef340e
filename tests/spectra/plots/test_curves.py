"""spectra.plots.curves: loss and accuracy, train and test."""

from __future__ import annotations

from pathlib import Path

import pytest

from spectra.plots import plot_curves
from spectra.runs import RunStore
from tests.spectra.plots.conftest import EPOCHS, nothing_cut_off, saved


def test_curves(store_path: Path, tmp_path: Path) -> None:
    fig = plot_curves(store_path)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == [
        "train loss (running average over the epoch)", "test loss",
        "train accuracy (running average over the epoch)", "test accuracy"]
    assert all(len(ax.get_lines()) == 2 for ax in axes)
    assert axes[0].get_yscale() == "log"
    assert axes[2].get_ylabel() == "accuracy (%)"
    # test metrics are logged once per epoch: NaN rows are skipped
    assert len(axes[1].get_lines()[0].get_xdata()) == EPOCHS
    assert max(axes[3].get_lines()[0].get_ydata()) <= 100
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["sgdm", "dcao"]
    nothing_cut_off(fig)
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


def test_eval_mode_train_metrics_and_batch_rows(tmp_path: Path) -> None:
    """Eval-mode train columns (with epoch 0) are drawn instead of the running average
    and titled so; batch-loss rows (no seconds) stay out of the running average's line."""
    path = tmp_path / "eval.h5"
    with RunStore(path) as store:
        ev = store.create_run("ev")
        ev.append_metrics(step=0, epoch=0.0, train_eval_loss=2.3, train_eval_acc=0.1,
                          test_loss=2.3, test_acc=0.1)
        for e in (1, 2):
            ev.append_metrics(step=10 * e, epoch=float(e), train_loss=1.0 / e, train_acc=0.5,
                              train_eval_loss=0.9 / e, train_eval_acc=0.6, test_loss=1.0 / e,
                              test_acc=0.5, seconds=1.0)
        ra = store.create_run("ra")
        for e in (1, 2):
            for s in range(1, 10):  # batch rows, as log_every_steps writes them
                ra.append_metrics(step=10 * (e - 1) + s, epoch=e - 1 + s / 10, train_loss=5.0)
            ra.append_metrics(step=10 * e, epoch=float(e), train_loss=1.0 / e, train_acc=0.5,
                              test_loss=1.0 / e, test_acc=0.5, seconds=1.0)
    fig = plot_curves(path, "ev")
    assert fig.axes[0].get_title() == "train loss (eval mode, end of epoch)"
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_xdata()) == [0.0, 1.0, 2.0]  # epoch 0 included
    assert list(line.get_ydata()) == [2.3, 0.9, 0.45]
    fig = plot_curves(path, "ra")
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_ydata()) == [1.0, 0.5]  # not the batch rows' 5.0
    fig = plot_curves(path)  # both kinds: the running average dashed, and said
    assert "dashed: running average" in fig.axes[0].get_title()
    assert [ln.get_linestyle() for ln in fig.axes[0].get_lines()] == ["-", "--"]


def test_infinite_losses_are_marked_not_called_missing(tmp_path: Path) -> None:
    """A loss that overflowed (+-Inf) is not 'not recorded': crosses mark its times at
    the top of the panel, the legend explains them, and a panel with only infinite
    values says so (and shows no y ticks, which would mean nothing)."""
    import math

    path = tmp_path / "inf.h5"
    with RunStore(path) as store:
        run = store.create_run("div")
        for e, (train, test) in enumerate([(2.0, 2.1), (5.0, math.inf), (math.inf, math.inf)], 1):
            run.append_metrics(step=10 * e, epoch=float(e), train_loss=train, test_loss=test,
                               train_acc=0.1, test_acc=0.1, seconds=1.0)
        only = store.create_run("only")
        only.append_metrics(step=10, epoch=1.0, train_loss=math.inf, seconds=1.0)
    fig = plot_curves(path, "div")
    train_ax, test_ax = fig.axes[:2]
    crosses = [ln for ln in train_ax.get_lines() if ln.get_marker() == "x"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [3.0]
    (cross,) = [ln for ln in test_ax.get_lines() if ln.get_marker() == "x"]
    assert list(cross.get_xdata()) == [2.0, 3.0]
    assert not any("not recorded" in t.get_text() for ax in fig.axes for t in ax.texts)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["div", "infinite value (not drawn)"]
    nothing_cut_off(fig)
    fig = plot_curves(path, "only")  # no finite value at all: a figure, not an error
    assert fig.axes[0].texts[0].get_text() == "train loss: only infinite values"
    assert not fig.axes[0].yaxis.get_tick_params()["labelleft"]
    saved(fig, tmp_path, "curves_inf")


def test_curves_of_a_run_without_metrics_rows_say_so(tmp_path: Path) -> None:
    path = tmp_path / "stopped.h5"
    with RunStore(path) as store:
        store.create_run("stopped").append_probe(step=0, epoch=0.0, top_eigenvalues=[1.0])
    with pytest.raises(ValueError, match="metrics tables have no rows"):
        plot_curves(path)


def test_a_run_without_metrics_among_others_is_named_in_the_legend(tmp_path: Path) -> None:
    path = tmp_path / "two.h5"
    with RunStore(path) as store:
        a = store.create_run("a")
        for e in (1, 2):
            a.append_metrics(step=e, epoch=float(e), train_loss=1.0 / e, seconds=1.0)
        store.create_run("stopped")
    fig = plot_curves(path)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["a", "stopped: no metrics rows"]
    nothing_cut_off(fig)
