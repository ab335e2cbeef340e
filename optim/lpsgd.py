"""LPSGD and LPSGDM: l_p steepest descent with a cosine-annealed p (lpsgd.txt).

The text extraction of the paper lost its symbols; the equations below are the
reconstruction of ALGORITHMS.md. Steepest descent in the l_p norm scales each
coordinate by sign(u) |u|^(q-1), q = p / (p - 1); with the stabilizer eps:

    T_p(u) = u (|u| + eps)^(-r),   r = (p - 2) / (p - 1)      (elementwise)

so p = 2 is plain SGD (r = 0) and p -> inf tends to sign(u) (r -> 1).

    LPSGD:   theta <- theta - lr T_p(g_t)
    LPSGDM:  m_t    = beta m_{t-1} + (1 - beta) g_t            (Eq. 23, "ema", default)
             m_t    = beta m_{t-1} + g_t                       (Eq. 23, "heavy-ball")
             theta <- (1 - lr wd) theta - lr T_p(m_t)          (Eq. 24-25, decoupled decay)

LPSGD is LPSGDM with beta = 0 and wd = 0 (then m_t = g_t), so both share one update;
LPSGD keeps no momentum buffer. The norm exponent is the hyperparameter ``p`` of each
param group; `PNormScheduler` anneals it once per epoch k of K like an LR scheduler:

    p_k = 2 + (p_max - 2) (1 + cos(pi k / (K - 1))) / 2       (p_max at k = 0, 2 at k = K-1)

The paper also puts a warmup + cosine LR schedule on top (any `torch.optim.lr_scheduler`).

Momentum form (``momentum_form``). The extracted text lost Eq. 23, so whether the
buffer is an average ("ema", m = beta m + (1 - beta) g) or a sum ("heavy-ball",
m = beta m + g, torch's SGD) cannot be read from the paper; both are offered. The
default is "ema", because (a) Sec. 4.3 calls m a "momentum-smoothed gradient" that
the map T_p is applied to, and an average keeps the gradient's scale, so T_p, its eps
and the p-annealing act on the same numbers in LPSGD (beta = 0) and LPSGDM;
(b) it is the reconstruction of ALGORITHMS.md and the form earlier versions of this
module had, so results stay comparable; (c) the paper's own comparison Lion and AdamW
average their moments the same way.

Transferring a learning rate between the forms: from m = 0, the heavy-ball buffer is
exactly 1 / (1 - beta) times the EMA buffer, and T_p(c u) = c^(1/(p-1)) T_p(u) (with
eps scaled by 1/c), so

    heavy-ball at lr  ==  ema at lr (1 - beta)^(-1/(p-1))        (eps_ema = (1 - beta) eps)

and the decoupled decay matches when lr * wd is the same in both. At p = 2 (SGD
geometry, the last epoch of the schedule) the EMA form's steps are (1 - beta) times
the heavy-ball's at the same lr: the paper's LPSGDM lr = 1e-3 (Table 4, read as EMA)
is heavy-ball lr 1e-4 at p = 2, and (1 - 0.9)^(1/5) * 1e-3 = 6.3e-4 at p = 6 (the first
epoch). Because p changes over the schedule, no single constant lr makes the two forms
equal over a whole annealed run; the exponent 1/(p-1) shrinks as p grows, and for
p -> inf (sign) the form does not matter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ._common import (
    Closure,
    ParamsT,
    SpectraOptimizer,
    check_choice,
    check_lr,
    check_nonnegative,
    check_positive,
    check_unit_interval,
    real_view,
    widened,
)

__all__ = ["LPSGD", "LPSGDM", "MOMENTUM_FORMS", "PNormScheduler", "lp_map", "lpsgd_update"]

MOMENTUM_FORMS = ("ema", "heavy-ball")


def check_p(name: str, value: Any) -> None:
    """Norm exponents lie in [2, inf]."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 2.0
    if not ok:
        raise ValueError(f"Invalid {name} value: {value} (expected 2 <= {name} <= inf)")


def lp_exponent(p: float) -> float:
    """r = (p - 2) / (p - 1), the damping exponent of T_p (r = 1 for p = inf)."""
    return 1.0 if math.isinf(p) else (p - 2.0) / (p - 1.0)


