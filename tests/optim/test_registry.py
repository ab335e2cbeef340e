"""The optimizer registry: names, overrides, errors, schedules, registration."""

from __future__ import annotations

import io
import math

import pytest
import torch

import optim
from optim import registry
from optim.calr import CALR
from optim.lpsgd import LPSGD, LPSGDM, PNormScheduler

# The names this package's own modules provide, in registration order. Other entries
# (e.g. "dcao", which needs a model and probe data) may sit between them.
NAMES = [
    "calr", "calr-clip", "calr-cosine", "calr-clip-cosine", "smaran", "lpsgd", "lpsgdm",
    "lion", "sgd", "sgdm", "adam", "adamw", "nadam", "rmsprop", "radam",
]

BASELINES = {
    "sgd": torch.optim.SGD,
    "sgdm": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "nadam": torch.optim.NAdam,
    "rmsprop": torch.optim.RMSprop,
    "radam": torch.optim.RAdam,
}


def _params():
    return [torch.nn.Parameter(torch.ones(3))]


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations inside a test do not leak into other tests."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_all_names_are_available_in_order():
    info = optim.available()
    assert [name for name in info if name in NAMES] == NAMES
    for name, entry in info.items():
        assert entry.name == name
        assert entry.description and "\n" not in entry.description
        assert "lr" in entry.defaults


