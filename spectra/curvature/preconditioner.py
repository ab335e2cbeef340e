"""The diagonal preconditioner of an adaptive optimizer, read from its state.

Cohen et al. 2022 ("Adaptive gradient methods at the edge of stability", arXiv
2207.14484, Sec. 2) write an adaptive step as ``w <- w - eta P_t^(-1) m_t`` with
``m_t`` the optimizer's (un-bias-corrected) momentum, or the gradient where it has
none, and study the preconditioned sharpness ``lambda_1(P_t^(-1) H)``. Reading
``P_t`` off each ``torch.optim`` update (all operations elementwise, ``t`` the
parameter's step count, ``v``, ``s``, ``u`` the optimizer's state after step ``t``):

==========================  ==================================================  =====================
optimizer                   ``P`` (diagonal)                                     state read
==========================  ==================================================  =====================
Adam, AdamW                 ``(1 - beta1^t) (sqrt(v / (1 - beta2^t)) + eps)``    ``exp_avg_sq``, ``step``
Adam, AdamW (``amsgrad``)   the same with ``v`` the running maximum             ``max_exp_avg_sq``
Adamax                      ``(1 - beta1^t) u``                                 ``exp_inf``, ``step``
RMSprop                     ``sqrt(v) + eps``                                   ``square_avg``
RMSprop (``centered``)      ``sqrt(v - g_avg^2) + eps``                         ``square_avg``, ``grad_avg``
Adagrad                     ``(1 + (t - 1) lr_decay) (sqrt(s) + eps)``          ``sum``, ``step``
==========================  ==================================================  =====================

RMSprop's ``momentum`` acts on the preconditioned gradient (``b <- mu b + g / P``,
``w <- w - eta b``), so ``P`` is the same with or without it; Adagrad's
``lr_decay`` is folded into ``P`` so that the step is ``eta P^(-1) g`` with the
group's ``lr``. ``maximize`` and weight decay do not change ``P``.

Other optimizers: one that defines ``preconditioner()`` (a method returning the
``(P,)`` diagonal over its parameters in ``param_groups`` order, e.g.
``optim.CALR``) is asked for it (duck typing; spectra never imports ``optim``).
SGD has no preconditioner (its sharpness is the plain ``lambda_1``); NAdam's
momentum schedule and RAdam's rectification change the factor in front of the
momentum from step to step in ways the table's form does not capture, and they
are refused like every other optimizer, with a ``TypeError`` naming those
supported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

_SUPPORTED = "Adam, AdamW, Adamax, RMSprop, Adagrad, or an optimizer with a preconditioner() method"


def preconditioner(
    optimizer: torch.optim.Optimizer,
    *,
    params: Iterable[Tensor] | None = None,
) -> Tensor:
    """The ``(P,)`` diagonal of ``optimizer``'s current preconditioner (module docstring).

    The entries follow the optimizer's parameters in ``param_groups`` order, each
    flattened like :meth:`torch.Tensor.reshape` ``(-1)``, which is the order of a
    curvature operator built over the same parameters::

        params = [p for group in optimizer.param_groups for p in group["params"]]
        H = spectra.HessianOperator(model, loss_fn, data, params=params)
        Hp = spectra.PreconditionedOperator(H, spectra.preconditioner(optimizer))

    (an operator built with the default ``params=None`` takes the model's trainable
    parameters in ``named_parameters`` order, the same when the optimizer was built
    with ``model.parameters()``). Or pass the operator's parameters as ``params``
    to get the entries in that order. :class:`~spectra.PreconditionedOperator`
    checks the length against the operator.

    Args:
        optimizer: a ``torch.optim.Optimizer`` after at least one step.
        params: optional parameters of ``optimizer`` (tensors); the result then
            covers exactly these, in this order.

    Returns:
        A positive ``(P,)`` tensor in the parameters' dtype, on their device
        (computed like the optimizer's own denominator, from a detached state).

    Raises:
        TypeError: ``optimizer`` has no diagonal preconditioner here (SGD, NAdam,
            RAdam, LBFGS, ...), or its ``preconditioner()`` returns no tensor.
        ValueError: the optimizer has not stepped yet (no state), a parameter has
            no state (it never had a gradient), a tensor of ``params`` is not one of
            the optimizer's, or ``preconditioner()`` returns the wrong length.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    own = [p for group in optimizer.param_groups for p in group["params"]]
    if params is not None:
        params = list(params)
        index = {id(p): i for i, p in enumerate(own)}
        for j, p in enumerate(params):
            if not isinstance(p, Tensor) or id(p) not in index:
                raise ValueError(
                    f"params[{j}] is not a parameter of the {type(optimizer).__name__} optimizer "
                    "(pass tensors from its param_groups, e.g. the operator's parameters)"
                )
    name = type(optimizer).__name__
    method = getattr(optimizer, "preconditioner", None)
    if callable(method):
        parts = _split_flat(method(), own, name)
    else:
        if isinstance(optimizer, torch.optim.SGD):
            raise TypeError(
                f"{name} has no preconditioner; its sharpness is the plain lambda_1 of the "
                "Hessian (compare it with spectra.stability_threshold(optimizer))"
            )
        rule = _rule(optimizer)
        if not any(stepped(optimizer.state.get(p)) for p in own):
            raise ValueError(
                f"the {name} optimizer has no state yet: its preconditioner is defined after "
                "its first step (call optimizer.step() once)"
            )
        wanted = None if params is None else {id(p) for p in params}
        parts = []
        for g, group in enumerate(optimizer.param_groups):
            for i, p in enumerate(group["params"]):
                if wanted is not None and id(p) not in wanted:
                    parts.append(p.new_empty(0))  # a placeholder, never returned
                    continue
                state = optimizer.state.get(p)
                if not stepped(state):
                    raise ValueError(
                        f"parameter {i} of param group {g} (shape {tuple(p.shape)}) has no "
                        f"{name} state: it has not had a gradient at a step yet. Leave it out "
                        "with params= (and build the operator over the same parameters)"
                    )
                with torch.no_grad():
                    parts.append(rule(group, state).reshape(-1))
    if params is not None:
        by_id = {id(p): d for p, d in zip(own, parts)}
        parts = [by_id[id(p)] for p in params]
    if not parts:
        raise ValueError(f"the {name} optimizer holds no parameters")
    return torch.cat(parts)


# ---------------------------------------------------------------------- per optimizer
def _rule(optimizer: torch.optim.Optimizer) -> Callable[[dict[str, Any], dict[str, Any]], Tensor]:
    """The function ``(param_group, state) -> P`` (shaped like the parameter) of ``optimizer``."""
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return _adam
    if isinstance(optimizer, torch.optim.Adamax):
        return _adamax
    if isinstance(optimizer, torch.optim.RMSprop):
        return _rmsprop
    if isinstance(optimizer, torch.optim.Adagrad):
        return _adagrad
    name = type(optimizer).__name__
    why = ""
    if isinstance(optimizer, (torch.optim.NAdam, torch.optim.RAdam)):
        why = (
            f" ({name}'s factor in front of the momentum changes from step to step, so its step "
            "is not eta P^-1 m with a diagonal P read from its state)"
        )
    raise TypeError(f"{name} has no diagonal preconditioner spectra can read{why}; supported: {_SUPPORTED}")


def stepped(state: dict[str, Any] | None) -> bool:
    """Whether ``state`` holds a step's statistics: not empty, and its step count (where
    it keeps one) past 0. Adagrad makes its state, step 0 and a zero sum, when it is
    built: read before its first step, it would give the bare eps."""
    if not state:
        return False
    return "step" not in state or float(state["step"]) > 0


def _step(state: dict[str, Any]) -> float:
    return float(state["step"])


def _adam(group: dict[str, Any], state: dict[str, Any]) -> Tensor:
    beta1, beta2 = (float(b) for b in group["betas"])
    t = _step(state)
    v = state["max_exp_avg_sq"] if group.get("amsgrad", False) else state["exp_avg_sq"]
    denom = (v.sqrt() / (1.0 - beta2**t) ** 0.5).add_(float(group["eps"]))
    return denom.mul_(1.0 - beta1**t)


def _adamax(group: dict[str, Any], state: dict[str, Any]) -> Tensor:
    beta1 = float(group["betas"][0])
    return state["exp_inf"] * (1.0 - beta1 ** _step(state))


def _rmsprop(group: dict[str, Any], state: dict[str, Any]) -> Tensor:
    v = state["square_avg"]
    if group.get("centered", False):
        avg = v.addcmul(state["grad_avg"], state["grad_avg"], value=-1).sqrt_()
    else:
        avg = v.sqrt()
    return avg.add_(float(group["eps"]))


def _adagrad(group: dict[str, Any], state: dict[str, Any]) -> Tensor:
    decay = 1.0 + (_step(state) - 1.0) * float(group.get("lr_decay", 0.0))
    std = state["sum"].sqrt().add_(float(group["eps"]))
    return std.mul_(decay) if decay != 1.0 else std


def _split_flat(diag: Any, own: list[Tensor], name: str) -> list[Tensor]:
    """A duck-typed ``preconditioner()``'s flat result, checked and cut per parameter."""
    if not isinstance(diag, Tensor):
        raise TypeError(f"{name}.preconditioner() must return a tensor, got {type(diag).__name__}")
    numels = [p.numel() for p in own]
    if diag.dim() != 1 or diag.shape[0] != sum(numels):
        raise ValueError(
            f"{name}.preconditioner() must return shape ({sum(numels)},), one entry per scalar of "
            f"its parameters in param_groups order, got {tuple(diag.shape)}"
        )
    return list(diag.detach().split(numels))


__all__ = ["preconditioner"]
