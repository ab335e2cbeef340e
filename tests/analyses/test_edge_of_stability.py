"""The edge-of-stability study's counts: reached, at the edge, above the threshold."""

from __future__ import annotations

import math

from analyses import edge_of_stability as eos


def _run(sharpness: list[float], threshold: float = 20.0) -> eos.Run:
    return eos.Run("sgdm", 0.1, 0, probe_steps=[10 * i for i in range(len(sharpness))],
                   sharpness=sharpness, threshold=[threshold] * len(sharpness))


def test_edge_counts_tell_below_the_threshold_from_above_it():
    # medians after reaching: 1.05 (above), 0.92 (at the edge, below), 0.5 (off), never
    ratios = [1.05, 0.92, 0.5, math.nan]
    assert eos.edge_counts(ratios) == (
        "of 4 runs, 3 reached it, 2 are at the edge, 1 stay above it")


def test_probes_above_counts_the_first_stretch_at_or_above_the_threshold():
    assert eos.probes_above(_run([10, 20, 21, 25, 19, 22])) == 3
    assert eos.probes_above(_run([10, 21, 22])) == 2  # still above at the end
    assert eos.probes_above(_run([10, 12])) is None


def test_momentum_note_states_the_stretch_it_measured():
    runs = [_run([10, 20, 21, 19, 18]), _run([10, 15, 20, 21, 22, 23, 19])]
    note = eos.momentum_note(runs)
    assert "stays at or above the threshold for 2 to 4 probes (every 10 steps)" in note
