"""Lion against a hand computation and an independent numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import optim
from optim import Lion

from .problems import DEVICES, LeastSquares, complex_and_real_view_trajectories, reference_gradients


def _t(values, device="cpu"):
    return torch.tensor(values, dtype=torch.float64, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_two_steps_match_hand_computation(device):
    # lr 0.1, betas (0.9, 0.99), weight decay 0.5 (so that the decay is visible).
    theta = torch.nn.Parameter(_t([1.0, -2.0, 0.5], device))
    opt = Lion([theta], lr=0.1, weight_decay=0.5)
    # Step 1, g = (0.3, -5, 0): u = sign(0.1 g) = (1, -1, 0),
    #   theta = 0.95 theta - 0.1 u = (0.85, -1.8, 0.475),  m = 0.01 g = (0.003, -0.05, 0).
    theta.grad = _t([0.3, -5.0, 0.0], device)
    opt.step()
    torch.testing.assert_close(theta.detach().cpu(), _t([0.85, -1.8, 0.475]))
    torch.testing.assert_close(opt.state[theta]["exp_avg"].cpu(), _t([0.003, -0.05, 0.0]))
    # Step 2, g = (-1, 0.02, 0): 0.9 m + 0.1 g = (-0.0973, -0.043, 0), so u = (-1, -1, 0)
    #   (the second coordinate follows the momentum, not g),
    #   theta = 0.95 (0.85, -1.8, 0.475) + 0.1 (1, 1, 0) = (0.9075, -1.61, 0.45125),
    #   m = 0.99 m + 0.01 g = (-0.00703, -0.0493, 0).
    theta.grad = _t([-1.0, 0.02, 0.0], device)
    opt.step()
    torch.testing.assert_close(theta.detach().cpu(), _t([0.9075, -1.61, 0.45125]))
    torch.testing.assert_close(opt.state[theta]["exp_avg"].cpu(), _t([-0.00703, -0.0493, 0.0]))


def _reference_lion(params, problem, steps, lr, beta1, beta2, wd):
    """Plain numpy Lion (Chen et al. 2023, Algorithm 2)."""
    params = [x.copy() for x in params]
    m = [np.zeros_like(x) for x in params]
    for _ in range(steps):
        grads = reference_gradients(params, problem)
        for i, g in enumerate(grads):
            u = np.sign(beta1 * m[i] + (1 - beta1) * g)
            params[i] = params[i] * (1 - lr * wd) - lr * u
            m[i] = beta2 * m[i] + (1 - beta2) * g
    return params


@pytest.mark.parametrize("device", DEVICES)
def test_several_steps_match_reference(device):
    problem = LeastSquares(seed=9, device=device)
    params = problem.params()
    opt = Lion(params, lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)
    for _ in range(25):
        opt.step(problem.closure(params))
    expected = _reference_lion([t.cpu().numpy() for t in problem.init], problem, 25,
                               lr=0.01, beta1=0.8, beta2=0.95, wd=0.1)
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p.detach().cpu().numpy(), e, atol=1e-6, rtol=0)


def test_defaults_match_the_paper():
    opt = Lion([torch.nn.Parameter(torch.zeros(1))])
    assert opt.defaults == {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0}


def test_registry_lion_keeps_the_betas_and_raises_the_lr():
    # betas (0.9, 0.99): Chen et al. and LPSGD's Table 6 (its CIFAR Tables 4-5 use 0.999);
    # lr: the registry's tuned default (analyses/results/default_lrs.md), above the class's
    # 1e-4 so that a default digits run learns (README, "Optimizers").
    opt = optim.create("lion", [torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(opt, Lion)
    assert opt.defaults == {"lr": optim.registry.TUNED_LR["lion"], "betas": (0.9, 0.99),
                            "weight_decay": 0.0}
    assert opt.defaults["lr"] > Lion([torch.nn.Parameter(torch.zeros(1))]).defaults["lr"]


def test_a_complex_parameter_steps_as_its_real_view():
    # torch's Adam convention: each of the real and imaginary parts takes its own sign
    # step (torch.sign is undefined on complex numbers).
    complex_end, real_end = complex_and_real_view_trajectories(
        lambda ps: Lion(ps, lr=0.01, weight_decay=0.1))
    torch.testing.assert_close(complex_end, real_end, rtol=0, atol=0)