@pytest.mark.parametrize("name", NAMES)
def test_every_name_creates_an_optimizer_that_steps(name):
    params = _params()
    opt = optim.create(name, params)
    assert isinstance(opt, torch.optim.Optimizer)

    def closure():
        opt.zero_grad()
        loss = (params[0] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert not torch.equal(params[0].detach(), torch.ones(3))


@pytest.mark.parametrize(("name", "cls"), BASELINES.items())
def test_baselines_are_the_torch_optim_classes(name, cls):
    assert type(optim.create(name, _params())) is cls


def test_sgdm_has_momentum_and_sgd_none():
    assert optim.create("sgdm", _params()).defaults["momentum"] == 0.9
    assert optim.create("sgd", _params()).defaults["momentum"] == 0


def test_variants_are_calr_with_options():
    for name in ["calr", "calr-clip", "calr-cosine", "calr-clip-cosine"]:
        assert type(optim.create(name, _params())) is CALR
    assert optim.create("calr", _params()).defaults["clip"] is None
    assert optim.create("calr-clip", _params()).defaults["clip"] == 0.1
    assert optim.create("calr-clip-cosine", _params()).defaults["clip"] == 0.1
    assert optim.available()["calr-clip"].defaults["clip"] == 0.1
    assert optim.available()["calr-cosine"].schedule is not None
    assert optim.available()["calr-clip"].schedule is None


def test_defaults_reported_match_the_created_optimizer():
    for name in NAMES:
        info = optim.available()[name]
        opt_defaults = optim.create(name, _params()).defaults
        for key, value in info.defaults.items():
            assert opt_defaults[key] == value, (name, key)


def test_overrides_reach_the_optimizer():
    opt = optim.create("calr-clip", _params(), lr=0.5, clip=0.2, betas=(0.5, 0.9))
    assert opt.defaults["lr"] == 0.5
    assert opt.defaults["clip"] == 0.2
    assert opt.defaults["betas"] == (0.5, 0.9)
    assert optim.create("adam", _params(), lr=3e-4).defaults["lr"] == 3e-4


def test_unknown_name_suggests_the_closest_and_lists_all():
    with pytest.raises(ValueError, match="Unknown optimizer 'adma'") as err:
        optim.create("adma", _params())
    assert "Did you mean 'adam'?" in str(err.value)
    assert all(name in str(err.value) for name in NAMES)
    with pytest.raises(ValueError, match="Did you mean 'calr-cosine'"):
        optim.create("calr-cosin", _params())
    with pytest.raises(ValueError, match="Valid names: ") as err:
        optim.create("zzzzzzz", _params())
    assert all(name in str(err.value) for name in optim.available())
    assert "Did you mean" not in str(err.value)


def test_names_ignore_case_and_underscores():
    assert type(optim.create("CALR_Clip", _params())) is CALR
    assert optim.create("CALR_Clip", _params()).defaults["clip"] == 0.1


def test_bad_override_key_is_named():
    with pytest.raises(ValueError, match="Unknown hyperparameter 'lrr' for optimizer 'adam'") as err:
        optim.create("adam", _params(), lrr=1e-3)
    assert "Did you mean 'lr'?" in str(err.value)
    with pytest.raises(ValueError, match="'momentum' for optimizer 'calr'"):
        optim.create("calr", _params(), momentum=0.9)


def test_bad_override_value_is_rejected_by_the_optimizer():
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.create("calr", _params(), lr=-1)
    with pytest.raises(ValueError, match="Invalid clip value: -0.1"):
        optim.create("calr-clip", _params(), clip=-0.1)


def test_one_line_registers_a_new_optimizer(scratch_registry):
    optim.register("mysgd", torch.optim.SGD, "SGD with lr 0.5", defaults={"lr": 0.5})
    assert optim.available()["mysgd"].defaults["lr"] == 0.5
    opt = optim.create("mysgd", _params())
    assert type(opt) is torch.optim.SGD and opt.defaults["lr"] == 0.5
    with pytest.raises(ValueError, match="already registered"):
        optim.register("mysgd", torch.optim.SGD, "again")
    optim.register("mysgd", torch.optim.Adam, "replaced", replace=True)
    assert type(optim.create("mysgd", _params())) is torch.optim.Adam


def test_registration_checks_default_keys(scratch_registry):
    with pytest.raises(ValueError, match="Unknown default 'mometum'.*Did you mean 'momentum'"):
        optim.register("typo", torch.optim.SGD, "typo", defaults={"mometum": 0.9})
    assert "typo" not in optim.available()


def test_factories_with_var_kwargs_accept_any_override(scratch_registry):
    def factory(params, **kwargs):
        return torch.optim.SGD(params, lr=kwargs.pop("lr", 0.1))

    optim.register("anything", factory, "a function factory")
    assert optim.create("anything", _params(), lr=0.3).defaults["lr"] == 0.3


def test_bundle_without_schedule():
    bundle = optim.create_bundle("adam", _params(), total_steps=10, total_epochs=2)
    assert isinstance(bundle.optimizer, torch.optim.Adam)
    assert bundle.scheduler is None
    bundle.after_step()
    bundle.after_epoch()
    assert bundle.state_dict()["scheduler"] is None


@pytest.mark.parametrize("name", ["calr-cosine", "calr-clip-cosine"])
def test_cosine_variants_follow_the_closed_form_per_step(name):
    params = _params()
    total = 40
    bundle = optim.create_bundle(name, params, total_steps=total, total_epochs=3, lr=0.02)
    assert isinstance(bundle.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    for t in range(total + 1):
        # After t optimizer steps: eta_t = eta_0 (1 + cos(pi t / T_max)) / 2.
        expected = 0.02 * 0.5 * (1 + math.cos(math.pi * t / total))
        assert bundle.optimizer.param_groups[0]["lr"] == pytest.approx(expected, abs=1e-12)
        if t < total:
            params[0].grad = torch.ones(3)
            bundle.optimizer.step()
            bundle.after_step()
            bundle.after_epoch()  # does not step a per-step schedule
    assert bundle.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)


def test_cosine_variants_need_total_steps():
    with pytest.raises(ValueError, match="pass total_steps="):
        optim.create_bundle("calr-cosine", _params())
    with pytest.raises(ValueError, match="Invalid total_steps value: 0"):
        optim.create_bundle("calr-cosine", _params(), total_steps=0)
    with pytest.raises(ValueError, match="Invalid total_epochs value: 2.5"):
        optim.create_bundle("lpsgd", _params(), total_epochs=2.5)


@pytest.mark.parametrize(("name", "cls"), [("lpsgd", LPSGD), ("lpsgdm", LPSGDM)])
def test_lpsgd_bundle_anneals_p_per_epoch(name, cls):
    bundle = optim.create_bundle(name, _params(), total_steps=100, total_epochs=3, p=8.0)
    assert type(bundle.optimizer) is cls
    assert isinstance(bundle.scheduler, PNormScheduler)
    group = bundle.optimizer.param_groups[0]
    assert group["p"] == 8.0
    bundle.after_step()  # not per step
    assert group["p"] == 8.0
    bundle.after_epoch()
    assert group["p"] == 5.0
    bundle.after_epoch()
    assert group["p"] == 2.0
    with pytest.raises(ValueError, match="pass total_epochs="):
        optim.create_bundle(name, _params())


def test_bundle_state_dict_round_trip():
    params = _params()
    bundle = optim.create_bundle("calr-clip-cosine", params, total_steps=20)
    for _ in range(5):
        params[0].grad = torch.linspace(-1, 1, 3)
        bundle.optimizer.step()
        bundle.after_step()
    buffer = io.BytesIO()
    torch.save(bundle.state_dict(), buffer)
    buffer.seek(0)

    params_b = [torch.nn.Parameter(params[0].detach().clone())]
    bundle_b = optim.create_bundle("calr-clip-cosine", params_b, total_steps=20)
    bundle_b.load_state_dict(torch.load(buffer))
    assert bundle_b.optimizer.param_groups[0]["lr"] == bundle.optimizer.param_groups[0]["lr"]
    for _ in range(10):
        for p, b in ((params[0], bundle), (params_b[0], bundle_b)):
            p.grad = torch.linspace(-1, 1, 3)
            b.optimizer.step()
            b.after_step()
        assert torch.equal(params[0], params_b[0])
        assert bundle_b.optimizer.param_groups[0]["lr"] == bundle.optimizer.param_groups[0]["lr"]


def test_available_reports_required_arguments(scratch_registry):
    def needs_model(params, *, model, lr=0.1):
        return torch.optim.SGD(params, lr=lr)

    optim.register("needs-model", needs_model, "needs a model")
    assert optim.available()["needs-model"].requires == ("model",)
    assert all(optim.available()[name].requires == () for name in NAMES)
    optim.register("has-model", needs_model, "model given", defaults={"model": None})
    assert optim.available()["has-model"].requires == ()


def _swept_lrs() -> dict[str, float]:
    """``name -> chosen lr`` of the committed sweep (analyses/results/default_lrs.md)."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "analyses" / "results" / "default_lrs.md"
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    col = head.index("chosen lr")
    return {cells[0]: float(cells[col]) for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])}


def test_default_lrs_are_the_committed_sweeps_choices():
    swept = _swept_lrs()
    assert set(swept) == set(optim.available())  # every registered name was swept
    for name, info in optim.available().items():
        # (test_defaults_reported_match_the_created_optimizer: the created ones agree)
        assert info.defaults["lr"] == swept[name] == registry.TUNED_LR[name], name
