"""SMARAN against hand computations of Algorithm 1 and an independent numpy reference."""

from __future__ import annotations

import doctest
import io
import warnings

import numpy as np
import pytest
import torch

import optim.smaran
from optim import SMARAN

from .problems import (
    DEVICES,
    LeastSquares,
    complex_and_real_view_trajectories,
    reference_gradients,
    reference_loss,
)


def _param(values, device="cpu"):
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64, device=device))


def _loss_sq_avg(opt: SMARAN, group: int = 0) -> torch.Tensor:
    return opt.state["smaran"]["loss_sq_avg"][group]


@pytest.mark.parametrize("device", DEVICES)
def test_two_steps_match_hand_computation(device):
    # Defaults lr 0.1, gamma 0.9, weight_decay (lambda) 0.01, eps 1e-8.
    p = _param([3.0, 4.0], device)
    opt = SMARAN([p])

    # Step 1, f = 12.5, g = (3, 4), ||g|| = 5:
    #   g_hat = m_1 = (0.6, 0.8) (times 5 / (5 + 1e-8)),  v_1 = 12.5^2 = 156.25,
    #   V_1 = 12.5 / (12.5 + 1e-8) = 0.9999999992,
    #   theta_1 = (3, 4) - 0.1 * V_1 * ((0.6, 0.8) + 0.01 * (3, 4)) = (2.937, 3.916)
    p.grad = torch.tensor([3.0, 4.0], dtype=torch.float64, device=device)
    returned = opt.step(loss=12.5)
    assert returned == 12.5
    torch.testing.assert_close(p.detach().cpu(), torch.tensor([2.937, 3.916], dtype=torch.float64),
                               atol=1e-9, rtol=0)
    assert float(_loss_sq_avg(opt)) == 156.25

    # Step 2, f = 5, g = (1, 0):
    #   m_2 = 0.9 * (0.6, 0.8) + (1, 0) = (1.54, 0.72),  v_2 = 0.9 * 156.25 + 25 = 165.625,
    #   V_2 = 5 / sqrt(165.625) = 5 / 12.869537676 = 0.388514345,
    #   theta_2 = theta_1 - 0.1 * V_2 * (m_2 + 0.01 theta_1)
    #           = (2.937 - 0.0388514345 * 1.56937, 3.916 - 0.0388514345 * 0.75916)
    #           = (2.876027725, 3.886505545)
    p.grad = torch.tensor([1.0, 0.0], dtype=torch.float64, device=device)
    opt.step(loss=torch.tensor(5.0, dtype=torch.float64, device=device))
    torch.testing.assert_close(
        p.detach().cpu(), torch.tensor([2.876027725, 3.886505545], dtype=torch.float64),
        atol=1e-8, rtol=0,
    )
    assert float(_loss_sq_avg(opt)) == pytest.approx(165.625, abs=1e-12)
    torch.testing.assert_close(
        opt.state[p]["momentum_buffer"].cpu(), torch.tensor([1.54, 0.72], dtype=torch.float64),
        atol=1e-7, rtol=0,
    )


