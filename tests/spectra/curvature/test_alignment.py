"""Gradient alignment against a dense eigendecomposition, and the step split of Song,
Ahn & Yun against losses evaluated independently at the projected steps."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.func import functional_call, grad

from spectra.curvature.alignment import (
    gradient_alignment,
    loss_and_gradient,
    optimizer_step,
    subspace_fraction,
)
from spectra.probe import ProbeSettings, probe
from tests.spectra.cases import make_cases

K = 3


@pytest.fixture(scope="module")
def case():
    return make_cases()[0]  # mlp-ce-mean, float64, uneven batches 10/10/3


def _loss_at(case, flat):
    """The data-set loss at flat parameters, straight from the batches (no code under test)."""
    return sum(w * case.loss_fn(functional_call(case.model, case._state(flat), (X,)), y)
               for w, (X, y) in zip(case._weights(), case.batches))


def _dense_top(case):
    _, evecs = torch.linalg.eigh(case.dense_hessian())
    return evecs[:, -K:]


def test_subspace_fraction():
    V = torch.eye(4, dtype=torch.float64)[:, :2]
    assert subspace_fraction(torch.tensor([3.0, 4.0, 0.0, 0.0], dtype=torch.float64), V) == 1.0
    assert subspace_fraction(torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64), V) == 0.5
    assert torch.isnan(torch.tensor(subspace_fraction(torch.zeros(4, dtype=torch.float64), V)))
    with pytest.raises(ValueError, match="basis"):
        subspace_fraction(torch.zeros(3), V)


def test_loss_and_gradient_equal_torch_func(case):
    w = case.flat_params()
    value, g = loss_and_gradient(case.model, case.loss_fn, case.batches, reduction="mean")
    assert value == pytest.approx(float(_loss_at(case, w)), rel=1e-13)
    torch.testing.assert_close(g, grad(lambda f: _loss_at(case, f))(w), rtol=1e-12, atol=1e-14)


def test_alignment_of_the_probe_eigenvectors_equals_the_dense_projection(case):
    r = probe(case.model, case.loss_fn, case.batches,
              ProbeSettings(top_k=K, bottom=False, trace_matvecs=0, density=None, tol=1e-10))
    batch = case.batches[1]
    a = gradient_alignment(case.model, case.loss_fn, case.batches, r.top_eigenvectors, batch=batch)
    U = _dense_top(case)
    w = case.flat_params()
    g = grad(lambda f: _loss_at(case, f))(w)
    gb = grad(lambda f: case.loss_fn(functional_call(case.model, case._state(f), (batch[0],)), batch[1]))(w)
    exact = float((U.T @ g).square().sum() / g.square().sum())
    exact_b = float((U.T @ gb).square().sum() / gb.square().sum())
    assert a.k == K
    assert a.full_batch == pytest.approx(exact, abs=1e-8)
    assert a.minibatch == pytest.approx(exact_b, abs=1e-8)
    assert a.gradient_norm == pytest.approx(float(g.norm()), rel=1e-12)
    assert 0.0 < exact < 1.0 and abs(exact - exact_b) > 1e-3  # the two are different numbers
    assert a.step_loss_change != a.step_loss_change  # NaN: no optimizer given


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=0.05),
], ids=["sgdm", "adam"])
def test_step_split_equals_losses_at_the_projected_steps(case, make):
    model = copy.deepcopy(case.model)
    opt = make(model.parameters())
    batch = case.batches[0]
    for _ in range(3):  # some optimizer state
        opt.zero_grad()
        case.loss_fn(model(batch[0]), batch[1]).backward()
        opt.step()
    state_before = copy.deepcopy(opt.state_dict())
    w_before = [p.detach().clone() for p in model.parameters()]
    c = copy.copy(case)
    c.model = model
    U = _dense_top(c)

    d = optimizer_step(opt, model, case.loss_fn, batch)
    # the optimizer and the model are untouched
    assert all(torch.equal(a, p) for a, p in zip(w_before, model.parameters()))
    after = opt.state_dict()
    for key, st in state_before["state"].items():
        for name, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(after["state"][key][name]))
    # the step is the optimizer's own: take it on a copy, by hand
    twin_model = copy.deepcopy(model)
    twin = make(twin_model.parameters())
    twin.load_state_dict(copy.deepcopy(state_before))
    twin.zero_grad()
    case.loss_fn(twin_model(batch[0]), batch[1]).backward()
    twin.step()
    by_hand = torch.cat([(q.detach() - p).reshape(-1) for q, p in zip(twin_model.parameters(), w_before)])
    torch.testing.assert_close(d, by_hand, rtol=1e-12, atol=1e-15)

    a = gradient_alignment(model, case.loss_fn, case.batches, U, batch=batch, optimizer=opt)
    w = c.flat_params()
    L0 = float(_loss_at(c, w))
    top = U @ (U.T @ by_hand)
    assert a.step_loss_change == pytest.approx(float(_loss_at(c, w + by_hand)) - L0, rel=1e-9, abs=1e-13)
    assert a.step_loss_change_top == pytest.approx(float(_loss_at(c, w + top)) - L0, rel=1e-9, abs=1e-13)
    assert a.step_loss_change_bulk == pytest.approx(float(_loss_at(c, w + by_hand - top)) - L0,
                                                    rel=1e-9, abs=1e-13)
    assert a.step_top_fraction == pytest.approx(float(top.square().sum() / by_hand.square().sum()),
                                                rel=1e-10)
    assert a.step_loss_change_top != pytest.approx(a.step_loss_change_bulk)


def test_train_mode_passes_leave_the_models_batch_norm_statistics_alone():
    """With a dtype given (gradient_alignment always gives one) the buffers were handed to
    functional_call as they were when already in that dtype: a pass in train mode updated
    the model's running statistics."""
    from torch import nn

    torch.manual_seed(0)
    X, y = torch.randn(16, 4, dtype=torch.float64), torch.randint(0, 3, (16,))
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 3)).double().train()
    before = {n: b.clone() for n, b in model.named_buffers()}
    V = torch.linalg.qr(torch.randn(sum(p.numel() for p in model.parameters()), 2,
                                    dtype=torch.float64))[0]
    gradient_alignment(model, nn.CrossEntropyLoss(), (X, y), V, eval_mode=False)
    loss_and_gradient(model, nn.CrossEntropyLoss(), (X, y), dtype=torch.float64)
    for n, b in model.named_buffers():
        assert torch.equal(b, before[n]), n


