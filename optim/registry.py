"""Optimizers by name: `create`, `create_bundle`, `available`, `register`.

One line registers an optimizer: a name, a factory (an `Optimizer` class or any
callable ``factory(params, **hyperparameters)``), a one-line description, and
optionally registry-level defaults and a schedule:

    register("dcao", DCAO, "DCAO: Lanczos probes drive lr, momentum and weight decay")

Schedules. Some names are an optimizer plus a scheduler (the cosine variants of CALR;
the p-norm annealing of LPSGD/LPSGDM). `create(name, ...)` always returns only the
`torch.optim.Optimizer` (for ``calr-cosine`` that is CALR at a constant lr). Training
loops should use `create_bundle(name, params, total_steps=..., total_epochs=...)`,
which returns an `OptimizerBundle`: the optimizer and the entry's scheduler, with
`after_step()` (call after every optimizer step) and `after_epoch()` (call after every
epoch) that step the scheduler at its own interval, and a joint `state_dict()`. Pass
both totals always; a name without a schedule ignores them.

Learning-rate schedules for every name: ``create_bundle(..., lr_schedule="cosine")``
(a name of `optim.schedules.SCHEDULES` or an `LRSchedule`) adds an lr scheduler
beside the entry's own. It composes with a schedule that sets another entry (LPSGD's
``p``: both run, each at its own interval) and is refused, with a ValueError, for a
name whose schedule already sets the lr (``calr-cosine``, ``calr-clip-cosine``: use
``calr`` or ``calr-clip`` with the lr schedule instead), because two lr schedulers on
one optimizer would each rescale the other's lr.

Baselines (``sgd``, ``sgdm``, ``adam``, ``adamw``, ``nadam``, ``rmsprop``, ``radam``)
are the `torch.optim` classes themselves, with torch's defaults except the lr (and
``sgdm``'s momentum 0.9). Every entry's default lr (``TUNED_LR``) is the choice of a
short sweep for a default ``spectra compare`` run (digits, the default MLP, 5 epochs,
chosen on held-out validation data): ``python -m analyses.default_lrs`` writes the
sweep to analyses/results/default_lrs.md, and tests/optim/test_registry.py checks
that the two agree. The classes keep their papers' lrs; README.md ("Optimizers")
tables every name's defaults, where each comes from and the measurement behind it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR

from spectra.utils.checks import did_you_mean
from spectra.utils.checks import options as check_options

from .calr import CALR, DEFAULT_CLIP
from .dcao import DCAO
from .lion import Lion
from .lpsgd import LPSGD, LPSGDM, PNormScheduler
from .schedules import LRSchedule, ScheduleError
from .smaran import SMARAN

__all__ = [
    "OptimizerBundle",
    "OptimizerInfo",
    "Schedule",
    "available",
    "create",
    "create_bundle",
    "register",
]

Interval = Literal["step", "epoch"]

# Keyword arguments of torch.optim classes that select an implementation, not the math.
_IMPLEMENTATION_FLAGS = frozenset({"foreach", "capturable", "differentiable", "fused"})


@dataclass(frozen=True)
class Schedule:
    """A scheduler that is part of a registry entry.

    Attributes:
        description: one line, shown by `available()`.
        interval: "step" (stepped after every optimizer step, built with
            ``total_steps``) or "epoch" (stepped after every epoch, ``total_epochs``).
        build: ``build(optimizer, total) -> scheduler`` with ``step()``,
            ``state_dict()`` and ``load_state_dict()``.
        param: the param-group entry the scheduler writes (``"lr"``, or ``"p"`` for
            LPSGD's); a name whose schedule writes ``"lr"`` takes no lr schedule.
    """

    description: str
    interval: Interval
    build: Callable[[Optimizer, int], Any]
    param: str = "lr"


COSINE_LR = Schedule(
    "cosine lr, eta_t = eta_0 (1 + cos(pi t / total_steps)) / 2 after t steps "
    "(CosineAnnealingLR, eta_min 0), stepped per optimizer step",
    "step",
    lambda optimizer, total_steps: CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=0.0),
)

P_NORM = Schedule(
    "p annealed by cosine from the optimizer's p to 2 over total_epochs (PNormScheduler), "
    "stepped per epoch",
    "epoch",
    lambda optimizer, total_epochs: PNormScheduler(
        optimizer, p_max=optimizer.defaults["p"], total_epochs=total_epochs
    ),
    param="p",
)


@dataclass(frozen=True)
class OptimizerInfo:
    """What `available()` reports about one name."""

    name: str
    description: str
    defaults: Mapping[str, Any]
    schedule: str | None
    requires: tuple[str, ...] = ()
    """Arguments without a default that `create` must be given besides ``params``
    (e.g. DCAO's ``model``); empty for optimizers that need only the parameters."""


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., Optimizer]
    description: str
    defaults: Mapping[str, Any]
    schedule: Schedule | None
    accepted: frozenset[str] | None  # keyword names the factory takes; None: any


_REGISTRY: dict[str, _Entry] = {}


@dataclass
class OptimizerBundle:
    """An optimizer, the scheduler its registry entry comes with (if any) and an lr
    scheduler (``create_bundle(..., lr_schedule=...)``, if any).

    Call `after_step()` after every ``optimizer.step()`` and `after_epoch()` at the end
    of every epoch; each steps every scheduler only at the scheduler's own interval, so
    a training loop can call both for every name. `step_schedulers` and
    `epoch_schedulers` list them for a loop that steps them itself (the entry's first).
    """

    optimizer: Optimizer
    scheduler: Any | None = None
    interval: Interval | None = None
    lr_scheduler: Any | None = None
    lr_interval: Interval | None = None

    @property
    def step_schedulers(self) -> list[Any]:
        return self._at("step")

    @property
    def epoch_schedulers(self) -> list[Any]:
        return self._at("epoch")

    def _at(self, interval: Interval) -> list[Any]:
        pairs = ((self.scheduler, self.interval), (self.lr_scheduler, self.lr_interval))
        return [s for s, i in pairs if s is not None and i == interval]

    def after_step(self) -> None:
        for s in self.step_schedulers:
            s.step()

    def after_epoch(self) -> None:
        for s in self.epoch_schedulers:
            s.step()

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "lr_scheduler": None if self.lr_scheduler is None else self.lr_scheduler.state_dict(),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        # The schedulers first: loading one may write into the param groups, which the
        # optimizer's state then overwrites with the saved values.
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state_dict["scheduler"])
        if self.lr_scheduler is not None:
            self.lr_scheduler.load_state_dict(state_dict["lr_scheduler"])
        self.optimizer.load_state_dict(state_dict["optimizer"])