def lp_map(u: Tensor, p: float, eps: float) -> Tensor:
    """T_p(u) = u (|u| + eps)^(-r), r = (p - 2) / (p - 1); a new tensor shaped like `u`
    (in float32 for a float16 `u`, where eps would round to 0: see `widened`)."""
    r = lp_exponent(p)
    if r == 0.0:
        return u.clone()
    w = widened(u)
    return w * w.abs().add_(eps).pow_(-r)


def lpsgd_update(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor] | None,
    *,
    lr: float,
    p: float,
    beta: float,
    weight_decay: float,
    eps: float,
    momentum_form: str = "ema",
) -> None:
    """One LPSGD(M) step over lists of tensors, in place.

    Args:
        params: parameters theta, any shapes; updated in place. A complex parameter is
            stepped as its real view (real and imaginary parts as two coordinates of
            T_p, not the modulus as one; `real_view`), its gradient and buffer alike.
        grads: gradients g_t, same shapes; not modified.
        momentum_buffers: m_{t-1}, same shapes, updated in place to m_t; None when
            beta = 0 (then the direction is g_t itself).
        lr, p, beta, weight_decay, eps: hyperparameters (see module docstring).
        momentum_form: "ema" (m = beta m + (1 - beta) g) or "heavy-ball" (m = beta m + g).
    """
    dampening = 1.0 - beta if momentum_form == "ema" else 1.0
    for i, (param, grad) in enumerate(zip(params, grads, strict=True)):
        param, grad = real_view(param), real_view(grad)
        direction = grad
        if momentum_buffers is not None:
            buffer = real_view(momentum_buffers[i])
            direction = buffer.mul_(beta).add_(grad, alpha=dampening)
        if weight_decay != 0.0:
            param.mul_(1.0 - lr * weight_decay)
        param.add_(lp_map(direction, p, eps), alpha=-lr)


class LPSGD(SpectraOptimizer):
    """LPSGD: SGD along the l_p steepest-descent direction T_p(g).

    Args:
        params: iterable of tensors or of param-group dicts.
        lr: learning rate (default 1e-3).
        p: the norm exponent, 2 <= p <= inf (default 6.0, the paper's p_max: the first
            epoch of the schedule). Attach a `PNormScheduler` to anneal it to 2.
        beta: momentum coefficient (default 0: no momentum, no state).
        weight_decay: decoupled weight decay wd (default 0).
        eps: stabilizer of T_p (default 1e-8).
        momentum_form: "ema" (default, m = beta m + (1 - beta) g) or "heavy-ball"
            (m = beta m + g); see the module docstring for the choice and how an lr
            transfers between them. Irrelevant when beta = 0.

    State per parameter: ``momentum_buffer`` (shaped like it) only when beta > 0. A
    complex parameter is optimized as its real view ``torch.view_as_real(p)`` (as
    torch's Adam does).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        p: float = 6.0,
        beta: float = 0.0,
        weight_decay: float = 0.0,
        eps: float = 1e-8,
        momentum_form: str = "ema",
    ) -> None:
        defaults = {
            "lr": lr, "p": p, "beta": beta, "weight_decay": weight_decay, "eps": eps,
            "momentum_form": momentum_form,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """torch's ``__setstate__`` (also run by ``load_state_dict``), then the group keys
        that older versions of this module did not have, at their old behaviour: a
        checkpoint saved before ``momentum_form`` existed steps as it did then ("ema",
        m = beta m + (1 - beta) g), as torch's own optimizers fill in new keys."""
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("momentum_form", "ema")

    def _validate(self, group: Mapping[str, Any]) -> None:
        check_lr(group["lr"])
        check_p("p", group["p"])
        check_unit_interval("beta", group["beta"])
        check_nonnegative("weight_decay", group["weight_decay"])
        check_positive("eps", group["eps"])
        check_choice("momentum_form", group["momentum_form"], MOMENTUM_FORMS)

    def current_hparams(self, group_index: int = 0) -> dict[str, float]:
        """The ``lr``, ``momentum`` (beta), ``weight_decay`` and norm exponent ``p`` of a
        group right now (``p`` moves under a :class:`PNormScheduler`); recorded by the
        trainer with each metrics row and drawn by ``spectra plot hparams``."""
        g = self.param_groups[group_index]
        return {"lr": float(g["lr"]), "momentum": float(g["beta"]),
                "weight_decay": float(g["weight_decay"]), "p": float(g["p"])}

    @staticmethod
    def _init_momentum(p: Tensor) -> dict[str, Any]:
        return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}

    @staticmethod
    def _init_nothing(p: Tensor) -> dict[str, Any]:
        return {}

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Any:
        """Perform one optimization step; returns the closure's loss (or None)."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            with_momentum = group["beta"] > 0.0
            init_state = self._init_momentum if with_momentum else self._init_nothing
            params, grads, states = self._params_with_grad(group, init_state)
            lpsgd_update(
                params,
                grads,
                [s["momentum_buffer"] for s in states] if with_momentum else None,
                lr=group["lr"],
                p=group["p"],
                beta=group["beta"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                momentum_form=group["momentum_form"],
            )
        return loss


class LPSGDM(LPSGD):
    """LPSGDM: LPSGD with momentum and decoupled weight decay (the paper's Algorithm 2).

    Same arguments as `LPSGD`, with the defaults lr 1e-3, p 6.0, beta 0.9,
    weight_decay 1e-2, eps 1e-8, momentum_form "ema" (the values of the paper's
    Table 4 for ResNet-18 on CIFAR-10, read in the EMA form).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        p: float = 6.0,
        beta: float = 0.9,
        weight_decay: float = 1e-2,
        eps: float = 1e-8,
        momentum_form: str = "ema",
    ) -> None:
        super().__init__(params, lr=lr, p=p, beta=beta, weight_decay=weight_decay, eps=eps,
                         momentum_form=momentum_form)