def test_the_loss_functions_own_reduction_weighs_the_batches():
    """loss_and_gradient defaulted to reduction="mean" whatever the loss said: with
    nn.MSELoss(reduction="sum") over batches of 5 and 2 it returned 17.94 for a loss of 27.87."""
    from torch import nn

    torch.manual_seed(0)
    model = nn.Linear(3, 1).double()
    X, y = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 1, dtype=torch.float64)
    loss = nn.MSELoss(reduction="sum")
    value, g = loss_and_gradient(model, loss, [(X[:5], y[:5]), (X[5:], y[5:])])
    model.zero_grad()
    total = loss(model(X), y)
    total.backward()
    assert abs(value - float(total)) <= 1e-12 * float(total)
    torch.testing.assert_close(g, torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    with pytest.raises(ValueError, match="contradicts loss_fn.reduction='sum'"):
        loss_and_gradient(model, loss, (X, y), reduction="mean")


def test_the_trial_step_of_dcao_keeps_its_probe_and_leaves_it_untouched():
    """optimizer_step deep-copies the optimizer; torch's Optimizer.__getstate__ keeps only
    defaults, state and param_groups, so DCAO's copy lost its clock, model and controller
    ("'DCAO' object has no attribute '_clock'": `--alignment` failed with DCAO)."""
    from torch import nn

    from optim.dcao import DCAO

    torch.manual_seed(0)
    X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    opt = DCAO(model.parameters(), lr=0.1, model=model, loss_fn=nn.functional.cross_entropy,
               probe_data=(X, y), period=2, warmup_probes=1)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    weights = [p.detach().clone() for p in model.parameters()]
    state = copy.deepcopy(opt.state_dict())
    d = optimizer_step(opt, model, nn.functional.cross_entropy, (X, y))
    assert bool(torch.isfinite(d).all()) and float(d.norm()) > 0
    assert all(torch.equal(w, p) for w, p in zip(weights, model.parameters()))
    assert opt.num_steps == state["dcao"]["num_steps"] and len(opt.history) == len(state["dcao"]["history"])


def test_float32_eigenvectors_of_a_float64_model_give_the_float64_alignment(case):
    """The default dtype is the more precise of the parameters' and the eigenvectors':
    it was the eigenvectors', and float32 ones evaluated a float64 model's small loss
    changes in float32 (the top part off by 40% in the audit's example)."""
    model = copy.deepcopy(case.model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    U = _dense_top(case)
    ref = gradient_alignment(model, case.loss_fn, case.batches, U, optimizer=opt)
    low = gradient_alignment(model, case.loss_fn, case.batches, U.float(), optimizer=opt)
    for name in ("step_loss_change", "step_loss_change_top", "step_loss_change_bulk"):
        # float32 eigenvectors move the split by their rounding, not the losses'
        assert getattr(low, name) == pytest.approx(getattr(ref, name), rel=1e-5), name


def test_the_step_over_several_batches_of_dict_inputs_is_the_concatenated_batchs():
    """Several probe batches and no batch=: the optimizer step is taken on the loss over
    all of them. Dict inputs (or tuples) used to fail in torch.cat; the step is that of
    the tensor-input model on the concatenated batch."""
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()

    class DictNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, inputs):
            return self.net(inputs["x"])

    model = DictNet()
    X, y = torch.randn(13, 4, dtype=torch.float64), torch.randint(0, 3, (13,))
    loss_fn = nn.CrossEntropyLoss()
    U = torch.linalg.qr(torch.randn(sum(p.numel() for p in net.parameters()), 2,
                                    dtype=torch.float64))[0]
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    parts = [({"x": X[:8]}, y[:8]), ({"x": X[8:]}, y[8:])]
    a = gradient_alignment(model, loss_fn, parts, U, optimizer=opt)
    ref = gradient_alignment(model, loss_fn, [({"x": X}, y)], U, optimizer=opt)
    assert a.step_top_fraction == pytest.approx(ref.step_top_fraction, rel=1e-10)
    assert a.step_loss_change == pytest.approx(ref.step_loss_change, rel=1e-9)


def test_lbfgs_steps_aside_like_its_own_step(case):
    """LBFGS keeps parameter lists outside its state_dict, which the deep copy dropped
    (an AttributeError): its step aside is now the one it takes."""
    model = copy.deepcopy(case.model)
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)
    X, y = case.batches[0]
    d = optimizer_step(opt, model, case.loss_fn, (X, y))
    w = [p.detach().clone() for p in model.parameters()]

    def closure():
        opt.zero_grad()
        loss = case.loss_fn(model(X), y)
        loss.backward()
        return loss

    opt.step(closure)
    taken = torch.cat([(p.detach() - b).reshape(-1) for p, b in zip(model.parameters(), w)])
    torch.testing.assert_close(d, taken, rtol=1e-10, atol=1e-14)


