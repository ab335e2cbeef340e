import copy
import math

import pytest
import torch
from torch import nn

from optim.dcao import DCAO


def _problem(seed=0, bn=False):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(64, 6, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    torch.manual_seed(seed)
    layers = [nn.Linear(6, 8)] + ([nn.BatchNorm1d(8)] if bn else []) + [nn.Tanh(), nn.Linear(8, 3)]
    return nn.Sequential(*layers), nn.CrossEntropyLoss(), X, y


def _make(model, loss_fn, X, y, **kw):
    kw.setdefault("period", 3)
    kw.setdefault("warmup_probes", 2)
    return DCAO(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3, model=model,
                loss_fn=loss_fn, probe_data=(X, y), **kw)


def _train(model, opt, loss_fn, X, y, steps):
    for i in range(steps):
        idx = slice((8 * i) % 64, (8 * i) % 64 + 8)
        opt.zero_grad()
        loss_fn(model(X[idx]), y[idx]).backward()
        opt.step()


def test_one_step_by_hand_in_warmup():
    model, loss_fn, X, y = _problem()
    opt = _make(model, loss_fn, X, y)
    theta = [p.detach().clone() for p in model.parameters()]
    loss_fn(model(X), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step()
    assert len(opt.history) == 1 and opt.history[0]["warmup"]
    for p, t, g in zip(model.parameters(), theta, grads):
        v = g + 1e-3 * t  # v_1 = 0 * 0.9 + g + wd theta
        assert torch.allclose(p, t - 0.1 * v, atol=1e-7)


def test_adapted_hyperparameters_are_applied():
    model, loss_fn, X, y = _problem()
    opt = _make(model, loss_fn, X, y, period=1, warmup_probes=1)
    _train(model, opt, loss_fn, X, y, 3)
    hp = opt.current_hparams()
    theta = [p.detach().clone() for p in model.parameters()]
    vel = [opt.state[p]["velocity"].clone() for p in model.parameters()]
    opt.period = 10**9  # no probe in the next step
    opt.zero_grad()
    loss_fn(model(X[:8]), y[:8]).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step()
    m = opt.controller.multipliers
    assert hp["lr"] == pytest.approx(0.1 * m.lr)
    assert hp["momentum"] == pytest.approx(min(1 - 0.1 / m.momentum, 0.99))
    for p, t, v, g in zip(model.parameters(), theta, vel, grads):
        v_new = hp["momentum"] * v + g + hp["weight_decay"] * t
        assert torch.allclose(p, t - hp["lr"] * v_new, atol=1e-6)


def test_state_dict_round_trip_lockstep_bit_identical():
    model, loss_fn, X, y = _problem()
    opt = _make(model, loss_fn, X, y)
    _train(model, opt, loss_fn, X, y, 7)
    model2 = copy.deepcopy(model)
    opt2 = _make(model2, loss_fn, X, y)
    sd = opt.state_dict()
    torch.save(sd, "/tmp/_dcao_sd.pt")
    opt2.load_state_dict(torch.load("/tmp/_dcao_sd.pt", weights_only=True))
    _train(model, opt, loss_fn, X, y, 20)
    _train(model2, opt2, loss_fn, X, y, 20)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)
    assert opt.controller.state_dict() == opt2.controller.state_dict()
    assert len(opt.history) == len(opt2.history)


def test_probe_leaves_rng_buffers_modes_and_grads_untouched():
    model, loss_fn, X, y = _problem(bn=True)
    model.train()
    opt = _make(model, loss_fn, X, y)
    loss_fn(model(X), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    rec = opt.probe_now()
    assert rec["ok"], rec
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, buffers[k]), k
    for p, g in zip(model.parameters(), grads):
        assert torch.equal(p.grad, g)


def test_failed_probe_never_crashes_training():
    model, _, X, y = _problem()
    calls = {"n": 0}

    def flaky_loss(out, target):
        calls["n"] += 1
        return nn.functional.cross_entropy(out, target)

    opt = _make(model, flaky_loss, X, y)
    opt.probe_data = (X[:, :3], y)  # wrong input width: the probe raises inside
    _train(model, opt, nn.CrossEntropyLoss(), X, y, 7)
    assert all(not r["ok"] for r in opt.history)
    assert "RuntimeError" in opt.history[0]["reason"]
    assert opt.controller.multipliers.lr == 1.0
    assert all(math.isfinite(float(p.detach().sum())) for p in model.parameters())


def test_lowers_the_loss_on_a_convex_problem():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 6, generator=g)
    y = X @ torch.randn(6, 1, generator=g) + 0.1 * torch.randn(64, 1, generator=g)
    model = nn.Linear(6, 1)
    loss_fn = nn.MSELoss()
    opt = DCAO(model.parameters(), lr=0.05, model=model, loss_fn=loss_fn, probe_data=(X, y), period=5,
               warmup_probes=2)
    before = float(loss_fn(model(X), y))
    for _ in range(100):
        opt.zero_grad()
        loss_fn(model(X), y).backward()
        opt.step()
    assert float(loss_fn(model(X), y)) < 0.05 * before
    assert sum(r["ok"] for r in opt.history) == len(opt.history)


