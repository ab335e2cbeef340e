"""spectra.plots.curves: loss and accuracy, train and test."""

from __future__ import annotations

from pathlib import Path

import pytest

from spectra.plots import plot_curves
from spectra.runs import RunStore
from tests.spectra.plots.conftest import EPOCHS, saved


def test_curves(store_path: Path, tmp_path: Path) -> None:
    fig = plot_curves(store_path)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == [
        "train loss", "test loss", "train accuracy", "test accuracy"]
    assert all(len(ax.get_lines()) == 2 for ax in axes)
    assert axes[0].get_yscale() == "log"
    assert axes[2].get_ylabel() == "accuracy (%)"
    # test metrics are logged once per epoch: NaN rows are skipped
    assert len(axes[1].get_lines()[0].get_xdata()) == EPOCHS
    assert max(axes[3].get_lines()[0].get_ydata()) <= 100
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
