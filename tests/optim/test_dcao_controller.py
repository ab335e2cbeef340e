import math

import pytest

from optim.dcao_controller import DCAOController, Multipliers


def test_exactly_one_during_warmup_then_reference_is_the_median():
    c = DCAOController(warmup=3, ema=0.0)
    for rho in (2.0, 8.0, 4.0):
        assert c.update(rho, 0.5 * rho) == Multipliers()
    assert c.rho_ref == 4.0 and math.isclose(c.rel_gap_ref, 0.5)
    m = c.update(4.0, 2.0)  # at the reference: all 1
    assert math.isclose(m.lr, 1.0) and math.isclose(m.momentum, 1.0) and math.isclose(m.weight_decay, 1.0)


def test_equations_by_hand():
    c = DCAOController(warmup=1, ema=0.0)
    c.update(2.0, 1.0)  # rho_ref = 2, r_ref = 0.5
    m = c.update(3.0, 0.6)  # ratio 1.5, r = 0.2
    assert math.isclose(m.lr, math.exp(-math.log(2) * 0.5))
    assert math.isclose(m.momentum, max(0.5, 1 + math.tanh(2 * (0.2 - 0.5))))
    assert math.isclose(m.weight_decay, (1 + 1.5) / 2)
    assert math.isclose(c.momentum(0.9), min(1 - 0.1 / m.momentum, 0.99))


def test_reference_frozen_after_warmup():
    c = DCAOController(warmup=2)
    c.update(1.0, 0.5)
    c.update(3.0, 1.0)
    ref = c.rho_ref
    for rho in (10.0, 20.0, 0.1, 50.0):
        c.update(rho, rho / 2)
        assert c.rho_ref == ref


@pytest.mark.parametrize("rho", [1e-6, 0.01, 1.0, 5.0, 100.0, 1e6])
@pytest.mark.parametrize("rel", [1e-9, 0.1, 1.0])
def test_clipped_and_momentum_below_one(rho, rel):
    c = DCAOController(warmup=1, ema=0.0)
    c.update(1.0, 0.5)
    m = c.update(rho, rel * rho)
    for x in (m.lr, m.momentum, m.weight_decay):
        assert 0.5 <= x <= 2.0
    for base in (0.0, 0.5, 0.9, 0.99, 0.999):
        assert c.momentum(base) < 1.0
        assert c.momentum(base) <= max(0.99, base) or base == 0.0


def test_large_rho_halves_the_learning_rate():
    c = DCAOController(warmup=1, ema=0.0)
    c.update(1.0, 0.5)
    assert c.update(2.0, 1.0).lr == pytest.approx(0.5)
    assert c.update(100.0, 50.0).lr == 0.5  # clipped


def test_failures_keep_then_reset():
    c = DCAOController(warmup=1, ema=0.0, max_failures=3)
    c.update(1.0, 0.5)
    m = c.update(1.8, 0.9)
    assert m.lr < 1
    assert c.update(float("nan"), 0.1) == m
    assert c.update(-1.0, 0.1) == m
    assert c.update(None, None, ok=False) == Multipliers()  # third failure in a row
    assert c.failures == 3
    c.update(1.8, 0.9)
    assert c.failures == 0


def test_failures_do_not_count_toward_warmup():
    c = DCAOController(warmup=2)
    c.update(float("inf"), 1.0)
    c.update(1.0, 0.5)
    assert c.in_warmup


def test_ema_in_log_space():
    c = DCAOController(warmup=1, ema=0.5)
    c.update(1.0, 0.5)
    c.update(4.0, 2.0)
    assert math.isclose(math.exp(c.log_rho), 2.0)  # geometric mean of 1 and 4


def test_stability_cap():
    c = DCAOController(warmup=1)
    c.update(10.0, 5.0, stability_threshold=3.8)
    assert c.rho_ref == 3.8


def test_state_round_trip():
    a = DCAOController(warmup=2)
    for rho in (1.0, 2.0, 3.0):
        a.update(rho, rho / 3)
    b = DCAOController(warmup=2)
    b.load_state_dict(a.state_dict())
    for rho in (5.0, 0.5, float("nan"), 2.0):
        assert a.update(rho, 0.3) == b.update(rho, 0.3)
    assert a.state_dict() == b.state_dict()


@pytest.mark.parametrize(
    "kw, name",
    [({"warmup": 0}, "warmup"), ({"ema": 1.0}, "ema"), ({"clip": (2.0, 3.0)}, "clip"),
     ({"max_momentum": 1.0}, "max_momentum"), ({"lr_gain": -1.0}, "lr_gain"),
     ({"max_failures": 0}, "max_failures")],
)
def test_bad_settings(kw, name):
    with pytest.raises(ValueError, match=name):
        DCAOController(**kw)