def test_works_with_lr_scheduler():
    model, loss_fn, X, y = _problem()
    opt = _make(model, loss_fn, X, y)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    _train(model, opt, loss_fn, X, y, 1)
    sched.step()
    assert opt.current_hparams()["lr"] == pytest.approx(0.05 * opt.controller.multipliers.lr)


def test_trains_a_digits_mlp_to_90_percent():
    from sklearn.datasets import load_digits

    d = load_digits()
    X = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    tr, te = perm[:1400], perm[1400:]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    loss_fn = nn.CrossEntropyLoss()
    opt = DCAO(model.parameters(), model=model, loss_fn=loss_fn, probe_data=(X[tr], y[tr]), period=20)
    for _ in range(10):
        order = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            loss_fn(model(X[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        acc = (model(X[te]).argmax(1) == y[te]).float().mean().item()
    assert acc >= 0.90, acc
    assert any(not r["warmup"] for r in opt.history)


def test_cold_probe_gets_more_products_than_warm_ones():
    model, loss_fn, X, y = _problem()
    opt = _make(model, loss_fn, X, y, period=2, lanczos_steps=3, cold_lanczos_steps=12,
                probe_tol=1e-12)
    _train(model, opt, loss_fn, X, y, 6)
    hvps = [r["num_matvecs"] for r in opt.history]
    assert hvps == [12, 3, 3], hvps
    # the cold probe is accurate: its lambda_1 matches a tight solve on the same data
    import spectra

    opt2 = _make(*_problem()[:2], X, y, cold_lanczos_steps=40, probe_tol=1e-12)
    rec = opt2.probe_now()
    op = spectra.HessianOperator(opt2.model, loss_fn, (X, y), eval_mode=True)
    tight = float(spectra.eigsh(op, k=1, tol=1e-8).eigenvalues[0])
    assert rec["lambda1"] == pytest.approx(tight, rel=1e-4)


def test_the_reduction_of_a_custom_loss_is_fixed_when_built():
    import spectra

    model, _, X, y = _problem()
    X, model = X.double(), model.double()
    data = [(X[:24], y[:24]), (X[24:], y[24:])]
    with pytest.raises(ValueError, match="reduction="):  # not swallowed by a probe later
        DCAO(model.parameters(), model=model, probe_data=data, probe_batch_size=None,
             loss_fn=lambda o, t: nn.functional.cross_entropy(o, t) ** 2)
    summed = lambda o, t: nn.functional.cross_entropy(o, t, reduction="sum")
    opt = DCAO(model.parameters(), model=model, loss_fn=summed, probe_data=data,
               probe_batch_size=None, cold_lanczos_steps=40, probe_tol=1e-12)
    assert opt.reduction == "sum"
    rec = opt.probe_now()
    op = spectra.HessianOperator(model, nn.CrossEntropyLoss(reduction="sum"), data, eval_mode=True)
    tight = float(spectra.eigsh(op, k=1, tol=1e-10).eigenvalues[0])
    assert rec["ok"] and rec["lambda1"] == pytest.approx(tight, rel=1e-6)
