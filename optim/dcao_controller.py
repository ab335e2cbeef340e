"""DCAO's curvature controller: spectral metrics -> hyperparameter multipliers.

Pure and deterministic: it sees one probe's ``(rho, gap)`` at a time (``rho =
lambda_1``, the largest Hessian eigenvalue; ``gap = gamma = lambda_1 - lambda_2``)
and returns the learning-rate, momentum and weight-decay multipliers that DCAO
holds until the next probe. The default mapping is the DCAO proposal's
(dcao.txt, Sec. 2.3) as written, every multiplier clamped to ``[0.5, 2]``:

* learning rate: ``eta_t = eta_0 f(rho)``, ``f(rho) = exp(-alpha (rho - rho_ref))``;
* momentum: ``beta_t = beta_0 g(gamma)``, ``g(gamma) = 1 + tanh(beta1 (gamma - gamma_ref))``,
  and ``beta_t <= max(max_momentum, beta_0)`` (default ``max_momentum = 0.99``);
* weight decay: ``lambda_t = lambda_0 h(rho)``, ``h(rho) = 1 + lambda1 rho / rho_ref``.

``mapping="linear"`` is the proposal's ablation (Sec. 2.6, "linear vs.
exponential mappings"): the first-order expansions ``f = 1 - alpha (rho - rho_ref)``
and ``g = 1 + beta1 (gamma - gamma_ref)``; ``h`` is linear in both. The switches
``adapt_lr``, ``adapt_momentum``, ``adapt_weight_decay`` hold a multiplier at 1
(the proposal's ablations of one hyperparameter at a time).

Decisions where the proposal is silent or ambiguous:

* Clamps. "multipliers in [0.5, 2.0]" is read as a clamp of each of ``f``, ``g``,
  ``h`` (the multiplier, not the hyperparameter). ``beta_0 g`` can still reach or
  pass 1 (``0.9 * 2 = 1.8``), and heavy-ball momentum with ``beta >= 1`` does not
  contract: the velocity grows without bound. So ``beta_t`` is also capped at
  ``max(max_momentum, beta_0)``: a ``g > 1`` can raise momentum to 0.99 at most, a
  ``g <= 1`` always applies; ``momentum_mult`` in the history is ``g`` itself.
* Units of ``alpha`` and ``beta1``. They multiply eigenvalues, so a fixed number
  fits one model only. ``alpha=None`` (default) means ``alpha = ln 2 / rho_ref``:
  ``rho = 2 rho_ref`` halves the learning rate and ``rho -> 0`` doubles it.
  ``beta1=None`` (default) means ``beta1 = 2 / rho_ref``: a gap wider than its
  reference by ``rho_ref / 2`` gives ``g = 1 + tanh(1) = 1.76``. A number is used
  as given, in 1/(eigenvalue units).
* Weight decay at the reference. As written, ``h(rho_ref) = 1 + lambda1``: the
  weight decay at the reference curvature is ``lambda_0 (1 + lambda1)``, not
  ``lambda_0``; it only grows with ``rho``. Kept as written; ``lambda1 = 0.5``
  (default) keeps ``h`` in ``(1, 2]`` unclamped for ``rho`` in ``(0, 2 rho_ref]``.
* ``rho_ref``: a number (a target curvature, as the proposal says);
  ``"warmup"`` (default), the median ``lambda_1`` of the first ``warmup_probes``
  successful probes, then frozen (a reference that tracked ``rho`` would make
  ``f = 1`` forever); or ``"eos"``, the stability threshold ``(2 + 2 beta_0) / eta_0``
  of heavy-ball SGD with the *base* learning rate and momentum, passed by the
  optimizer at each probe (so a learning-rate schedule moves it). ``gamma_ref``:
  a number (>= 0) or ``"warmup"`` (the median gap of the warm-up probes).
* Before a multiplier's references are known it is 1 (the base hyperparameter).
* Smoothing. The proposal maps each probe directly (``ema = 0``, default);
  ``ema`` in ``[0, 1)`` averages ``rho`` and ``gamma`` over probes (weight of the past).

A failed probe keeps the previous multipliers; ``max_failures`` failures in a row
reset them to 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ._common import check_bool, check_int

__all__ = ["MAPPINGS", "DCAOController", "Multipliers"]

MAPPINGS = ("exponential", "linear")


@dataclass(frozen=True)
class Multipliers:
    """Factors applied to the base hyperparameters (1 = unchanged)."""

    lr: float = 1.0
    momentum: float = 1.0
    weight_decay: float = 1.0


def _clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class DCAOController:
    """Maps probe metrics to multipliers; its whole state round-trips through ``state_dict``.

    Args:
        rho_ref: ``rho_ref`` of ``f`` and ``h``: a number > 0, ``"warmup"`` or ``"eos"``
            (see the module docstring).
        gamma_ref: ``gamma_ref`` of ``g``: a number >= 0 or ``"warmup"``.
        alpha: ``alpha`` of ``f``, > 0, or ``None`` for ``ln 2 / rho_ref``.
        beta1: ``beta_1`` of ``g``, > 0, or ``None`` for ``2 / rho_ref``.
        lambda1: ``lambda_1`` of ``h``, >= 0 (default 0.5).
        mapping: ``"exponential"`` (Sec. 2.3, default) or ``"linear"``.
        adapt_lr, adapt_momentum, adapt_weight_decay: ``False`` holds that multiplier at 1.
        warmup_probes: successful probes whose median sets a ``"warmup"`` reference (>= 1).
        ema: weight of the past in the average of ``rho`` and ``gamma`` (0 = none).
        clip: the multipliers' range (default ``(0.5, 2.0)``).
        max_momentum: cap on a momentum raised by ``g > 1`` (default 0.99).
        max_failures: consecutive failed probes after which the multipliers reset to 1.
    """

    def __init__(
        self,
        *,
        rho_ref: float | str = "warmup",
        gamma_ref: float | str = "warmup",
        alpha: float | None = None,
        beta1: float | None = None,
        lambda1: float = 0.5,
        mapping: str = "exponential",
        adapt_lr: bool = True,
        adapt_momentum: bool = True,
        adapt_weight_decay: bool = True,
        warmup_probes: int = 1,
        ema: float = 0.0,
        clip: tuple[float, float] = (0.5, 2.0),
        max_momentum: float = 0.99,
        max_failures: int = 3,
    ) -> None:
        if not (rho_ref in ("warmup", "eos") or (_is_number(rho_ref) and rho_ref > 0)):
            raise ValueError(f"Invalid rho_ref value: {rho_ref!r} (expected a number > 0, "
                             "'warmup' or 'eos')")
        if not (gamma_ref == "warmup" or (_is_number(gamma_ref) and gamma_ref >= 0)):
            raise ValueError(f"Invalid gamma_ref value: {gamma_ref!r} (expected a number >= 0 "
                             "or 'warmup')")
        for name, val in (("alpha", alpha), ("beta1", beta1)):
            if not (val is None or (_is_number(val) and val > 0)):
                raise ValueError(f"Invalid {name} value: {val!r} (expected a finite number > 0, "
                                 "or None for the default scaled by rho_ref)")
        if not (_is_number(lambda1) and lambda1 >= 0):
            raise ValueError(f"Invalid lambda1 value: {lambda1!r} (expected a finite number >= 0)")
        if mapping not in MAPPINGS:
            raise ValueError(f"Invalid mapping value: {mapping!r} (expected one of "
                             f"{', '.join(MAPPINGS)})")
        adapt_lr = check_bool("adapt_lr", adapt_lr)
        adapt_momentum = check_bool("adapt_momentum", adapt_momentum)
        adapt_weight_decay = check_bool("adapt_weight_decay", adapt_weight_decay)
        warmup_probes = check_int("warmup_probes", warmup_probes, 1)
        if not (_is_number(ema) and 0.0 <= ema < 1.0):
            raise ValueError(f"Invalid ema value: {ema!r} (expected 0 <= ema < 1)")
        lo, hi = clip
        if not (0 < lo <= 1 <= hi and math.isfinite(hi)):
            raise ValueError(f"Invalid clip value: {clip} (expected 0 < low <= 1 <= high)")
        if not (_is_number(max_momentum) and 0.0 < max_momentum < 1.0):
            raise ValueError(f"Invalid max_momentum value: {max_momentum!r} "
                             "(expected 0 < max_momentum < 1)")
        max_failures = check_int("max_failures", max_failures, 1)
        self.rho_ref_setting: float | str = rho_ref if isinstance(rho_ref, str) else float(rho_ref)
        self.gamma_ref_setting: float | str = (gamma_ref if isinstance(gamma_ref, str)
                                               else float(gamma_ref))
        self.alpha = None if alpha is None else float(alpha)
        self.beta1 = None if beta1 is None else float(beta1)
        self.lambda1 = float(lambda1)
        self.mapping = mapping
        self.adapt_lr, self.adapt_momentum = adapt_lr, adapt_momentum
        self.adapt_weight_decay = adapt_weight_decay
        self.warmup_probes = warmup_probes
        self.ema = float(ema)
        self.clip = (float(lo), float(hi))
        self.max_momentum = float(max_momentum)
        self.max_failures = max_failures
        self.reset()

    def reset(self) -> None:
        """Forget everything: back to warm-up."""
        self.warmup_rho: list[float] = []
        self.warmup_gap: list[float] = []
        self.rho_ref: float | None = (self.rho_ref_setting
                                      if isinstance(self.rho_ref_setting, float) else None)
        self.gamma_ref: float | None = (self.gamma_ref_setting
                                        if isinstance(self.gamma_ref_setting, float) else None)
        self.rho: float | None = None  # the (smoothed) metrics the multipliers were computed from
        self.gap: float | None = None
        self.failures = 0
        self.multipliers = Multipliers()

    @property
    def in_warmup(self) -> bool:
        """True while a reference is still unknown (some multiplier is held at 1)."""
        return self.rho_ref is None or self.gamma_ref is None

    def update(
        self,
        rho: float | None,
        gap: float | None,
        *,
        ok: bool = True,
        stability_threshold: float | None = None,
    ) -> Multipliers:
        """Feed one probe; return the multipliers to hold until the next one.

        Args:
            rho: the largest eigenvalue ``lambda_1`` (must be > 0 and finite when ``ok``).
            gap: ``lambda_1 - lambda_2`` (>= 0).
            ok: ``False`` for a failed probe (NaN, no convergence, ...).
            stability_threshold: ``(2 + 2 beta_0) / eta_0``, the reference when
                ``rho_ref="eos"`` (required then; ignored otherwise).
        """
        valid = (ok and rho is not None and gap is not None and math.isfinite(rho)
                 and math.isfinite(gap) and rho > 0)
        if not valid:
            self.failures += 1
            if self.failures >= self.max_failures:
                self.multipliers = Multipliers()
            return self.multipliers
        self.failures = 0
        rho, gap = float(rho), max(float(gap), 0.0)
        if self.rho_ref_setting == "eos":
            if stability_threshold is None or not stability_threshold > 0:
                raise ValueError("rho_ref='eos' needs stability_threshold = (2 + 2 beta_0) / eta_0 > 0, "
                                 f"got {stability_threshold!r}")
            self.rho_ref = float(stability_threshold)
        if len(self.warmup_rho) < self.warmup_probes:
            self.warmup_rho.append(rho)
            self.warmup_gap.append(gap)
            if len(self.warmup_rho) == self.warmup_probes:
                if self.rho_ref_setting == "warmup":
                    self.rho_ref = _median(self.warmup_rho)
                if self.gamma_ref_setting == "warmup":
                    self.gamma_ref = _median(self.warmup_gap)
        if self.rho is None or self.ema == 0.0:
            self.rho, self.gap = rho, gap
        else:
            assert self.gap is not None
            self.rho = self.ema * self.rho + (1 - self.ema) * rho
            self.gap = self.ema * self.gap + (1 - self.ema) * gap
        self.multipliers = self.compute(self.rho, self.gap)
        return self.multipliers

    def compute(self, rho: float, gap: float) -> Multipliers:
        """The multipliers for ``(rho, gap)`` against the current references (1 where a
        reference is unknown or the hyperparameter is not adapted)."""
        lo, hi = self.clip
        f = g = h = 1.0
        linear = self.mapping == "linear"
        if self.rho_ref is not None:
            if self.adapt_lr:
                alpha = self.alpha if self.alpha is not None else math.log(2.0) / self.rho_ref
                x = -alpha * (rho - self.rho_ref)
                f = 1.0 + x if linear else math.exp(min(x, 50.0))
            if self.adapt_weight_decay:
                h = 1.0 + self.lambda1 * rho / self.rho_ref
        if (self.gamma_ref is not None and self.adapt_momentum
                and (self.beta1 is not None or self.rho_ref is not None)):
            beta1 = self.beta1 if self.beta1 is not None else 2.0 / self.rho_ref
            x = beta1 * (gap - self.gamma_ref)
            g = 1.0 + (x if linear else math.tanh(x))
        return Multipliers(lr=_clip(f, lo, hi), momentum=_clip(g, lo, hi),
                           weight_decay=_clip(h, lo, hi))

    def momentum(self, base: float) -> float:
        """``beta_t = beta_0 g``, capped at ``max(max_momentum, beta_0) < 1`` (``beta_t >= 1``
        diverges: the heavy-ball velocity then never decays)."""
        return min(base * self.multipliers.momentum, max(self.max_momentum, base))

    _SETTINGS = ("rho_ref_setting", "gamma_ref_setting", "alpha", "beta1", "lambda1", "mapping",
                 "adapt_lr", "adapt_momentum", "adapt_weight_decay", "warmup_probes", "ema",
                 "clip", "max_momentum", "max_failures")

    def state_dict(self) -> dict[str, Any]:
        """The settings (as ``torch.optim`` keeps hyperparameters) and the state."""
        return {
            "settings": {k: getattr(self, k) for k in self._SETTINGS},
            "warmup_rho": list(self.warmup_rho),
            "warmup_gap": list(self.warmup_gap),
            "rho_ref": self.rho_ref,
            "gamma_ref": self.gamma_ref,
            "rho": self.rho,
            "gap": self.gap,
            "failures": self.failures,
            "multipliers": asdict(self.multipliers),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s settings and state (a state without settings, an
        older one, keeps this controller's)."""
        for k, v in state.get("settings", {}).items():
            if k in self._SETTINGS:
                setattr(self, k, tuple(v) if k == "clip" else v)
        self.warmup_rho = [float(x) for x in state["warmup_rho"]]
        self.warmup_gap = [float(x) for x in state["warmup_gap"]]
        self.rho_ref = state["rho_ref"]
        self.gamma_ref = state["gamma_ref"]
        self.rho = state["rho"]
        self.gap = state["gap"]
        self.failures = int(state["failures"])
        self.multipliers = Multipliers(**state["multipliers"])


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
