"""Learning-rate schedules by name, for any optimizer: `LRSchedule`, `SCHEDULES`.

An `LRSchedule` is a frozen, JSON-able description (a name and its options); its
`build(optimizer, total_steps=..., total_epochs=...)` returns a
``torch.optim.lr_scheduler`` object (or None for ``none``), so a run's config can
store the description and a checkpoint the scheduler's state.

Names (``eta_0`` is each param group's lr when the scheduler is built, ``T`` the
length of the run and ``W`` the warm-up, in scheduler steps):

    none           the lr stays eta_0 (no scheduler)
    constant       eta_0 after the warm-up
    cosine         eta_min + (eta_0 - eta_min) (1 + cos(pi t / (T - W))) / 2  (CosineAnnealingLR)
    warmup-cosine  cosine with a warm-up, which it requires (LPSGD's and the DCAO
                   baseline's schedule)
    linear         eta_0 (1 + (end_factor - 1) t / (T - W)), to end_factor eta_0 (LinearLR)
    step           eta_0 gamma^floor(t / step_size) (StepLR), or
                   eta_0 gamma^(milestones passed) (MultiStepLR)

where t counts scheduler steps after the warm-up. A warm-up (``warmup > 0``) is
LinearLR from ``start_factor * eta_0`` to ``eta_0`` over W scheduler steps, joined to
the main schedule by SequentialLR; the main schedule counts from the end of the
warm-up (a milestone of 10 with a warm-up of 2 decays at 12).

Units. ``interval`` says when the scheduler is stepped: ``"step"`` (after every
optimizer step; the default) or ``"epoch"`` (after every epoch). Lengths
(``warmup``, ``step_size``, ``milestones``) count ``unit``s: ``"epoch"`` (the
default) or ``"step"``. A per-step schedule with lengths in epochs multiplies them
by the steps per epoch (``total_steps / total_epochs``, which must be a whole
number); a per-epoch schedule cannot count lengths in steps.

The schedule writes each param group's ``lr``, which is the *base* lr of an
optimizer that scales it (DCAO multiplies it by its controller's lr multiplier when
it steps, without writing it back), and it leaves every other entry (LPSGD's ``p``)
to the optimizer's own schedule.

Example:
    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    >>> sched = LRSchedule("warmup-cosine", warmup=1).build(opt, total_steps=4, total_epochs=2)
    >>> lrs = []
    >>> for _ in range(4):
    ...     lrs.append(round(opt.param_groups[0]["lr"], 6))
    ...     opt.step(); sched.step()
    >>> lrs
    [0.001, 0.0505, 0.1, 0.05]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    SequentialLR,
    StepLR,
)

from spectra.utils.checks import did_you_mean

__all__ = ["SCHEDULES", "LRSchedule", "ScheduleError"]


class ScheduleError(ValueError):
    """A bad schedule name or option, or a schedule that does not fit the run."""


SCHEDULES: dict[str, str] = {
    "none": "constant lr, no scheduler",
    "constant": "constant lr after a linear warm-up",
    "cosine": "cosine decay to min_lr (CosineAnnealingLR)",
    "warmup-cosine": "linear warm-up, then cosine decay to min_lr",
    "linear": "linear decay to end_factor * lr (LinearLR)",
    "step": "lr times gamma every step_size (StepLR) or at milestones (MultiStepLR)",
}
_UNITS = ("step", "epoch")


@dataclass(frozen=True)
class LRSchedule:
    """A learning-rate schedule by name (see the module docstring for the formulas).

    Attributes:
        name: one of `SCHEDULES`.
        interval: ``"step"`` or ``"epoch"``: when the scheduler is stepped.
        unit: ``"epoch"`` or ``"step"``: what ``warmup``, ``step_size`` and
            ``milestones`` count.
        warmup: warm-up length in ``unit``s (0: none; required > 0 by
            ``warmup-cosine``, not allowed by ``none``).
        start_factor: the warm-up starts at ``start_factor * lr``, in (0, 1].
        min_lr: ``eta_min`` of ``cosine`` (an lr, not a factor), >= 0.
        end_factor: ``linear`` ends at ``end_factor * lr``, in [0, 1].
        step_size: ``step``: decay every this many ``unit``s.
        milestones: ``step``: decay at these ``unit`` counts instead (increasing).
        gamma: ``step``: the decay factor, in (0, 1].

    Raises:
        ScheduleError: (a ValueError) an unknown name or a bad option; the message
            names the option.
    """

    name: str = "none"
    interval: str = "step"
    unit: str = "epoch"
    warmup: int = 0
    start_factor: float = 0.01
    min_lr: float = 0.0
    end_factor: float = 0.0
    step_size: int | None = None
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __post_init__(self) -> None:
        name = str(self.name).strip().lower().replace("_", "-")
        object.__setattr__(self, "name", name)
        if name not in SCHEDULES:
            hint = did_you_mean(name, SCHEDULES)
            raise ScheduleError(f"Unknown schedule {self.name!r}.{hint} "
                             f"Valid schedules: {', '.join(SCHEDULES)}")
        for key in ("interval", "unit"):
            if getattr(self, key) not in _UNITS:
                raise ScheduleError(f"Invalid schedule option {key}={getattr(self, key)!r} "
                                 "(expected 'step' or 'epoch')")
        if self.interval == "epoch" and self.unit == "step":
            raise ScheduleError("Invalid schedule option unit='step': a per-epoch schedule "
                             "(interval='epoch') counts its lengths in epochs")
        _check_int("warmup", self.warmup, minimum=0)
        _check_float("start_factor", self.start_factor, 0.0, 1.0, low_open=True)
        _check_float("min_lr", self.min_lr, 0.0, math.inf)
        _check_float("end_factor", self.end_factor, 0.0, 1.0)
        _check_float("gamma", self.gamma, 0.0, 1.0, low_open=True)
        milestones = self.milestones
        if isinstance(milestones, int) and not isinstance(milestones, bool):
            milestones = (milestones,)
        if not isinstance(milestones, (tuple, list)):
            raise ScheduleError(f"Invalid schedule option milestones={milestones!r} "
                             "(expected increasing positive integers, e.g. 30,60)")
        milestones = tuple(milestones)
        for m in milestones:
            _check_int("milestones", m, minimum=1)
        if list(milestones) != sorted(set(milestones)):
            raise ScheduleError(f"Invalid schedule option milestones={milestones!r} "
                             "(expected strictly increasing integers)")
        object.__setattr__(self, "milestones", milestones)
        if self.step_size is not None:
            _check_int("step_size", self.step_size, minimum=1)
        if name == "warmup-cosine" and self.warmup == 0:
            raise ScheduleError("schedule 'warmup-cosine' needs warmup > 0 (its length in "
                             f"{self.unit}s); use 'cosine' for none")
        if name == "none" and self.warmup:
            raise ScheduleError("schedule 'none' has no warm-up; use 'constant' with warmup="
                             f"{self.warmup}")
        if name == "step" and (self.step_size is None) == (not milestones):
            raise ScheduleError("schedule 'step' needs exactly one of step_size (decay every "
                             "N units) and milestones (decay at these units)")
        # options that the name does not use are refused rather than ignored
        used = _USED[name]
        for f in dataclasses.fields(self)[1:]:
            if f.name not in used and getattr(self, f.name) != f.default:
                raise ScheduleError(f"schedule option {f.name} does not apply to schedule "
                                 f"{name!r} (its options: {', '.join(sorted(used))})")

    # ------------------------------------------------------------------ conversion
    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any] | None = None) -> LRSchedule:
        """``LRSchedule(name, **options)`` with an unknown option key named (and the
        closest valid key suggested) instead of a TypeError."""
        options = dict(options or {})
        valid = [f.name for f in dataclasses.fields(cls) if f.name != "name"]
        for key in options:
            if key not in valid:
                hint = did_you_mean(key, valid)
                raise ScheduleError(f"Unknown schedule option {key!r}.{hint} "
                                 f"Valid options: {', '.join(valid)}")
        return cls(name, **options)

    def to_dict(self) -> dict[str, Any]:
        """The name and the options that differ from their defaults (JSON-able)."""
        out: dict[str, Any] = {"name": self.name}
        for f in dataclasses.fields(self)[1:]:
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> LRSchedule:
        """The inverse of `to_dict` (None: ``none``)."""
        data = dict(data or {"name": "none"})
        return cls.from_options(data.pop("name"), data)

    def describe(self) -> str:
        """One line, e.g. ``"warmup-cosine per step, warmup 2 epochs"``."""
        if self.name == "none":
            return "none (constant lr)"
        opts = {k: v for k, v in self.to_dict().items() if k not in ("name", "interval", "unit")}
        text = f"{self.name} per {self.interval}"
        if opts:
            text += ", " + ", ".join(f"{k} {v}" for k, v in opts.items())
        return text + (f" (lengths in {self.unit}s)" if opts else "")

    # ------------------------------------------------------------------ build
    def build(self, optimizer: Optimizer, *, total_steps: int, total_epochs: int
              ) -> LRScheduler | None:
        """The scheduler for a run of ``total_steps`` optimizer steps in
        ``total_epochs`` epochs, to be stepped per `interval`; None for ``none``.

        Raises:
            ScheduleError: a total that is not an int >= 1, steps per epoch that are not
                a whole number while lengths need converting, or a warm-up that
                leaves no room for the main schedule.
        """
        for key, value in (("total_steps", total_steps), ("total_epochs", total_epochs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ScheduleError(f"Invalid {key} value: {value!r} (expected an int >= 1)")
        if self.name == "none":
            return None
        total = total_steps if self.interval == "step" else total_epochs
        scale = 1
        if self.interval == "step" and self.unit == "epoch":
            if total_steps % total_epochs:
                raise ScheduleError(
                    f"schedule lengths in epochs need whole steps per epoch, but "
                    f"total_steps={total_steps} is not a multiple of total_epochs={total_epochs}; "
                    "give the lengths in steps (unit='step')")
            scale = total_steps // total_epochs
        warmup = self.warmup * scale
        if warmup and warmup >= total and self.name != "constant":
            raise ScheduleError(
                f"schedule option warmup={self.warmup} {self.unit}s ({warmup} {self.interval}s) "
                f"leaves nothing of the run's {total} {self.interval}s for the {self.name} "
                "schedule; shorten the warm-up")
        main = self._main(optimizer, total - warmup, scale)
        if not warmup:
            return main
        ramp = LinearLR(optimizer, start_factor=self.start_factor, end_factor=1.0,
                        total_iters=warmup)
        return SequentialLR(optimizer, [ramp, main], milestones=[warmup])

    def _main(self, optimizer: Optimizer, length: int, scale: int) -> LRScheduler:
        if self.name in ("cosine", "warmup-cosine"):
            return CosineAnnealingLR(optimizer, T_max=max(length, 1), eta_min=self.min_lr)
        if self.name == "linear":
            return LinearLR(optimizer, start_factor=1.0, end_factor=self.end_factor,
                            total_iters=max(length, 1))
        if self.name == "step":
            if self.step_size is not None:
                return StepLR(optimizer, step_size=self.step_size * scale, gamma=self.gamma)
            return MultiStepLR(optimizer, milestones=[m * scale for m in self.milestones],
                               gamma=self.gamma)
        # constant: factor 1 throughout
        return LinearLR(optimizer, start_factor=1.0, end_factor=1.0, total_iters=1)


_COMMON = {"interval", "unit", "warmup", "start_factor"}
_USED: dict[str, set[str]] = {
    "none": {"interval", "unit"},
    "constant": _COMMON,
    "cosine": _COMMON | {"min_lr"},
    "warmup-cosine": _COMMON | {"min_lr"},
    "linear": _COMMON | {"end_factor"},
    "step": _COMMON | {"step_size", "milestones", "gamma"},
}


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScheduleError(f"Invalid schedule option {name}={value!r} "
                         f"(expected an integer >= {minimum})")


def _check_float(name: str, value: Any, low: float, high: float, *, low_open: bool = False
                 ) -> None:
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and (value > low if low_open else value >= low)
          and value <= high)
    if not ok:
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ScheduleError(f"Invalid schedule option {name}={value!r} (expected a number in "
                         f"{bounds})")
