import math

import numpy as np
import pytest

from optim.dcao_controller import DCAOController, Multipliers


def test_one_until_the_reference_then_the_median_of_the_warmup():
    c = DCAOController(warmup_probes=3)
    assert c.update(2.0, 1.0) == Multipliers()
    assert c.update(8.0, 4.0) == Multipliers()
    assert c.in_warmup
    m = c.update(4.0, 2.0)  # the third probe sets rho_ref = 4, gamma_ref = 2 and adapts
    assert c.rho_ref == 4.0 and c.gamma_ref == 2.0 and not c.in_warmup
    assert m.lr == pytest.approx(1.0) and m.momentum == pytest.approx(1.0)
    assert m.weight_decay == pytest.approx(1.5)  # h(rho_ref) = 1 + lambda1, as written


def test_sec_2_3_by_hand():
    c = DCAOController(rho_ref=2.0, gamma_ref=0.5, alpha=0.3, beta1=0.8, lambda1=0.2)
    m = c.update(3.0, 1.2)  # no warm-up needed: both references given
    assert m.lr == pytest.approx(math.exp(-0.3 * (3.0 - 2.0)))
    assert m.momentum == pytest.approx(1 + math.tanh(0.8 * (1.2 - 0.5)))
    assert m.weight_decay == pytest.approx(1 + 0.2 * 3.0 / 2.0)
    assert c.momentum(0.4) == pytest.approx(0.4 * m.momentum)


def test_linear_mapping_by_hand():
    c = DCAOController(rho_ref=2.0, gamma_ref=0.5, alpha=0.3, beta1=0.8, mapping="linear")
    m = c.update(3.0, 0.75)
    assert m.lr == pytest.approx(1 - 0.3 * 1.0)
    assert m.momentum == pytest.approx(1 + 0.8 * 0.25)
    assert m.weight_decay == pytest.approx(1 + 0.5 * 1.5)


def test_default_sensitivities_scale_with_rho_ref():
    c = DCAOController(rho_ref=10.0, gamma_ref=1.0)
    assert c.update(20.0, 1.0).lr == pytest.approx(0.5)  # alpha = ln 2 / rho_ref
    assert c.update(5.0, 1.0).lr == pytest.approx(2 ** 0.5)
    assert c.update(10.0, 6.0).momentum == pytest.approx(1 + math.tanh(1.0))  # beta1 = 2 / rho_ref


@pytest.mark.parametrize("mapping", ["exponential", "linear"])
@pytest.mark.parametrize("rho", [1e-6, 0.01, 1.0, 5.0, 100.0, 1e6])
@pytest.mark.parametrize("gap", [0.0, 0.1, 1e3])
def test_every_multiplier_clamped(mapping, rho, gap):
    c = DCAOController(rho_ref=1.0, gamma_ref=0.5, mapping=mapping)
    m = c.update(rho, gap)
    for x in (m.lr, m.momentum, m.weight_decay):
        assert 0.5 <= x <= 2.0


@pytest.mark.parametrize("base", [0.0, 0.5, 0.9, 0.99, 0.995])
def test_momentum_never_reaches_one(base):
    # beta_0 g with g = 2 would be 1.8 for beta_0 = 0.9: heavy ball with beta >= 1 diverges
    c = DCAOController(rho_ref=1.0, gamma_ref=0.0)
    assert c.update(1.0, 100.0).momentum == 2.0
    assert c.momentum(base) == pytest.approx(min(2 * base, max(0.99, base)))
    assert c.momentum(base) < 1.0
    c.update(1.0, 0.0)  # g = 1: the base momentum, even above max_momentum
    assert c.momentum(base) == pytest.approx(base)


def test_eos_reference_is_the_threshold_given_at_each_probe():
    c = DCAOController(rho_ref="eos", gamma_ref=0.0)
    assert c.update(38.0, 0.0, stability_threshold=76.0).lr == pytest.approx(2 ** 0.5)
    assert c.rho_ref == 76.0
    c.update(38.0, 0.0, stability_threshold=38.0)  # a schedule halved the learning rate
    assert c.rho_ref == 38.0 and c.multipliers.lr == pytest.approx(1.0)
    with pytest.raises(ValueError, match="stability_threshold"):
        DCAOController(rho_ref="eos").update(1.0, 0.5)


