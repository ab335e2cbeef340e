"""SMARAN: loss-value-driven step size with normalized-gradient momentum (smaran.txt).

With f_t the minibatch loss of step t and g_t its gradient (Algorithm 1):

    f_t   <- max(f_t - f_min, 0)                 (f_min = 0: losses are >= 0 in the paper)
    g_hat  = g_t / (||g_t|| + eps)                (Eq. 2; ||g_t|| over all parameters)
    m_t    = gamma m_{t-1} + g_hat                (Eq. 3, no dampening)
    v_t    = gamma v_{t-1} + f_t^2                (Eq. 7, one scalar)
    V_t    = f_t / (sqrt(v_t) + eps)              (Eq. 6, 0 <= V_t < 1)
    theta <- theta - lr V_t (m_t + lambda theta)  (Eq. 11; lambda = `weight_decay`)

The step needs the loss: `step(closure)` or `step(loss=...)`.

Resolutions:
- Norm: ``norm="global"`` (the default) is Eq. 2: one norm ||g_t|| over all gradients
  of the param group together (over all parameters in the usual one-group case), so
  ||g_hat|| < 1 as in Theorem 1 and the paper's lr = 0.1 (Sec. 5.1) means what it says.
  ``norm="tensor"`` divides each parameter tensor's gradient by its own norm, as the
  authors' code does; this is a deviation from Eq. 2: with K tensors ||g_hat|| is
  sqrt(K) instead of 1 (ResNet-18, K = 62 tensors: 7.9x), so every step is sqrt(K)
  times longer and lr = 0.1 there is a different learning rate from the paper's.
  With several param groups "global" is still one norm: over the gradients of every
  group whose norm is "global" (all of them by default), so that splitting the
  parameters into groups with the same hyperparameters (weight decay on and off, say)
  leaves the step as Eq. 2 has it.
- v is one scalar per param group (exactly one per optimizer in the usual one-group
  case), so that per-group `gamma` is well defined. It is kept as a 0-dim tensor on
  the parameters' device: no host synchronization per step.
- A non-finite loss skips the step: m, v and theta stay as they were. So does a finite
  loss whose square overflows v (gamma v + f^2 = inf: f > 1.8e19 in float32), which
  would otherwise leave v = inf, V_t = 0 and every later step 0. The skip is
  computed on the device (`torch.where`), so it never synchronizes. When the loss is a
  Python number or a CPU tensor the skip is also reported at once with a
  `RuntimeWarning` (an overflow only when the parameters are on the CPU too); for
  accelerator losses a warning would need a host sync every
  step, so the skips are only counted (``skipped_steps``, a device tensor) and can be
  read with `SMARAN.skipped_steps()`.
- Complex parameters are optimized as their real views ``torch.view_as_real(p)`` (as
  torch's Adam does); the loss and v stay real.
- Norms are accumulated in at least float32 (`tensor_norm`): a float16 norm is inf
  above 65504.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from numbers import Real
from typing import Any

import torch
from torch import Tensor

from ._common import (
    Closure,
    ParamsT,
    SpectraOptimizer,
    check_choice,
    check_finite,
    check_lr,
    check_nonnegative,
    check_positive,
    check_unit_interval,
    real_view,
)

__all__ = ["SMARAN", "gradient_norm", "smaran_update", "tensor_norm"]

NORMS = ("global", "tensor")

_SCALARS_KEY = "smaran"
"""Key of the non-parameter entry of `Optimizer.state` holding v and the skip counter.

torch's `state_dict`/`load_state_dict` carry non-parameter keys through unchanged.
"""


def tensor_norm(grad: Tensor) -> Tensor:
    """``||g||`` of one gradient (0-dim, on its device), accumulated and returned in at
    least float32: float16's largest number is 65504, so a float16 norm of 10^4 entries
    of 1000 (10^5) would be inf and every step 0. A complex gradient's norm is its real
    view's (`real_view`), the same number as over the moduli."""
    g = real_view(grad)
    return torch.linalg.vector_norm(g, dtype=torch.promote_types(g.dtype, torch.float32))


def gradient_norm(grads: list[Tensor]) -> Tensor:
    """``||g||`` over all of ``grads`` together (0-dim, on the first one's device, at
    least float32: `tensor_norm`)."""
    device = grads[0].device
    return torch.linalg.vector_norm(torch.stack([tensor_norm(g).to(device) for g in grads]))