@pytest.mark.parametrize("device", DEVICES)
def test_default_is_eq2_one_norm_over_all_parameters(device):
    # Two tensors a = (1, 2), b = (2); defaults lr 0.1, gamma 0.9, lambda 0.01, eps 1e-8.
    # Eq. 2 divides the whole gradient (g_a, g_b) by its one norm.
    a, b = _param([1.0, 2.0], device), _param([2.0], device)
    opt = SMARAN([a, b])
    assert opt.defaults["norm"] == "global"

    # Step 1, f = 3, g = ((2, 1), (2)), ||g|| = sqrt(4 + 1 + 4) = 3:
    #   g_hat = m_1 = ((2/3, 1/3), (2/3))  (per tensor it would be ((2, 1)/sqrt(5), (1))),
    #   v_1 = 9, V_1 = 3 / (3 + 1e-8) = 1 - 3.3e-9,
    #   a_1 = (1 - 0.1 (2/3 + 0.01), 2 - 0.1 (1/3 + 0.02)) = (0.93233333, 1.96466667)
    #   b_1 = 2 - 0.1 (2/3 + 0.02) = 1.93133333
    a.grad = torch.tensor([2.0, 1.0], dtype=torch.float64, device=device)
    b.grad = torch.tensor([2.0], dtype=torch.float64, device=device)
    opt.step(loss=3.0)
    a_1 = [1 - 0.1 * (2 / 3 + 0.01), 2 - 0.1 * (1 / 3 + 0.02)]
    b_1 = [2 - 0.1 * (2 / 3 + 0.02)]
    torch.testing.assert_close(a.detach().cpu(), torch.tensor(a_1, dtype=torch.float64),
                               atol=1e-8, rtol=0)
    torch.testing.assert_close(b.detach().cpu(), torch.tensor(b_1, dtype=torch.float64),
                               atol=1e-8, rtol=0)

    # Step 2, f = 1, g = ((0, 3), (-4)), ||g|| = 5: g_hat = ((0, 0.6), (-0.8)),
    #   m_2 = 0.9 m_1 + g_hat = ((0.6, 0.3 + 0.6), (0.6 - 0.8)) = ((0.6, 0.9), (-0.2)),
    #   v_2 = 0.9 * 9 + 1 = 9.1, V_2 = 1 / sqrt(9.1) = 0.331496772,
    #   theta_2 = theta_1 - 0.1 V_2 (m_2 + 0.01 theta_1)
    #           = a: (0.912134462, 1.934180677), b: (1.937323038)
    a.grad = torch.tensor([0.0, 3.0], dtype=torch.float64, device=device)
    b.grad = torch.tensor([-4.0], dtype=torch.float64, device=device)
    opt.step(loss=1.0)
    torch.testing.assert_close(
        opt.state[a]["momentum_buffer"].cpu(), torch.tensor([0.6, 0.9], dtype=torch.float64),
        atol=1e-8, rtol=0,
    )
    torch.testing.assert_close(
        opt.state[b]["momentum_buffer"].cpu(), torch.tensor([-0.2], dtype=torch.float64),
        atol=1e-8, rtol=0,
    )
    assert float(_loss_sq_avg(opt)) == pytest.approx(9.1, abs=1e-12)
    torch.testing.assert_close(a.detach().cpu(),
                               torch.tensor([0.912134462, 1.934180677], dtype=torch.float64),
                               atol=1e-8, rtol=0)
    torch.testing.assert_close(b.detach().cpu(), torch.tensor([1.937323038], dtype=torch.float64),
                               atol=1e-8, rtol=0)


def test_per_tensor_norm_steps_sqrt_k_times_longer():
    # K = 4 tensors with equal gradients: per tensor, ||g_hat|| = sqrt(K) = 2; Eq. 2: 1.
    steps = {}
    for norm in ("global", "tensor"):
        params = [_param([0.0, 0.0]) for _ in range(4)]
        for p in params:
            p.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)
        SMARAN(params, weight_decay=0.0, norm=norm).step(loss=1.0)
        steps[norm] = float(torch.linalg.vector_norm(torch.cat([p.detach() for p in params])))
    assert steps["global"] == pytest.approx(0.1, rel=1e-7)
    assert steps["tensor"] == pytest.approx(0.1 * 2, rel=1e-7)


