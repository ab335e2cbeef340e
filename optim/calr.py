"""CALR: curvature-adaptive learning rate (Maduranga, calr.txt), Eq. 5 of the paper.

With g_t the gradient at step t (t = 1, 2, ...), all operations elementwise:

    g_t   <- clip(g_t, -c, c)                     (only with the `clip` option)
    m_t    = b1 m_{t-1} + (1 - b1) g_t            (Eq. 1)
    v_t    = b2 v_{t-1} + (1 - b2) g_t^2          (Eq. 2)
    m_hat  = m_t / (1 - b1^t),  v_hat = v_t / (1 - b2^t)            (Eq. 3)
    H_t    = |g_t| + delta                        (Eq. 4, the current gradient)
    theta <- theta - lr * m_hat / (sqrt(v_hat + alpha H_t) + eps)   (Eq. 5)

The paper writes the denominator three ways; Eq. 5 (the algorithm box) is the one
implemented. The authors' public code drops v_hat and adds alpha instead of
multiplying; this follows the paper, not that code.

The paper's variants are compositions, not copies: `clip` clamps a local copy of the
gradient (the `.grad` tensors are left untouched) before m, v and H; the cosine
variants are this optimizer plus a `torch.optim.lr_scheduler` (see `optim.registry`).

Where the defaults come from: lr = 1e-2 and alpha = 0.1 are the paper's ("Neural
Network Training": one lr of 1e-2 for every optimizer, CALR with alpha = 0.1); betas,
delta and eps are the symbols of Eq. 1-5 at Adam's usual values, which the paper does
not restate. The clipping threshold c = 0.1 (`DEFAULT_CLIP`, used by ``calr-clip`` and
``calr-clip-cosine``) is not in the paper: "Variants of CALR" writes
clip(g_t, -threshold, threshold) without a value; 0.1 is the value of the authors'
public code.
"""

from __future__ import annotations

import math
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
    check_positive,
    real_view,
    widened,
)

__all__ = ["CALR", "DEFAULT_CLIP", "calr_update"]

DEFAULT_CLIP = 0.1
"""The clipping threshold c of the clipped variants (`calr-clip`).

The paper names a threshold without a value; 0.1 is the authors' public code's."""