def smaran_update(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    loss_sq_avg: Tensor,
    loss: Tensor,
    *,
    lr: float,
    gamma: float,
    weight_decay: float,
    eps: float,
    f_min: float,
    norm: str,
    global_norm: Tensor | None = None,
    take: Tensor | None = None,
) -> Tensor:
    """One SMARAN step (Algorithm 1) over lists of tensors, in place.

    Args:
        params: parameters theta, any shapes; updated in place. A complex parameter is
            stepped as its real view (`real_view`), its gradient and buffer alike.
        grads: their gradients g_t, same shapes; not modified.
        momentum_buffers: m_{t-1}, same shapes; updated in place to m_t.
        loss_sq_avg: v_{t-1}, a 0-dim tensor; updated in place to v_t.
        loss: the step's loss f_t, a 0-dim tensor with the dtype and device of
            `loss_sq_avg`.
        lr, gamma, weight_decay, eps, f_min: hyperparameters (see module docstring).
        norm: "global" (Eq. 2: one norm over all `grads`) or "tensor" (each gradient
            by its own norm; a deviation, see the module docstring).
        global_norm: with "global", the norm to divide by when `grads` are only a part
            of the gradient (one param group of several: `SMARAN.step` passes the norm
            over all groups); default: the norm of `grads`.

    Returns:
        Whether the step was taken: a 0-dim bool tensor on `loss`'s device.

    A step is skipped, changing nothing, when `loss` is not finite, or when it is finite
    but the new v = gamma v + f^2 is not: in float32 f^2 overflows for f > 1.8e19, and
    an infinite v would make V_t = 0, every later step 0, for good. Both are computed
    with `torch.where`, no host sync. ``take`` (a 0-dim bool tensor), when given, must
    also hold: `SMARAN.step` passes whether every param group can take the step, so
    that a step is taken or skipped in all of them.
    """
    finite = torch.isfinite(loss)
    f = torch.where(finite, (loss - f_min).clamp(min=0.0), torch.zeros_like(loss))
    new_avg = gamma * loss_sq_avg + f * f
    taken = finite & torch.isfinite(new_avg)
    if take is not None:
        taken = taken & take.to(taken.device)
    loss_sq_avg.copy_(torch.where(taken, new_avg, loss_sq_avg))
    # lr * V_t; exactly 0 when skipped
    step_size = torch.where(taken, lr * f / (loss_sq_avg.sqrt() + eps), torch.zeros_like(f))

    if norm == "global":
        total = global_norm if global_norm is not None else gradient_norm(grads)
        norms = [total.to(grads[0].device)] * len(grads)
    else:
        norms = [tensor_norm(g) for g in grads]

    for param, grad, m, grad_norm in zip(params, grads, momentum_buffers, norms, strict=True):
        param, grad, m = (real_view(x) for x in (param, grad, m))
        g_hat = grad / (grad_norm + eps)  # the norm is >= float32 (`tensor_norm`)
        m.copy_(torch.where(taken, gamma * m + g_hat, m))
        direction = m + weight_decay * param
        param.sub_(step_size.to(param.dtype) * direction)
    return taken


