"""LPSGD, LPSGDM and PNormScheduler against hand computations and a numpy reference."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

import optim
import optim.lpsgd
from optim import LPSGD, LPSGDM, PNormScheduler
from optim.lpsgd import lp_map

from .problems import DEVICES, LeastSquares, complex_and_real_view_trajectories, reference_gradients


def _t(values, device="cpu"):
    return torch.tensor(values, dtype=torch.float64, device=device)


@pytest.mark.parametrize(
    ("p", "u", "expected"),
    [
        # p = 2: r = 0, T_2 = identity (plain SGD).
        (2.0, [4.0, -0.25, 0.0], [4.0, -0.25, 0.0]),
        # p = 3: r = 1/2, T(u) = u / sqrt(|u|): 4 / 2 = 2, -0.25 / 0.5 = -0.5.
        (3.0, [4.0, -0.25, 0.0], [2.0, -0.5, 0.0]),
        # p = 6: r = 4/5, T(u) = sign(u) |u|^(1/5): 32 -> 2, -1/32 -> -0.5.
        (6.0, [32.0, -1 / 32, 0.0], [2.0, -0.5, 0.0]),
        # p = inf: r = 1, T(u) = u / |u| = sign(u).
        (math.inf, [4.0, -0.25, 0.0], [1.0, -1.0, 0.0]),
    ],
)
def test_lp_map_by_hand(p, u, expected):
    torch.testing.assert_close(lp_map(_t(u), p, eps=1e-12), _t(expected), atol=1e-10, rtol=0)


def test_lp_map_p2_is_exactly_the_identity():
    u = torch.randn(50, dtype=torch.float64)
    assert torch.equal(lp_map(u, 2.0, eps=1e-8), u)


@pytest.mark.parametrize("device", DEVICES)
def test_lpsgd_one_step_by_hand(device):
    # p = 3, lr = 0.1: theta - 0.1 * (2, -0.5, 0) for g = (4, -0.25, 0); no decay, no momentum.
    theta = torch.nn.Parameter(_t([1.0, 1.0, 1.0], device))
    theta.grad = _t([4.0, -0.25, 0.0], device)
    opt = LPSGD([theta], lr=0.1, p=3.0)
    opt.step()
    torch.testing.assert_close(theta.detach().cpu(), _t([0.8, 1.05, 1.0]), atol=1e-8, rtol=0)
    assert opt.state[theta] == {}  # beta = 0: no momentum buffer


@pytest.mark.parametrize("device", DEVICES)
def test_lpsgdm_two_steps_by_hand(device):
    # p = 3, lr = 0.1, beta = 0.9, wd = 0.01.
    theta = torch.nn.Parameter(_t([1.0, 1.0], device))
    opt = LPSGDM([theta], lr=0.1, p=3.0)
    # Step 1, g = (40, -2.5): m = 0.1 g = (4, -0.25), T(m) = (2, -0.5),
    #   theta = (1 - 0.1 * 0.01) * 1 - 0.1 * (2, -0.5) = (0.799, 1.049).
    theta.grad = _t([40.0, -2.5], device)
    opt.step()
    torch.testing.assert_close(theta.detach().cpu(), _t([0.799, 1.049]), atol=1e-8, rtol=0)
    # Step 2, g = (-4, 2.5): m = 0.9 (4, -0.25) + 0.1 (-4, 2.5) = (3.2, 0.025),
    #   T(m) = (3.2 / sqrt(3.2 + 1e-8), 0.025 / sqrt(0.025 + 1e-8)) = (1.788854379, 0.158113851),
    #   theta = 0.999 * (0.799, 1.049) - 0.1 * T(m) = (0.619315562, 1.032139615).
    theta.grad = _t([-4.0, 2.5], device)
    opt.step()
    torch.testing.assert_close(theta.detach().cpu(), _t([0.619315562, 1.032139615]),
                               atol=1e-8, rtol=0)
    torch.testing.assert_close(opt.state[theta]["momentum_buffer"].cpu(), _t([3.2, 0.025]))


@pytest.mark.parametrize("device", DEVICES)
def test_lpsgdm_heavy_ball_two_steps_by_hand(device):
    # p = 3, lr = 0.1, beta = 0.9, wd = 0.01; heavy-ball: m = beta m + g (no 1 - beta).
    theta = torch.nn.Parameter(_t([1.0, 1.0], device))
    opt = LPSGDM([theta], lr=0.1, p=3.0, momentum_form="heavy-ball")
    # Step 1, g = (4, -0.25): m = g, T(m) = (4 / 2, -0.25 / 0.5) = (2, -0.5),
    #   theta = 0.999 * (1, 1) - 0.1 * (2, -0.5) = (0.799, 1.049).
    theta.grad = _t([4.0, -0.25], device)
    opt.step()
    torch.testing.assert_close(theta.detach().cpu(), _t([0.799, 1.049]), atol=1e-8, rtol=0)
    # Step 2, g = (-3.2, 0.25): m = 0.9 (4, -0.25) + (-3.2, 0.25) = (0.4, 0.025),
    #   T(m) = (0.4 / sqrt(0.4), 0.025 / sqrt(0.025)) = (0.632455532, 0.158113883),
    #   theta = 0.999 * (0.799, 1.049) - 0.1 * T(m) = (0.734955448, 1.032139615).
    theta.grad = _t([-3.2, 0.25], device)
    opt.step()
    torch.testing.assert_close(opt.state[theta]["momentum_buffer"].cpu(), _t([0.4, 0.025]))
    torch.testing.assert_close(theta.detach().cpu(), _t([0.734955448, 1.032139615]),
                               atol=1e-8, rtol=0)


@pytest.mark.parametrize("p", [2.0, 3.0, 6.0])
def test_heavy_ball_lr_transfers_to_ema(p):
    # From m = 0, m_hb = m_ema / (1 - beta) and T_p(c u) = c^(1/(p-1)) T_p(u) (eps / c), so
    # heavy-ball at (lr, wd, eps) equals ema at (lr (1 - beta)^(-1/(p-1)), lr wd / lr_ema,
    # (1 - beta) eps). At p = 2 the factor is 1 / (1 - beta) = 10.
    beta, lr, wd, eps = 0.9, 0.01, 0.05, 1e-8
    lr_ema = lr * (1 - beta) ** (-1 / (p - 1))
    if p == 2.0:
        assert lr_ema == pytest.approx(10 * lr)
    problem = LeastSquares(seed=9)
    hb, ema = problem.params(), problem.params()
    opt_hb = LPSGDM(hb, lr=lr, p=p, beta=beta, weight_decay=wd, eps=eps,
                    momentum_form="heavy-ball")
    opt_ema = LPSGDM(ema, lr=lr_ema, p=p, beta=beta, weight_decay=lr * wd / lr_ema,
                     eps=(1 - beta) * eps, momentum_form="ema")
    for _ in range(10):
        opt_hb.step(problem.closure(hb))
        opt_ema.step(problem.closure(ema))
    for a, b in zip(hb, ema, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_momentum_form_is_checked():
    with pytest.raises(ValueError, match="Invalid momentum_form value: 'nesterov'"):
        LPSGDM([torch.nn.Parameter(torch.zeros(1))], momentum_form="nesterov")


def test_pnorm_schedule_by_hand():
    opt = LPSGDM([torch.nn.Parameter(torch.zeros(2))])
    sched = PNormScheduler(opt, p_max=6.0, total_epochs=5)
    # p_k = 2 + 4 (1 + cos(pi k / 4)) / 2 for k = 0..4, then 2.
    expected = [6.0, 2 + 2 * (1 + math.sqrt(0.5)), 4.0, 2 + 2 * (1 - math.sqrt(0.5)), 2.0, 2.0]
    seen = []
    for _ in expected:
        seen.append(opt.param_groups[0]["p"])
        sched.step()
    assert seen == pytest.approx(expected, abs=1e-12)
    assert sched.p_at(4) == 2.0  # exactly 2 at the last epoch
    assert sched.get_last_p() == [2.0]


@pytest.mark.parametrize("total_epochs", [1, 2, 3, 7, 200])
def test_pnorm_is_exactly_two_at_the_last_epoch(total_epochs):
    opt = LPSGD([torch.nn.Parameter(torch.zeros(1))])
    sched = PNormScheduler(opt, p_max=8.0, total_epochs=total_epochs)
    for _ in range(total_epochs - 1):
        sched.step()
    assert opt.param_groups[0]["p"] == 2.0
    if total_epochs > 1:
        assert sched.p_at(0) == 8.0


def test_pnorm_scheduler_state_dict_round_trip():
    opt = LPSGDM([torch.nn.Parameter(torch.zeros(1))])
    sched = PNormScheduler(opt, p_max=6.0, total_epochs=10)
    for _ in range(3):
        sched.step()
    state = sched.state_dict()
    assert state == {"p_max": 6.0, "total_epochs": 10, "last_epoch": 3}

    fresh_opt = LPSGDM([torch.nn.Parameter(torch.zeros(1))])
    fresh = PNormScheduler(fresh_opt, p_max=9.0, total_epochs=2)
    fresh.load_state_dict(state)
    assert fresh_opt.param_groups[0]["p"] == opt.param_groups[0]["p"]
    for _ in range(8):
        sched.step()
        fresh.step()
        assert fresh.get_last_p() == sched.get_last_p()


def test_pnorm_scheduler_bad_arguments():
    opt = LPSGD([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(TypeError, match="'p' entry"):
        PNormScheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))]), 6.0, 10)
    with pytest.raises(ValueError, match="Invalid p_max value: 1.5"):
        PNormScheduler(opt, 1.5, 10)
    with pytest.raises(ValueError, match="Invalid p_max value: inf"):
        PNormScheduler(opt, math.inf, 10)
    with pytest.raises(ValueError, match="Invalid total_epochs value: 0"):
        PNormScheduler(opt, 6.0, 0)
    with pytest.raises(ValueError, match="Invalid total_epochs value: 2.5"):
        PNormScheduler(opt, 6.0, 2.5)


def _reference_lpsgdm(params, problem, epochs, steps_per_epoch, lr, p_max, beta, wd, eps,
                      form="ema"):
    """Plain numpy LPSGDM with the cosine p schedule, written from ALGORITHMS.md."""
    params = [x.copy() for x in params]
    m = [np.zeros_like(x) for x in params]
    for k in range(epochs):
        p = 2 + (p_max - 2) * (1 + np.cos(np.pi * k / (epochs - 1))) / 2
        r = (p - 2) / (p - 1)
        for _ in range(steps_per_epoch):
            grads = reference_gradients(params, problem)
            for i, g in enumerate(grads):
                m[i] = beta * m[i] + ((1 - beta) if form == "ema" else 1.0) * g
                direction = m[i] * (np.abs(m[i]) + eps) ** (-r)
                params[i] = (1 - lr * wd) * params[i] - lr * direction
    return params


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("beta", "wd", "form"),
                         [(0.0, 0.0, "ema"), (0.8, 0.05, "ema"), (0.8, 0.05, "heavy-ball")])
def test_several_epochs_match_reference(device, beta, wd, form):
    problem = LeastSquares(seed=8, device=device)
    params = problem.params()
    opt = LPSGD(params, lr=0.02, p=5.0, beta=beta, weight_decay=wd, eps=1e-6,
                momentum_form=form)
    sched = PNormScheduler(opt, p_max=5.0, total_epochs=4)
    for _ in range(4):
        for _ in range(6):
            opt.step(problem.closure(params))
        sched.step()
    expected = _reference_lpsgdm([t.cpu().numpy() for t in problem.init], problem, 4, 6,
                                 lr=0.02, p_max=5.0, beta=beta, wd=wd, eps=1e-6, form=form)
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p.detach().cpu().numpy(), e, atol=1e-6, rtol=0)


def test_lpsgdm_defaults_match_the_paper():
    opt = LPSGDM([torch.nn.Parameter(torch.zeros(1))])
    # Table 4, ResNet-18 on CIFAR-10; the momentum form is ours (see optim.lpsgd).
    assert opt.defaults == {"lr": 1e-3, "p": 6.0, "beta": 0.9, "weight_decay": 1e-2, "eps": 1e-8,
                            "momentum_form": "ema"}
    assert isinstance(opt, LPSGD)


def test_docstring_examples():
    result = doctest.testmod(optim.lpsgd)
    assert result.attempted > 0 and result.failed == 0


def test_registry_lr_is_tuned_the_rest_table_4s():
    # The classes keep Table 4's ResNet-18 / CIFAR-10 row (lr 1e-3); the registry names take
    # the lr tuned for a default digits run (analyses/results/default_lrs.md; README,
    # "Optimizers"); everything else stays Table 4's.
    params = [torch.nn.Parameter(torch.zeros(1))]
    lpsgd, lpsgdm = optim.create("lpsgd", params), optim.create("lpsgdm", params)
    assert type(lpsgd) is LPSGD and type(lpsgdm) is LPSGDM
    tuned = optim.registry.TUNED_LR
    assert lpsgd.defaults == {"lr": tuned["lpsgd"], "p": 6.0, "beta": 0.0, "weight_decay": 0.0,
                              "eps": 1e-8, "momentum_form": "ema"}
    assert lpsgdm.defaults == {"lr": tuned["lpsgdm"], "p": 6.0, "beta": 0.9,
                               "weight_decay": 1e-2, "eps": 1e-8, "momentum_form": "ema"}


def test_current_hparams_follow_the_p_schedule():
    p = torch.nn.Parameter(torch.ones(3))
    opt = LPSGD([p], lr=0.05, p=6.0, beta=0.5, weight_decay=0.01)
    sched = PNormScheduler(opt, p_max=6.0, total_epochs=4)
    seen = []
    for _ in range(4):
        seen.append(opt.current_hparams()["p"])
        sched.step()
    assert seen[0] == 6.0 and seen == sorted(seen, reverse=True) and seen[-1] < 6.0
    hp = opt.current_hparams()
    assert hp["lr"] == 0.05 and hp["momentum"] == 0.5 and hp["weight_decay"] == 0.01


@pytest.mark.parametrize(("cls", "kw"), [
    (LPSGD, {"p": 4.0}),
    (LPSGD, {"p": math.inf}),
    (LPSGDM, {"p": 6.0}),
    (LPSGDM, {"p": 3.0, "momentum_form": "heavy-ball"}),
])
def test_a_complex_parameter_steps_as_its_real_view(cls, kw):
    # torch's Adam convention: T_p maps the real and imaginary parts as two coordinates
    # (not the modulus as one, which at p = inf stepped 1 + 0.01j by (0.1, 0.001)).
    complex_end, real_end = complex_and_real_view_trajectories(lambda ps: cls(ps, lr=0.01, **kw))
    torch.testing.assert_close(complex_end, real_end, rtol=0, atol=0)


@pytest.mark.parametrize("cls", [LPSGD, LPSGDM])
def test_a_state_dict_from_before_momentum_form_loads_as_ema(cls):
    # Param groups saved before the momentum_form key existed (commit 6e2f2bd added it)
    # stepped with the EMA buffer m = beta m + (1 - beta) g.
    def run(drop_key):
        p = torch.nn.Parameter(_t([1.0, -2.0]))
        opt = cls([p], lr=0.1, beta=0.5)
        p.grad = _t([1.0, 0.5])
        opt.step()
        sd = opt.state_dict()
        if drop_key:
            for group in sd["param_groups"]:
                del group["momentum_form"]
        q = torch.nn.Parameter(p.detach().clone())
        fresh = cls([q], lr=0.1, beta=0.5, momentum_form="heavy-ball")
        fresh.load_state_dict(sd)
        q.grad = _t([-0.5, 2.0])
        fresh.step()
        return fresh.param_groups[0]["momentum_form"], q.detach()

    form, old = run(drop_key=True)
    assert form == "ema"
    torch.testing.assert_close(old, run(drop_key=False)[1], rtol=0, atol=0)
