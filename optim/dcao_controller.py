"""DCAO's curvature controller: spectral metrics -> hyperparameter multipliers.

Pure and deterministic: it sees one probe's ``(rho, gap)`` at a time (``rho``
the largest Hessian eigenvalue, ``gap = lambda_1 - lambda_2``) and returns
the learning-rate, momentum and weight-decay multipliers that DCAO holds
until the next probe. The equations follow the DCAO proposal (dcao.txt,
Sec. 2.3) with the project's resolutions (shared/ALGORITHMS.md):

* learning rate: ``f = clip(exp(-a (rho / rho_ref - 1)), 0.5, 2)``, ``a = ln 2``,
  so ``rho = 2 rho_ref`` halves the step and ``rho = 0`` can at most double it;
* momentum: ``g = clip(1 + tanh(b (r - r_ref)), 0.5, 2)`` on the *relative* gap
  ``r = gap / rho``, ``b = 2``, applied to the momentum horizon:
  ``1 - beta_t = (1 - beta_0) / g``, with ``beta_t <= 0.99``;
* weight decay: ``h = clip((1 + c rho / rho_ref) / (1 + c), 0.5, 2)``, ``c = 1``
  (1 at the reference).

``rho_ref`` and ``r_ref`` are the medians of the first ``warmup`` successful
probes (all multipliers are 1 until then), then frozen: a reference that
tracked ``rho`` would make ``f = 1`` forever. ``rho_ref`` may be capped by the
heavy-ball stability threshold ``(2 + 2 beta_0) / eta``. ``rho`` and ``r`` are
smoothed across probes with an EMA in log space. A failed probe keeps the
previous multipliers; ``max_failures`` failures in a row reset them to 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DCAOController", "Multipliers"]


@dataclass(frozen=True)
class Multipliers:
    """Factors applied to the base hyperparameters (1 = unchanged)."""

    lr: float = 1.0
    momentum: float = 1.0
    weight_decay: float = 1.0


def _clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


class DCAOController:
    """Maps probe metrics to multipliers; its whole state round-trips through ``state_dict``.

    Args:
        warmup: successful probes whose median sets the references (>= 1).
        lr_gain: ``a`` in ``f`` (default ``ln 2``).
        momentum_gain: ``b`` in ``g`` (default 2).
        wd_gain: ``c`` in ``h`` (default 1).
        ema: weight of the past in the log-space EMA of ``rho`` and ``r`` (0 = no smoothing).
        clip: the multipliers' range (default ``(0.5, 2.0)``).
        max_momentum: cap on the adapted momentum (default 0.99).
        max_failures: consecutive failed probes after which the multipliers reset to 1.
    """

    def __init__(
        self,
        *,
        warmup: int = 5,
        lr_gain: float = math.log(2.0),
        momentum_gain: float = 2.0,
        wd_gain: float = 1.0,
        ema: float = 0.5,
        clip: tuple[float, float] = (0.5, 2.0),
        max_momentum: float = 0.99,
        max_failures: int = 3,
    ) -> None:
        if not (isinstance(warmup, int) and warmup >= 1):
            raise ValueError(f"Invalid warmup value: {warmup} (expected an integer >= 1)")
        for name, val in (("lr_gain", lr_gain), ("momentum_gain", momentum_gain), ("wd_gain", wd_gain)):
            if not (math.isfinite(val) and val >= 0):
                raise ValueError(f"Invalid {name} value: {val} (expected a finite number >= 0)")
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"Invalid ema value: {ema} (expected 0 <= ema < 1)")
        lo, hi = clip
        if not (0 < lo <= 1 <= hi and math.isfinite(hi)):
            raise ValueError(f"Invalid clip value: {clip} (expected 0 < low <= 1 <= high)")
        if not 0.0 < max_momentum < 1.0:
            raise ValueError(f"Invalid max_momentum value: {max_momentum} (expected 0 < max_momentum < 1)")
        if not (isinstance(max_failures, int) and max_failures >= 1):
            raise ValueError(f"Invalid max_failures value: {max_failures} (expected an integer >= 1)")
        self.warmup = warmup
        self.lr_gain = float(lr_gain)
        self.momentum_gain = float(momentum_gain)
        self.wd_gain = float(wd_gain)
        self.ema = float(ema)
        self.clip = (float(lo), float(hi))
        self.max_momentum = float(max_momentum)
        self.max_failures = max_failures
        self.reset()

    def reset(self) -> None:
        """Forget everything: back to warm-up."""
        self.warmup_rho: list[float] = []
        self.warmup_rel_gap: list[float] = []
        self.rho_ref: float | None = None
        self.rel_gap_ref: float | None = None
        self.log_rho: float | None = None
        self.log_rel_gap: float | None = None
        self.failures = 0
        self.multipliers = Multipliers()

    @property
    def in_warmup(self) -> bool:
        return self.rho_ref is None

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
            stability_threshold: if given, ``rho_ref`` is capped by it when frozen
                (e.g. ``(2 + 2 beta_0) / eta`` for heavy-ball momentum).
        """
        valid = (
            ok
            and rho is not None
            and gap is not None
            and math.isfinite(rho)
            and math.isfinite(gap)
            and rho > 0
        )
        if not valid:
            self.failures += 1
            if self.failures >= self.max_failures:
                self.multipliers = Multipliers()
            return self.multipliers
        self.failures = 0
        rel_gap = _clip(gap / rho, 1e-6, 1.0)
        if self.in_warmup:
            self.warmup_rho.append(float(rho))
            self.warmup_rel_gap.append(rel_gap)
            if len(self.warmup_rho) >= self.warmup:
                ref = _median(self.warmup_rho)
                if stability_threshold is not None and stability_threshold > 0:
                    ref = min(ref, float(stability_threshold))
                self.rho_ref = ref
                self.rel_gap_ref = _median(self.warmup_rel_gap)
                self.log_rho = math.log(self.rho_ref)
                self.log_rel_gap = math.log(self.rel_gap_ref)
            return self.multipliers  # exactly 1 during warm-up
        assert self.log_rho is not None and self.log_rel_gap is not None
        self.log_rho = self.ema * self.log_rho + (1 - self.ema) * math.log(rho)
        self.log_rel_gap = self.ema * self.log_rel_gap + (1 - self.ema) * math.log(rel_gap)
        self.multipliers = self.compute(math.exp(self.log_rho), math.exp(self.log_rel_gap))
        return self.multipliers

    def compute(self, rho: float, rel_gap: float) -> Multipliers:
        """The multipliers for smoothed metrics, against the frozen references."""
        if self.rho_ref is None or self.rel_gap_ref is None:
            return Multipliers()
        lo, hi = self.clip
        ratio = rho / self.rho_ref
        f = _clip(math.exp(-self.lr_gain * (ratio - 1.0)), lo, hi)
        g = _clip(1.0 + math.tanh(self.momentum_gain * (rel_gap - self.rel_gap_ref)), lo, hi)
        h = _clip((1.0 + self.wd_gain * ratio) / (1.0 + self.wd_gain), lo, hi)
        return Multipliers(lr=f, momentum=g, weight_decay=h)

    def momentum(self, base: float) -> float:
        """``beta_t`` from ``beta_0``: the multiplier scales the horizon ``1 / (1 - beta)``."""
        if base <= 0.0:
            return base
        return min(1.0 - (1.0 - base) / self.multipliers.momentum, self.max_momentum)

    def state_dict(self) -> dict[str, Any]:
        return {
            "warmup_rho": list(self.warmup_rho),
            "warmup_rel_gap": list(self.warmup_rel_gap),
            "rho_ref": self.rho_ref,
            "rel_gap_ref": self.rel_gap_ref,
            "log_rho": self.log_rho,
            "log_rel_gap": self.log_rel_gap,
            "failures": self.failures,
            "multipliers": asdict(self.multipliers),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.warmup_rho = [float(x) for x in state["warmup_rho"]]
        self.warmup_rel_gap = [float(x) for x in state["warmup_rel_gap"]]
        self.rho_ref = state["rho_ref"]
        self.rel_gap_ref = state["rel_gap_ref"]
        self.log_rho = state["log_rho"]
        self.log_rel_gap = state["log_rel_gap"]
        self.failures = int(state["failures"])
        self.multipliers = Multipliers(**state["multipliers"])


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
