"""spectra.plots.trajectories: optimizers over a test function's contours."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from optim.testfunctions import ROSENBROCK, get_function, run
from spectra.plots import plot_trajectories
from tests.spectra.plots.conftest import nothing_cut_off, saved


def _labels(fig) -> list[str]:
    return [t.get_text() for t in fig.legends[0].get_texts()]


def test_trajectories(tmp_path: Path) -> None:
    t = np.linspace(0, 1, 80)[:, None]
    straight = (1 - t) * np.array([-1.2, 1.0]) + t * np.array([0.9, 0.8])
    fig = plot_trajectories(get_function("rosenbrock"), {
        "line": straight,
        "sgd": run("sgd", "rosenbrock", steps=100, lr=1e-3),  # a Trajectory object
        "tensor": torch.tensor([[-1.2, 1.0], [1e6, 1e6]]),  # leaves the view
    }, resolution=80)
    ax = fig.axes[0]
    labels = _labels(fig)
    assert labels[0].startswith("line (79 steps): final f = ")
    assert labels[1].startswith("sgd (100 steps): final f = ")
    assert labels[2] == "tensor (1 step): left the view at step 1, final f = 1e+26"
    # the path that leaves is drawn to the frame: an arrow ending on its edge
    (arrow,) = [c for c in ax.get_children() if isinstance(c, matplotlib.text.Annotation)]
    assert arrow.xy[0] == pytest.approx(2.0) or arrow.xy[1] == pytest.approx(3.0)
    # later paths do not hide earlier ones: half-transparent, distinct styles and markers
    paths = [ln for ln in ax.get_lines() if ln.get_label() in labels[:3]]
    assert all(ln.get_alpha() < 1 for ln in paths)
    assert len({ln.get_linestyle() for ln in paths}) == 3
    assert len({ln.get_marker() for ln in paths}) == 3
    assert "global minimum" in labels and "start" in labels
    star = next(ln for ln in ax.get_lines() if ln.get_label() == "global minimum")
    assert np.allclose(np.c_[star.get_data()], np.array(ROSENBROCK.minima))
    assert ax.get_xlim() == (-2.0, 2.0)  # the far point does not stretch the view
    assert "Rosenbrock" in fig.get_suptitle()
    assert isinstance(ax.collections[0].norm, matplotlib.colors.LogNorm)  # log-spaced levels
    nothing_cut_off(fig)
    saved(fig, tmp_path, "trajectories")
    fig = plot_trajectories(get_function("himmelblau"), {"a": np.array([[0.0, 0.0], [3.0, 2.0]])},
                            resolution=60)
    assert "global minima" in _labels(fig)
    fig = plot_trajectories(get_function("saddle"), {"a": np.array([[1.0, 0.01], [0.5, 0.5]])},  # f < 0
                            resolution=60)
    assert fig.axes[0].get_xlabel() == "x"
    assert "saddle point" in _labels(fig)
    assert not isinstance(fig.axes[0].collections[0].norm, matplotlib.colors.LogNorm)


class _Bowl:
    """A function without a standard view: the view frames its minimum and the paths."""

    name = "bowl"
    minima = ((0.5, -0.5),)

    @staticmethod
    def value(xy):
        return (xy[..., 0] - 0.5) ** 2 + 3 * (xy[..., 1] + 0.5) ** 2


def test_view_of_an_unknown_function_and_diverged_paths() -> None:
    path = np.array([[2.0, 2.0], [1.0, 0.0], [np.nan, np.nan]])
    fig = plot_trajectories(_Bowl(), {"a": path}, resolution=40)
    x0, x1 = fig.axes[0].get_xlim()
    y0, y1 = fig.axes[0].get_ylim()
    assert x0 < 0.5 and x1 > 2.0 and y0 < -0.5 and y1 > 2.0
    assert "a (2 steps): diverged at step 2" in _labels(fig)
    fig = plot_trajectories(_Bowl(), {"a": path[:2]}, lr={"a": 1e-3}, resolution=40)
    assert _labels(fig)[0].startswith("a (lr 0.001, 1 step): final f = ")
    fig = plot_trajectories(_Bowl(), {"a": path[:2]}, bounds=((-1, 3), (-2, 3)), resolution=40)
    assert fig.axes[0].get_xlim() == (-1, 3)


def test_trajectories_bad_input() -> None:
    with pytest.raises(TypeError, match="test function object"):
        plot_trajectories("rosenbrock", {"a": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"trajectory 'a' must have shape \(T, 2\), got \(4,\)"):
        plot_trajectories(get_function("beale"), {"a": np.zeros(4)})
    with pytest.raises(ValueError, match="non-empty mapping"):
        plot_trajectories(get_function("beale"), {})
    with pytest.raises(ValueError, match="levels must be an integer >= 2"):
        plot_trajectories(get_function("beale"), {"a": np.zeros((2, 2))}, levels=1)
    with pytest.raises(ValueError, match="bounds"):
        plot_trajectories(get_function("beale"), {"a": np.zeros((2, 2))}, bounds=((1, 0), (0, 1)))
    with pytest.raises(ValueError, match=r"bounds must be \(\(x0, x1\), \(y0, y1\)\)"):
        plot_trajectories(get_function("beale"), {"a": np.zeros((2, 2))}, bounds=(1, 2))


def test_an_empty_path_is_named_empty() -> None:
    """A path of no points has the right shape (0, 2): the error says it is empty, not
    that it must have shape (T, 2)."""
    with pytest.raises(ValueError, match=r"trajectory 'a' is empty \(shape \(0, 2\)\): it "
                                         r"needs at least one point"):
        plot_trajectories(get_function("beale"), {"a": np.zeros((0, 2))})
