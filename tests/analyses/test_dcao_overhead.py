"""analyses.dcao_overhead: one short timed run, the table cells' format, and the
overhead verdict that analyses.dcao_study reads from its results file."""

from __future__ import annotations

import math

import pytest

from analyses import _study, dcao_overhead, dcao_study

# the digits-MLP table as analyses.dcao_overhead writes it (numbers made up)
TABLE = """# DCAO probe overhead and lambda_1 accuracy, controller active

- Command: `python -m analyses.dcao_overhead --large-epochs 30`

Digits, minibatch 64.

## digits MLP 64-128-10: 80 epochs (1840 steps)

| setting | probes | adapted (lr mult range) | HVPs | overhead | steady overhead | test acc | failed probes | lambda_1 err (probe batch) | lambda_1 err (full train set) |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| one probe at step 0, then none | 1 | 1 (1.98–1.99) | 12 | 2.1% [0.9%–2.3%] | 0.0% [0.0%–0.0%] | 0.981 | - | - | - |
| paper: m=20, every 100, full batch | 19 | 19 (1.94–1.99) | 232 [230–236] | {full} [107.3%–110.6%] | 100.2% [99.3%–100.3%] | 0.981 | 0 | 0.00% / 0.01% | 0.00% / 0.01% |
| paper's m=20, every 100, batch 128 | 19 | 19 (1.94–1.98) | 230 [215–233] | {b128} [34.4%–42.7%] | 31.7% [31.5%–38.7%] | 0.981 | 0 | 0.00% / 0.00% | 19.75% / 99.10% |
| defaults: batch 128, m<=6 to 3% residual, overhead budget 5% | 7 [6–7] | 7 (1.95–1.98) | 43 [37–46] | 6.9% [6.6%–7.3%] | 4.8% [4.8%–5.3%] | 0.981 | 0 | 0.01% / 10.03% | 14.27% / 105.50% |

## MLP 64-1024-1024-10: 30 epochs (690 steps)

| paper: m=20, every 100, full batch | 7 | 7 (1.9–2.0) | 140 | 1.0% [1.0%–1.0%] | 1.0% [1.0%–1.0%] | 0.98 | 0 | - | - |
"""


def test_med_range() -> None:
    assert dcao_overhead._med_range([0.1, 0.3, 0.2]) == "20.0% [10.0%–30.0%]"
    assert dcao_overhead._med_range([3, 3, 3], "{:g}") == "3"


def test_run_times_probes_apart_from_training() -> None:
    """One epoch (23 steps) of the digits MLP probing every 10 steps: 3 probes, both
    clocks positive, the adapted lr multipliers inside DCAO's clamp [0.5, 2]."""
    out = dcao_overhead.run({"period": 10, "lanczos_steps": 4, "cold_lanczos_steps": 6},
                            epochs=1, seed=0)
    assert out["probes"] == 3
    assert out["train_s"] > 0 and out["probe_s"] > 0
    assert 0 < out["steady_s"] < out["probe_s"]
    assert 3 <= out["num_matvecs"] <= 6 + 2 * 4
    assert all(0.5 <= m <= 2.0 for m in out["lr_mult"])
    assert 0.0 <= out["acc"] <= 1.0


def _verdict(tmp_path, monkeypatch, full: str, b128: str) -> str:
    (tmp_path / "dcao_overhead.md").write_text(TABLE.replace("{full}", full).replace("{b128}", b128))
    monkeypatch.setattr(_study, "RESULTS", tmp_path)
    return dcao_study.overhead_verdict(22.2)


def test_overhead_rows_read_the_digits_table_only(tmp_path, monkeypatch) -> None:
    (tmp_path / "dcao_overhead.md").write_text(TABLE.replace("{full}", "108.4%").replace("{b128}", "34.5%"))
    monkeypatch.setattr(_study, "RESULTS", tmp_path)
    source, steps, rows = dcao_study._overhead_rows()
    assert "--large-epochs 30" in source and steps == 1840
    assert [r["name"][:5] for r in rows] == ["one p", "paper", "paper", "defau"]
    assert math.isclose(rows[2]["overhead_m"], 0.345) and rows[2]["hvps_m"] == 230


@pytest.mark.parametrize(("full", "b128", "word"), [
    ("108.4%", "34.5%", "**not reproduced**"),
    ("108.4%", "6.0%", "**partly reproduced (under 7 %, not 5 %)**"),
    ("4.5%", "34.5%", "**reproduced**"),
])
def test_overhead_verdict_follows_the_proposal_rows(tmp_path, monkeypatch, full, b128, word) -> None:
    text = _verdict(tmp_path, monkeypatch, full, b128)
    assert f"Verdict: {word}:" in text
    assert f"{full} [107.3%–110.6%] (full batch)" in text and "22.2 %" in text


def test_overhead_verdict_without_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_study, "RESULTS", tmp_path)
    assert "results file is missing" in dcao_study.overhead_verdict(3.0)
    assert "**reproduced** at this study's setting" in dcao_study.overhead_verdict(3.0)