def test_unknown_parameter_names_and_non_tensor_eigenvectors_are_refused(case):
    U = _dense_top(case)
    name = next(n for n, _ in case.model.named_parameters())
    typo = name[:-1] + "x"
    with pytest.raises(ValueError, match=f"params: '{typo}' is not a parameter of the model. "
                                         f"Did you mean '{name}'"):
        gradient_alignment(case.model, case.loss_fn, case.batches, U, params=[typo])
    with pytest.raises(ValueError, match="params: 'nope' is not a parameter"):
        loss_and_gradient(case.model, case.loss_fn, case.batches, params=["nope"])
    with pytest.raises(TypeError, match="eigenvectors must be a \\(P, k\\) tensor, got ndarray"):
        gradient_alignment(case.model, case.loss_fn, case.batches, U.numpy())


def test_an_optimizer_that_cannot_be_copied_is_a_clear_type_error(case):
    import threading

    class Locked(torch.optim.SGD):
        def __init__(self, params):
            super().__init__(params, lr=0.1)
            self._lock = threading.Lock()  # outside the state that __getstate__ keeps

    model = copy.deepcopy(case.model)
    with pytest.raises(TypeError, match="the Locked optimizer cannot be deep-copied"):
        optimizer_step(Locked(model.parameters()), model, case.loss_fn, case.batches[0])


def _two_batches():
    g = torch.Generator().manual_seed(1)
    b1 = (torch.randn(10, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (10,), generator=g))
    b2 = (torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,), generator=g))
    V = torch.linalg.qr(torch.randn(111, 2, dtype=torch.float64, generator=g))[0]
    return [b1, b2], V


def _mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3)).double()


