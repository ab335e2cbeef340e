"""optim.schedules: lr schedules by name, against torch's schedulers, and composed with
the registry's own schedules (LPSGD's p, CALR's cosine) and with DCAO."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    MultiStepLR,
    SequentialLR,
    StepLR,
)

import optim
from optim.lpsgd import PNormScheduler
from optim.schedules import SCHEDULES, LRSchedule, ScheduleError

EPOCHS, SPE = 5, 4  # a short run: 5 epochs of 4 steps
STEPS = EPOCHS * SPE
LR = 0.1


def _params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.ones(3))]


def _run(optimizer, step_scheds, epoch_scheds, *, key: str = "lr") -> list[float]:
    """The first group's ``key`` at every optimizer step of the run."""
    seen = []
    for _ in range(EPOCHS):
        for _ in range(SPE):
            seen.append(optimizer.param_groups[0][key])
            for p in optimizer.param_groups[0]["params"]:
                p.grad = torch.ones_like(p)
            optimizer.step()
            for s in step_scheds:
                s.step()
        for s in epoch_scheds:
            s.step()
    return seen


def _bundle_lrs(schedule: LRSchedule, name: str = "sgd", **kw) -> list[float]:
    bundle = optim.create_bundle(name, _params(), total_steps=STEPS, total_epochs=EPOCHS,
                                 lr_schedule=schedule, lr=LR, **kw)
    return _run(bundle.optimizer, bundle.step_schedulers, bundle.epoch_schedulers)


def _torch_lrs(build, interval: str) -> list[float]:
    opt = torch.optim.SGD(_params(), lr=LR)
    sched = build(opt)
    return _run(opt, [sched] if interval == "step" else [], [sched] if interval == "epoch" else [])


def _warmup(opt, n, main):
    return SequentialLR(opt, [LinearLR(opt, start_factor=0.01, total_iters=n), main], [n])


