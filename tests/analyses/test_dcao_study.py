"""analyses.dcao_study: its metrics, and (slow) a reduced quick mode end to end."""

from __future__ import annotations

import json
import math

import pytest

from analyses import dcao_study
from analyses.dcao_study import Run, Setting


def test_epochs_to_counts_a_run_that_never_reaches_the_target_as_one_past_it() -> None:
    r = Run("x", 0, test_acc=[0.5, 0.8, 0.95])
    assert dcao_study.epochs_to(r, 0.8) == 2.0
    assert dcao_study.epochs_to(r, 0.96) == 4.0


def test_oscillation_is_std_cv_and_mean_change_of_the_last_half() -> None:
    r = Run("x", 0, lambda1=[100.0, 100.0, 100.0, 1.0, 3.0, 1.0, 3.0])
    std, cv, tv = dcao_study.oscillation(r)
    assert std == pytest.approx(math.sqrt(4 / 3), rel=1e-12)   # last half: 1, 3, 1, 3
    assert cv == pytest.approx(std / 2.0, rel=1e-12)
    assert tv == pytest.approx(2.0, rel=1e-12)
    assert math.isnan(dcao_study.oscillation(Run("x", 0, lambda1=[1.0, 2.0]))[0])


def test_targets_are_ninety_percent_of_each_seeds_best() -> None:
    runs = [Run("a", 0, test_acc=[0.5, 0.9]), Run("b", 0, test_acc=[0.8]),
            Run("a", 1, test_acc=[0.6])]
    assert dcao_study.targets(runs) == pytest.approx({0: 0.81, 1: 0.54})


@pytest.mark.slow
def test_reduced_quick_mode_end_to_end(tmp_path, monkeypatch) -> None:
    configs = ("sgdm", "sgdm-cosine", "adamw", "dcao", "dcao-off", "dcao-off-lr2x")
    monkeypatch.setattr(dcao_study, "QUICK", Setting(configs, 2, (0, 1)))
    dcao_study.main(["--quick", "--out-dir", str(tmp_path)])
    text = (tmp_path / "dcao_study.md").read_text()
    assert "quick mode" in text and "Verdict: **" in text
    for c in configs:
        assert f"| {c} |" in text
    assert (tmp_path / "dcao_study.png").stat().st_size > 0
    assert (tmp_path / "dcao_study_controller.png").stat().st_size > 0
    runs = [Run(**r) for r in json.loads((tmp_path / "dcao_study.json").read_text())["runs"]]
    dcao = [r for r in runs if r.config == "dcao"]
    # the default controller acted: DCAO probed every 10 steps and moved its lr multiplier
    assert all(len(r.dcao) >= 4 and any(d["lr_mult"] != 1.0 for d in r.dcao) for r in dcao)
    off = [r for r in runs if r.config == "dcao-off"]
    assert all(d["lr_mult"] == 1.0 for r in off for d in r.dcao)
