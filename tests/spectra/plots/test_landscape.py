"""spectra.plots.landscape: the loss along one direction, or over a plane of two."""

from __future__ import annotations

import numpy as np
import pytest

from spectra.landscape import Landscape
from spectra.plots import plot_landscape


def _landscape(dims: int, kind: str, losses=None) -> Landscape:
    a = np.linspace(-1.0, 1.0, 5)
    if losses is None:
        losses = 1.0 + 2.0 * a**2 if dims == 1 else 1.0 + a[None, :] ** 2 + 3.0 * a[:, None] ** 2
    return Landscape(alphas=a, betas=None if dims == 1 else a, losses=np.asarray(losses),
                     center_loss=1.0, kind=kind,
                     eigenvalues=np.array([4.0, 6.0])[:dims] if kind == "top" else None,
                     num_matvecs=0, seconds=0.0)


def test_one_direction_with_its_quadratic_model() -> None:
    fig = plot_landscape(_landscape(1, "top"))
    ax = fig.axes[0]
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels[0] == "loss" and labels[-1] == "weights"
    assert any("\u03bb1 = 4" in label for label in labels)
    assert "parameter-space distance" in ax.get_xlabel()
    assert fig.get_suptitle() == "Loss along a top Hessian eigenvector"


def test_a_plane_of_two_directions() -> None:
    fig = plot_landscape(_landscape(2, "random"), title="my title")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "random direction 1" and ax.get_ylabel() == "random direction 2"
    assert fig.get_suptitle() == "my title"
    fig = plot_landscape(_landscape(2, "top"))
    assert "\u03bb2 = 6" in fig.axes[0].get_ylabel()
    assert fig.get_suptitle() == "Loss along two top Hessian eigenvectors"


def test_no_finite_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="all NaN or Inf"):
        plot_landscape(_landscape(1, "random", losses=np.full(5, np.nan)))


@pytest.mark.parametrize("dims", [1, 2])
def test_nonfinite_losses_are_marked_and_counted(dims: int) -> None:
    land = _landscape(dims, "top")
    losses = land.losses.copy()
    if dims == 1:
        losses[[0, -1]] = [np.nan, np.inf]
    else:
        losses[0, :2] = np.nan
    land = Landscape(**{**land.__dict__, "losses": losses})
    ax = plot_landscape(land).axes[0]
    marks = [ln for ln in ax.get_lines() if ln.get_label().startswith("loss NaN or Inf")]
    assert len(marks) == 1 and "2 of" in marks[0].get_label()
    assert len(marks[0].get_xdata()) == 2
    assert any(t.get_text().startswith("loss NaN or Inf") for t in ax.get_legend().get_texts())


def test_a_flat_plane_names_its_one_value() -> None:
    fig = plot_landscape(_landscape(2, "random", losses=np.full((5, 5), 2.25)))
    cbar = fig.axes[1]
    assert "flat: 2.25" in cbar.get_ylabel()
    fig.canvas.draw()
    labels = [t.get_text() for t in cbar.get_yticklabels() if t.get_text()]
    assert len(labels) == len(set(labels)) == 1


def test_a_coarse_plane_shows_its_grid_points() -> None:
    ax = plot_landscape(_landscape(2, "top")).axes[0]  # 5 x 5
    grid = [ln for ln in ax.get_lines() if ln.get_label().startswith("grid (5\u00d75")]
    assert len(grid) == 1 and len(grid[0].get_xdata()) == 25
    a = np.linspace(-1.0, 1.0, 21)
    fine = Landscape(alphas=a, betas=a, losses=a[None, :] ** 2 + a[:, None] ** 2, center_loss=0.0,
                     kind="random", eigenvalues=None, num_matvecs=0, seconds=0.0)
    ax = plot_landscape(fine).axes[0]
    assert not any(ln.get_label().startswith("grid") for ln in ax.get_lines())
