import copy
import io
import math
from itertools import pairwise

import numpy as np
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
    kw.setdefault("rho_ref", "warmup")
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
    assert hp["momentum"] == pytest.approx(min(0.9 * m.momentum, 0.99))
    assert hp["weight_decay"] == pytest.approx(1e-3 * m.weight_decay)
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


def _quadratic(scale_of_probe):
    """``L = mean((X theta)^2)``: the Hessian ``2 X^T X / n``; each probe sees ``X`` scaled
    by the next of ``scale_of_probe``, so its curvature is ``scale^2`` times the first's."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(32, 4, generator=g) * torch.tensor([3.0, 1.0, 0.5, 0.2])
    model = nn.Linear(4, 1, bias=False)
    loss_fn = nn.MSELoss()
    opt = DCAO(model.parameters(), lr=0.01, model=model, loss_fn=loss_fn,
               probe_data=(X, torch.zeros(32, 1)), period=1, cold_lanczos_steps=4, rho_ref="warmup",
               lanczos_steps=4, probe_tol=1e-6)
    for c in scale_of_probe:
        opt.probe_data = (c * X, torch.zeros(32, 1))
        opt.zero_grad()
        loss_fn(model(X), torch.zeros(32, 1)).backward()
        opt.step()
    return opt


def test_sharpening_lowers_lr_raises_weight_decay():
    opt = _quadratic([1.0, 1.1, 1.2, 1.3])
    rhos = [r["lambda1"] for r in opt.history]
    assert rhos == sorted(rhos)
    lr = [r["lr_mult"] for r in opt.history[1:]]
    wd = [r["wd_mult"] for r in opt.history]
    assert all(a > b for a, b in pairwise(lr)) and lr[0] < 1.0
    assert all(a < b for a, b in pairwise(wd))
    assert opt.current_hparams()["lr"] == pytest.approx(0.01 * lr[-1])


def test_flattening_raises_lr_lowers_weight_decay():
    opt = _quadratic([1.0, 0.9, 0.8, 0.7])
    lr = [r["lr_mult"] for r in opt.history[1:]]
    wd = [r["wd_mult"] for r in opt.history]
    assert all(a < b for a, b in pairwise(lr)) and lr[0] > 1.0
    assert all(a > b for a, b in pairwise(wd))


def test_eos_reference_and_history_record():
    model, loss_fn, X, y = _problem()
    opt = _make(model, loss_fn, X, y, rho_ref="eos", gamma_ref=0.0, period=1)
    _train(model, opt, loss_fn, X, y, 1)
    rec = opt.history[0]
    assert rec["rho_ref"] == pytest.approx((2 + 2 * 0.9) / 0.1)  # adapts from the first probe
    assert rec["lr_mult"] != 1.0 and not rec["warmup"]
    for key in ("step", "lambda1", "gap", "residual1", "residual2", "num_matvecs", "seconds",
                "lr_mult", "momentum_mult", "wd_mult", "lr", "momentum", "weight_decay"):
        assert key in rec, key


def test_default_schedule_adapts_early_in_a_short_run():
    """The default ``spectra train`` digits run in the library: 5 epochs of 23 steps,
    probe set the first 512 samples; multipliers move within the first half (step < 58)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    loss_fn = nn.CrossEntropyLoss()
    opt = DCAO(model.parameters(), model=model, loss_fn=loss_fn, probe_data=(X[:512], y[:512]))
    for i in range(58):
        idx = slice(64 * (i % 22), 64 * (i % 22) + 64)
        opt.zero_grad()
        loss_fn(model(X[idx]), y[idx]).backward()
        opt.step()
    adapted = [r for r in opt.history if r["ok"] and not r["warmup"] and r["step"] > 0]
    assert adapted and adapted[0]["step"] == 10
    assert adapted[0]["lr_mult"] != 1.0 and adapted[0]["momentum_mult"] != 1.0
    assert opt.current_hparams()["lr"] != 0.05