class SMARAN(SpectraOptimizer):
    """SMARAN: step size from the loss value, direction from normalized-gradient momentum.

    Args:
        params: iterable of tensors or of param-group dicts.
        lr: global learning rate eta (default 0.1).
        gamma: discount of both moments m and v (default 0.9).
        weight_decay: lambda, scaled by the adaptive factor V_t (default 0.01).
        eps: stabilizer of the gradient normalization and of V_t (default 1e-8).
        f_min: the loss is used as max(f - f_min, 0), so that V_t >= 0 also for
            losses that can be negative (default 0).
        norm: "global" (default, Eq. 2: one norm over the param group's gradients) or
            "tensor" (each tensor by its own norm, as the authors' code: a deviation
            that makes steps sqrt(number of tensors) times longer).

    State: per parameter ``momentum_buffer`` (m, shaped like it); under the
    non-parameter key ``state["smaran"]``: ``loss_sq_avg`` (v, a 0-dim tensor per param
    group index) and ``skipped_steps`` (0-dim int64 tensor). `state_dict()` and
    `load_state_dict()` round-trip both.

    Example:
        >>> p = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
        >>> opt = SMARAN([p], lr=0.1, weight_decay=0.0)
        >>> p.grad = p.detach().clone()  # gradient of f = ||p||^2 / 2 = 12.5
        >>> _ = opt.step(loss=12.5)
        >>> p.detach()  # first step: V_1 = f / sqrt(f^2) = 1, m_1 = g / ||g|| = (0.6, 0.8)
        tensor([2.9400, 3.9200])
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.1,
        gamma: float = 0.9,
        weight_decay: float = 0.01,
        eps: float = 1e-8,
        f_min: float = 0.0,
        norm: str = "global",
    ) -> None:
        defaults = {
            "lr": lr, "gamma": gamma, "weight_decay": weight_decay,
            "eps": eps, "f_min": f_min, "norm": norm,
        }
        super().__init__(params, defaults)

    def _validate(self, group: Mapping[str, Any]) -> None:
        check_lr(group["lr"])
        check_unit_interval("gamma", group["gamma"])
        check_nonnegative("weight_decay", group["weight_decay"])
        check_positive("eps", group["eps"])
        check_finite("f_min", group["f_min"])
        check_choice("norm", group["norm"], NORMS)

    @staticmethod
    def _init_state(p: Tensor) -> dict[str, Any]:
        return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def _scalars(self) -> dict[str, Any]:
        """The optimizer's non-parameter state: v per param group, the skip counter."""
        return self.state.setdefault(_SCALARS_KEY, {"loss_sq_avg": {}})  # type: ignore[call-overload]

    def _loss_sq_avg(self, index: int, like: Tensor) -> Tensor:
        """v of param group `index`, created as a zero like `like`, on `like`'s device."""
        per_group = self._scalars()["loss_sq_avg"]
        v = per_group.get(index)
        if v is None:
            v = per_group[index] = torch.zeros_like(like)
        elif v.device != like.device:  # e.g. loaded from a checkpoint of another device
            v = per_group[index] = v.to(like.device)
        return v

    def skipped_steps(self) -> int:
        """Number of steps skipped because of a non-finite loss, or an overflowing v in
        some param group (synchronizes)."""
        count = self._scalars().get("skipped_steps")
        return 0 if count is None else int(count)

    @torch.no_grad()
    def step(self, closure: Closure | None = None, *, loss: Tensor | float | None = None) -> Any:
        """Perform one step with the loss of this step's minibatch.

        Args:
            closure: re-evaluates the model, calls `backward()` and returns the loss.
            loss: the loss already computed for the current gradients (tensor or number).
                Give exactly one of `closure` and `loss`.

        Returns:
            The loss (the closure's return value, or `loss`).
        """
        if closure is not None and loss is not None:
            raise ValueError("SMARAN.step: pass either a closure or loss=..., not both")
        if closure is not None:
            loss = self._closure_loss(closure)
        if loss is None:
            raise ValueError(
                "SMARAN needs the loss of the step: call optimizer.step(closure) with a "
                "closure that returns the loss, or optimizer.step(loss=loss)"
            )
        # The loss lives where the parameters do (a number takes their dtype, >= float32).
        like = next(
            (p for g in self.param_groups for p in g["params"] if p.grad is not None),
            self.param_groups[0]["params"][0],
        )
        f = self._loss_tensor(loss, like)
        groups = [(group, *self._params_with_grad(group, self._init_state))
                  for group in self.param_groups]
        # Eq. 2: one norm over the gradients of all the "global" groups together
        shared = [g for group, _, grads, _ in groups if group["norm"] == "global" for g in grads]
        total = gradient_norm(shared) if shared else None
        # a step is taken in every group or in none: one whose v would overflow skips all
        take = torch.isfinite(f)
        for index, (group, params, _, _) in enumerate(groups):
            if params:
                v = self._loss_sq_avg(index, f.to(params[0].device))
                fg = (f.to(v.device, v.dtype) - group["f_min"]).clamp(min=0.0)
                take = take & torch.isfinite(group["gamma"] * v + fg * fg).to(take.device)
        skipped = ~take
        for index, (group, params, grads, states) in enumerate(groups):
            if not params:
                continue
            f_here = f.to(params[0].device)
            v = self._loss_sq_avg(index, f_here)
            smaran_update(
                params,
                grads,
                [s["momentum_buffer"] for s in states],
                v,
                f_here.to(v.dtype),
                lr=group["lr"],
                gamma=group["gamma"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                f_min=group["f_min"],
                norm=group["norm"],
                global_norm=total,
                take=take,
            )
        self._count_skip(loss, skipped)
        return loss

    def _count_skip(self, loss: Tensor | float, skipped: Tensor) -> None:
        """Count a skipped step on the device (`skipped`, 0-dim bool: a non-finite loss, or
        an overflowing v in some param group); warn when that can be read without a host
        sync (a non-finite loss already on the host; an overflow computed on the CPU)."""
        scalars = self._scalars()
        count = scalars.get("skipped_steps")
        if count is None:
            count = scalars["skipped_steps"] = torch.zeros((), dtype=torch.int64,
                                                           device=skipped.device)
        elif count.device != skipped.device:
            count = scalars["skipped_steps"] = count.to(skipped.device)
        count.add_(skipped)
        if isinstance(loss, Tensor) and loss.device.type != "cpu":
            return  # reading an accelerator loss on the host would synchronize
        value = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
        if not math.isfinite(value):
            reason = f"non-finite loss {value}"
        elif skipped.device.type == "cpu" and bool(skipped):
            reason = (f"loss {value:.3g} overflows the running average v of squared losses "
                      "(gamma v + f^2 is above the largest number of v's dtype)")
        else:
            return
        warnings.warn(
            f"SMARAN: {reason}; the step was skipped (parameters and moments unchanged)",
            RuntimeWarning,
            stacklevel=3,
        )

    @staticmethod
    def _loss_tensor(loss: Tensor | float, like: Tensor) -> Tensor:
        """The loss as a detached 0-dim tensor on `like`'s device, at least float32.

        A Python number takes the floating dtype of `like` (a parameter; of its real
        view for a complex one: a loss is real).
        """
        if isinstance(loss, Tensor):
            if loss.numel() != 1:
                raise ValueError(
                    f"SMARAN needs a scalar loss, got a tensor of shape {tuple(loss.shape)}"
                )
            f = loss.detach().reshape(())
            return f.to(device=like.device, dtype=torch.promote_types(f.dtype, torch.float32))
        if isinstance(loss, Real):
            dtype = torch.promote_types(real_view(like).dtype, torch.float32)
            return torch.tensor(float(loss), dtype=dtype, device=like.device)
        raise TypeError(f"SMARAN: the loss must be a tensor or a number, got {type(loss)}")
