"""Lion (Chen et al. 2023, "Symbolic discovery of optimization algorithms").

With g_t the gradient, elementwise:

    u      = sign(b1 m_{t-1} + (1 - b1) g_t)
    theta <- theta (1 - lr wd) - lr u
    m_t    = b2 m_{t-1} + (1 - b2) g_t

`torch.optim` has no Lion (torch 2.13), hence this module.

Defaults: betas (0.9, 0.99) are Chen et al.'s default; lr 1e-4 is Lion's lr in
LPSGD's CIFAR-10 comparisons (lpsgd.txt, Table 4), 10x below AdamW's 1e-3 there, as
Chen et al. advise (a 3-10x smaller lr than AdamW). LPSGD's comparisons do not all
use Chen et al.'s betas: on CIFAR-10 and CIFAR-100 (Tables 4 and 5) Lion runs with
betas (0.9, 0.999), on ImageNet-1K (Table 6) with (0.9, 0.99). To reproduce the CIFAR
comparisons pass ``betas=(0.9, 0.999)`` (and the tables' lr and weight decay); the
default stays Chen et al.'s, so that ``lion`` is the published optimizer and
LPSGD's ImageNet setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ._common import (
    Closure,
    ParamsT,
    SpectraOptimizer,
    check_betas,
    check_lr,
    check_nonnegative,
    real_view,
)

__all__ = ["Lion", "lion_update"]


def lion_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
) -> None:
    """One Lion step over lists of tensors, in place.

    Args:
        params: parameters theta, any shapes; updated in place. A complex parameter is
            stepped as its real view (real and imaginary parts as two coordinates, each
            with its own sign; `real_view`), its gradient and momentum alike.
        grads: gradients g_t, same shapes; not modified.
        exp_avgs: momentum m_{t-1}, same shapes; updated in place to m_t.
        lr, beta1, beta2, weight_decay: hyperparameters (see module docstring).
    """
    for param, grad, m in zip(params, grads, exp_avgs, strict=True):
        param, grad, m = (real_view(x) for x in (param, grad, m))
        update = (m * beta1).add_(grad, alpha=1.0 - beta1).sign_()
        if weight_decay != 0.0:
            param.mul_(1.0 - lr * weight_decay)
        param.add_(update, alpha=-lr)
        m.mul_(beta2).add_(grad, alpha=1.0 - beta2)


class Lion(SpectraOptimizer):
    """Lion: the sign of an interpolated momentum, with decoupled weight decay.

    Args:
        params: iterable of tensors or of param-group dicts.
        lr: learning rate (default 1e-4, LPSGD's Table 4; Lion wants a 3-10x smaller
            lr than AdamW).
        betas: (b1, b2), interpolation for the update and momentum decay
            (default (0.9, 0.99), Chen et al.; LPSGD's CIFAR tables use (0.9, 0.999)).
        weight_decay: decoupled weight decay (default 0).

    State per parameter: ``exp_avg`` (m, shaped like it). A complex parameter is
    optimized as its real view ``torch.view_as_real(p)`` (as torch's Adam does).
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    def _validate(self, group: Mapping[str, Any]) -> None:
        check_lr(group["lr"])
        check_betas(group["betas"])
        check_nonnegative("weight_decay", group["weight_decay"])

    @staticmethod
    def _init_state(p: Tensor) -> dict[str, Any]:
        return {"exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format)}

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Any:
        """Perform one optimization step; returns the closure's loss (or None)."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params, grads, states = self._params_with_grad(group, self._init_state)
            beta1, beta2 = group["betas"]
            lion_update(
                params,
                grads,
                [s["exp_avg"] for s in states],
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
            )
        return loss
