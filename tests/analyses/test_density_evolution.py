"""analyses.density_evolution: its spectral quantities on measures with known answers,
and (slow) the quick mode end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyses import density_evolution as de


def test_outliers_counts_the_eigenvalues_before_the_last_large_gap() -> None:
    # nine separated eigenvalues, then a bulk without gaps of 1.5x
    top = np.array([33.0, 30.1, 23.0, 21.7, 19.7, 16.4, 14.8, 10.8, 9.0, 2.1, 1.95, 1.78])
    assert de.outliers(top) == (9, 2.1)
    assert de.outliers(top[::-1]) == (9, 2.1)  # any order
    # no gap of 1.5x: no outliers, the edge is the top eigenvalue
    assert de.outliers(np.array([0.41, 0.40, 0.34, 0.32, 0.30])) == (0, 0.41)
    # the last gap counts: 10 / 6 = 1.67 after 3 / 2 = 1.5
    assert de.outliers(np.array([30.0, 20.0, 10.0, 6.0, 5.5])) == (3, 6.0)
    # NaN (an eigenvalue that was not recorded) is dropped
    assert de.outliers(np.array([4.0, np.nan, 1.0])) == (1, 1.0)
    none = de.outliers(np.array([np.nan]))
    assert none[0] == 0 and math.isnan(none[1])


def test_slq_mass_below_is_the_mean_weight_below_the_threshold() -> None:
    nodes = np.array([[-1.0, -0.05, 0.5, 2.0], [-0.2, 0.1, 0.3, np.nan]])
    weights = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.25, 0.25, np.nan]])
    assert de.slq_mass_below(nodes, weights, 0.0) == pytest.approx((0.3 + 0.5) / 2)
    assert de.slq_mass_below(nodes, weights, -0.1) == pytest.approx((0.1 + 0.5) / 2)
    assert de.slq_mass_below(nodes, weights, -5.0) == 0.0
    assert de.slq_mass_below(nodes, weights, 10.0) == pytest.approx(1.0)


@pytest.mark.slow
def test_quick_mode_writes_the_results_and_figures(tmp_path) -> None:
    de.main(["--quick", "--out-dir", str(tmp_path)])
    text = (tmp_path / "density_evolution.md").read_text()
    assert "quick mode" in text and "## Verdicts" in text
    for claim in ("outliers and negative", "negative mass shrinks", "C − 1", "Batch norm",
                  "Anisotropy"):
        assert claim in text
    for suffix in ("", "_batchnorm", "_heatmap", "_summary"):
        assert (tmp_path / f"density_evolution{suffix}.png").stat().st_size > 10_000


def _row(optimizer: str, variant: str, epoch: float, n_out: int, aniso_edge: float) -> de.Row:
    return de.Row(optimizer, variant, 0, epoch, lam1=10.0, lam_min=-1.0, trace=50.0, neg0=0.1,
                  negx=0.01, n_out=n_out, edge=1.0, aniso_edge=aniso_edge, aniso_mean=100.0,
                  probe_seconds=1.0, matvecs=100.0)


@pytest.mark.parametrize("bn_outliers, bn_edge, word", [
    (2, 2.0, "reproduced"),      # fewer outliers and smaller: both measures
    (2, 20.0, "partly"),         # fewer, but larger: the count alone
    (8, 2.0, "partly"),          # as many, but smaller
    (8, 20.0, "not reproduced"),
])
def test_batch_norm_verdict_reads_the_outliers_count_and_size(bn_outliers, bn_edge, word):
    setting = de.Setting(("sgd",), ("sgd",), (0,), 1, 64, 12, (2, 20), 10, (0, 1))
    rows = [_row("sgd", "plain", e, 6, 10.0) for e in (0.0, 1.0)]
    rows += [_row("sgd", "bn", e, bn_outliers, bn_edge) for e in (0.0, 1.0)]
    claim = next(line for line in de.verdicts(rows, setting).splitlines()
                 if "Batch norm suppresses" in line)
    assert f"**Verdict: {word}.**" in claim
