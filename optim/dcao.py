"""DCAO: SGD with heavy-ball momentum whose learning rate, momentum and weight
decay follow the Hessian's top eigenvalues (dcao.txt, Sec. 2.2-2.4).

Every ``period`` steps, DCAO probes the Hessian of the loss on a fixed probe
batch with ``spectra.linalg.eigsh`` (Lanczos with full reorthogonalization, at most
``lanczos_steps`` products, warm-started from the previous probe's Ritz
vectors) for ``rho = lambda_1`` and ``gap = lambda_1 - lambda_2``; the
:class:`~optim.dcao_controller.DCAOController` turns them into multipliers
held until the next probe. With ``g_t`` the gradient, per parameter group:

    eta_t  = lr * f,   beta_t = 1 - (1 - momentum) / g  (<= 0.99),
    wd_t   = weight_decay * h,
    v      = beta_t v + g_t + wd_t theta
    theta -= eta_t v

``lr`` is the group's current learning rate, so any ``torch.optim.lr_scheduler``
composes with the multipliers.

A probe never crashes training and never disturbs it: a probe that raises,
returns NaN/Inf, ``lambda_1 <= 0`` or a residual above ``max_residual *
lambda_1`` is recorded as failed and keeps the previous multipliers; the
model's parameters, gradients, buffers and modes and the global RNG are left
exactly as they were.

Cost. Probes run on a small batch every ``period`` steps, each warm-started
from the previous probe's two Ritz vectors and stopped as soon as both have a
relative residual below ``probe_tol`` (a few products); the first
probe starts cold with up to ``cold_lanczos_steps``. A probe batch is a sample
of the training set, the paper's own minibatch design. The time this costs is
measured by ``analyses/dcao_overhead.py`` (``analyses/results/dcao_overhead.md``).
Lower ``period`` for faster reaction where overhead matters less (DCAO's
warm-up needs ``warmup_probes`` probes before it adapts anything).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ._common import (
    Closure,
    ParamsT,
    SpectraOptimizer,
    check_lr,
    check_nonnegative,
    check_unit_interval,
)
from .dcao_controller import DCAOController

__all__ = ["DCAO", "dcao_update"]


def dcao_update(
    params: list[Tensor],
    grads: list[Tensor],
    velocities: list[Tensor],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
) -> None:
    """One heavy-ball step with coupled weight decay, in place.

    ``v = momentum v + g + weight_decay theta``; ``theta -= lr v``. The
    hyperparameters are the already adapted ``eta_t``, ``beta_t``, ``wd_t``.
    """
    for p, g, v in zip(params, grads, velocities, strict=True):
        v.mul_(momentum).add_(g)
        if weight_decay != 0.0:
            v.add_(p, alpha=weight_decay)
        p.add_(v, alpha=-lr)


class DCAO(SpectraOptimizer):
    """Dynamic curvature-aware optimizer.

    Args:
        params: iterable of tensors or param-group dicts.
        lr: base learning rate ``eta_0`` (default 0.05).
        momentum: base momentum ``beta_0`` in [0, 1) (default 0.9).
        weight_decay: base coupled weight decay ``lambda_0`` (default 5e-4).
        model: the network whose Hessian is probed (keyword-only, required).
        loss_fn: ``loss_fn(model(X), y) -> scalar`` (keyword-only, required).
        probe_data: ``(X, y)`` or a list of such batches: the fixed probe data.
        probe_batch_size: keep only the first this-many samples of ``probe_data``
            (default 128; ``None`` keeps all).
        period: probe every this-many steps, starting at the first (default 400).
        lanczos_steps: the most products per warm-started probe (default 6; most
            stop earlier on ``probe_tol``: see the module docstring).
        cold_lanczos_steps: the most products of a probe without Ritz vectors to
            start from, the first one (default 12).
        probe_tol: stop a probe once ``lambda_1, lambda_2`` have relative
            residuals below this (default 3e-2; the error of ``lambda_1`` is at
            most its residual and usually far below).
        max_residual: a probe whose ``lambda_1`` residual exceeds this fraction
            of ``lambda_1`` fails (default 0.25).
        warmup_probes, ema, lr_gain, momentum_gain, wd_gain, max_momentum,
        max_failures: see :class:`~optim.dcao_controller.DCAOController`.
        stability_cap: cap ``rho_ref`` by ``(2 + 2 beta_0) / eta_0``.
        probe_eval_mode: probe the model in eval mode (default ``True``: no
            dropout noise, batch norm with running statistics).
        reduction: ``"mean"`` or ``"sum"``, how ``loss_fn`` reduces a batch (it scales
            the probed eigenvalues when ``probe_data`` holds several batches). By
            default ``loss_fn.reduction``, else determined here from the loss on the
            first probe batch, as :class:`spectra.HessianOperator` does; a loss that is
            neither a per-sample mean nor a sum is refused with ``ValueError``.
        seed: seed of the probes' own random generator.

    State: per parameter ``velocity``; globally the step count, the controller,
    the probe generator, the last Ritz vectors and ``history``, all in
    ``state_dict()``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.05,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        *,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        probe_data: Any,
        probe_batch_size: int | None = 128,
        period: int = 400,
        lanczos_steps: int = 6,
        cold_lanczos_steps: int = 12,
        probe_tol: float = 3e-2,
        max_residual: float = 0.25,
        warmup_probes: int = 5,
        ema: float = 0.5,
        lr_gain: float = math.log(2.0),
        momentum_gain: float = 2.0,
        wd_gain: float = 1.0,
        max_momentum: float = 0.99,
        max_failures: int = 3,
        stability_cap: bool = False,
        probe_eval_mode: bool = True,
        reduction: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        if not isinstance(model, nn.Module):
            raise ValueError(  # noqa: TRY004 - every bad hyperparameter is a ValueError
                f"Invalid model value: {type(model).__name__} (expected a torch.nn.Module)"
            )
        if not callable(loss_fn):
            raise ValueError(  # noqa: TRY004 - every bad hyperparameter is a ValueError
                f"Invalid loss_fn value: {loss_fn!r} (expected a callable)"
            )
        if not (isinstance(period, int) and period >= 1):
            raise ValueError(f"Invalid period value: {period} (expected an integer >= 1)")
        if not (isinstance(lanczos_steps, int) and lanczos_steps >= 2):
            raise ValueError(f"Invalid lanczos_steps value: {lanczos_steps} (expected an integer >= 2)")
        if not (isinstance(cold_lanczos_steps, int) and cold_lanczos_steps >= 2):
            raise ValueError(
                f"Invalid cold_lanczos_steps value: {cold_lanczos_steps} (expected an integer >= 2)"
            )
        if probe_batch_size is not None and not (isinstance(probe_batch_size, int) and probe_batch_size >= 1):
            raise ValueError(f"Invalid probe_batch_size value: {probe_batch_size} (expected None or >= 1)")
        if not (probe_tol > 0 and math.isfinite(probe_tol)):
            raise ValueError(f"Invalid probe_tol value: {probe_tol} (expected a finite number > 0)")
        if not (max_residual > 0 and math.isfinite(max_residual)):
            raise ValueError(f"Invalid max_residual value: {max_residual} (expected a finite number > 0)")
        self.model = model
        self.loss_fn = loss_fn
        self.probe_data = _take(probe_data, probe_batch_size)
        self.period = period
        self.lanczos_steps = lanczos_steps
        self.cold_lanczos_steps = cold_lanczos_steps
        self.probe_tol = float(probe_tol)
        self.max_residual = float(max_residual)
        self.stability_cap = bool(stability_cap)
        self.probe_eval_mode = bool(probe_eval_mode)
        # fixed here, where a bad loss can raise: a probe's exceptions are swallowed
        import spectra

        self.reduction: str = spectra.HessianOperator(
            model, loss_fn, self.probe_data, reduction=reduction, eval_mode=True
        ).reduction
        self.controller = DCAOController(
            warmup=warmup_probes, lr_gain=lr_gain, momentum_gain=momentum_gain, wd_gain=wd_gain,
            ema=ema, max_momentum=max_momentum, max_failures=max_failures,
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.num_steps = 0
        self.history: list[dict[str, Any]] = []
        self._ritz: Tensor | None = None

    def _validate(self, group: Mapping[str, Any]) -> None:
        check_lr(group["lr"])
        check_unit_interval("momentum", group["momentum"])
        check_nonnegative("weight_decay", group["weight_decay"])

    # ------------------------------------------------------------------ hparams
    def current_hparams(self, group_index: int = 0) -> dict[str, float]:
        """The adapted ``lr``, ``momentum`` and ``weight_decay`` of a group right now."""
        g = self.param_groups[group_index]
        m = self.controller.multipliers
        return {
            "lr": g["lr"] * m.lr,
            "momentum": self.controller.momentum(g["momentum"]),
            "weight_decay": g["weight_decay"] * m.weight_decay,
        }

    # ------------------------------------------------------------------ probing
    def probe_now(self) -> dict[str, Any]:
        """Probe the spectrum now, update the multipliers, return the history record."""
        import spectra
        from spectra.utils.modes import eval_mode, preserved_rng

        start = time.perf_counter()
        record: dict[str, Any] = {"step": self.num_steps, "lambda1": math.nan, "lambda2": math.nan,
                                  "gap": math.nan, "residual1": math.nan, "residual2": math.nan,
                                  "num_matvecs": 0, "ok": False, "reason": ""}
        rho = gap = None
        try:
            # eval mode once for the whole probe (not once per product), if asked; the
            # global random state as it was afterwards
            with eval_mode(self.model, self.probe_eval_mode), preserved_rng():
                op = spectra.HessianOperator(self.model, self.loss_fn, self.probe_data,
                                             reduction=self.reduction)
                v0 = self._ritz if self._ritz is not None and self._ritz.shape[0] == op.shape[0] else None
                # a cold start (no Ritz vectors yet) gets more products; warm starts need few
                steps = self.lanczos_steps if v0 is not None else self.cold_lanczos_steps
                res = spectra.eigsh(
                    op, k=2, which="LA", tol=self.probe_tol, max_matvecs=steps,
                    ncv=max(steps, 4), v0=v0, generator=self.generator, warn=False,
                )
            l1, l2 = (float(x) for x in res.eigenvalues)
            r1, r2 = (float(x) for x in res.residuals)
            record.update(lambda1=l1, lambda2=l2, gap=l1 - l2, residual1=r1, residual2=r2,
                          num_matvecs=res.num_matvecs)
            if not (math.isfinite(l1) and math.isfinite(l2)):
                record["reason"] = "non-finite eigenvalue"
            elif l1 <= 0:
                record["reason"] = f"lambda1 = {l1:.3g} <= 0"
            elif not r1 <= self.max_residual * l1:
                record["reason"] = f"residual {r1:.3g} > {self.max_residual:g} * lambda1"
            else:
                record["ok"] = True
                rho, gap = l1, l1 - l2
                self._ritz = res.eigenvectors.detach().clone()
        except Exception as exc:  # noqa: BLE001 - a failed probe must never stop training
            record["reason"] = f"{type(exc).__name__}: {exc}"
        g0 = self.param_groups[0]
        threshold = None
        if self.stability_cap and g0["lr"] > 0:
            threshold = (2.0 + 2.0 * g0["momentum"]) / g0["lr"]
        m = self.controller.update(rho, gap, ok=record["ok"], stability_threshold=threshold)
        record.update(lr_mult=m.lr, momentum_mult=m.momentum, wd_mult=m.weight_decay,
                      warmup=self.controller.in_warmup, seconds=time.perf_counter() - start)
        record.update(self.current_hparams())
        self.history.append(record)
        return record

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Any:
        """Probe if due, then take one step; returns the closure's loss (or None)."""
        loss = self._closure_loss(closure)
        if self.num_steps % self.period == 0:
            with torch.enable_grad():
                self.probe_now()
        for i, group in enumerate(self.param_groups):
            params, grads, states = self._params_with_grad(group, _init_state)
            hp = self.current_hparams(i)
            dcao_update(params, grads, [s["velocity"] for s in states], lr=hp["lr"],
                        momentum=hp["momentum"], weight_decay=hp["weight_decay"])
        self.num_steps += 1
        return loss

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["dcao"] = {
            "num_steps": self.num_steps,
            "controller": self.controller.state_dict(),
            "generator": self.generator.get_state(),
            "ritz": self._ritz,
            "history": [dict(r) for r in self.history],
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("dcao", None)
        super().load_state_dict(state_dict)
        if extra is None:
            raise ValueError("not a DCAO state_dict: the 'dcao' entry is missing")
        self.num_steps = int(extra["num_steps"])
        self.controller.load_state_dict(extra["controller"])
        self.generator.set_state(extra["generator"])
        self._ritz = extra["ritz"]
        self.history = [dict(r) for r in extra["history"]]


def _init_state(p: Tensor) -> dict[str, Any]:
    return {"velocity": torch.zeros_like(p, memory_format=torch.preserve_format)}


def _take(data: Any, n: int | None) -> Any:
    """The first ``n`` samples of ``(X, y)`` or of a list of batches (fixed, in order)."""
    if n is None:
        return data
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], Tensor):
        return (data[0][:n], data[1][:n])
    if isinstance(data, Iterable):
        out, have = [], 0
        for X, y in data:
            if have >= n:
                break
            k = min(len(y), n - have)
            out.append((X[:k], y[:k]))
            have += k
        if not out:
            raise ValueError("probe_data holds no samples")
        return out
    raise ValueError(f"Invalid probe_data value: {type(data).__name__} (expected (X, y) or a list of batches)")
