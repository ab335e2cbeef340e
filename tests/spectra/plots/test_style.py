"""spectra.plots.style: saving figures, panels and legends."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from spectra.plots import plot_curves, save_figure
from spectra.plots.style import grid_shape, new_figure, panels, panels_figsize


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