def register(
    name: str,
    factory: Callable[..., Optimizer],
    description: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    schedule: Schedule | None = None,
    replace: bool = False,
) -> None:
    """Register `factory` under `name` (lower case; '_' and '-' are the same).

    Args:
        name: the registry name, e.g. "dcao".
        factory: an `Optimizer` subclass or a callable ``factory(params, **kwargs)``.
        description: one line for `available()`.
        defaults: hyperparameters this entry passes unless overridden (e.g. a variant).
        schedule: a `Schedule` that `create_bundle` attaches.
        replace: allow replacing an existing entry (otherwise a ValueError).
    """
    key = _normalize(name)
    if key in _REGISTRY and not replace:
        raise ValueError(f"Optimizer {key!r} is already registered; pass replace=True")
    accepted = _accepted_keywords(factory)
    entry_defaults = dict(defaults or {})
    _check_keys(key, entry_defaults, accepted, what="default")
    _REGISTRY[key] = _Entry(
        factory, description, MappingProxyType(entry_defaults), schedule, accepted
    )


def available() -> dict[str, OptimizerInfo]:
    """Every registered name, in registration order, with its description and defaults.

    The defaults are the factory's own keyword defaults (implementation switches such
    as ``foreach`` left out) updated with the entry's defaults; ``requires`` lists the
    arguments without a default that `create` needs besides ``params``.
    """
    return {
        name: OptimizerInfo(
            name=name,
            description=entry.description,
            defaults=MappingProxyType({**_signature_defaults(entry.factory), **entry.defaults}),
            schedule=None if entry.schedule is None else entry.schedule.description,
            requires=tuple(
                key for key in _required_keywords(entry.factory) if key not in entry.defaults
            ),
        )
        for name, entry in _REGISTRY.items()
    }


