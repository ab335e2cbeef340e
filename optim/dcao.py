"""DCAO: SGD with heavy-ball momentum whose learning rate, momentum and weight
decay follow the Hessian's top eigenvalues (dcao.txt, Sec. 2.2-2.4).

At each probe DCAO computes ``rho = lambda_1`` and ``gap = lambda_1 - lambda_2`` of
the Hessian of the loss on a fixed probe batch with ``spectra.linalg.eigsh``
(Lanczos with full reorthogonalization, at most ``lanczos_steps`` products,
warm-started from the previous probe's Ritz vectors); the
:class:`~optim.dcao_controller.DCAOController` turns them into multipliers
``f, g, h`` (Sec. 2.3, clamped to [0.5, 2]) held until the next probe. With
``g_t`` the gradient, per parameter group (Sec. 2.4):

    eta_t  = lr * f(rho),   beta_t = min(momentum * g(gap), max(0.99, momentum)),
    wd_t   = weight_decay * h(rho),
    v      = beta_t v + g_t + wd_t theta
    theta -= eta_t v

``lr`` is the group's current learning rate, so any ``torch.optim.lr_scheduler``
composes with the multipliers.

When to probe. ``period=N`` probes every ``N`` steps from the first (the
proposal's ``T_c``; reproducible). By default (``period=None``) DCAO probes at the
first step and then every ``warmup_period`` steps (default 10) until the
controller has its references and has mapped one probe against them (two
probes with the default ``warmup_probes=1``), and from then on on a time
budget: it times the run between its own
steps (the training loop's forward and backward, data, evaluation: everything
but its probes) and its probes, and probes again as soon as the run's time since
the last probe is at least ``(1 - overhead) / overhead`` times the next probe's
cost (the last probe's seconds per product times the most products the next may
take), so that the probes' share of each interval stays within ``overhead``
(default 5%). Where probes are cheap against the steps they react quickly;
where they are dear they wait. Each probe is paced by its own interval, so time
spent elsewhere (a long evaluation) allows one probe, not a burst. Timings differ between
machines, so on this budget the probe steps do too: give ``period`` for runs that
must repeat step for step. ``history[i]["probe_share"]`` is the share so far. Time
inside :meth:`DCAO.paused_clock` is not the run's: spectra's trainer pauses the clock
around its evaluations, its monitor's probes, its logging and its checkpoints, so the
budget and the share are of the training steps' time (a loop of one's own can do the
same).

Several processes. Under an initialized ``torch.distributed`` group of several
ranks, each rank's ``probe_data`` is its shard of the probe batch: the probe's
:class:`spectra.HessianOperator` all-reduces the ranks' products (weighted by their
samples, as that class documents), so every rank probes the Hessian of the union of
the shards and gets the same ``lambda_1``, ``lambda_2`` and multipliers, for a mean
and for a summed loss alike. Data replicated on every rank is a union of
``world_size`` copies: right for a mean loss (at ``world_size`` times the work), but
``world_size`` times the Hessian for a summed one; give each rank its shard
(``spectra.utils.distributed.shard``; ``spectra train`` under torchrun does).
On the time budget (``period=None``) each rank's clocks differ, so the ranks
agree before every step whether to probe (:func:`spectra.utils.distributed.any_rank`,
one tiny all-reduce per step): all probe together, never one alone.
A probe that raises on one rank (out of memory, a shard the model cannot take)
may leave the others waiting in an all-reduce it never reaches, so across
processes it is not recorded and skipped as below: it raises ``RuntimeError``
naming the rank and the cause, and torchrun stops the job, instead of the other
ranks hanging until the process group's timeout.
``tests/optim/test_dcao_distributed.py`` checks all three on two gloo ranks.

A probe never crashes training (in one process) and never disturbs it: a probe that raises,
returns NaN/Inf, ``lambda_1 <= 0`` or a residual above ``max_residual *
lambda_1`` is recorded as failed and keeps the previous multipliers; the
model's parameters, gradients, buffers and modes and the global RNG are left
exactly as they were.

Cost. Probes run on ``probe_batch_size`` samples (a sample of the training set,
the proposal's minibatch design), each warm-started from the previous probe's two
Ritz vectors and stopped as soon as both have a relative residual below
``probe_tol`` (a few products); the first probe starts cold with up to
``cold_lanczos_steps``. What this costs with the controller active, and how far
the probe's ``lambda_1`` is from the whole training set's, is measured by
``python -m analyses.dcao_overhead --large-epochs 30``
(``analyses/results/dcao_overhead.md``, median of 3 seeds: the defaults cost
6.9% of training time on the digits MLP over 80 epochs and 17.0% on a
1.1M-parameter MLP over 30, where the two warm-up probes weigh more; the
proposal's m = 20 every T_c = 100 steps on the full batch, 108% and 717%).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ._common import (
    Closure,
    ParamsT,
    SpectraOptimizer,
    check_bool,
    check_int,
    check_lr,
    check_nonnegative,
    check_positive,
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
        probe_data: ``(X, y)`` or a list of such batches: the fixed probe data (under
            torch.distributed, this rank's shard of it; see the module docstring).
        probe_batch_size: keep only the first this-many samples of ``probe_data``
            (default 128; ``None`` keeps all).
        period: probe every this-many steps, starting at the first; ``None``
            (default) probes on the ``overhead`` budget instead.
        overhead: with ``period=None``, the largest share of the run's time the
            probes may take, in (0, 1) (default 0.05; see the module docstring).
        lanczos_steps: the most products per warm-started probe (default 6; most
            stop earlier on ``probe_tol``).
        cold_lanczos_steps: the most products of a probe without Ritz vectors to
            start from, the first one (default 12).
        probe_tol: stop a probe once ``lambda_1, lambda_2`` have relative
            residuals below this (default 3e-2).
        max_residual: a probe whose ``lambda_1`` residual exceeds this fraction
            of ``lambda_1`` fails (default 0.25).
        rho_ref, gamma_ref, alpha, beta1, lambda1, mapping, adapt_lr, adapt_momentum,
        adapt_weight_decay, warmup_probes, ema, max_momentum, max_failures: the
            controller's settings, see :class:`~optim.dcao_controller.DCAOController`.
            DCAO's default ``rho_ref`` is ``"eos"``, ``(2 + 2 beta_0) / eta_0`` of the
            first group (the controller's is ``"warmup"``): a reference taken at the
            first probe is the random network's curvature, which training soon
            exceeds many times, so f, g and h sit at their clamps (0.5, 2, 2) after
            one epoch of a digits run; against ``"eos"`` they stay inside and the
            default 5-epoch digits run ends at train loss 0.21 instead of 0.51
            (``spectra train --optimizer dcao [--opt-arg rho_ref=warmup]``, seed 0).
        probe_eval_mode: probe the model in eval mode (default ``True``: no
            dropout noise, batch norm with running statistics).
        reduction: ``"mean"`` or ``"sum"``, how ``loss_fn`` reduces a batch (it scales
            the probed eigenvalues when ``probe_data`` holds several batches). By
            default ``loss_fn.reduction``, else determined here from the loss on the
            first probe batch, as :class:`spectra.HessianOperator` does; a loss that is
            neither a per-sample mean nor a sum is refused with ``ValueError``.
        seed: seed of the probes' own random generator (an integer, Python's or numpy's).

    State: per parameter ``velocity``; globally the step count, the controller,
    the probe generator, the last Ritz vectors, the budget's clocks and
    ``history``, all in ``state_dict()``.
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
        period: int | None = None,
        overhead: float = 0.05,
        warmup_period: int = 10,
        lanczos_steps: int = 6,
        cold_lanczos_steps: int = 12,
        probe_tol: float = 3e-2,
        max_residual: float = 0.25,
        rho_ref: float | str = "eos",
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
        max_momentum: float = 0.99,
        max_failures: int = 3,
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
        if period is not None:
            period = check_int("period", period, 1, expected="an integer >= 1, or None to "
                               "probe on the overhead budget")
        if not (isinstance(overhead, (int, float)) and 0.0 < overhead < 1.0):
            raise ValueError(f"Invalid overhead value: {overhead} (expected a fraction of the "
                             "run's time, 0 < overhead < 1)")
        warmup_period = check_int("warmup_period", warmup_period, 1)
        lanczos_steps = check_int("lanczos_steps", lanczos_steps, 2)
        cold_lanczos_steps = check_int("cold_lanczos_steps", cold_lanczos_steps, 2)
        if probe_batch_size is not None:
            probe_batch_size = check_int("probe_batch_size", probe_batch_size, 1,
                                         expected="None or an integer >= 1")
        check_positive("probe_tol", probe_tol)
        check_positive("max_residual", max_residual)
        probe_eval_mode = check_bool("probe_eval_mode", probe_eval_mode)
        # torch.manual_seed's range: a float or None would fail there with a RuntimeError
        seed = check_int("seed", seed, -(2**63), 2**64 - 1,
                         expected="an integer, the seed of torch.Generator.manual_seed")
        self.controller = DCAOController(
            rho_ref=rho_ref, gamma_ref=gamma_ref, alpha=alpha, beta1=beta1, lambda1=lambda1,
            mapping=mapping, adapt_lr=adapt_lr, adapt_momentum=adapt_momentum,
            adapt_weight_decay=adapt_weight_decay, warmup_probes=warmup_probes, ema=ema,
            max_momentum=max_momentum, max_failures=max_failures,
        )
        self.model = model
        self.loss_fn = loss_fn
        self.probe_data = _take(probe_data, probe_batch_size)
        self.period = period
        self.overhead = float(overhead)
        self.warmup_period = warmup_period
        self.lanczos_steps = lanczos_steps
        self.cold_lanczos_steps = cold_lanczos_steps
        self.probe_tol = float(probe_tol)
        self.max_residual = float(max_residual)
        self.probe_eval_mode = probe_eval_mode
        # fixed here, where a bad loss can raise: a probe's exceptions are swallowed
        import spectra

        self.reduction: str = spectra.HessianOperator(
            model, loss_fn, self.probe_data, reduction=reduction, eval_mode=True
        ).reduction
        self.generator = torch.Generator().manual_seed(seed)
        self.num_steps = 0
        self.history: list[dict[str, Any]] = []
        self._ritz: Tensor | None = None
        # the budget's clocks (seconds): the run's time between steps less probes, the probes'
        self.train_seconds = 0.0
        self.probe_seconds = 0.0
        self._clock: float | None = None
        self._paused = 0  # depth of paused_clock() blocks, and when the outermost began
        self._pause_start = 0.0
        self._train_at_last_probe = 0.0

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
        from spectra.utils.distributed import replicate_
        from spectra.utils.modes import eval_mode, preserved_rng

        start = time.perf_counter()
        record: dict[str, Any] = {"step": self.num_steps, "lambda1": math.nan, "lambda2": math.nan,
                                  "gap": math.nan, "residual1": math.nan, "residual2": math.nan,
                                  "num_matvecs": 0, "ok": False, "reason": ""}
        rho = gap = None
        replicate_(self.model)  # under torchrun the products are all-reduced: rank 0's model
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
                    min_basis=1,  # budgeted probes: stop at probe_tol, whatever the basis
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
        except Exception as exc:  # a failed probe must never stop training (in one process)
            from spectra.utils.distributed import several_ranks

            if several_ranks() is not None:  # ... except across processes: "Several processes"
                import torch.distributed as dist

                raise RuntimeError(
                    f"DCAO: the probe at step {self.num_steps} failed on rank {dist.get_rank()} "
                    f"of {dist.get_world_size()} ({type(exc).__name__}: {exc}). Across "
                    "processes a failed probe cannot be skipped: the other ranks may be "
                    "waiting in its all-reduce, so training stops here instead of hanging "
                    "until the process group's timeout") from exc
            record["reason"] = f"{type(exc).__name__}: {exc}"
        g0 = self.param_groups[0]
        threshold = (2.0 + 2.0 * g0["momentum"]) / g0["lr"] if g0["lr"] > 0 else None
        c = self.controller
        if c.rho_ref_setting == "eos" and threshold is None:
            record.update(ok=False, reason="rho_ref='eos' needs a learning rate > 0")
            rho = gap = None
        m = c.update(rho, gap, ok=record["ok"], stability_threshold=threshold)
        seconds = time.perf_counter() - start
        self.probe_seconds += seconds
        self._train_at_last_probe = self.train_seconds
        record.update(lr_mult=m.lr, momentum_mult=m.momentum, wd_mult=m.weight_decay,
                      rho_ref=_nan(c.rho_ref), gamma_ref=_nan(c.gamma_ref),
                      warmup=c.in_warmup, seconds=seconds,
                      probe_share=self.probe_seconds / max(self.probe_seconds + self.train_seconds,
                                                           1e-12))
        record.update(self.current_hparams())
        self.history.append(record)
        return record

    # ------------------------------------------------------------------ step
    def probe_due(self) -> bool:
        """Whether the next step probes first: every ``period`` steps, or on the budget."""
        if self.period is not None:
            return self.num_steps % self.period == 0
        if not self.history:
            return True
        need = self.controller.warmup_probes + 1  # the references, then one mapped probe
        n_ok = sum(1 for r in self.history if r["ok"])
        if n_ok < need and len(self.history) < 2 * need:  # failures: at most `need` retries
            return self.num_steps - int(self.history[-1]["step"]) >= self.warmup_period
        # pace each probe by its own cost: the next one (costed as the last probe's
        # seconds per product times the most products a warm probe may take) waits for
        # (1 - overhead) / overhead times its cost of the run's time since the last probe
        last = self.history[-1]
        per_product = last["seconds"] / max(int(last["num_matvecs"]), 1)
        cost = per_product * (self.lanczos_steps if self._ritz is not None else self.cold_lanczos_steps)
        return self.train_seconds - self._train_at_last_probe >= cost * (1 - self.overhead) / self.overhead

    @contextlib.contextmanager
    def paused_clock(self) -> Iterator[None]:
        """A block whose time is not the run's: the budget (``period=None``) and
        ``probe_share`` count the time between steps as training time, except inside
        this block (an evaluation, another tool's Hessian probes, writing a checkpoint).
        Blocks may nest; a block before the first step changes nothing (the clock starts
        at the first step)."""
        started = time.perf_counter()
        if self._paused == 0:
            self._pause_start = started
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1
            if self._paused == 0 and self._clock is not None:
                now = time.perf_counter()  # (a step inside the block set the clock then)
                self._clock = min(self._clock + (now - started), now)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Any:
        """Probe if due, then take one step; returns the closure's loss (or None)."""
        loss = self._closure_loss(closure)
        now = time.perf_counter()
        if self._clock is not None:  # the run's time since the last step, probes excluded
            end = now if self._paused == 0 else self._pause_start  # a step inside a pause
            self.train_seconds += max(0.0, end - self._clock)
        due = self.probe_due()
        if self.period is None:
            # the budget reads this rank's clocks: all ranks probe when any is due, since
            # the probe's products are all-reduced (nothing to agree on for one process)
            from spectra.utils.distributed import any_rank

            due = any_rank(due, device=self.param_groups[0]["params"][0].device)
        if due:
            with torch.enable_grad():
                self.probe_now()
        self._clock = time.perf_counter()
        for i, group in enumerate(self.param_groups):
            params, grads, states = self._params_with_grad(group, _init_state)
            hp = self.current_hparams(i)
            dcao_update(params, grads, [s["velocity"] for s in states], lr=hp["lr"],
                        momentum=hp["momentum"], weight_decay=hp["weight_decay"])
        self.num_steps += 1
        return loss

    # ------------------------------------------------------------------ state
    def __getstate__(self) -> dict[str, Any]:
        """torch's ``Optimizer.__getstate__`` keeps only ``defaults``, ``state`` and
        ``param_groups``: a ``copy.deepcopy`` (the gradient alignment's trial step,
        :func:`spectra.curvature.alignment.optimizer_step`) or a pickle would lose the
        probe's model, data, controller and clock. Everything but torch's hooks, which
        ``__setstate__`` makes anew."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_optimizer_")}

    def __deepcopy__(self, memo: dict[int, Any]) -> DCAO:
        """A copy with its own state, parameters (as ``memo`` maps them), model,
        controller and clock; the probe's data and the loss function, which the
        optimizer only reads, are shared: a data loader's whole data set would
        otherwise be copied at each trial step (:func:`copy.deepcopy`'s default
        otherwise)."""
        memo[id(self.probe_data)] = self.probe_data
        memo[id(self.loss_fn)] = self.loss_fn
        twin = type(self).__new__(type(self))
        memo[id(self)] = twin
        twin.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return twin

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["dcao"] = {
            "num_steps": self.num_steps,
            "controller": self.controller.state_dict(),
            "generator": self.generator.get_state(),
            "ritz": self._ritz,
            "history": [dict(r) for r in self.history],
            "train_seconds": self.train_seconds,
            "probe_seconds": self.probe_seconds,
            "train_at_last_probe": self._train_at_last_probe,
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict`` and DCAO's own state (``state_dict()["dcao"]``).

        Raises:
            ValueError: without a ``"dcao"`` entry, or one that lacks a key DCAO needs;
                checked before anything is loaded, so a refused state leaves this
                optimizer as it was.
        """
        state_dict = dict(state_dict)
        extra = state_dict.pop("dcao", None)
        if extra is None:
            raise ValueError("not a DCAO state_dict: the 'dcao' entry is missing")
        missing = [k for k in _STATE_KEYS if k not in extra]
        if missing:
            raise ValueError(f"not a DCAO state_dict: its 'dcao' entry lacks {missing}")
        super().load_state_dict(state_dict)
        self.num_steps = int(extra["num_steps"])
        self.controller.load_state_dict(extra["controller"])
        self.generator.set_state(extra["generator"])
        self._ritz = extra["ritz"]
        self.history = [dict(r) for r in extra["history"]]
        self.train_seconds = float(extra.get("train_seconds", 0.0))
        self.probe_seconds = float(extra.get("probe_seconds", 0.0))
        self._train_at_last_probe = float(extra.get("train_at_last_probe", 0.0))
        self._clock = None  # the time between saving and loading is not the run's


_STATE_KEYS = ("num_steps", "controller", "generator", "ritz", "history")
"""The keys of ``state_dict()["dcao"]`` that every version wrote (the clocks came later)."""


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


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