def test_overhead_budget_paces_probes(monkeypatch):
    """On a fake clock: a step takes 10 ms of the run, a probe 10 ms per loss call."""
    import optim.dcao as dcao_module

    clock = {"t": 0.0}
    monkeypatch.setattr(dcao_module.time, "perf_counter", lambda: clock["t"])
    model, _, X, y = _problem()

    def slow_loss(out, target):
        clock["t"] += 0.01
        return nn.functional.cross_entropy(out, target)

    opt = DCAO(model.parameters(), lr=0.1, model=model, loss_fn=slow_loss, probe_data=(X, y),
               overhead=0.05, warmup_period=2)
    for i in range(1200):
        idx = slice((8 * i) % 64, (8 * i) % 64 + 8)
        opt.zero_grad()
        nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()
        clock["t"] += 0.01
    steps = [r["step"] for r in opt.history]
    assert steps[:2] == [0, 2]  # warm-up pace
    assert len(steps) >= 5
    gaps = [b - a for a, b in pairwise(steps[2:])]
    assert min(gaps) >= 19  # a probe costs >= a step's time; 5% => >= 19 steps apart
    assert opt.probe_seconds / (opt.probe_seconds + opt.train_seconds) <= 0.10  # cold start incl.
    later = opt.history[-1]
    assert later["probe_share"] <= 0.1


def test_cli_run_adapts_in_its_first_half_and_files_each_probe_once(tmp_path):
    """``spectra train --optimizer dcao`` with its defaults on a tiny digits run (5 epochs
    of 4 steps): the multipliers move at step 10, in the history and in the run file,
    and each probe's values sit in one metrics row only."""
    import numpy as np
    from click.testing import CliRunner

    from cli.main import main
    from spectra.runs.store import read_run

    out = tmp_path / "r.h5"
    args = ["train", "--optimizer", "dcao", "--epochs", "5", "--out", str(out), "--json",
            "--data-arg", "n_train=200", "--data-arg", "n_test=50", "--model-arg", "widths=16",
            "--batch-size", "50", "--probe-every", "0", "--opt-arg", "lambda1=0.25"]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    m = read_run(out, "dcao").metrics
    probe_step = np.asarray(m.extra["probe_step"])
    lam1 = np.asarray(m.extra["lambda1"])
    lr_mult = np.asarray(m.extra["lr_mult"])
    measured = np.isfinite(lam1)
    assert list(probe_step[measured]) == [0, 10]  # the warm-up pace: probes at 0 and 10
    assert np.all(np.isnan(lr_mult[~measured]))  # no stale copies
    first_half = measured & (probe_step <= 10)
    assert np.any(lr_mult[first_half] != 1.0)
    h = 1 + 0.25 * lam1[measured] / np.asarray(m.extra["rho_ref"])[measured]
    assert np.allclose(np.asarray(m.extra["wd_mult"])[measured], h)  # h = 1 + lambda1 rho / rho_ref
    ckpt = torch.load(tmp_path / "r_ckpt" / "dcao" / "checkpoint-epoch0005.pt", weights_only=False)
    history = ckpt["optimizer_state"]["dcao"]["history"]
    assert [r["step"] for r in history] == [0, 10]
    assert history[1]["lr_mult"] == lr_mult[measured][1]


def test_settable_through_the_registry_and_kept_in_state_dict():
    import optim

    model, loss_fn, X, y = _problem()
    opt = optim.create("dcao", model.parameters(), model=model, loss_fn=loss_fn, probe_data=(X, y),
                       rho_ref="eos", gamma_ref=0.1, alpha=0.02, beta1=0.5, lambda1=0.0,
                       mapping="linear", adapt_momentum=False, period=2)
    _train(model, opt, loss_fn, X, y, 3)
    settings = opt.state_dict()["dcao"]["controller"]["settings"]
    assert settings["rho_ref_setting"] == "eos" and settings["mapping"] == "linear"
    assert settings["adapt_momentum"] is False and settings["alpha"] == 0.02
    m = opt.controller.multipliers
    assert m.momentum == 1.0 and m.weight_decay == 1.0 and m.lr != 1.0
    with pytest.raises(ValueError, match="Invalid rho_ref value"):
        optim.create("dcao", model.parameters(), model=model, loss_fn=loss_fn, probe_data=(X, y),
                     rho_ref=-1.0)