@pytest.mark.parametrize("red", ["sum", "mean"])
def test_plain_function_loss_reduction_is_detected_as_the_operators_do(red):
    # a plain function has no .reduction: it is determined from the loss, as HessianOperator
    # does, not assumed "mean" (which weighed a sum over two batches by n_b / N)
    import torch.nn.functional as F

    from spectra import HessianOperator

    model = _mlp()
    batches, V = _two_batches()

    def plain(out, y):
        return F.cross_entropy(out, y, reduction=red)

    declared = torch.nn.CrossEntropyLoss(reduction=red)
    assert HessianOperator(model, plain, batches).reduction == red
    a = gradient_alignment(model, plain, batches, V, optimizer=torch.optim.SGD(model.parameters(), lr=0.01))
    ref = gradient_alignment(model, declared, batches, V,
                             optimizer=torch.optim.SGD(model.parameters(), lr=0.01))
    for key in ("full_batch", "gradient_norm", "step_loss_change", "step_loss_change_top",
                "step_loss_change_bulk", "step_top_fraction"):
        assert getattr(a, key) == pytest.approx(getattr(ref, key), rel=1e-12, abs=1e-15), key
    loss, g = loss_and_gradient(model, plain, batches)
    loss_ref, g_ref = loss_and_gradient(model, declared, batches)
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    assert torch.allclose(g, g_ref, rtol=1e-12, atol=1e-15)
    # the data-set gradient by hand: the sum of the batch sums, or the sample mean
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    X = torch.cat([b[0] for b in batches]); y = torch.cat([b[1] for b in batches])
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def f(w):
        parts = w.split([s.numel() for s in shapes])
        state = {n: t.reshape(s) for n, t, s in zip(names, parts, shapes)}
        return plain(functional_call(model, state, (X,)), y)

    assert torch.allclose(g, grad(f)(flat), rtol=1e-10, atol=1e-13)


def test_bad_optimizer_params_and_eigenvectors_are_named():
    model = _mlp()
    batches, V = _two_batches()
    loss_fn = torch.nn.CrossEntropyLoss()
    with pytest.raises(TypeError, match=r"^optimizer must be a torch.optim.Optimizer, got 'sgd'"):
        gradient_alignment(model, loss_fn, batches, V, optimizer="sgd")
    with pytest.raises(TypeError, match=r"^optimizer must be a torch.optim.Optimizer"):
        optimizer_step("sgd", model, loss_fn, batches[0])
    other = torch.optim.SGD(_mlp(1).parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"^optimizer: .*holds none of the model's parameters"):
        gradient_alignment(model, loss_fn, batches, V, optimizer=other)
    with pytest.raises(ValueError, match=r"^optimizer: .*holds none"):
        optimizer_step(other, model, loss_fn, batches[0])
    with pytest.raises(ValueError, match=r"^params is empty"):
        gradient_alignment(model, loss_fn, batches, torch.zeros(0, 1, dtype=torch.float64), params=[])
    with pytest.raises(ValueError, match=r"^params is empty"):
        loss_and_gradient(model, loss_fn, batches, params=[])
    for dtype in (torch.long, torch.bool, torch.complex128):
        with pytest.raises(TypeError, match=r"^eigenvectors must be a real floating-point tensor"):
            gradient_alignment(model, loss_fn, batches, torch.eye(111, 2).to(dtype))
    # an optimizer holding some of the parameters still works (the others step by 0)
    part = torch.optim.SGD(model[0].parameters(), lr=0.1)
    d = optimizer_step(part, model, loss_fn, batches[0])
    assert torch.all(d[72:] == 0) and d[:72].abs().sum() > 0


def test_dropout_in_train_mode_leaves_the_global_rng_as_it_was():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3)).double()
    model.train()
    batches, _ = _two_batches()
    loss_fn = torch.nn.CrossEntropyLoss()
    V = torch.eye(75, 2, dtype=torch.float64)
    calls = {
        "optimizer_step": lambda: optimizer_step(torch.optim.SGD(model.parameters(), lr=0.1), model,
                                                 loss_fn, batches[0]),
        "loss_and_gradient": lambda: loss_and_gradient(model, loss_fn, batches),
        "gradient_alignment": lambda: gradient_alignment(
            model, loss_fn, batches, V, batch=batches[1], eval_mode=False,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1)),
    }
    for name, call in calls.items():
        before = torch.get_rng_state()
        call()
        assert torch.equal(before, torch.get_rng_state()), name
    assert model.training