@pytest.mark.parametrize("switch, held", [("adapt_lr", "lr"), ("adapt_momentum", "momentum"),
                                          ("adapt_weight_decay", "weight_decay")])
def test_ablation_switches_hold_one_multiplier(switch, held):
    c = DCAOController(rho_ref=1.0, gamma_ref=0.0, **{switch: False})
    m = c.update(1.5, 0.5)
    for name in ("lr", "momentum", "weight_decay"):
        assert (getattr(m, name) == 1.0) == (name == held), name


def test_sharpening_lowers_lr_and_raises_weight_decay_flattening_the_reverse():
    c = DCAOController(warmup_probes=1)
    c.update(1.0, 0.1)
    sharp = [c.update(rho, 0.1) for rho in (1.2, 1.5, 1.9)]
    assert [m.lr for m in sharp] == sorted((m.lr for m in sharp), reverse=True)
    assert all(m.lr < 1 and m.weight_decay > 1.5 for m in sharp)
    flat = [c.update(rho, 0.1) for rho in (0.8, 0.5, 0.2)]
    assert [m.lr for m in flat] == sorted(m.lr for m in flat)
    assert all(m.lr > 1 and m.weight_decay < 1.5 for m in flat)


def test_a_wider_gap_raises_momentum_a_narrower_lowers_it():
    c = DCAOController(warmup_probes=1)
    c.update(1.0, 0.2)
    assert c.update(1.0, 0.5).momentum > 1.0
    assert c.update(1.0, 0.05).momentum < 1.0


def test_failures_keep_then_reset():
    c = DCAOController(max_failures=3)
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
    c = DCAOController(warmup_probes=2)
    c.update(float("inf"), 1.0)
    c.update(1.0, 0.5)
    assert c.in_warmup


def test_reference_frozen_after_warmup():
    c = DCAOController(warmup_probes=2)
    c.update(1.0, 0.5)
    c.update(3.0, 1.0)
    for rho in (10.0, 20.0, 0.1, 50.0):
        c.update(rho, rho / 2)
        assert c.rho_ref == 2.0 and c.gamma_ref == 0.75


def test_ema():
    c = DCAOController(rho_ref=1.0, gamma_ref=0.0, ema=0.5)
    c.update(1.0, 0.5)
    c.update(3.0, 1.5)
    assert c.rho == pytest.approx(2.0) and c.gap == pytest.approx(1.0)


def test_state_round_trip():
    a = DCAOController(warmup_probes=2)
    for rho in (1.0, 2.0, 3.0):
        a.update(rho, rho / 3)
    b = DCAOController(warmup_probes=2)
    b.load_state_dict(a.state_dict())
    for rho in (5.0, 0.5, float("nan"), 2.0):
        assert a.update(rho, 0.3) == b.update(rho, 0.3)
    assert a.state_dict() == b.state_dict()


@pytest.mark.parametrize(
    "kw, name",
    [({"warmup_probes": 0}, "warmup_probes"), ({"ema": 1.0}, "ema"), ({"clip": (2.0, 3.0)}, "clip"),
     ({"max_momentum": 1.0}, "max_momentum"), ({"alpha": -1.0}, "alpha"), ({"beta1": 0}, "beta1"),
     ({"lambda1": float("nan")}, "lambda1"), ({"rho_ref": 0.0}, "rho_ref"),
     ({"rho_ref": "median"}, "rho_ref"), ({"gamma_ref": "eos"}, "gamma_ref"),
     ({"mapping": "cubic"}, "mapping"), ({"adapt_lr": 1}, "adapt_lr"),
     ({"max_failures": 0}, "max_failures")],
)
def test_bad_settings(kw, name):
    with pytest.raises(ValueError, match=f"Invalid {name} value"):
        DCAOController(**kw)


@pytest.mark.parametrize("kw", [{"max_failures": True}, {"max_failures": 2.0},
                                {"warmup_probes": True}, {"adapt_momentum": "no"}])
def test_bools_and_floats_are_not_integers_nor_strings_switches(kw):
    (name,) = kw
    with pytest.raises(ValueError, match=f"Invalid {name} value"):
        DCAOController(**kw)


def test_numpy_integers_are_integers():
    c = DCAOController(max_failures=np.int64(2), warmup_probes=np.int64(3))
    assert c.max_failures == 2 and type(c.max_failures) is int
    assert c.warmup_probes == 3 and type(c.warmup_probes) is int
