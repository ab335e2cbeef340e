"""stability_threshold: the formulas per optimizer, checked against the divergence of
the optimizer itself on a one-dimensional quadratic f(w) = lambda w^2 / 2."""

from __future__ import annotations

import math

import pytest
import torch

from spectra.curvature.stability import KINDS, StabilityThreshold, stability_threshold


def _param() -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.ones(1, dtype=torch.float64))


def _final(make, lam: float, steps: int = 3000) -> float:
    """|w| after ``steps`` steps of the optimizer ``make(params)`` on lam w^2 / 2."""
    w = _param()
    opt = make([w])
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * lam * w.pow(2).sum()).backward()
        opt.step()
        if float(w.detach().abs()) > 1e6:  # diverged; stop before it overflows
            break
    return float(w.detach().abs())


SGD_CASES = [
    ("2/lr", lambda p: torch.optim.SGD(p, lr=0.1), 2 / 0.1),
    ("(2+2b)/lr", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), 3.8 / 0.1),
    ("(2+2b)/((1-d)lr)", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.5), 3.8 / 0.05),
    ("(2+2b)/((1+2b)lr)", lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True), 3.8 / 0.28),
]


@pytest.mark.parametrize(("kind", "make", "expected"), SGD_CASES, ids=[c[0] for c in SGD_CASES])
def test_sgd_threshold_is_where_sgd_diverges(kind, make, expected):
    t = stability_threshold(make([_param()]))
    assert isinstance(t, StabilityThreshold)
    assert t.kind == kind and not t.preconditioned and t.lr == 0.1
    assert t.value == pytest.approx(expected, rel=1e-12)
    # the optimizer itself: contracts 2 % below the threshold, blows up 2 % above
    assert _final(make, 0.98 * t.value) < 1e-3
    assert _final(make, 1.02 * t.value) > 1e3


def test_adam_threshold_is_ema_heavy_ball():
    """Adam with a frozen preconditioner is EMA momentum, i.e. SGD with dampening beta1:
    the same threshold as the dampened-SGD row (checked by simulation above)."""
    t = stability_threshold(torch.optim.Adam([_param()], lr=1e-3))
    assert t.kind == "(2+2b1)/((1-b1)lr)" and t.preconditioned
    assert t.value == pytest.approx(38 / 1e-3, rel=1e-12)
    assert t.beta == 0.9 and t.lr == 1e-3
    ema = stability_threshold(torch.optim.SGD([_param()], lr=1e-3, momentum=0.9, dampening=0.9))
    assert ema.value == pytest.approx(t.value, rel=1e-12)
    assert _final(lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, dampening=0.9), 0.98 * t.value) < 1e-3
    assert _final(lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, dampening=0.9), 1.02 * t.value) > 1e3


def test_adamw_and_betas():
    t = stability_threshold(torch.optim.AdamW([_param()], lr=0.01, betas=(0.5, 0.99), weight_decay=0.1))
    assert t.preconditioned and t.kind == "(2+2b1)/((1-b1)lr)"
    assert t.value == pytest.approx(3.0 / 0.5 / 0.01, rel=1e-12)


def test_rmsprop():
    t = stability_threshold(torch.optim.RMSprop([_param()], lr=0.01))
    assert (t.kind, t.preconditioned, t.beta) == ("2/lr", True, 0.0)
    assert t.value == pytest.approx(200.0, rel=1e-12)
    t = stability_threshold(torch.optim.RMSprop([_param()], lr=0.01, momentum=0.5))
    assert (t.kind, t.preconditioned) == ("(2+2b)/lr", True)
    assert t.value == pytest.approx(300.0, rel=1e-12)


def test_current_lr_after_scheduler():
    opt = torch.optim.SGD([_param()], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step()
    sched.step()
    assert stability_threshold(opt).value == pytest.approx(2 / 0.05, rel=1e-12)


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.NAdam(p), lambda p: torch.optim.RAdam(p), lambda p: torch.optim.Adagrad(p),
    lambda p: torch.optim.LBFGS(p), lambda p: torch.optim.SGD(p, lr=0.0),
])
def test_none_without_theory(make):
    assert stability_threshold(make([_param()])) is None


def test_groups_that_disagree_have_no_threshold():
    a, b = _param(), _param()
    opt = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.2}], lr=0.1)
    assert stability_threshold(opt) is None
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1, momentum=0.9)
    assert stability_threshold(opt).kind == "(2+2b)/lr"


def test_duck_typed_optimizer_method():
    own = StabilityThreshold(5.0, "2/lr", False, 0.4)

    class Own:
        def stability_threshold(self):
            return own

    class Bad:
        def stability_threshold(self):
            return 5.0

    assert stability_threshold(Own()) is own
    with pytest.raises(TypeError, match="stability_threshold"):
        stability_threshold(Bad())
    with pytest.raises(TypeError, match="optimizer"):
        stability_threshold(object())


def test_dataclass_checks():
    with pytest.raises(ValueError, match="kind"):
        StabilityThreshold(1.0, "3/lr", False, 1.0)
    with pytest.raises(ValueError, match="value"):
        StabilityThreshold(math.nan, "2/lr", False, 1.0)
    assert set(KINDS) >= {"2/lr", "(2+2b)/lr", "(2+2b1)/((1-b1)lr)"}
    assert StabilityThreshold(2.0, "2/lr", False, 1.0).to_dict()["kind"] == "2/lr"
