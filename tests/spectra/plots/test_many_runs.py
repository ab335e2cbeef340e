"""Figures of several runs: every run told apart (colours, legends, labels), and legends
that fit the figure, whatever the number of runs and the length of their names."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex

from spectra.plots import plot_alignment, plot_curves, plot_density, plot_evolution
from spectra.plots.style import line_colors
from spectra.runs import RunStore, read_runs
from tests.spectra.plots.conftest import nothing_cut_off

NODES = np.array([[-0.5, 0.0, 1.0, 3.0]])
WEIGHTS = np.array([[0.1, 0.6, 0.2, 0.1]])


def _density_runs(path: Path, names: list[str], epochs: dict[str, list[int]] | None = None,
                  top: dict[str, int] | None = None) -> Path:
    with RunStore(path) as store:
        for name in names:
            w = store.create_run(name)
            for e in (epochs or {}).get(name, [0, 1, 2, 3]):
                k = (top or {}).get(name, 2)
                w.append_probe(step=e, epoch=float(e), ritz_nodes=NODES + e,
                               ritz_weights=WEIGHTS, top_eigenvalues=np.arange(k, 0, -1) + 3.0 + e,
                               bottom_eigenvalue=-0.5 + e)
    return path


LONG = ["sgdm_lr0.1_wd5e-4_bs128_cosine", "adamw_lr3e-3_wd1e-2_bs128_warmup"]


@pytest.mark.parametrize("plot", [plot_density, plot_evolution])
def test_a_legend_of_long_run_names_fits_the_figure(tmp_path: Path, plot) -> None:
    """Three columns of long names ran past both edges of the figure."""
    fig = plot(_density_runs(tmp_path / "long.h5", LONG))
    nothing_cut_off(fig)


def test_line_colors_are_distinct_past_ten() -> None:
    for n in (1, 10, 11, 20, 21, 40):
        colors = line_colors(n)
        assert len(colors) == n == len(set(colors)), n
    assert line_colors(3) == [to_hex(f"C{i}") for i in range(3)]  # the default cycle


def test_eleven_runs_get_eleven_colours(tmp_path: Path) -> None:
    path = tmp_path / "sweep.h5"
    with RunStore(path) as store:
        for i in range(11):
            w = store.create_run(f"lr{i}")
            for step in range(3):
                w.append_metrics(step=step, epoch=float(step), train_loss=1.0 / (1 + i + step))
    fig = plot_curves(path)
    colors = {to_hex(line.get_color()) for line in fig.axes[0].get_lines()}
    assert len(colors) == 11


def test_runs_of_one_name_are_refused_not_merged(tmp_path: Path) -> None:
    """Two runs named alike (the same run name from two files) were drawn in one colour
    under one legend entry."""
    a = read_runs(_density_runs(tmp_path / "a.h5", ["sgd"]))["sgd"]
    b = read_runs(_density_runs(tmp_path / "b.h5", ["sgd"]))["sgd"]
    with pytest.raises(ValueError, match="two or more runs are named 'sgd'"):
        plot_density([a, b])
    plot_density([a, replace(b, name="sgd (b)")])


def test_evolution_draws_each_probe_once_at_the_checkpoint_it_is_at(tmp_path: Path) -> None:
    """A run probed every 4th epoch beside one probed every epoch: its epoch-0 probe
    stood for checkpoints 0 and 1 (the same curve drawn twice, in two line styles);
    each line style now means one epoch in every run, and a missing one is warned."""
    path = _density_runs(tmp_path / "cad.h5", ["every1", "every4"],
                         epochs={"every1": list(range(9)), "every4": [0, 4, 8]})
    with pytest.warns(UserWarning, match=r"run 'every4' has no density probe at epoch 1"):
        fig = plot_evolution(path)
    lines = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("every")]
    mine = [line.get_label() for line in lines if line.get_label().startswith("every4")]
    assert mine and len(mine) == len(set(mine))  # no probe drawn twice
    styles = {line.get_label(): line.get_linestyle() for line in lines}
    for label in mine:
        assert styles[label] == styles[label.replace("every4", "every1")], label


def test_every_curves_eigenvalue_marks_keep_a_row_and_the_legend_its_k(tmp_path: Path) -> None:
    """From the 5th curve on, the marks of every curve fell on one row; a legend said
    top-3 when one run had 2."""
    path = _density_runs(tmp_path / "k.h5", ["a", "b"], top={"a": 2, "b": 3})
    fig = plot_evolution(path)
    ax = fig.axes[0]
    rows = {round(float(line.get_ydata()[0]), 4) for line in ax.get_lines()
            if line.get_marker() == "v" and len(line.get_ydata())}
    assert len(rows) == 8  # 2 runs x 4 checkpoints
    labels = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "top eigenvalues (Lanczos)" in labels


def test_alignment_whole_step_lines_take_their_runs_colours(tmp_path: Path) -> None:
    path = tmp_path / "al.h5"
    with RunStore(path) as store:
        for name in ("adam", "sgdm"):
            w = store.create_run(name)
            for e in range(3):
                w.append_probe(step=e, epoch=float(e), alignment_full=0.3, alignment_batch=0.2,
                               step_loss_change=-0.01 * (e + 1), step_loss_change_top=0.002,
                               step_loss_change_bulk=-0.012)
    fig = plot_alignment(path)
    whole = {line.get_label(): to_hex(line.get_color()) for ax in fig.axes
             for line in ax.get_lines() if line.get_label().endswith("whole step")}
    assert len(whole) == 2 and len(set(whole.values())) == 2
