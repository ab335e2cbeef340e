"""The studies' shared helpers (analyses._study) and their small pieces; the quick modes
themselves run end to end in the slow tests (and in .ci/run through `make analyses-quick`)."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import optim
from analyses import _study, classification, edge_of_stability, synthetic
from optim.calr import CALR


def test_mean_std_is_mean_and_sample_std_of_the_finite_values():
    m, s = _study.mean_std([1.0, 2.0, 4.0, math.nan])
    assert m == pytest.approx(7 / 3)
    assert s == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))
    assert _study.mean_std([3.0]) == (3.0, 0.0)
    assert all(math.isnan(x) for x in _study.mean_std([math.nan]))


def test_fmt_mean_std_counts_the_missing_values():
    assert _study.fmt_mean_std([1.0, 3.0]) == "2 ± 1.41"
    assert _study.fmt_mean_std([0.5, 0.7], scale=100, digits=1, fixed=True) == "60.0 ± 14.1"
    assert _study.fmt_mean_std([1.0, math.inf]).endswith("(1 of 2)")
    assert _study.fmt_mean_std([math.nan]) == "n/a"


def test_header_names_command_versions_machine_and_wall_time():
    text = _study.header("T", 0.0, quick=True)
    for field in ("Command:", "Versions:", "torch", "Machine:", "Wall time:", "quick mode"):
        assert field in text


def test_quick_runs_never_write_into_the_committed_results(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    args = _study.parser("analyses.x", "d").parse_args(["--quick"])
    assert _study.out_dir(args) == tmp_path / "spectra-analyses"
    args = _study.parser("analyses.x", "d").parse_args([])
    assert _study.out_dir(args) == _study.RESULTS


def test_half_squared_error_is_cohens_mse():
    out, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 2, 1, 1, 0])
    target = torch.nn.functional.one_hot(y, 3).double()
    expected = 0.5 * torch.nn.functional.mse_loss(out, target, reduction="sum") / 5
    assert float(edge_of_stability.HalfSquaredError()(out, y)) == pytest.approx(float(expected), rel=1e-12)


def test_edge_ratio_is_the_median_after_the_first_crossing():
    run = edge_of_stability.Run("sgd", 0.1, 0, probe_steps=[0, 10, 20, 30, 40],
                                sharpness=[5.0, 19.0, 21.0, 19.0, 20.0], threshold=[20.0] * 5)
    ratio, step = edge_of_stability.edge_ratio(run)
    assert step == 20 and ratio == pytest.approx(1.0)
    never = edge_of_stability.Run("sgd", 0.1, 0, probe_steps=[0], sharpness=[1.0], threshold=[20.0])
    assert math.isnan(edge_of_stability.edge_ratio(never)[0])
    assert edge_of_stability.peak_ratio(run) == pytest.approx(21 / 20)


def test_calr_proof_form_step_by_hand():
    """One step: m_hat = g, v_hat = g^2, so the step is lr g / (|g| + alpha (|g| + delta) + eps)."""
    p = torch.nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
    opt = synthetic.CALRProofForm([p], lr=0.01, alpha=0.1)
    g = torch.tensor([0.5, -2.0], dtype=torch.float64)
    p.grad = g.clone()
    opt.step()
    expected = 1.0 - 0.01 * g / (g.abs() + 0.1 * (g.abs() + 1e-8) + 1e-8)
    torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-15)


def test_calr_proof_form_differs_from_eq5_where_the_paper_says():
    """Eq. 5 takes sqrt(v + alpha H), the proof sqrt(v) + alpha H: for g = 1, alpha = 0.1
    the first step's denominators are sqrt(1.1) and 1.1 (delta 0, eps 1e-300: nothing
    beside them in float64; 0 is refused with delta 0). No registration
    here: ``register_proof_form`` would add ``calr-proof`` to this process's registry."""
    steps = []
    for cls in (CALR, synthetic.CALRProofForm):
        p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
        opt = cls([p], lr=0.01, alpha=0.1, delta=0.0, eps=1e-300)
        p.grad = torch.tensor([1.0], dtype=torch.float64)
        opt.step()
        steps.append(1.0 - float(p))
    assert steps[0] == pytest.approx(0.01 / math.sqrt(1.1), rel=1e-12)
    assert steps[1] == pytest.approx(0.01 / 1.1, rel=1e-12)


def test_paper_lr_is_the_class_default():
    assert synthetic.paper_lr("calr") == pytest.approx(1e-2)
    assert synthetic.paper_lr("smaran") == pytest.approx(0.1)
    assert synthetic.paper_lr("lion") == pytest.approx(1e-4)


def test_these_tests_leave_the_registry_alone():
    assert synthetic.PROOF not in optim.available()


def test_gap_is_test_minus_eval_mode_train_loss():
    run = classification.Run("fnn", "adam", 0.01, 0, train_loss=[0.5, 0.2], test_loss=[0.6, 0.5])
    assert classification.gap(run) == pytest.approx([0.1, 0.3])
    assert classification._metric([run], "test_loss", "best") == [0.5]
    assert classification._metric([run], "train_loss", "final") == [0.2]


@pytest.mark.slow
@pytest.mark.parametrize("study", ["edge_of_stability", "synthetic", "classification"])
def test_quick_mode_runs_end_to_end(study, tmp_path):
    """As CI runs it, in a fresh process (the synthetic study registers ``calr-proof``
    in its own process's optimizer registry)."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    subprocess.run([sys.executable, "-m", f"analyses.{study}", "--quick", "--out-dir",
                    str(tmp_path)], cwd=root, env=env, check=True, timeout=600)
    text = (tmp_path / f"{study}.md").read_text()
    assert "Verdict" in text and "Command:" in text
    assert list(tmp_path.glob("*.png"))


def test_synthetic_oscillates_tells_a_zigzag_from_a_descent():
    steps = np.arange(200)
    descent = 10.0 ** (-0.1 * steps) * (1 + 0.05 * np.sin(steps))  # ripples on the way down
    zigzag = np.where(steps % 2 == 0, 1e-3, 1e-1)  # two decades up and down every step
    assert not synthetic.oscillates(descent)
    assert synthetic.oscillates(zigzag)
    assert not synthetic.oscillates(np.array([1.0, np.inf, 2.0]))  # diverged: drawn as is
    x, lo, hi = synthetic.rolling_range(np.arange(10.0), window=5)  # steps t-2 .. t+2
    assert np.array_equal(x, np.arange(10))
    assert np.array_equal(lo, [0, 0, 0, 1, 2, 3, 4, 5, 6, 7])  # cut at the first step
    assert np.array_equal(hi, [2, 3, 4, 5, 6, 7, 8, 9, 9, 9])  # and at the last


def test_synthetic_families_keep_every_optimizer_once():
    names = ["lion", "adam", "calr", "calr-proof", "sgd", "new-one"]
    groups = synthetic.families(names)
    assert [n for _, g in groups for n in g] == ["calr", "calr-proof", "adam", "sgd", "lion",
                                                 "new-one"]


def test_welch_p_is_scipys_and_leaves_out_non_finite_values():
    from scipy.stats import ttest_ind

    a, b = [0.96, 0.97, 0.975], [0.95, 0.955, 0.96]
    expected = ttest_ind(a, b, equal_var=False).pvalue
    assert _study.welch_p(a, b) == pytest.approx(expected)
    assert _study.welch_p([math.nan, *a], b) == pytest.approx(expected)  # a diverged run
    assert math.isnan(_study.welch_p(a[:1], b))
    assert math.isnan(_study.welch_p([1.0, 1.0], [2.0, 2.0]))  # no spread: no test
