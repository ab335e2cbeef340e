"""spectra.plots.data: runs from paths and collections, time axes, density rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spectra.plots import plot_density, plot_evolution
from spectra.plots.data import (
    density_rows,
    figure_title,
    one_run,
    resolve_runs,
    row_edges,
    run_title,
    time_column,
    time_kind,
)
from spectra.runs import RunStore, read_run
from tests.spectra.plots.conftest import EPOCHS, meshes, run_with_nodes


def test_runs_from_a_path_a_mapping_and_a_list(store_path: Path, runs: dict) -> None:
    assert [r.name for r in resolve_runs(store_path, None)] == ["sgdm", "dcao"]
    assert [r.name for r in resolve_runs(store_path, "dcao")] == ["dcao"]
    assert [r.name for r in resolve_runs(runs, ["dcao", "sgdm"])] == ["dcao", "sgdm"]
    assert [r.name for r in resolve_runs(list(runs.values()), ["dcao"])] == ["dcao"]
    assert one_run(runs["sgdm"], None) is runs["sgdm"]
    with pytest.raises(ValueError, match=r"hold 2 runs \(sgdm, dcao\); pass name="):
        one_run(runs, None)
    with pytest.raises(ValueError, match="list of runs is empty"):
        resolve_runs([], None)
    with pytest.raises(TypeError, match="runs must be a RunData"):
        resolve_runs(3, None)


def test_titles(runs: dict) -> None:
    assert run_title(runs["sgdm"]) == "sgdm"  # the optimizer is the name
    assert figure_title("Curves", list(runs.values())) == "Curves (mlp on digits)"


def test_time_axis() -> None:
    step, epoch = np.arange(3.0), np.array([0.0, 0.5, np.nan])
    assert time_column("auto", step, epoch, "t")[1] == "step"
    assert time_column("auto", step, epoch[:2].tolist() + [1.0], "t")[1] == "epoch"
    with pytest.raises(ValueError, match="t has rows without an epoch"):
        time_column("epoch", step, epoch, "t")
    assert time_kind("auto", [(step, epoch[:2]), (step, epoch)]) == "step"
    # a table of no rows (a run stopped at once) lacks no epoch: by="epoch" is no error
    none = np.zeros(0)
    assert time_column("epoch", none, none, "t")[1] == "epoch"
    assert time_column("auto", none, none, "t")[1] == "epoch"
    assert np.array_equal(row_edges(np.array([2.0])), [1.5, 2.5])
    assert np.array_equal(row_edges(np.array([0.0, 1.0, 3.0])), [-0.5, 0.5, 2.0, 4.0])


def test_density_rows_in_time_order(runs: dict) -> None:
    rows = density_rows(runs["dcao"], "epoch")
    assert np.array_equal(rows.time, np.arange(EPOCHS, dtype=float))
    assert np.array_equal(rows.index, np.arange(EPOCHS))
    assert all(n.shape == w.shape for n, w in rows.measures)


def test_non_finite_nodes_are_named_not_taken_for_missing_densities(tmp_path: Path) -> None:
    w = np.full((2, 4), 0.25)
    good = np.array([[-1.0, 0.0, 1.0, 5.0], [-0.5, 0.5, 2.0, 4.0]])
    nan_node = good.copy()
    nan_node[1, 2] = np.nan  # a NaN node with a positive weight: not padding
    inf_node = good.copy()
    inf_node[0, 3] = np.inf
    path = run_with_nodes(tmp_path / "bad.h5", [(nan_node, w), (inf_node, w)])
    for plot in (plot_evolution, plot_density):
        with pytest.raises(ValueError, match=r"run 'r': the stored Ritz nodes or weights of probe "
                                             r"rows \[0, 1\] are not finite \(NaN or Inf"):
            plot(path)
    # with a good row left: the bad one is skipped, and said so, pointing at the caller
    mixed = run_with_nodes(tmp_path / "mixed.h5", [(good, w), (nan_node, w), (good, w)])
    with pytest.warns(UserWarning, match=r"probe rows \[1\] are not finite.*; skipped") as rec:
        fig = plot_evolution(mixed, kind="heatmap")
    assert rec[0].filename == __file__
    assert len(meshes(fig)) == 1
    # NaN in both arrays is padding (a shorter Lanczos run): no warning
    padded_nodes, padded_w = good.copy(), w.copy()
    padded_nodes[0, 3] = padded_w[0, 3] = np.nan
    padded = run_with_nodes(tmp_path / "padded.h5", [(padded_nodes, padded_w)])
    plot_evolution(padded)


def test_a_run_without_probe_rows_is_not_told_to_record_densities(tmp_path: Path) -> None:
    """A run with no probes at all (probing off, or stopped before the first probe) is
    named as such, not told to turn on a density it may have asked for."""
    path = tmp_path / "stopped.h5"
    with RunStore(path) as store:
        store.create_run("stopped").append_metrics(step=0, epoch=0.0, train_loss=1.0)
    run = read_run(path, "stopped")
    with pytest.raises(ValueError, match="'stopped' has no density probes: its probes table has no rows"):
        density_rows(run, "epoch")