def test_norm_per_tensor_and_global():
    # g_a = (3, 0), g_b = (0, 4): per tensor both become unit vectors; globally both
    # are divided by 5. One step from 0 with lambda 0 and V_1 ~ 1 moves theta by -lr g_hat.
    for norm, expected_a, expected_b in [
        ("tensor", [-0.1, 0.0], [0.0, -0.1]),
        ("global", [-0.06, 0.0], [0.0, -0.08]),
    ]:
        a, b = _param([0.0, 0.0]), _param([0.0, 0.0])
        a.grad = torch.tensor([3.0, 0.0], dtype=torch.float64)
        b.grad = torch.tensor([0.0, 4.0], dtype=torch.float64)
        SMARAN([a, b], weight_decay=0.0, norm=norm).step(loss=1.0)
        torch.testing.assert_close(a.detach(), torch.tensor(expected_a, dtype=torch.float64),
                                   atol=1e-8, rtol=0)
        torch.testing.assert_close(b.detach(), torch.tensor(expected_b, dtype=torch.float64),
                                   atol=1e-8, rtol=0)


def test_step_needs_the_loss():
    p = _param([1.0])
    p.grad = torch.ones(1, dtype=torch.float64)
    opt = SMARAN([p])
    with pytest.raises(ValueError, match=r"needs the loss.*step\(closure\).*step\(loss=loss\)"):
        opt.step()
    with pytest.raises(ValueError, match="not both"):
        opt.step(lambda: torch.tensor(1.0), loss=1.0)
    with pytest.raises(ValueError, match="scalar loss"):
        opt.step(loss=torch.ones(3))


def test_negative_loss_is_floored_at_f_min():
    # f = max(loss - f_min, 0): with f_min = 0 a negative loss gives V = 0, no move.
    p = _param([1.0, 1.0])
    p.grad = torch.ones(2, dtype=torch.float64)
    SMARAN([p]).step(loss=-3.0)
    assert torch.equal(p.detach(), torch.ones(2, dtype=torch.float64))
    # f_min = -4: f = 1, V_1 = 1 / (1 + 1e-8), g_hat = (1, 1) / sqrt(2).
    q = _param([0.0, 0.0])
    q.grad = torch.ones(2, dtype=torch.float64)
    SMARAN([q], f_min=-4.0, weight_decay=0.0).step(loss=-3.0)
    torch.testing.assert_close(q.detach(), torch.full((2,), -0.1 / 2**0.5, dtype=torch.float64),
                               atol=1e-8, rtol=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), torch.tensor(float("nan"))])
def test_non_finite_loss_skips_the_step_with_a_warning(bad):
    p = _param([3.0, 4.0])
    opt = SMARAN([p])
    p.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)
    opt.step(loss=12.5)
    before = (p.detach().clone(), opt.state[p]["momentum_buffer"].clone(), _loss_sq_avg(opt).clone())

    p.grad = torch.tensor([float("nan"), 1.0], dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        opt.step(loss=bad)
    after = (p.detach(), opt.state[p]["momentum_buffer"], _loss_sq_avg(opt))
    for x, y in zip(before, after, strict=True):
        assert torch.equal(x, y)
    assert opt.skipped_steps() == 1

    # The next finite step proceeds normally.
    p.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step(loss=12.5)
    assert not torch.equal(p.detach(), before[0])
    assert opt.skipped_steps() == 1


def test_v_is_a_tensor_in_the_state_dict():
    problem = LeastSquares(seed=5)
    params = problem.params()
    opt = SMARAN(params)
    for _ in range(3):
        opt.step(problem.closure(params))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)
    v = loaded["state"]["smaran"]["loss_sq_avg"][0]
    assert isinstance(v, torch.Tensor) and v.dim() == 0
    assert torch.equal(v, _loss_sq_avg(opt))


