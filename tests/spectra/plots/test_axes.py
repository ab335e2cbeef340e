"""spectra.plots.axes: tick labels and the choice of a log or symlog scale."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from spectra.plots.axes import power_label, symlog_ticks, time_ticks, value_scale


@pytest.mark.parametrize("v, label", [
    (0.0, "0"), (1.0, "1"), (-0.01, "\u22120.01"), (1000.0, "1000"), (1e4, "$10^{4}$"),
    (-1e-3, "\u2212$10^{-3}$"), (2.5, "2.5"),
])
def test_power_label(v: float, label: str) -> None:
    assert power_label(v) == label


def test_symlog_ticks_are_zero_and_powers_of_ten() -> None:
    ax = Figure().subplots()
    ax.set_xscale("symlog", linthresh=0.1)
    symlog_ticks(ax, -3.0, 200.0, 0.1, width=6.0)
    major = ax.xaxis.get_major_locator().tick_values(-3.0, 200.0)
    assert 0.0 in major
    for v in major[major != 0]:
        assert np.log10(abs(v)) == pytest.approx(round(np.log10(abs(v))))
    assert 100.0 in major and -1.0 in major  # the largest decade on each side
    narrow = Figure().subplots()
    symlog_ticks(narrow, -3.0, 200.0, 0.1, width=0.5)  # little room: fewer labels
    assert len(narrow.xaxis.get_major_locator().tick_values(-3, 200)) < len(major)


def test_value_scale() -> None:
    ax = Figure().subplots()
    value_scale(ax, np.array([0.5, 3.0, np.nan]))
    assert ax.get_yscale() == "log"
    value_scale(ax, np.array([-2.0, 0.0, 50.0]))
    assert ax.get_yscale() == "symlog"
    ax = Figure().subplots()
    value_scale(ax, np.array([0.0, 0.0]))  # nothing to scale by: left linear
    assert ax.get_yscale() == "linear"


def test_symlog_ticks_inside_the_linear_part_are_linear() -> None:
    """A range within (-linthresh, linthresh) (a Hessian that vanished: every Ritz node
    at 0) has no decade to label: linear ticks, not a lone '0'."""
    ax = Figure().subplots()
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(-0.03, 0.03)
    symlog_ticks(ax, -0.03, 0.03, 1.0, width=6.0)
    ticks = [t for t in ax.get_xticks() if -0.03 <= t <= 0.03]
    assert len(ticks) >= 3 and min(ticks) < 0 < max(ticks)


def test_time_ticks_are_whole_numbers_for_whole_epochs_only():
    fig = Figure()
    whole, part = fig.subplots(1, 2)
    whole.plot([1.0, 2.0, 3.0], [1.0, 0.5, 0.2])  # one row per epoch
    part.plot([0.5, 1.0, 1.5], [1.0, 0.5, 0.2])  # probes every half epoch
    fig.canvas.draw()
    assert any(t != round(t) for t in whole.get_xticks())  # matplotlib's 1.25, 1.5 ...
    time_ticks(fig)
    fig.canvas.draw()
    assert all(t == round(t) for t in whole.get_xticks())
    assert any(t != round(t) for t in part.get_xticks())  # left as they were