def calr_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    alpha: float,
    delta: float,
    eps: float,
    clip: float | None,
    denoms: list[Tensor] | None = None,
) -> None:
    """One CALR step (Eq. 1-5) over lists of tensors, in place.

    Args:
        params: parameters theta, any shapes; updated in place. A complex parameter is
            stepped as its real view (real and imaginary parts as two coordinates,
            `real_view`), with its gradient, moments and denominator alike.
        grads: gradients g_t, same shapes as `params`; not modified.
        exp_avgs: first moments m_{t-1}, same shapes; updated in place to m_t.
        exp_avg_sqs: second moments v_{t-1}, same shapes; updated in place to v_t.
        steps: the step number t of each parameter, already incremented (t >= 1).
        lr, beta1, beta2, alpha, delta, eps: the hyperparameters of Eq. 1-5.
        clip: None, or c > 0 to clamp a copy of each gradient to [-c, c] first.
        denoms: None, or tensors shaped like `params` that receive the step's
            denominators sqrt(v_hat + alpha H_t) + eps (for `CALR.preconditioner`).
    """
    outs = denoms if denoms is not None else [None] * len(params)
    for param, grad, m, v, t, out in zip(
        params, grads, exp_avgs, exp_avg_sqs, steps, outs, strict=True
    ):
        param, grad, m, v = (real_view(x) for x in (param, grad, m, v))
        g = grad.clamp(-clip, clip) if clip is not None else grad
        m.mul_(beta1).add_(g, alpha=1.0 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        # float32 for float16 parameters (`widened`): there delta and eps would round to
        # 0, and v / (1 - b2^t) overflows (65504) once |g| > 256 (v = 0.001 g^2 at t = 1)
        m_hat = widened(m) / (1.0 - beta1**t)
        v_hat = widened(v) / (1.0 - beta2**t)
        curvature = widened(g).abs().add_(delta)
        denom = v_hat.add_(curvature, alpha=alpha).sqrt_().add_(eps)
        if out is not None:
            real_view(out).copy_(denom)
        param.addcdiv_(m_hat, denom, value=-lr)


class CALR(SpectraOptimizer):
    """CALR: Adam moments with a gradient-magnitude curvature term in the denominator.

    Args:
        params: iterable of tensors or of param-group dicts.
        lr: base learning rate eta (default 1e-2).
        alpha: weight of the curvature estimate H_t = |g_t| + delta (default 0.1).
        betas: decay rates (b1, b2) of the first and second moments (default (0.9, 0.999)).
        delta: offset of the curvature estimate (default 1e-8).
        eps: added to the square root in the denominator (default 1e-8); 0 only with
            alpha > 0 and delta > 0, which keep the denominator of a zero gradient entry
            above 0.
        clip: None (default) or a threshold c > 0: the gradient is clamped to [-c, c]
            before m, v and H. The clipped variants use c = `DEFAULT_CLIP` = 0.1, the
            value of the authors' code (the paper gives none).

    State per parameter (created at its first step): ``step`` (int t), ``exp_avg`` (m),
    ``exp_avg_sq`` (v) and ``denom`` (the last step's sqrt(v_hat + alpha H_t) + eps,
    kept for :meth:`preconditioner`, since H_t = |g_t| + delta cannot be recovered from
    m and v), each shaped like the parameter.

    A complex parameter is optimized as its real view ``torch.view_as_real(p)`` (as
    torch's Adam does): its real and imaginary parts are two real coordinates, and its
    complex state tensors hold their moments in the same layout.

    Example:
        >>> p = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
        >>> opt = CALR([p], lr=0.01)
        >>> p.grad = torch.tensor([0.5, -2.0])
        >>> _ = opt.step()
        >>> p.detach()  # 1 -+ 0.01 * |g| / sqrt(g^2 + 0.1 |g|)
        tensor([0.9909, 1.0098])
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-2,
        alpha: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.999),
        delta: float = 1e-8,
        eps: float = 1e-8,
        clip: float | None = None,
    ) -> None:
        defaults = {"lr": lr, "alpha": alpha, "betas": betas, "delta": delta, "eps": eps, "clip": clip}
        super().__init__(params, defaults)

    def _validate(self, group: Mapping[str, Any]) -> None:
        check_lr(group["lr"])
        check_nonnegative("alpha", group["alpha"])
        check_betas(group["betas"])
        check_nonnegative("delta", group["delta"])
        check_nonnegative("eps", group["eps"])
        if group["eps"] == 0 and (group["alpha"] == 0 or group["delta"] == 0):
            raise ValueError(
                f"Invalid eps value: {group['eps']} with alpha = {group['alpha']} and delta = "
                f"{group['delta']} (expected eps > 0 unless alpha > 0 and delta > 0: the "
                "denominator sqrt(v_hat + alpha (|g| + delta)) + eps of a gradient entry that "
                "has been 0 so far is then 0, and its step 0 / 0 is NaN)"
            )
        if group["clip"] is not None:
            check_positive("clip", group["clip"])

    @staticmethod
    def _init_state(p: Tensor) -> dict[str, Any]:
        return {
            "step": 0,
            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            "denom": torch.zeros_like(p, memory_format=torch.preserve_format),
        }

    def current_hparams(self, group_index: int = 0) -> dict[str, float]:
        """A group's ``lr``, ``momentum`` (beta1) and ``effective_lr`` right now.

        CALR's step on coordinate i is ``lr * m_hat_i / d_i`` with the denominator
        ``d_i = sqrt(v_hat_i + alpha H_i) + eps`` of the last step, so its per-coordinate
        learning rate on the bias-corrected momentum is ``lr / d_i``. ``effective_lr``
        is the median of ``lr / d_i`` over the group's coordinates that have stepped
        (NaN before the first step): one number per metrics row, drawn by
        ``spectra plot hparams``. CALR has no weight decay (``weight_decay`` NaN).
        """
        g = self.param_groups[group_index]
        denoms = [real_view(self.state[p]["denom"]).reshape(-1) for p in g["params"]
                  if self.state.get(p, {}).get("step", 0) > 0 and "denom" in self.state[p]]
        effective = math.nan
        if denoms:
            effective = float(g["lr"] / torch.cat(denoms).double().median())
        return {"lr": float(g["lr"]), "momentum": float(g["betas"][0]),
                "weight_decay": math.nan, "effective_lr": effective}

    def preconditioner(self) -> Tensor:
        """The diagonal preconditioner P_t of the last step, ``(P,)`` over the parameters
        in ``param_groups`` order (read by :func:`spectra.preconditioner`); a complex
        parameter contributes its real view's ``2 * numel`` entries (real, imaginary).

        Eq. 5 is theta <- theta - lr m_t / P_t with, as Cohen et al. 2022 write Adam's,
        P_t = (1 - b1^t) (sqrt(v_hat_t + alpha H_t) + eps): the denominator of the last
        step, whose H_t = |g_t| + delta is that step's (clipped) gradient.

        Raises:
            ValueError: before the first step, or for a parameter that has not had a
                gradient at a step (or whose state, loaded from an older checkpoint,
                has no ``denom`` yet: one step writes it).
        """
        if not any(self.state.get(p) for g in self.param_groups for p in g["params"]):
            raise ValueError(
                "the CALR optimizer has no state yet: its preconditioner is defined after "
                "its first step (call optimizer.step() once)"
            )
        parts = []
        for g, group in enumerate(self.param_groups):
            beta1 = group["betas"][0]
            for i, p in enumerate(group["params"]):
                state = self.state.get(p)
                if not state or "denom" not in state:
                    raise ValueError(
                        f"parameter {i} of param group {g} (shape {tuple(p.shape)}) has no CALR "
                        "denominator: it has not had a gradient at a step yet (or its state was "
                        "loaded without one; step once)"
                    )
                denom = real_view(state["denom"])  # (*p.shape, 2) for a complex p
                parts.append((denom * (1.0 - beta1 ** state["step"])).reshape(-1))
        return torch.cat(parts)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Any:
        """Perform one optimization step; returns the closure's loss (or None)."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params, grads, states = self._params_with_grad(group, self._init_state)
            for state in states:
                state["step"] += 1
            beta1, beta2 = group["betas"]
            calr_update(
                params,
                grads,
                [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states],
                [s["step"] for s in states],
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                alpha=group["alpha"],
                delta=group["delta"],
                eps=group["eps"],
                clip=group["clip"],
                denoms=[
                    s.setdefault("denom", torch.zeros_like(p, memory_format=torch.preserve_format))
                    for p, s in zip(params, states, strict=True)
                ],
            )
        return loss