class PNormScheduler:
    """Cosine annealing of the l_p exponent, stepped once per epoch like an LR scheduler.

    At epoch k of K = `total_epochs` (k = 0 at construction, +1 per `step()`):

        p_k = 2 + (p_max - 2) (1 + cos(pi k / (K - 1))) / 2

    so p = p_max during the first epoch and p = 2 exactly from epoch K - 1 on (also
    when K = 1). Every param group's ``p`` is set to p_k.

    Args:
        optimizer: an optimizer whose param groups have a ``p`` entry (LPSGD, LPSGDM).
        p_max: the exponent of the first epoch, finite and >= 2.
        total_epochs: K >= 1.

    Example:
        >>> opt = LPSGDM([torch.nn.Parameter(torch.zeros(3))])
        >>> sched = PNormScheduler(opt, p_max=6.0, total_epochs=3)
        >>> ps = []
        >>> for epoch in range(3):
        ...     ps.append(opt.param_groups[0]["p"])  # ... train one epoch with this p ...
        ...     sched.step()
        >>> ps
        [6.0, 4.0, 2.0]
    """

    def __init__(self, optimizer: Optimizer, p_max: float, total_epochs: int) -> None:
        missing = [i for i, g in enumerate(optimizer.param_groups) if "p" not in g]
        if missing:
            raise TypeError(
                f"PNormScheduler needs an optimizer whose param groups have a 'p' entry "
                f"(LPSGD, LPSGDM); {type(optimizer).__name__} has none in group(s) {missing}"
            )
        check_p("p_max", p_max)
        if math.isinf(p_max):
            raise ValueError(f"Invalid p_max value: {p_max} (expected a finite p_max >= 2)")
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
            raise ValueError(f"Invalid total_epochs value: {total_epochs} (expected an int >= 1)")
        self.optimizer = optimizer
        self.p_max = float(p_max)
        self.total_epochs = total_epochs
        self.last_epoch = 0
        self._apply()

    def p_at(self, epoch: int) -> float:
        """p_k for epoch k (0-based); 2 for every k >= K - 1."""
        last = self.total_epochs - 1
        if epoch >= last:
            return 2.0
        return 2.0 + (self.p_max - 2.0) * (1.0 + math.cos(math.pi * epoch / last)) / 2.0

    def step(self) -> None:
        """Advance one epoch and set the new p in every param group."""
        self.last_epoch += 1
        self._apply()

    def get_last_p(self) -> list[float]:
        """The p of each param group, as last set."""
        return [group["p"] for group in self.optimizer.param_groups]

    def _apply(self) -> None:
        p = self.p_at(self.last_epoch)
        for group in self.optimizer.param_groups:
            group["p"] = p

    def state_dict(self) -> dict[str, Any]:
        return {"p_max": self.p_max, "total_epochs": self.total_epochs, "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.p_max = float(state_dict["p_max"])
        self.total_epochs = int(state_dict["total_epochs"])
        self.last_epoch = int(state_dict["last_epoch"])
        self._apply()
