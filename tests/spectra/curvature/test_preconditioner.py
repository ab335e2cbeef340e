"""spectra.preconditioner: each optimizer's P recomputed by hand from its state and
checked against the step it takes; order, params= and the errors."""

import pytest
import torch
from torch import nn

import spectra
from spectra import PreconditionedOperator, preconditioner


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def _train(opt: torch.optim.Optimizer, model: nn.Module, steps: int = 3) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        X = torch.randn(8, 3, generator=g, dtype=torch.float64)
        y = torch.randn(8, 2, generator=g, dtype=torch.float64)
        opt.zero_grad()
        nn.functional.mse_loss(model(X), y).backward()
        opt.step()


def _flat(opt: torch.optim.Optimizer, key: str) -> torch.Tensor:
    return torch.cat([opt.state[p][key].reshape(-1) for g in opt.param_groups for p in g["params"]])


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_is_one_minus_beta1_t_times_sqrt_vhat_plus_eps(cls, amsgrad):
    model = _model()
    b1, b2, eps = 0.8, 0.95, 1e-3  # eps large enough to matter
    opt = cls(model.parameters(), lr=1e-2, betas=(b1, b2), eps=eps, amsgrad=amsgrad)
    _train(opt, model, steps=4)
    v = _flat(opt, "max_exp_avg_sq" if amsgrad else "exp_avg_sq")
    want = (1 - b1**4) * ((v / (1 - b2**4)).sqrt() + eps)
    got = preconditioner(opt)
    assert got.shape == (sum(p.numel() for p in model.parameters()),)
    assert got.dtype == torch.float64
    assert torch.allclose(got, want, rtol=1e-13, atol=0)


def test_adam_step_is_lr_times_p_inverse_times_the_momentum():
    """The definition's purpose: Adam's next step is -lr P^-1 m with P read before it
    and m after it (P changes with the step's gradient, so compare the next P)."""
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-4)
    _train(opt, model, steps=3)
    before = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    _train(opt, model, steps=1)
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    m = _flat(opt, "exp_avg")
    assert torch.allclose(after - before, -1e-2 * m / preconditioner(opt), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_rmsprop(centered, momentum):
    model = _model()
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-3, centered=centered,
                              momentum=momentum)
    _train(opt, model)
    v = _flat(opt, "square_avg")
    if centered:
        v = v - _flat(opt, "grad_avg") ** 2
    assert torch.allclose(preconditioner(opt), v.sqrt() + 1e-3, rtol=1e-13, atol=0)


@pytest.mark.parametrize("lr_decay", [0.0, 0.5])
def test_adagrad_folds_lr_decay_into_p(lr_decay):
    model = _model()
    opt = torch.optim.Adagrad(model.parameters(), lr=1e-2, lr_decay=lr_decay, eps=1e-3,
                              initial_accumulator_value=0.1)
    _train(opt, model, steps=3)
    want = (1 + 2 * lr_decay) * (_flat(opt, "sum").sqrt() + 1e-3)
    assert torch.allclose(preconditioner(opt), want, rtol=1e-13, atol=0)
    # the step is lr P^-1 g with the group's lr
    g = torch.Generator().manual_seed(5)
    X, y = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(8, 2, generator=g, dtype=torch.float64)
    before = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    opt.zero_grad()
    nn.functional.mse_loss(model(X), y).backward()
    grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    opt.step()
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert torch.allclose(after - before, -1e-2 * grad / preconditioner(opt), rtol=1e-10, atol=1e-15)


def test_adamax():
    model = _model()
    opt = torch.optim.Adamax(model.parameters(), lr=1e-2, betas=(0.8, 0.9))
    _train(opt, model, steps=3)
    assert torch.allclose(preconditioner(opt), (1 - 0.8**3) * _flat(opt, "exp_inf"), rtol=1e-13, atol=0)


def test_order_follows_param_groups_and_params():
    model = _model()
    w0, b0, w1, b1 = model.parameters()
    opt = torch.optim.Adam([{"params": [w1, b0]}, {"params": [w0, b1], "eps": 1e-2}], lr=1e-2)
    _train(opt, model)
    got = preconditioner(opt)
    per = {id(p): (1 - 0.9**3) * ((opt.state[p]["exp_avg_sq"] / (1 - 0.999**3)).sqrt() + eps).reshape(-1)
           for p, eps in [(w1, 1e-8), (b0, 1e-8), (w0, 1e-2), (b1, 1e-2)]}
    assert torch.allclose(got, torch.cat([per[id(p)] for p in (w1, b0, w0, b1)]), rtol=1e-13, atol=0)
    # params= puts the entries in the operator's order
    ordered = preconditioner(opt, params=model.parameters())
    assert torch.allclose(ordered, torch.cat([per[id(p)] for p in (w0, b0, w1, b1)]), rtol=1e-13, atol=0)
    subset = preconditioner(opt, params=[b1])
    assert torch.equal(subset, ordered[-2:])


