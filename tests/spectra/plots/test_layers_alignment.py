"""spectra.plots.layers and spectra.plots.alignment: per-layer lambda_1/trace and the
gradient alignment over training, from the columns the monitor writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spectra.plots.alignment import plot_alignment
from spectra.plots.layers import plot_layers
from spectra.runs import RunStore, read_run
from tests.spectra.plots.conftest import nothing_cut_off, saved


@pytest.fixture()
def run(tmp_path: Path):
    path = tmp_path / "r.h5"
    cfg = {"optimizer": {"name": "adam"}, "model": {"name": "mlp"}, "data": {"name": "digits"},
           "probe": {"layer_names": ["0", "2"], "layer_sizes": [24, 15]}}
    with RunStore(path) as store:
        w = store.create_run("adam", config=cfg)
        for i in range(4):
            w.append_probe(step=10 * i, epoch=float(i), top_eigenvalues=[3.0 + i], trace=10.0 + i,
                           layer_top_eigenvalue=[2.0 + i, 1.0], layer_trace=[6.0, 4.0 + i],
                           alignment_full=0.2 * i, alignment_batch=np.nan if i == 0 else 0.1,
                           step_loss_change=-1e-2, step_loss_change_top=-1e-3,
                           step_loss_change_bulk=-9e-3)
    return read_run(path, "adam")


def test_layers(run, tmp_path):
    fig = plot_layers(run)
    left, right = fig.axes
    labels = [ln.get_label() for ln in left.get_lines()]
    assert labels == ["0 (24 params)", "2 (15 params)", "whole Hessian"]
    x, y = left.get_lines()[0].get_data()
    assert np.array_equal(x, [0, 1, 2, 3]) and np.array_equal(y, [2, 3, 4, 5])
    assert np.array_equal(right.get_lines()[1].get_data()[1], [4, 5, 6, 7])
    nothing_cut_off(fig)
    saved(fig, tmp_path, "layers")


def test_alignment(run, tmp_path):
    fig = plot_alignment(run)
    left, right = fig.axes
    full, batch = left.get_lines()
    assert np.allclose(full.get_data()[1], [0, 0.2, 0.4, 0.6])
    assert np.array_equal(batch.get_data()[0], [1, 2, 3])  # the NaN row is left out
    assert len([ln for ln in right.get_lines() if ln.get_label().startswith("adam")]) == 3
    nothing_cut_off(fig)
    saved(fig, tmp_path, "alignment")


def test_nothing_recorded(tmp_path):
    path = tmp_path / "e.h5"
    with RunStore(path) as store:
        store.create_run("a", config={}).append_probe(step=0, top_eigenvalues=[1.0])
    with pytest.raises(ValueError, match="--layers"):
        plot_layers(path)
    with pytest.raises(ValueError, match="--alignment"):
        plot_alignment(path)


def test_one_probe_is_drawn(tmp_path):
    """A run stopped after its first probe: every line in the legend has a visible
    point (the whole Hessian's dashed line and the step's split have no markers)."""
    path = tmp_path / "one.h5"
    cfg = {"optimizer": {"name": "sgd"}, "probe": {"layer_names": ["0", "2"],
                                                   "layer_sizes": [24, 15]}}
    with RunStore(path) as store:
        store.create_run("sgd", config=cfg).append_probe(
            step=0, epoch=0.0, top_eigenvalues=[3.0], trace=10.0,
            layer_top_eigenvalue=[2.0, 1.0], layer_trace=[6.0, 4.0], alignment_full=0.5,
            alignment_batch=0.4, step_loss_change=-1e-2, step_loss_change_top=-1e-3,
            step_loss_change_bulk=-9e-3)
    run = read_run(path, "sgd")
    for fig in (plot_layers(run), plot_alignment(run)):
        for ax in fig.axes:
            for line in ax.get_lines():
                if len(line.get_xdata()) == 1:
                    assert line.get_marker() not in ("None", None, ""), line.get_label()


def test_a_run_without_probes_among_others_says_so(run, tmp_path):
    """A second run with the columns but no probe rows (stopped at once): its layer
    panels say so (no y ticks, no legend of lines that are not there), and the
    alignment legend names it without a line handle."""
    path = tmp_path / "two.h5"
    cfg = {"optimizer": {"name": "sgd"}, "probe": {"layer_names": ["0", "2"],
                                                   "layer_sizes": [24, 15]}}
    with RunStore(path) as store:
        w = store.create_run("sgd", config=cfg)
        w.append_probe(step=0, epoch=0.0, top_eigenvalues=[3.0], trace=10.0,
                       layer_top_eigenvalue=[2.0, 1.0], layer_trace=[6.0, 4.0],
                       alignment_full=0.5)
    import h5py

    with h5py.File(path, "r+") as f:  # the same columns, no committed rows
        f["sgd/probes"].attrs["n_rows"] = np.int64(0)
    empty = read_run(path, "sgd")
    fig = plot_layers([run, empty])
    for ax in fig.axes[2:]:
        assert [t.get_text() for t in ax.texts] == ["no probes recorded"]
        assert not ax.get_lines() and ax.get_legend() is None
        assert not ax.yaxis.get_tick_params()["labelleft"]
        assert not ax.xaxis.get_tick_params()["labelbottom"]
    nothing_cut_off(fig)
    fig = plot_alignment([run, empty])
    left = fig.axes[0]
    assert all(len(ln.get_xdata()) for ln in left.get_lines() if "sgd" in ln.get_label()
               and ln.get_linestyle() != "None")
    assert "sgd: no probes recorded" in [t.get_text() for t in left.get_legend().get_texts()]


def test_alignment_without_the_step_split_columns(tmp_path):
    """A run written with alignment_full only (by hand, or an older monitor): the
    missing columns are 'not recorded', not a numpy broadcasting error."""
    path = tmp_path / "al.h5"
    with RunStore(path) as store:
        w = store.create_run("x")
        for i in range(3):
            w.append_probe(step=i, epoch=float(i), alignment_full=0.1 * i)
    fig = plot_alignment(read_run(path, "x"))
    left, right = fig.axes
    assert len(left.get_lines()) == 1
    assert "not recorded" in right.texts[0].get_text()


def test_small_loss_changes_get_a_threshold_from_the_data(tmp_path):
    """Loss changes of 1e-8..2e-5 used to sit inside a fixed linear part of +-1e-4 (odd
    limits for ticks, no decades); the symlog threshold now comes from the data, below
    their typical size, and the ticks are signed powers of ten."""
    path = tmp_path / "small.h5"
    with RunStore(path) as store:
        w = store.create_run("sgd", config={"optimizer": {"name": "sgd"}})
        for i, (whole, top, bulk) in enumerate(zip(-np.geomspace(1e-5, 1e-7, 6),
                                                   np.geomspace(1e-6, 1e-8, 6),
                                                   -np.geomspace(2e-5, 2e-7, 6))):
            w.append_probe(step=i, epoch=float(i), alignment_full=0.5, step_loss_change=whole,
                           step_loss_change_top=top, step_loss_change_bulk=bulk)
    fig = plot_alignment(read_run(path, "sgd"))
    right = fig.axes[1]
    values = np.concatenate([ln.get_ydata() for ln in right.get_lines()
                             if ln.get_label().startswith("sgd")])
    assert right.get_yscale() == "symlog"
    assert right.yaxis.get_transform().linthresh < np.median(np.abs(values))
    labels = [t.get_text() for t in right.get_yticklabels() if t.get_text()]
    assert "0" in labels and all(lab == "0" or "10^" in lab for lab in labels), labels
    nothing_cut_off(fig)