def _reference_smaran(params, problem, steps, lr, gamma, wd, eps, norm):
    """Plain numpy SMARAN (Algorithm 1), written independently of optim.smaran."""
    params = [x.copy() for x in params]
    m = [np.zeros_like(x) for x in params]
    v = 0.0
    for _ in range(steps):
        f = max(reference_loss(params, problem), 0.0)
        grads = reference_gradients(params, problem)
        if norm == "global":
            norms = [np.sqrt(sum((g * g).sum() for g in grads))] * len(grads)
        else:
            norms = [np.linalg.norm(g) for g in grads]
        v = gamma * v + f * f
        V = f / (np.sqrt(v) + eps)
        for i, (g, n) in enumerate(zip(grads, norms, strict=True)):
            m[i] = gamma * m[i] + g / (n + eps)
            params[i] = params[i] - lr * V * (m[i] + wd * params[i])
    return params


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("norm", ["tensor", "global"])
def test_several_steps_match_reference(device, norm):
    problem = LeastSquares(seed=6, device=device)
    params = problem.params()
    opt = SMARAN(params, lr=0.05, gamma=0.8, weight_decay=0.03, eps=1e-6, norm=norm)
    for _ in range(25):
        opt.step(problem.closure(params))
    expected = _reference_smaran([t.cpu().numpy() for t in problem.init], problem, 25,
                                 lr=0.05, gamma=0.8, wd=0.03, eps=1e-6, norm=norm)
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p.detach().cpu().numpy(), e, atol=1e-6, rtol=0)


def test_loss_keyword_matches_closure():
    problem = LeastSquares(seed=7)
    with_closure, with_loss = problem.params(), problem.params()
    opt_c, opt_l = SMARAN(with_closure), SMARAN(with_loss)
    for _ in range(5):
        opt_c.step(problem.closure(with_closure))
        loss = problem.closure(with_loss)()
        opt_l.step(loss=loss)
    for a, b in zip(with_closure, with_loss, strict=True):
        assert torch.equal(a, b)


def test_groups_with_the_same_settings_step_as_one_group():
    """Eq. 2's norm is over the whole gradient, also when the parameters are split into
    param groups (weight decay on and off, say): the step is the one-group step, and a
    "tensor" group's gradients stay out of the global norm."""
    def run(groups_of):
        W, b, c = _param([1.0, -2.0, 0.5]), _param([0.3]), _param([4.0, 1.0])
        opt = SMARAN(groups_of(W, b, c), lr=0.1, weight_decay=0.0)
        for grads in (([3.0, 0.0, -1.0], [1e-3], [5.0, 5.0]), ([1.0, 2.0, 2.0], [-2e-3], [0.0, 1.0])):
            for p, g in zip((W, b, c), grads):
                p.grad = torch.tensor(g, dtype=torch.float64)
            opt.step(loss=2.0)
        return [p.detach().clone() for p in (W, b, c)]

    one = run(lambda W, b, c: [{"params": [W, b]}, {"params": [c], "norm": "tensor"}])
    split = run(lambda W, b, c: [{"params": [W]}, {"params": [b], "weight_decay": 0.0},
                                 {"params": [c], "norm": "tensor"}])
    for x, y in zip(one, split):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-15)
    # the bias's small gradient gives it a small step, as in one group: (0.3 - b) << 0.1
    assert abs(0.3 - float(split[1][0])) < 1e-3


def test_param_groups_keep_their_own_v():
    a, b = _param([1.0]), _param([1.0])
    opt = SMARAN([{"params": [a]}, {"params": [b], "gamma": 0.5}])
    for _ in range(2):
        a.grad = torch.ones(1, dtype=torch.float64)
        b.grad = torch.ones(1, dtype=torch.float64)
        opt.step(loss=2.0)
    assert float(_loss_sq_avg(opt, 0)) == pytest.approx(0.9 * 4 + 4)
    assert float(_loss_sq_avg(opt, 1)) == pytest.approx(0.5 * 4 + 4)


def test_docstring_examples():
    result = doctest.testmod(optim.smaran)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("norm", ["global", "tensor"])
@pytest.mark.parametrize("loss", [1.5, torch.tensor(1.5)], ids=["number", "tensor"])
def test_a_complex_parameter_steps_as_its_real_view(norm, loss):
    # torch's Adam convention; a number loss stays real (it took the parameter's complex
    # dtype, and clamp is undefined on complex numbers).
    complex_end, real_end = complex_and_real_view_trajectories(
        lambda ps: SMARAN(ps, norm=norm), loss=lambda t: loss * (t + 1))
    torch.testing.assert_close(complex_end, real_end, rtol=0, atol=0)


