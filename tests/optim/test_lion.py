"""Lion against a hand computation and an independent numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optim import Lion

from .helpers import (
    DEVICES,
    LeastSquares,
    assert_closure_runs_with_grad,
    assert_honors_lr_scheduler,
    assert_lockstep_after_reload,
    assert_lowers_loss,
    assert_rejects_sparse,
    assert_skips_params_without_grad,
    assert_validates_param_groups,
    reference_gradients,
)


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


@pytest.mark.parametrize("device", DEVICES)
def test_state_dict_round_trip_continues_in_lockstep(device):
    assert_lockstep_after_reload(lambda ps: Lion(ps, lr=0.01, weight_decay=0.1), device=device)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": -1e-4}, "Invalid learning rate: -0.0001"),
        ({"betas": (1.5, 0.99)}, r"Invalid betas\[0\] value: 1.5"),
        ({"betas": (0.9, 1.0)}, r"Invalid betas\[1\] value: 1.0"),
        ({"betas": 0.9}, "Invalid betas value: 0.9"),
        ({"weight_decay": -1.0}, "Invalid weight_decay value: -1.0"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Lion([torch.nn.Parameter(torch.zeros(1))], **kwargs)


def test_bad_hyperparameter_in_a_param_group_raises():
    assert_validates_param_groups(Lion, "betas", (0.9, 2.0))


def test_defaults_match_the_paper():
    opt = Lion([torch.nn.Parameter(torch.zeros(1))])
    assert opt.defaults == {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0}


def test_lowers_least_squares_loss():
    assert_lowers_loss(lambda ps: Lion(ps, lr=0.01), factor=0.2)


def test_step_contract():
    assert_skips_params_without_grad(Lion)
    assert_rejects_sparse(Lion)
    assert_closure_runs_with_grad(Lion)
    assert_honors_lr_scheduler(Lion)
