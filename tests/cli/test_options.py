"""cli._options: KEY=VALUE parsing and the probe plan."""

from __future__ import annotations

import pytest

from cli._errors import CLIError
from cli._options import ProbePlan, parse_kv, parse_value, split_opt_args
from tests.cli.conftest import invoke


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


@pytest.fixture
def no_cuda(monkeypatch):
    """A machine where torch.cuda.is_available() is False (whatever this one has)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine with two CUDA devices, as far as --device can tell."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.mark.parametrize(("value", "device"), [("auto", "cpu"), ("cpu", "cpu"), (" CPU ", "cpu")])
def test_resolve_device_without_cuda(no_cuda, value, device):
    from cli._options import resolve_device

    assert resolve_device(value) == device


@pytest.mark.parametrize(("value", "device"), [("auto", "cuda"), ("cuda", "cuda"),
                                               ("cuda:1", "cuda:1"), ("cpu", "cpu")])
def test_resolve_device_with_cuda(two_gpus, value, device):
    from cli._options import resolve_device

    assert resolve_device(value) == device


@pytest.mark.parametrize(("value", "message"), [
    ("gpu", r"'gpu' is not a device: expected auto, cpu, cuda or cuda:N"),
    ("cuda:", r"'cuda:' is not a device"),
    ("cuda:x", r"'cuda:x' is not a device"),
    ("cuda", r"cuda was asked for, but torch.cuda.is_available\(\) is False: .*Available: cpu"),
    ("cuda:0", r"cuda:0 was asked for, but torch.cuda.is_available\(\) is False"),
])
def test_resolve_device_refuses_by_name(no_cuda, value, message):
    from cli._options import resolve_device

    with pytest.raises(ValueError, match=message):
        resolve_device(value)


def test_resolve_device_refuses_a_gpu_the_machine_lacks(two_gpus):
    from cli._options import resolve_device

    with pytest.raises(ValueError, match=r"cuda:2 does not exist: this machine has 2 CUDA "
                                         r"devices, cuda:0 \.\. cuda:1"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("args", [
    ("probe", "--checkpoint", "x.pt", "--tol", "nan"),
    ("landscape", "--checkpoint", "x.pt", "--tol", "nan"),
    ("plot", "density", "x.h5", "--sigma", "nan"),
    ("plot", "density", "x.h5", "--sigma", "inf"),
])
def test_nan_and_inf_are_refused_by_the_option_types(args):
    """click's FloatRange lets nan through (it fails no comparison) and inf through an
    unbounded side: FiniteFloatRange refuses both, naming the option."""
    r = invoke(*args, ok=False)
    assert r.exit_code == 2 and "is not a finite number" in r.stderr, r.stderr
    assert f"'{args[-2]}'" in r.stderr