@pytest.mark.parametrize("norm", ["global", "tensor"])
def test_float16_gradient_norms_are_accumulated_in_float32(norm):
    # ||g|| = 1000 * sqrt(10^4) = 10^5 is above float16's 65504: as a float16 norm it was
    # inf and every step 0. Each entry moves by lr V_1 g / ||g|| = 0.1 * 1000 / 10^5.
    g = torch.full((10_000,), 1000.0, dtype=torch.float16)
    assert optim.smaran.gradient_norm([g]).item() == pytest.approx(1e5, rel=1e-3)
    assert optim.smaran.tensor_norm(g).dtype == torch.float32
    p = torch.nn.Parameter(torch.zeros(10_000, dtype=torch.float16))
    opt = SMARAN([p], lr=0.1, weight_decay=0.0, norm=norm)
    p.grad = g
    opt.step(loss=1.0)
    torch.testing.assert_close(p.detach().float(), torch.full((10_000,), -1e-3), rtol=1e-3, atol=0)


def test_a_loss_whose_square_overflows_v_skips_the_step():
    # float32: f^2 overflows for f > 1.8e19; v = inf made V_t = 0, every later step 0.
    def make():
        p = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
        return p, SMARAN([p], lr=0.1, weight_decay=0.0)

    p, opt = make()
    q, ref = make()  # the same run without the huge loss
    for opt_, x in ((opt, p), (ref, q)):
        x.grad = torch.tensor([1.0, 1.0])
        opt_.step(loss=1.0)
    before = (p.detach().clone(), opt.state[p]["momentum_buffer"].clone(), _loss_sq_avg(opt).clone())
    p.grad = torch.tensor([1.0, -1.0])
    with pytest.warns(RuntimeWarning, match="overflows the running average v"):
        opt.step(loss=1e20)
    after = (p.detach(), opt.state[p]["momentum_buffer"], _loss_sq_avg(opt))
    for x, y in zip(before, after, strict=True):
        assert torch.equal(x, y)
    assert opt.skipped_steps() == 1
    with pytest.warns(RuntimeWarning, match="overflows"):  # a float32 tensor loss too
        opt.step(loss=torch.tensor(3e19))
    assert opt.skipped_steps() == 2 and torch.isfinite(_loss_sq_avg(opt))
    for _ in range(3):  # later steps are those of the run that never saw the huge losses
        for opt_, x in ((opt, p), (ref, q)):
            x.grad = torch.tensor([1.0, 1.0])
            opt_.step(loss=1.0)
    assert torch.equal(p.detach(), q.detach())
    assert torch.equal(_loss_sq_avg(opt), _loss_sq_avg(ref))


def test_a_step_that_overflows_one_groups_v_is_skipped_in_every_group():
    """Each param group has its own v: a loss that overflows one group's (gamma 0.99)
    but not another's (gamma 0) used to step the second group and count and warn the
    step as skipped. The step is now taken in all groups or in none."""
    import warnings

    a = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    b = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    opt = SMARAN([{"params": [a], "gamma": 0.99}, {"params": [b], "gamma": 0.0}], lr=0.1,
                 weight_decay=0.0)
    moved = []
    for _ in range(4):
        a.grad, b.grad = torch.ones(2), torch.ones(2)
        a0, b0 = a.detach().clone(), b.detach().clone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            opt.step(loss=1.3e19)
        moved.append((not torch.equal(a0, a.detach()), not torch.equal(b0, b.detach())))
    assert all(x == y for x, y in moved), moved  # both groups or neither
    assert opt.skipped_steps() == sum(1 for x, _ in moved if not x) >= 1
