"""CALR against hand computations of Eq. 1-5 and an independent numpy reference."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

import optim.calr
from optim import CALR
from optim.calr import DEFAULT_CLIP

from .problems import DEVICES, LeastSquares, complex_and_real_view_trajectories, reference_gradients


def _param(values, device="cpu"):
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64, device=device))


@pytest.mark.parametrize("device", DEVICES)
def test_two_steps_match_hand_computation(device):
    # Defaults lr 0.01, alpha 0.1, betas (0.9, 0.999), delta 1e-8, eps 1e-8.
    p = _param([1.0, -1.0, 0.5], device)
    opt = CALR([p])

    # Step 1, g = (0.5, -2, 0): m_hat = g and v_hat = g^2, H = |g| + 1e-8.
    #   g = 0.5: denom = sqrt(0.25 + 0.1 * 0.50000001) + 1e-8 = 0.547722568418
    #            step  = 0.01 * 0.5 / 0.547722568418 = 0.009128709110
    #   g = -2:  denom = sqrt(4 + 0.1 * 2.00000001) + 1e-8 = 2.049390163436
    #            step  = 0.01 * -2 / 2.049390163436 = -0.009759000681
    #   g = 0:   m_hat = 0, no move.
    p.grad = torch.tensor([0.5, -2.0, 0.0], dtype=torch.float64, device=device)
    opt.step()
    expected_1 = [1.0 - 0.009128709110, -1.0 + 0.009759000681, 0.5]
    torch.testing.assert_close(p.detach().cpu(), torch.tensor(expected_1, dtype=torch.float64),
                               atol=1e-11, rtol=0)

    # Step 2, g = (-0.25, 1, 0), first two coordinates:
    #   m_2 = 0.9 * 0.05 + 0.1 * -0.25 = 0.02,      v_2 = 0.999 * 0.00025 + 0.001 * 0.0625 = 0.00031225
    #   m_hat = 0.02 / 0.19 = 0.105263157895,      v_hat = 0.00031225 / 0.001999 = 0.156203101551
    #   denom = sqrt(0.156203101551 + 0.1 * 0.25000001) + 1e-8 = 0.425679587324
    #   step  = 0.01 * 0.105263157895 / 0.425679587324 = 0.002472826065
    #   m_2 = 0.9 * -0.2 + 0.1 * 1 = -0.08,        v_2 = 0.999 * 0.004 + 0.001 * 1 = 0.004996
    #   m_hat = -0.08 / 0.19 = -0.421052631579,    v_hat = 0.004996 / 0.001999 = 2.499249624812
    #   denom = sqrt(2.499249624812 + 0.1 * 1.00000001) + 1e-8 = 1.612218861711
    #   step  = 0.01 * -0.421052631579 / 1.612218861711 = -0.002611634447
    #   Third coordinate: m stays 0, no move.
    p.grad = torch.tensor([-0.25, 1.0, 0.0], dtype=torch.float64, device=device)
    opt.step()
    expected_2 = [expected_1[0] - 0.002472826065, expected_1[1] + 0.002611634447, 0.5]
    torch.testing.assert_close(p.detach().cpu(), torch.tensor(expected_2, dtype=torch.float64),
                               atol=1e-11, rtol=0)
    assert opt.state[p]["step"] == 2


def test_clip_clamps_a_copy_of_the_gradient_before_m_v_and_h():
    p = _param([0.0, 0.0, 0.0])
    grad = torch.tensor([0.5, -2.0, 0.05], dtype=torch.float64)
    p.grad = grad.clone()
    opt = CALR([p], clip=DEFAULT_CLIP)
    opt.step()
    # Clipped g = (0.1, -0.1, 0.05); step 1 as above with the clipped g:
    #   g = +-0.1: 0.01 * 0.1 / (sqrt(0.01 + 0.1 * 0.10000001) + 1e-8) = 0.007071067135
    #   g = 0.05:  0.01 * 0.05 / (sqrt(0.0025 + 0.1 * 0.05000001) + 1e-8) = 0.005773501640
    expected = torch.tensor([-0.007071067135, 0.007071067135, -0.005773501640], dtype=torch.float64)
    torch.testing.assert_close(p.detach(), expected, atol=1e-11, rtol=0)
    torch.testing.assert_close(opt.state[p]["exp_avg"], 0.1 * torch.tensor([0.1, -0.1, 0.05],
                               dtype=torch.float64))
    assert torch.equal(p.grad, grad)  # the .grad tensor itself is not modified


def _reference_calr(params, grads_fn, steps, lr, alpha, beta1, beta2, delta, eps, clip):
    """Plain numpy CALR, written from ALGORITHMS.md independently of optim.calr."""
    params = [x.copy() for x in params]
    m = [np.zeros_like(x) for x in params]
    v = [np.zeros_like(x) for x in params]
    for t in range(1, steps + 1):
        grads = grads_fn(params)
        for i, g in enumerate(grads):
            if clip is not None:
                g = np.clip(g, -clip, clip)
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat = m[i] / (1 - beta1**t)
            v_hat = v[i] / (1 - beta2**t)
            H = np.abs(g) + delta
            params[i] = params[i] - lr * m_hat / (np.sqrt(v_hat + alpha * H) + eps)
    return params


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("clip", [None, 0.05])
def test_several_steps_match_reference(device, clip):
    problem = LeastSquares(seed=4, device=device)
    params = problem.params()
    opt = CALR(params, lr=0.05, alpha=0.3, betas=(0.8, 0.99), delta=1e-3, eps=1e-6, clip=clip)
    for _ in range(25):
        opt.step(problem.closure(params))
    expected = _reference_calr(
        [t.cpu().numpy() for t in problem.init], lambda ps: reference_gradients(ps, problem),
        25, lr=0.05, alpha=0.3, beta1=0.8, beta2=0.99, delta=1e-3, eps=1e-6, clip=clip,
    )
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p.detach().cpu().numpy(), e, atol=1e-6, rtol=0)


def test_param_group_overrides_apply_per_group():
    a, b = _param([0.0]), _param([0.0])
    opt = CALR([{"params": [a]}, {"params": [b], "lr": 0.1, "clip": 0.01}])
    a.grad = torch.tensor([1.0], dtype=torch.float64)
    b.grad = torch.tensor([1.0], dtype=torch.float64)
    opt.step()
    # a: 0.01 * 1 / (sqrt(1 + 0.1 * 1.00000001) + 1e-8); b: g clipped to 0.01, lr 0.1.
    assert math.isclose(a.item(), -0.01 / (math.sqrt(1.1 + 1e-9) + 1e-8), rel_tol=1e-12)
    assert math.isclose(b.item(), -0.1 * 0.01 / (math.sqrt(1e-4 + 0.1 * (0.01 + 1e-8)) + 1e-8),
                        rel_tol=1e-12)


def test_docstring_examples():
    result = doctest.testmod(optim.calr)
    assert result.attempted > 0 and result.failed == 0


def test_effective_lr_is_the_median_of_lr_over_the_denominator():
    p = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    opt = CALR([p], lr=0.01, alpha=0.1)
    assert math.isnan(opt.current_hparams()["effective_lr"])  # no step yet
    g = torch.tensor([0.5, -2.0, 1.0, 0.1, -0.3], dtype=torch.float64)
    p.grad = g.clone()
    opt.step()
    # first step: v_hat = g^2, H = |g| + delta, so d = sqrt(g^2 + 0.1 (|g| + 1e-8)) + 1e-8
    d = (g**2 + 0.1 * (g.abs() + 1e-8)).sqrt() + 1e-8
    expected = float((0.01 / d).median())
    hp = opt.current_hparams()
    assert hp["effective_lr"] == pytest.approx(expected, rel=1e-12)
    assert hp["lr"] == 0.01 and hp["momentum"] == 0.9


@pytest.mark.parametrize("clip", [None, 0.1])
def test_a_complex_parameter_steps_as_its_real_view(clip):
    # torch's Adam convention: real and imaginary parts are two real coordinates, so a
    # purely imaginary gradient does not move the real part (g * g is not the complex
    # square) and clip clamps each part (clamp is undefined on complex numbers).
    complex_end, real_end = complex_and_real_view_trajectories(lambda ps: CALR(ps, clip=clip))
    torch.testing.assert_close(complex_end, real_end, rtol=0, atol=0)
    p = torch.nn.Parameter(torch.tensor([1 + 1j], dtype=torch.complex64))
    opt = CALR([p])
    p.grad = torch.tensor([2j], dtype=torch.complex64)
    opt.step()
    assert p.real.item() == 1.0 and p.imag.item() < 1.0
    assert opt.preconditioner().shape == (2,) and not opt.preconditioner().is_complex()
    assert math.isfinite(opt.current_hparams()["effective_lr"])


def test_float16_moments_are_bias_corrected_in_float32():
    # |g| = 300: v_1 = 0.001 * 300^2 = 90 fits float16, but v_1 / (1 - 0.999) = 90000 does
    # not (65504): the denominator was inf and the coordinate never moved.
    steps = {}
    for dtype in (torch.float32, torch.float16):
        p = torch.nn.Parameter(torch.tensor([1.0, 1.0], dtype=dtype))
        opt = CALR([p], lr=0.01)
        for _ in range(3):
            p.grad = torch.tensor([300.0, 1.0], dtype=dtype)
            opt.step()
        steps[dtype] = (p.detach().float() - 1.0)
        assert torch.isfinite(opt.state[p]["denom"]).all()
    torch.testing.assert_close(steps[torch.float16], steps[torch.float32], atol=1e-3, rtol=0)
    assert (steps[torch.float16] < -0.02).all()


@pytest.mark.parametrize("kw", [{"alpha": 0.0}, {"delta": 0.0}, {"alpha": 0.0, "delta": 0.0}])
def test_eps_zero_needs_alpha_and_delta(kw):
    # A gradient entry that has been 0 so far has v_hat = 0 and H = delta: with eps = 0
    # and alpha = 0 or delta = 0 its denominator is 0 and its step 0 / 0 = NaN.
    with pytest.raises(ValueError, match="Invalid eps value: 0.0 .*NaN"):
        CALR([_param([1.0])], eps=0.0, **kw)
    opt = CALR([_param([1.0])], **kw)  # the default eps = 1e-8 keeps it finite
    with pytest.raises(ValueError, match="Invalid eps value"):
        opt.add_param_group({"params": [_param([1.0])], "eps": 0.0})
    p = _param([1.0, 1.0])
    opt = CALR([p], eps=0.0)  # alpha, delta > 0 keep the denominator above 0
    p.grad = torch.tensor([0.0, 1.0], dtype=torch.float64)
    opt.step()
    assert torch.isfinite(p).all() and p[0].item() == 1.0