# (schedule, the same schedule built from torch's schedulers by hand)
CASES = {
    "cosine/step": (LRSchedule("cosine"), lambda o: CosineAnnealingLR(o, T_max=STEPS)),
    "cosine/epoch": (LRSchedule("cosine", interval="epoch"),
                     lambda o: CosineAnnealingLR(o, T_max=EPOCHS)),
    "cosine-min/step": (LRSchedule("cosine", min_lr=1e-3),
                        lambda o: CosineAnnealingLR(o, T_max=STEPS, eta_min=1e-3)),
    "warmup-cosine/step": (LRSchedule("warmup-cosine", warmup=1),
                           lambda o: _warmup(o, SPE, CosineAnnealingLR(o, T_max=STEPS - SPE))),
    "warmup-cosine/step-units": (
        LRSchedule("warmup-cosine", warmup=3, unit="step"),
        lambda o: _warmup(o, 3, CosineAnnealingLR(o, T_max=STEPS - 3))),
    "warmup-cosine/epoch": (LRSchedule("warmup-cosine", warmup=2, interval="epoch"),
                            lambda o: _warmup(o, 2, CosineAnnealingLR(o, T_max=EPOCHS - 2))),
    "step/step": (LRSchedule("step", step_size=2, gamma=0.5),
                  lambda o: StepLR(o, step_size=2 * SPE, gamma=0.5)),
    "step/epoch": (LRSchedule("step", step_size=2, gamma=0.5, interval="epoch"),
                   lambda o: StepLR(o, step_size=2, gamma=0.5)),
    "multistep/epoch": (LRSchedule("step", milestones=(1, 3), interval="epoch"),
                        lambda o: MultiStepLR(o, milestones=[1, 3], gamma=0.1)),
    "linear/step": (LRSchedule("linear", end_factor=0.1),
                    lambda o: LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=STEPS)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_lr_sequence_equals_torchs_schedulers(case):
    schedule, build = CASES[case]
    assert _bundle_lrs(schedule) == _torch_lrs(build, schedule.interval)


def test_cosine_and_warmup_follow_their_closed_forms():
    lrs = _bundle_lrs(LRSchedule("cosine"))
    for t, lr in enumerate(lrs):
        assert lr == pytest.approx(LR * (1 + math.cos(math.pi * t / STEPS)) / 2, abs=1e-12)
    lrs = _bundle_lrs(LRSchedule("warmup-cosine", warmup=1))
    for t in range(SPE):  # linear from 0.01 lr to lr over one epoch
        assert lrs[t] == pytest.approx(LR * (0.01 + 0.99 * t / SPE), abs=1e-12)
    for t in range(SPE, STEPS):
        u = (t - SPE) / (STEPS - SPE)
        assert lrs[t] == pytest.approx(LR * (1 + math.cos(math.pi * u)) / 2, abs=1e-12)


def test_step_decay_per_step_and_per_epoch_agree_at_epoch_starts():
    per_step = _bundle_lrs(LRSchedule("step", step_size=2, gamma=0.5))
    per_epoch = _bundle_lrs(LRSchedule("step", step_size=2, gamma=0.5, interval="epoch"))
    assert per_step == per_epoch
    assert per_epoch[::SPE] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_constant_with_warmup_and_none():
    lrs = _bundle_lrs(LRSchedule("constant", warmup=1))
    assert lrs[SPE:] == [LR] * (STEPS - SPE) and lrs[0] == pytest.approx(0.01 * LR)
    bundle = optim.create_bundle("sgd", _params(), total_steps=STEPS, total_epochs=EPOCHS,
                                 lr_schedule="none")
    assert bundle.step_schedulers == [] and bundle.epoch_schedulers == []
    assert LRSchedule("none").build(bundle.optimizer, total_steps=4, total_epochs=1) is None


def test_to_dict_round_trips_and_names_only_what_differs():
    s = LRSchedule("step", milestones=[2, 4], gamma=0.5, interval="epoch")
    d = s.to_dict()
    assert d == {"name": "step", "interval": "epoch", "milestones": [2, 4], "gamma": 0.5}
    assert LRSchedule.from_dict(d) == s
    assert LRSchedule.from_dict(None) == LRSchedule("none")
    assert set(SCHEDULES) >= {"none", "cosine", "warmup-cosine", "step", "linear"}


BAD = [
    ({"name": "cosin"}, "Unknown schedule 'cosin'. Did you mean 'cosine'"),
    ({"name": "cosine", "interval": "batch"}, "interval='batch'"),
    ({"name": "cosine", "interval": "epoch", "unit": "step"}, "unit='step'"),
    ({"name": "cosine", "warmup": -1}, "warmup=-1"),
    ({"name": "cosine", "warmup": 1.5}, "warmup=1.5"),
    ({"name": "warmup-cosine"}, "needs warmup > 0"),
    ({"name": "none", "warmup": 2}, "'none' has no warm-up"),
    ({"name": "cosine", "start_factor": 0.0}, "start_factor=0.0"),
    ({"name": "cosine", "min_lr": -1.0}, "min_lr=-1.0"),
    ({"name": "step"}, "exactly one of step_size"),
    ({"name": "step", "step_size": 2, "milestones": (3,)}, "exactly one of step_size"),
    ({"name": "step", "milestones": (3, 2)}, r"milestones=\(3, 2\)"),
    ({"name": "step", "step_size": 2, "gamma": 2.0}, "gamma=2.0"),
    ({"name": "cosine", "gamma": 0.5}, "gamma does not apply to schedule 'cosine'"),
    ({"name": "linear", "end_factor": 1.5}, "end_factor=1.5"),
]


@pytest.mark.parametrize(("options", "match"), BAD)
def test_bad_options_are_refused_by_name(options, match):
    options = dict(options)
    with pytest.raises(ScheduleError, match=match):
        LRSchedule(options.pop("name"), **options)


def test_unknown_option_key_is_named():
    with pytest.raises(ScheduleError, match="Unknown schedule option 'warmpu'.*'warmup'"):
        LRSchedule.from_options("cosine", {"warmpu": 2})


def test_build_refuses_what_does_not_fit_the_run():
    opt = torch.optim.SGD(_params(), lr=LR)
    with pytest.raises(ScheduleError, match="warmup=5 epochs .20 steps. leaves nothing"):
        LRSchedule("warmup-cosine", warmup=5).build(opt, total_steps=20, total_epochs=5)
    with pytest.raises(ScheduleError, match="not a multiple of total_epochs"):
        LRSchedule("cosine", warmup=1).build(opt, total_steps=21, total_epochs=5)
    with pytest.raises(ScheduleError, match="Invalid total_steps value: 0"):
        LRSchedule("cosine").build(opt, total_steps=0, total_epochs=5)
    with pytest.raises(ScheduleError, match="pass total_steps="):
        optim.create_bundle("sgd", _params(), total_epochs=5, lr_schedule="cosine")


@pytest.mark.parametrize("name", ["calr-cosine", "calr-clip-cosine"])
def test_a_name_with_its_own_lr_schedule_refuses_another(name):
    with pytest.raises(ScheduleError, match=f"{name!r} already has an lr schedule.*'calr'"):
        optim.create_bundle(name, _params(), total_steps=STEPS, total_epochs=EPOCHS,
                            lr_schedule="cosine")
    bundle = optim.create_bundle(name, _params(), total_steps=STEPS, total_epochs=EPOCHS,
                                 lr_schedule="none")
    assert len(bundle.step_schedulers) == 1


@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_lpsgd_anneals_p_beside_the_lr_schedule(interval):
    schedule = LRSchedule("warmup-cosine", warmup=1, interval=interval)
    bundle = optim.create_bundle("lpsgd", _params(), total_steps=STEPS, total_epochs=EPOCHS,
                                 lr_schedule=schedule, lr=LR, p=6.0)
    assert isinstance(bundle.scheduler, PNormScheduler)
    assert bundle.epoch_schedulers[0] is bundle.scheduler  # the entry's first
    lrs, ps = [], []
    opt = bundle.optimizer
    for _ in range(EPOCHS):
        for _ in range(SPE):
            lrs.append(opt.param_groups[0]["lr"])
            ps.append(opt.param_groups[0]["p"])
            opt.param_groups[0]["params"][0].grad = torch.ones(3)
            opt.step()
            bundle.after_step()
        bundle.after_epoch()
    ref = PNormScheduler(optim.LPSGD(_params(), p=6.0), p_max=6.0, total_epochs=EPOCHS)
    assert ps[::SPE] == [ref.p_at(e) for e in range(EPOCHS)]
    assert lrs == _bundle_lrs(schedule)  # the same lr as on SGD


def test_bundle_state_dict_round_trips_both_schedulers():
    def make():
        return optim.create_bundle("lpsgdm", _params(), total_steps=STEPS, total_epochs=EPOCHS,
                                   lr_schedule=LRSchedule("cosine"), lr=LR)

    a = make()
    a.optimizer.step()
    for _ in range(3):
        a.after_step()
    a.after_epoch()
    b = make()
    b.load_state_dict(a.state_dict())
    for _ in range(5):
        a.after_step()
        b.after_step()
        assert a.optimizer.param_groups[0]["lr"] == b.optimizer.param_groups[0]["lr"]
    a.after_epoch()
    b.after_epoch()
    assert a.optimizer.param_groups[0]["p"] == b.optimizer.param_groups[0]["p"]


def test_dcao_multiplier_applies_on_top_of_the_scheduled_lr():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    loss_fn = torch.nn.CrossEntropyLoss()
    bundle = optim.create_bundle("dcao", model.parameters(), total_steps=STEPS,
                                 total_epochs=EPOCHS, lr_schedule=LRSchedule("cosine"),
                                 model=model, loss_fn=loss_fn, probe_data=(X, y), lr=LR)
    opt = bundle.optimizer
    base, effective = [], []
    for _ in range(STEPS):
        def closure():
            opt.zero_grad()
            loss = loss_fn(model(X), y)
            loss.backward()
            return loss

        opt.step(closure)
        # DCAO's lr = the group's (scheduled) lr times its controller's multiplier
        base.append(opt.param_groups[0]["lr"])
        effective.append(opt.current_hparams()["lr"] / opt.controller.multipliers.lr)
        bundle.after_step()
    # the schedule alone decides the group's lr: DCAO never writes it
    assert base == _torch_lrs(lambda o: CosineAnnealingLR(o, T_max=STEPS), "step")
    assert effective == pytest.approx(base, rel=1e-12)