def create(name: str, params: Iterable[Any], **overrides: Any) -> Optimizer:
    """The optimizer registered as `name` over `params`, with `overrides` applied.

    Only the optimizer: a name's schedule (``calr-cosine``, ``lpsgd``, ...) is attached
    by `create_bundle`.

    Raises:
        ValueError: unknown name (the message lists the valid names and suggests the
            closest), an override the optimizer does not take (names the key), or
            one whose value does not fit its annotation (``betas=0.9``).
    """
    key, entry = _lookup(name)
    _check_keys(key, overrides, entry.accepted, what="hyperparameter")
    check_options(f"optimizer {key!r}", entry.factory, overrides)
    return entry.factory(params, **{**entry.defaults, **overrides})


def create_bundle(
    name: str,
    params: Iterable[Any],
    *,
    total_steps: int | None = None,
    total_epochs: int | None = None,
    lr_schedule: str | LRSchedule | None = None,
    **overrides: Any,
) -> OptimizerBundle:
    """The optimizer registered as `name` with its schedule, as an `OptimizerBundle`.

    Args:
        name, params, overrides: as for `create`.
        total_steps: number of optimizer steps of the run (step-interval schedules).
        total_epochs: number of epochs of the run (epoch-interval schedules).
        lr_schedule: an lr schedule for any name (`optim.schedules.LRSchedule`, or a
            name of `optim.schedules.SCHEDULES` with default options); it needs both
            totals. None or ``"none"``: only the entry's schedule.

    Raises:
        ValueError: as `create`; when a schedule needs a total that is missing.
        ScheduleError: (a ValueError) a bad lr schedule, or one for a name whose own
            schedule sets the lr (``calr-cosine``).
    """
    key, entry = _lookup(name)
    schedule = entry.schedule
    if isinstance(lr_schedule, str):
        lr_schedule = LRSchedule(lr_schedule)
    if lr_schedule is not None and lr_schedule.name == "none":
        lr_schedule = None
    if lr_schedule is not None:
        if schedule is not None and schedule.param == "lr":
            raise ScheduleError(
                f"Optimizer {key!r} already has an lr schedule ({schedule.description}); "
                f"a second one ({lr_schedule.name!r}) would rescale it. Use the name without "
                "the schedule (e.g. 'calr' for 'calr-cosine') with the lr schedule, or no lr "
                "schedule")
        for argument, total in (("total_steps", total_steps), ("total_epochs", total_epochs)):
            if total is None:
                raise ScheduleError(f"An lr schedule ({lr_schedule.name!r}) needs the run's "
                                 f"length; pass {argument}=")
    optimizer = create(key, params, **overrides)
    lr_scheduler = None
    if lr_schedule is not None:
        lr_scheduler = lr_schedule.build(optimizer, total_steps=total_steps,
                                         total_epochs=total_epochs)
    lr_interval = None if lr_scheduler is None else lr_schedule.interval
    if schedule is None:
        return OptimizerBundle(optimizer, lr_scheduler=lr_scheduler, lr_interval=lr_interval)
    total = total_steps if schedule.interval == "step" else total_epochs
    argument = "total_steps" if schedule.interval == "step" else "total_epochs"
    if total is None:
        raise ValueError(
            f"Optimizer {key!r} comes with a schedule ({schedule.description}); "
            f"pass {argument}=<number of {schedule.interval}s of the run>"
        )
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"Invalid {argument} value: {total!r} (expected an int >= 1)")
    return OptimizerBundle(optimizer, schedule.build(optimizer, total), schedule.interval,
                           lr_scheduler, lr_interval)


def _normalize(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _lookup(name: str) -> tuple[str, _Entry]:
    key = _normalize(name)
    entry = _REGISTRY.get(key)
    if entry is None:
        names = list(_REGISTRY)
        raise ValueError(
            f"Unknown optimizer {name!r}.{did_you_mean(key, names)} "
            f"Valid names: {', '.join(names)}"
        )
    return key, entry



def _check_keys(
    name: str, kwargs: Mapping[str, Any], accepted: frozenset[str] | None, *, what: str
) -> None:
    if accepted is None:
        return
    for key in kwargs:
        if key not in accepted:
            raise ValueError(
                f"Unknown {what} {key!r} for optimizer {name!r}.{did_you_mean(key, accepted)} "
                f"Valid hyperparameters: {', '.join(sorted(accepted))}"
            )


def _keyword_parameters(factory: Callable[..., Any]) -> list[inspect.Parameter]:
    """The factory's parameters after the first (``params``)."""
    return list(inspect.signature(factory).parameters.values())[1:]


def _accepted_keywords(factory: Callable[..., Any]) -> frozenset[str] | None:
    parameters = _keyword_parameters(factory)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )


def _required_keywords(factory: Callable[..., Any]) -> list[str]:
    return [
        p.name
        for p in _keyword_parameters(factory)
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]


def _signature_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    return {
        p.name: p.default
        for p in _keyword_parameters(factory)
        if p.default is not inspect.Parameter.empty and p.name not in _IMPLEMENTATION_FLAGS
    }


# --- the registry: one line per optimizer -------------------------------------------------
# Default lrs: the sweep's choices in analyses/results/default_lrs.md (python -m
# analyses.default_lrs), so that a default `spectra compare` gives every optimizer an lr
# that suits the task. A name's class default, where different, is its paper's.
TUNED_LR: Mapping[str, float] = MappingProxyType({
    "calr": 0.03, "calr-clip": 0.03, "calr-cosine": 0.03, "calr-clip-cosine": 0.03,
    "smaran": 0.3, "lpsgd": 0.03, "lpsgdm": 0.03, "dcao": 0.03, "lion": 0.01,
    "sgd": 0.3, "sgdm": 0.1, "adam": 0.01, "adamw": 0.01, "nadam": 3e-3, "rmsprop": 3e-3,
    "radam": 0.1,
})

register("calr", CALR, "CALR (Eq. 5): Adam moments, curvature |g| + delta added to v_hat",
         defaults={"lr": TUNED_LR["calr"]})
register("calr-clip", CALR, "CALR with the gradient clamped to [-0.1, 0.1]",
         defaults={"lr": TUNED_LR["calr-clip"], "clip": DEFAULT_CLIP})
register("calr-cosine", CALR, "CALR with a per-step cosine learning rate",
         defaults={"lr": TUNED_LR["calr-cosine"]}, schedule=COSINE_LR)
register("calr-clip-cosine", CALR, "CALR, gradient clamped to [-0.1, 0.1], cosine learning rate",
         defaults={"lr": TUNED_LR["calr-clip-cosine"], "clip": DEFAULT_CLIP}, schedule=COSINE_LR)
register("smaran", SMARAN, "SMARAN: loss-value step size, normalized-gradient momentum",
         defaults={"lr": TUNED_LR["smaran"]})
register("lpsgd", LPSGD, "LPSGD: l_p steepest-descent SGD, p annealed from p_max to 2",
         defaults={"lr": TUNED_LR["lpsgd"]}, schedule=P_NORM)
register("lpsgdm", LPSGDM, "LPSGDM: LPSGD with momentum and decoupled weight decay",
         defaults={"lr": TUNED_LR["lpsgdm"]}, schedule=P_NORM)
register("dcao", DCAO, "DCAO: Lanczos probes of the Hessian drive lr, momentum and weight decay "
         "(needs model=, loss_fn=, probe_data=)", defaults={"lr": TUNED_LR["dcao"]})
register("lion", Lion, "Lion: sign of interpolated momentum (Chen et al. 2023)",
         defaults={"lr": TUNED_LR["lion"]})
register("sgd", torch.optim.SGD, "SGD (torch.optim.SGD)", defaults={"lr": TUNED_LR["sgd"]})
register("sgdm", torch.optim.SGD, "SGD with heavy-ball momentum 0.9 (torch.optim.SGD)",
         defaults={"lr": TUNED_LR["sgdm"], "momentum": 0.9})
register("adam", torch.optim.Adam, "Adam (torch.optim.Adam)", defaults={"lr": TUNED_LR["adam"]})
register("adamw", torch.optim.AdamW, "AdamW, decoupled weight decay (torch.optim.AdamW)",
         defaults={"lr": TUNED_LR["adamw"]})
register("nadam", torch.optim.NAdam, "NAdam, Nesterov Adam (torch.optim.NAdam)",
         defaults={"lr": TUNED_LR["nadam"]})
register("rmsprop", torch.optim.RMSprop, "RMSprop (torch.optim.RMSprop)",
         defaults={"lr": TUNED_LR["rmsprop"]})
register("radam", torch.optim.RAdam, "RAdam, rectified Adam (torch.optim.RAdam)",
         defaults={"lr": TUNED_LR["radam"]})