def test_the_budget_agreement_runs_on_the_parameters_device(monkeypatch):
    """With a time budget the ranks agree on each probe (``any_rank``); the agreement is
    told the parameters' device, which an nccl group needs (its current CUDA device is
    cuda:0 on every rank that never called set_device)."""
    from spectra.utils import distributed

    asked = []

    def any_rank(flag, group=None, device=None):
        asked.append(device)
        return flag

    monkeypatch.setattr(distributed, "any_rank", any_rank)
    model, loss_fn, X, y = _problem()
    opt = DCAO(model.parameters(), lr=0.1, model=model, loss_fn=loss_fn, probe_data=(X, y),
               overhead=0.05, warmup_period=2)
    _train(model, opt, loss_fn, X, y, 3)
    assert asked == [torch.device("cpu")] * 3


def test_each_probe_first_makes_the_replicas_one_model(monkeypatch):
    """Under torchrun DCAO's probe all-reduces its products over the ranks: it first
    copies rank 0's model into every replica (``replicate_``, a no-op in one process)."""
    from spectra.utils import distributed

    replicated = []
    monkeypatch.setattr(distributed, "replicate_", lambda module, group=None: replicated.append(module))
    model, loss_fn, X, y = _problem()
    opt = DCAO(model.parameters(), lr=0.1, model=model, loss_fn=loss_fn, probe_data=(X, y),
               period=2, warmup_probes=1)
    _train(model, opt, loss_fn, X, y, 4)
    assert len(opt.history) >= 2
    assert replicated == [model] * len(opt.history)


def test_a_deep_copy_shares_the_probe_data_and_steps_alike():
    """The gradient alignment's trial step deep-copies the optimizer: the copy shares
    the probe's data (a loader's data set is not copied) and the loss function, has its
    own model, state and controller, and takes the same step."""
    model, loss_fn, X, y = _problem()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)
    opt = _make(model, loss_fn, X, y, period=1, warmup_probes=1)
    opt.probe_data = loader
    _train(model, opt, loss_fn, X, y, 2)
    twin = copy.deepcopy(opt)
    assert twin.probe_data is loader and twin.loss_fn is loss_fn
    assert twin.model is not model and twin.controller is not opt.controller
    twin_params = list(twin.model.parameters())
    assert [p.data_ptr() for g in twin.param_groups for p in g["params"]] == [
        p.data_ptr() for p in twin_params]
    for a, b in zip(model.parameters(), twin_params):
        b.grad = None if a.grad is None else a.grad.clone()
    opt.step()
    twin.step()
    for a, b in zip(model.parameters(), twin_params):
        assert torch.equal(a, b)
    timing = ("seconds", "probe_share")  # wall clock: not the same twice
    mine, its = ({k: v for k, v in o.history[-1].items() if k not in timing} for o in (opt, twin))
    assert mine == its


def test_a_refused_load_state_dict_changes_nothing():
    model, loss_fn, X, y = _problem()
    opt = _make(model, loss_fn, X, y)
    _train(model, opt, loss_fn, X, y, 4)
    sd = copy.deepcopy(opt.state_dict())
    sd["param_groups"][0]["lr"] = 123.0
    model2, *_ = _problem()
    fresh = _make(model2, loss_fn, X, y)
    plain = {k: v for k, v in sd.items() if k != "dcao"}
    with pytest.raises(ValueError, match="the 'dcao' entry is missing"):
        fresh.load_state_dict(plain)
    assert fresh.param_groups[0]["lr"] == 0.1 and len(fresh.state) == 0 and fresh.num_steps == 0
    lacking = {**sd, "dcao": {k: v for k, v in sd["dcao"].items() if k != "controller"}}
    with pytest.raises(ValueError, match=r"lacks \['controller'\]"):
        fresh.load_state_dict(lacking)
    assert fresh.param_groups[0]["lr"] == 0.1 and len(fresh.state) == 0 and fresh.num_steps == 0
    fresh.load_state_dict(sd)  # the whole state loads
    assert fresh.param_groups[0]["lr"] == 123.0 and fresh.num_steps == 4


