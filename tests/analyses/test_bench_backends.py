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
    row["ms"] = {"graph": {"matvec": 2.0, "matmat4": 1.0}, "backprop": {"matvec": 3.0, "matmat4": 1.5},
                 "func": {"matvec": 1.0, "matmat4": 4.0}}  # the report from given numbers
    row["others"] = 0.25
    text = report([row], args, wall=1.0)
    assert "| mlp-tanh-2k | 2,410 | backprop | 3.00 | 1.50 | 1.50 | 1.50 |" in text
    assert "| mlp-tanh-2k | 2,410 | func | 1.00 | 0.50 | 4.00 | 4.00 |" in text and "| 25% |" in text
    assert "Fastest `matvec` per model: mlp-tanh-2k: `func`." in text
