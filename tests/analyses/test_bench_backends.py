"""analyses.bench_backends: the three HVP backends give one product, and the report
says which is fastest from the numbers it measured."""

from __future__ import annotations

import argparse

from analyses.bench_backends import BACKENDS, measure, report


def test_the_backends_agree_and_the_report_names_the_fastest():
    row = measure("mlp-tanh-2k", products=4, rounds=1, batch=500)
    assert row["P"] == 2410
    assert row["diff"]["graph"] == 0.0
    # backprop runs the same double backward; func another path, float32 rounding apart
    assert row["diff"]["backprop"] <= 1e-6 and row["diff"]["func"] <= 1e-5
    assert all(row["ms"][b]["matvec"] > 0 and row["ms"][b]["matmat4"] > 0 for b in BACKENDS)
    args = argparse.Namespace(quick=True, batch=500, rounds=1, products=4)
    text = report([row], args, wall=1.0)
    fastest = min(BACKENDS, key=lambda b: row["ms"][b]["matvec"])
    assert f"mlp-tanh-2k: `{fastest}`" in text
    assert "| mlp-tanh-2k | 2,410 | graph |" in text and "| 1.00 |" in text
