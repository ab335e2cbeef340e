"""analyses.bounded_density: the comparison of SLQ's two modes and its verdict."""

from __future__ import annotations

import math

import numpy as np
import torch

from analyses import bounded_density as bd
from analyses.estimators import with_spectrum


def _case(dtype=torch.float64) -> bd.Case:
    ev = np.concatenate([[40.0, 25.0, 10.0], np.linspace(-1.0, 2.0, 97)])
    return bd.Case("outliers", with_spectrum(ev).to(dtype), dtype, float(ev.min()),
                   float(ev.max()), ev)


def test_measure_compares_the_two_modes_of_the_same_start_vectors() -> None:
    row = bd.measure(_case(), n_v=3, m=40)
    assert row.P == 100 and row.moments < 1e-12  # Gauss rules of the same vectors
    assert 0 < row.w1 < 1e-2 and 0 < row.w1_truth < 1
    assert row.outside < 1e-12
    # one node per run at lambda_max in the full mode; the bounded one's ghosts share it
    assert row.copies[0] == 3 and row.copies[1] >= 3
    assert math.isclose(row.weight[0], row.weight[1], rel_tol=1e-9)
    assert bd.judge(row)


def test_judge_misses_each_bound_it_states() -> None:
    good = bd.Row(_case(torch.float32), 100, moments=1e-9, w1=1e-4, w1_truth=1e-2, outside=0.0,
                  copies=(2, 5), weight=(0.01, 0.01), seconds=(0.1, 0.1))
    assert bd.judge(good)
    for field, bad in (("moments", 10 * bd.MOMENT_TOL[torch.float32]),
                       ("w1", 2 * bd.W1_OF_WIDTH),
                       ("outside", 10 * bd.OUTSIDE[torch.float32])):
        row = bd.Row(**{**good.__dict__, field: bad})
        assert not bd.judge(row), field
    # W1 small against the width but not against SLQ's own sampling error
    row = bd.Row(**{**good.__dict__, "w1": 1e-4, "w1_truth": 1e-4})
    assert not bd.judge(row)
    # an unknown spectrum (nan) skips that bound only
    assert bd.judge(bd.Row(**{**good.__dict__, "w1_truth": float("nan")}))


def test_summary_states_the_worst_rows_and_the_ghosts_weight() -> None:
    case = _case()
    rows = [bd.Row(case, 100, 1e-14, 2e-4, 1e-3, 0.0, (4, 9), (0.01, 0.01), (0.1, 0.1)),
            bd.Row(case, 100, 3e-15, 5e-3, 1e-3, 1e-12, (4, 4), (0.01, 0.01), (0.1, 0.1))]
    lines = bd.summary(rows, 4)
    assert lines[0].startswith("float64: the first four moments of the two modes agree to 1.0e-14")
    assert "at most 5.00 of SLQ's own W1 distance" in lines[1]
    assert "beyond the sampling error of 4 random vectors" in lines[1]
    assert lines[2].startswith("Ghosts: in 1 of 2 rows") and "up to 9 against 4" in lines[2]