@pytest.mark.parametrize(("kw", "message"), [
    ({"max_failures": True}, "Invalid max_failures value: True"),
    ({"probe_eval_mode": "no"}, "Invalid probe_eval_mode value: 'no' \\(expected true or false\\)"),
    ({"probe_eval_mode": 1}, "Invalid probe_eval_mode value: 1"),
    ({"seed": None}, "Invalid seed value: None"),
    ({"seed": 1.5}, "Invalid seed value: 1.5"),
    ({"seed": True}, "Invalid seed value: True"),
    ({"period": True}, "Invalid period value: True"),
    ({"period": 2.0}, "Invalid period value: 2.0"),
    ({"lanczos_steps": np.int64(1)}, "Invalid lanczos_steps value: np.int64\\(1\\)"),
    ({"warmup_period": False}, "Invalid warmup_period value: False"),
])
def test_bad_settings_are_refused_by_name(kw, message):
    model, loss_fn, X, y = _problem()
    with pytest.raises(ValueError, match=message):
        _make(model, loss_fn, X, y, **kw)


def test_numpy_integers_are_integers():
    model, loss_fn, X, y = _problem()
    ints = {"period": 5, "lanczos_steps": 8, "cold_lanczos_steps": 9, "warmup_period": 4,
            "warmup_probes": 2, "max_failures": 2}
    opt = _make(model, loss_fn, X, y, seed=np.int64(3), probe_eval_mode=np.True_,
                probe_batch_size=np.int64(32), **{k: np.int64(v) for k, v in ints.items()})
    owner = {"warmup_probes": opt.controller, "max_failures": opt.controller}
    for name, value in ints.items():
        got = getattr(owner.get(name, opt), name)
        assert got == value and type(got) is int, name
    assert opt.probe_eval_mode is True and len(opt.probe_data[1]) == 32
    assert torch.equal(opt.generator.get_state(), torch.Generator().manual_seed(3).get_state())
    _train(model, opt, loss_fn, X, y, 2)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # only Python numbers: loads with weights_only
    buffer.seek(0)
    opt.load_state_dict(torch.load(buffer, weights_only=True))


def test_time_in_paused_clock_is_not_training_time(monkeypatch):
    """The budget and probe_share count the time between steps as training, except
    inside paused_clock() (nested blocks count once; a step inside a block counts the
    block's time after it). A fake clock: exact increments, whatever the machine's load."""
    import types

    from optim import dcao as dcao_module

    now = {"t": 100.0}
    monkeypatch.setattr(dcao_module, "time", types.SimpleNamespace(perf_counter=lambda: now["t"]))
    model, loss_fn, X, y = _problem()
    opt = _make(model, loss_fn, X, y, period=10**6)  # no probe after the first

    def step():
        opt.zero_grad()
        loss_fn(model(X[:8]), y[:8]).backward()
        opt.step()

    step()
    base = opt.train_seconds
    now["t"] += 1.0  # counted
    with opt.paused_clock():
        now["t"] += 2.0  # not counted
        with opt.paused_clock():
            now["t"] += 4.0  # not counted, nor twice
    now["t"] += 8.0  # counted
    step()
    assert opt.train_seconds - base == 9.0
    with opt.paused_clock():
        now["t"] += 16.0  # not counted
        step()  # the clock restarts here
        now["t"] += 32.0  # not counted: inside the block, after the step
    now["t"] += 64.0
    step()
    assert opt.train_seconds - base == 9.0 + 64.0
    assert opt._paused == 0