def test_builds_a_preconditioned_hessian_over_the_same_parameters():
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _train(opt, model)
    X, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    H = spectra.HessianOperator(model, nn.MSELoss(), (X, y))
    d = preconditioner(opt, params=model.parameters())
    op = PreconditionedOperator(H, d)
    P = op.shape[0]
    dense = H.matmat(torch.eye(P, dtype=torch.float64))
    want = torch.linalg.eigvals(dense / d[:, None]).real.max()
    got = spectra.eigsh(op, k=1, tol=1e-10).eigenvalues[0]
    assert abs(float(got - want)) <= 1e-7 * abs(float(want))
    # an operator over fewer parameters is refused by length
    H2 = spectra.HessianOperator(model, nn.MSELoss(), (X, y), params=["2.weight"])
    with pytest.raises(ValueError, match=r"diag must have shape \(8,\).*params="):
        PreconditionedOperator(H2, d)


def test_duck_typed_preconditioner_method():
    class Custom(torch.optim.SGD):
        def preconditioner(self) -> torch.Tensor:
            return torch.arange(1.0, 1.0 + sum(p.numel() for g in self.param_groups for p in g["params"]))

    model = _model()
    opt = Custom(model.parameters(), lr=0.1)
    n = sum(p.numel() for p in model.parameters())
    assert torch.equal(preconditioner(opt), torch.arange(1.0, 1.0 + n))
    last = list(model.parameters())[-1]
    assert torch.equal(preconditioner(opt, params=[last]), torch.arange(n - 1.0, n + 1.0))

    class Wrong(torch.optim.SGD):
        def preconditioner(self) -> torch.Tensor:
            return torch.ones(3)

    with pytest.raises(ValueError, match=rf"Wrong.preconditioner\(\) must return shape \({n},\)"):
        preconditioner(Wrong(model.parameters(), lr=0.1))


def test_sgd_has_no_preconditioner():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train(opt, model)
    with pytest.raises(TypeError, match="SGD has no preconditioner; its sharpness is the plain lambda_1"):
        preconditioner(opt)


@pytest.mark.parametrize("cls", [torch.optim.NAdam, torch.optim.RAdam, torch.optim.Adadelta])
def test_refuses_optimizers_it_cannot_define(cls):
    model = _model()
    opt = cls(model.parameters())
    _train(opt, model)
    with pytest.raises(TypeError, match=f"{cls.__name__} has no diagonal preconditioner.*supported: Adam"):
        preconditioner(opt)


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.Adagrad])
def test_refuses_an_optimizer_before_its_first_step(cls):
    """Adagrad builds its state (step 0, a zero sum) with the optimizer: read then, it
    gave the bare eps, a preconditioned sharpness 1e10 times too large."""
    model = _model()
    opt = cls(model.parameters())
    with pytest.raises(ValueError, match="no state yet.*first step"):
        preconditioner(opt)


def test_refuses_a_parameter_without_state():
    model = _model()
    frozen = nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = torch.optim.Adam([*model.parameters(), frozen])
    _train(opt, model)
    with pytest.raises(ValueError, match=r"parameter 4 of param group 0 \(shape \(2,\)\) has no Adam state"):
        preconditioner(opt)
    assert preconditioner(opt, params=model.parameters()).shape == (26,)
    opt = torch.optim.Adagrad([*model.parameters(), frozen])  # its state, at step 0
    _train(opt, model)
    with pytest.raises(ValueError, match=r"parameter 4 of param group 0 \(shape \(2,\)\) has no "
                                         "Adagrad state"):
        preconditioner(opt)


def test_refuses_foreign_params_and_non_optimizers():
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    _train(opt, model)
    with pytest.raises(ValueError, match=r"params\[0\] is not a parameter of the Adam optimizer"):
        preconditioner(opt, params=[torch.ones(2)])
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        preconditioner(model)


@pytest.mark.parametrize("clip", [None, 0.05])
def test_calr_gives_its_last_denominator(clip):
    from optim import CALR

    model = _model()
    b1, b2, alpha, delta, eps = 0.8, 0.9, 0.1, 1e-3, 1e-4
    opt = CALR(model.parameters(), lr=1e-2, alpha=alpha, betas=(b1, b2), delta=delta, eps=eps, clip=clip)
    with pytest.raises(ValueError, match="no state yet"):
        preconditioner(opt)
    _train(opt, model, steps=2)
    before = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    _train(opt, model, steps=1)  # the third step; .grad still holds its gradient
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    if clip is not None:
        g = g.clamp(-clip, clip)
    v_hat = _flat(opt, "exp_avg_sq") / (1 - b2**3)
    want = (1 - b1**3) * ((v_hat + alpha * (g.abs() + delta)).sqrt() + eps)
    got = preconditioner(opt)
    assert torch.allclose(got, want, rtol=1e-12, atol=0)
    # Eq. 5 is the step -lr P^-1 m_t
    assert torch.allclose(after - before, -1e-2 * _flat(opt, "exp_avg") / got, rtol=1e-10, atol=1e-15)
