"""spectra.plots.sharpness: top eigenvalues against the edge of stability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spectra.plots import plot_sharpness
from spectra.runs import RunStore
from tests.spectra.plots.conftest import saved


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


def test_sharpness_without_stability(runs: dict) -> None:
    fig = plot_sharpness(runs["dcao"], stability=False)
    ax = fig.axes[0]
    assert not any("edge of stability" in ln.get_label() for ln in ax.get_lines())
    assert "Sharpness over training: dcao" in fig.get_suptitle()


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
