"""cli._options: KEY=VALUE parsing and the probe plan."""

from __future__ import annotations

import pytest

from cli._errors import CLIError
from cli._options import ProbePlan, parse_kv, parse_value, split_opt_args


@pytest.mark.parametrize(("raw", "value"), [
    ("1", 1), ("1e-3", 1e-3), ("true", True), ("False", False), ("none", None),
    ("null", None), ("relu", "relu"), ("32,32", (32, 32)), ("0.9,", (0.9,)),
])
def test_parse_value(raw, value):
    assert parse_value(raw) == value


def test_parse_kv_turns_dashes_in_keys_into_underscores():
    assert parse_kv(("n-train=500", " w = 1,2"), "--data-arg") == {"n_train": 500, "w": (1, 2)}


@pytest.mark.parametrize(("item", "message"), [
    ("lr", "--opt-arg 'lr' is not key=value"),
    ("=1", "--opt-arg '=1' has an empty key"),
])
def test_parse_kv_refuses_by_name(item, message):
    with pytest.raises(CLIError, match=message):
        parse_kv((item,), "--opt-arg")


def test_split_opt_args_for_all_and_for_one():
    out = split_opt_args(("lr=0.1", "SGD.momentum=0.9"), ["sgd", "adam"])
    assert out == {"sgd": {"lr": 0.1, "momentum": 0.9}, "adam": {"lr": 0.1}}


def test_split_opt_args_names_an_optimizer_not_in_the_list():
    with pytest.raises(CLIError, match=r"'lion' is not one of --optimizers \(sgd, adam\)"):
        split_opt_args(("lion.lr=1",), ["sgd", "adam"])


def test_probe_plan_from_a_stored_config():
    cfg = {"every": 2, "unit": "step", "samples": 64, "top_k": 3, "bottom": False,
           "tol": 1e-4, "trace_matvecs": 0, "density": [2, 10]}
    plan = ProbePlan.from_config(cfg)
    assert plan == ProbePlan(every=2, unit="step", samples=64, top_k=3, bottom=False,
                             tol=1e-4, trace_matvecs=0, density=(2, 10))
    assert plan.enabled
    assert ProbePlan.from_config(None) is None
    assert not ProbePlan(every=0).enabled
