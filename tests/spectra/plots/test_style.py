"""spectra.plots.style: saving figures, panels and legends."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from spectra.plots import plot_curves, save_figure
from spectra.plots.style import figure_legend, grid_shape, new_figure, panels, panels_figsize
from tests.spectra.plots.conftest import nothing_cut_off


def test_save_figure_suffixes(runs: dict, tmp_path: Path) -> None:
    fig = plot_curves(runs)
    out = save_figure(fig, tmp_path / "sub" / "dir" / "CURVES.PNG")  # parents made; any case
    assert out.stat().st_size > 0
    with pytest.raises(ValueError, match=r"suffix '\.jpeg'.*\.png, \.pdf, \.svg"):
        save_figure(fig, tmp_path / "curves.jpeg")
    with pytest.raises(ValueError, match="no suffix"):
        save_figure(fig, tmp_path / "curves")
    assert not (tmp_path / "curves.jpeg").exists()
    with pytest.raises(TypeError, match="expected a matplotlib Figure"):
        save_figure("not a figure", tmp_path / "x.png")


@pytest.mark.parametrize("n, shape", [(1, (1, 1)), (3, (1, 3)), (4, (2, 2)), (5, (3, 2))])
def test_panels_fill_a_grid(n: int, shape: tuple[int, int]) -> None:
    assert grid_shape(n) == shape
    fig = new_figure(None, panels_figsize(*shape))
    assert isinstance(fig, Figure)
    assert len(panels(fig, n)) == n == len(fig.axes)  # unused cells removed


@pytest.mark.parametrize("width, labels, rows", [
    (7.0, ["a", "b", "c"], [3]),  # short entries: one row
    (7.0, [f"legend entry {i}" for i in range(5)], [3, 2]),  # 4 fit a row: 3 + 2
    (3.0, ["an entry that takes most of a row", "b", "c"], [1, 1, 1]),
])
def test_figure_legend_fits_the_figure(width: float, labels: list[str], rows: list[int]) -> None:
    fig = new_figure(None, (width, 3.0))
    axes = panels(fig, 2)
    for i, label in enumerate(labels):
        axes[i % 2].plot([0, 1], [i, i + 1], label=label)
    figure_legend(fig, axes)
    nothing_cut_off(fig)  # the legend and each of its entries inside the figure
    (legend,) = fig.legends
    assert sorted(t.get_text() for t in legend.get_texts()) == sorted(labels)
    ys = [round(t.get_window_extent().y0) for t in legend.get_texts()]
    assert sorted(ys.count(y) for y in set(ys))[::-1] == rows


def test_mark_lone_points_marks_only_points_no_segment_reaches() -> None:
    import numpy as np

    from spectra.plots.style import mark_lone_points

    fig = new_figure(None, (4, 3))
    ax = fig.subplots()
    one = ax.plot([0.0], [1.0], ls="--")[0]  # a run of one probe: drawn as nothing
    gaps = ax.plot([0, 1, 2, 3, 4], [1.0, np.nan, 2.0, 3.0, np.nan])[0]  # 0 is alone
    marked = ax.plot([0.0], [2.0], marker="s")[0]  # has a marker: left as it is
    full = ax.plot([0, 1], [1.0, 2.0])[0]
    mark_lone_points(fig)
    assert one.get_marker() == "o" and list(one.get_markevery()) == [0]
    assert gaps.get_marker() == "o" and list(gaps.get_markevery()) == [0]
    assert marked.get_marker() == "s" and marked.get_markevery() is None
    assert full.get_marker() in ("None", None, "")
