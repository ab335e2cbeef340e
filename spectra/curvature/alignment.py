"""Gradient alignment with the top Hessian eigenspace, and where an optimizer step's
loss change comes from.

Gur-Ari, Roberts & Dyer (2018, "Gradient descent happens in a tiny subspace")
observed that after a short while the gradient lies almost entirely in the span of
the top-``k`` Hessian eigenvectors (``k`` the number of classes). With ``V`` the
``(P, k)`` orthonormal top eigenvectors, the *alignment* of a gradient ``g`` is the
fraction of its squared norm in that span::

    a(g) = ||V V^T g||^2 / ||g||^2 = ||V^T g||^2 / ||g||^2      in [0, 1]

recorded for the full-batch gradient of the probe set and for a training
minibatch's gradient.

Song, Ahn & Yun (2025, "Does SGD really happen in tiny subspaces?", ICLR) showed
that the aligned part does not make the progress: an SGD step projected onto the
top span (Dom-SGD) barely lowers the loss, while its projection onto the
complement (Bulk-SGD) does as well as the whole step. The check here takes one
optimizer step ``d`` from the current parameters ``w`` (the optimizer's own
``step`` on a copy of it and of the parameters, the original untouched) and
evaluates on the probe set::

    dL      = L(w + d)              - L(w)
    dL_top  = L(w + V V^T d)        - L(w)
    dL_bulk = L(w + (I - V V^T) d)  - L(w)

with ``||V^T d||^2 / ||d||^2``, the step's own alignment. ``V`` are the Hessian's
eigenvectors as the probe computed them (Ritz vectors of a converged Lanczos run,
orthonormal to round-off).

Costs (none in Hessian-vector products, given the eigenvectors of the probe): one
gradient of the probe set (a forward and a backward pass over it), one gradient of
the minibatch when one is given, and for the step check one optimizer step (its
closure: a forward and backward pass over the minibatch, or the probe set without
one) plus three forward passes over the probe set.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from spectra.operators.base import (
    Batch,
    LossFn,
    batch_size,
    batch_to,
    functional_state,
    normalize_data,
    resolve_reduction,
)
from spectra.operators.hessian import HessianOperator
from spectra.utils.checks import did_you_mean
from spectra.utils.modes import eval_mode as _eval_mode
from spectra.utils.modes import preserved_rng
from spectra.utils.params import trainable_parameters

__all__ = [
    "Alignment",
    "gradient_alignment",
    "loss_and_gradient",
    "optimizer_step",
    "subspace_fraction",
]


@dataclass(frozen=True)
class Alignment:
    """Gradient alignment and the split of one step's loss change (module docstring).

    Attributes:
        k: number of eigenvectors spanning the top space.
        full_batch: ``a(g)`` of the probe set's gradient, in ``[0, 1]``.
        minibatch: ``a(g_B)`` of the minibatch's gradient (NaN without a minibatch).
        gradient_norm: ``||g||`` of the probe set's gradient.
        step_loss_change: ``L(w + d) - L(w)`` on the probe set (NaN without an optimizer).
        step_loss_change_top: ``L(w + V V^T d) - L(w)``.
        step_loss_change_bulk: ``L(w + (I - V V^T) d) - L(w)``.
        step_top_fraction: ``||V^T d||^2 / ||d||^2``.
    """

    k: int
    full_batch: float
    minibatch: float = math.nan
    gradient_norm: float = math.nan
    step_loss_change: float = math.nan
    step_loss_change_top: float = math.nan
    step_loss_change_bulk: float = math.nan
    step_top_fraction: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as ``None``)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in self.__dict__.items()}

    def row(self) -> dict[str, float]:
        """The probe-table columns (:mod:`spectra.runs.format`)."""
        return {
            "alignment_full": self.full_batch,
            "alignment_batch": self.minibatch,
            "step_loss_change": self.step_loss_change,
            "step_loss_change_top": self.step_loss_change_top,
            "step_loss_change_bulk": self.step_loss_change_bulk,
            "step_top_fraction": self.step_top_fraction,
        }


def subspace_fraction(vector: Tensor, basis: Tensor) -> float:
    """``||basis^T vector||^2 / ||vector||^2``: the fraction of ``vector``'s squared norm
    in the span of the orthonormal columns of ``basis``.

    Args:
        vector: ``(P,)``.
        basis: ``(P, k)`` with orthonormal columns (``k >= 0``).

    Returns:
        A number in ``[0, 1]`` (up to round-off); NaN for a zero vector.
    """
    if vector.dim() != 1 or basis.dim() != 2 or basis.shape[0] != vector.shape[0]:
        raise ValueError(f"vector must be (P,) and basis (P, k), got {tuple(vector.shape)} and "
                         f"{tuple(basis.shape)}")
    v = vector.to(device=basis.device, dtype=basis.dtype)
    total = float(v.square().sum())
    if total == 0.0:
        return math.nan
    return float((basis.T @ v).square().sum()) / total


def _values(model: nn.Module, names: Sequence[str], dtype: torch.dtype | None) -> list[Tensor]:
    named = dict(model.named_parameters())
    return [named[n].detach().to(dtype or named[n].dtype) for n in names]


def _state(model: nn.Module, names: Sequence[str], values: Sequence[Tensor],
           dtype: torch.dtype | None) -> dict[str, Tensor]:
    """``functional_call``'s mapping (:func:`~spectra.operators.base.functional_state`):
    ``values`` for ``names``, every other parameter and buffer detached and cast to
    ``dtype``, buffers cloned so that batch norm cannot update the model."""
    return functional_state(model, dict(zip(names, values)), dtype)


def _loss(model: nn.Module, loss_fn: LossFn, batches: Iterable[Batch], names: Sequence[str],
          values: Sequence[Tensor], dtype: torch.dtype | None, reduction: str,
          grad: bool) -> tuple[float, list[Tensor] | None]:
    """The data-set loss at ``values`` (``sum_b (n_b / N) L_b`` or ``sum_b L_b``) and,
    with ``grad``, its gradient with respect to ``values``, accumulated batch by batch.
    Each batch is moved to the device of ``values`` (the parameters'), as the operators
    move theirs. The global random state is left as it was (dropout in train mode
    draws from it): every evaluation starts from the same state, so the losses of
    one call at different ``values`` see the same dropout masks."""
    leaves = [v.detach().requires_grad_(grad) for v in values]
    device = leaves[0].device if leaves else None
    batches = list(batches)
    total = 0.0
    grads: list[Tensor] | None = [torch.zeros_like(v) for v in leaves] if grad else None
    with torch.set_grad_enabled(grad), preserved_rng():
        for (X, y), w in zip(batches, _weights(batches, reduction)):
            X, y = batch_to(X, device, dtype), batch_to(y, device, dtype)
            loss = loss_fn(functional_call(model, _state(model, names, leaves, dtype), (X,)), y)
            total += w * float(loss.detach())
            if grads is not None:
                gs = torch.autograd.grad(loss, leaves, allow_unused=True)
                for acc, g in zip(grads, gs):
                    if g is not None:
                        acc.add_(g, alpha=w)
    return total, grads


def loss_and_gradient(
    model: nn.Module, loss_fn: LossFn, data: Batch | Iterable[Batch], *,
    params: Sequence[str] | None = None, dtype: torch.dtype | None = None,
    reduction: str | None = None,
) -> tuple[float, Tensor]:
    """The loss over ``data`` and its ``(P,)`` gradient, flattened in ``params`` order.

    Weighted as :class:`~spectra.HessianOperator` weights batches (``n_b / N`` for
    ``reduction="mean"``), in the model's current train/eval mode; the global random
    state (dropout's) is left as it was.

    Args:
        params: parameter names (default: the trainable parameters, in
            ``named_parameters`` order, the order of a curvature operator's vectors).
        dtype: compute dtype (default: the parameters').
        reduction: how ``loss_fn`` reduces a batch, ``"mean"`` or ``"sum"`` (default:
            ``loss_fn.reduction`` when it has one, else determined from the loss on the
            first batch as :class:`~spectra.HessianOperator` determines it,
            :func:`~spectra.operators.base.detect_reduction`).
    """
    names = _names_of(model, params)
    batches = list(normalize_data(data))
    reduction = _reduction(loss_fn, reduction, model, batches, names, dtype)
    value, grads = _loss(model, loss_fn, batches, names, _values(model, names, dtype),
                         dtype, reduction, grad=True)
    assert grads is not None
    return value, torch.cat([g.reshape(-1) for g in grads])


def optimizer_step(
    optimizer: torch.optim.Optimizer, model: nn.Module, loss_fn: LossFn, batch: Batch, *,
    params: Sequence[str] | None = None,
) -> Tensor:
    """The ``(P,)`` step ``d = w_next - w`` that ``optimizer.step(closure)`` would take now
    on ``batch``, flattened in ``params`` order, leaving the optimizer and the model as
    they are.

    The optimizer is deep-copied with its parameters replaced by copies
    (``copy.deepcopy`` with a memo), so its state (moments, step counts, schedules
    inside it) advances in the copy only; the closure computes ``loss_fn`` on
    ``batch`` at the copied parameters through ``torch.func.functional_call``.
    Parameters in ``params`` that the optimizer does not hold get ``d = 0``.

    The optimizer must be deep-copyable (every ``torch.optim`` optimizer is; the
    attributes that ``Optimizer.__getstate__`` leaves out, such as LBFGS's parameter
    list, are copied too): a TypeError otherwise. The global random state (dropout's)
    is left as it was.

    Raises:
        TypeError: ``optimizer`` is not a ``torch.optim.Optimizer``.
        ValueError: ``params`` is empty or names no parameter of the model, or the
            optimizer holds none of the parameters in ``params``.
    """
    names = _names_of(model, params)
    _check_optimizer(optimizer, model, names)
    # one batch: its weight is 1 whether loss_fn is a mean or a sum
    return _step_over(optimizer, model, loss_fn, [batch], names, "mean")


def _check_optimizer(optimizer: Any, model: nn.Module, names: Sequence[str]) -> None:
    """Refuse an ``optimizer`` that is not a ``torch.optim.Optimizer``, or that holds none
    of the parameters ``names`` (its step would be 0, or it would step another model)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {optimizer!r} "
                        f"({type(optimizer).__name__})")
    named = dict(model.named_parameters())
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    if not any(id(named[n]) in held for n in names):
        raise ValueError(f"optimizer: the {type(optimizer).__name__} holds none of the model's "
                         "parameters in params (an optimizer of another model, or of a copy of "
                         "this one?)")


def _step_over(optimizer: torch.optim.Optimizer, model: nn.Module, loss_fn: LossFn,
               batches: Sequence[Batch], names: Sequence[str], reduction: str) -> Tensor:
    """:func:`optimizer_step` on the loss over ``batches`` (``sum_b (n_b / N) L_b`` for
    ``reduction="mean"``, ``sum_b L_b`` for ``"sum"``: the loss of all of them as one
    batch, whatever the structure of the model's inputs)."""
    named = dict(model.named_parameters())
    held = [p for g in optimizer.param_groups for p in g["params"]]
    memo: dict[int, Any] = {id(p): p.detach().clone().requires_grad_(p.requires_grad) for p in held}
    try:
        twin = copy.deepcopy(optimizer, memo)
        _relink(twin, optimizer, memo)
    except Exception as exc:  # an optimizer whose state cannot be copied
        raise TypeError(f"the {type(optimizer).__name__} optimizer cannot be deep-copied, so its "
                        f"step cannot be taken aside: {exc}") from exc
    by_name = {n: memo.get(id(p), p.detach()) for n, p in named.items()}
    device = named[names[0]].device if names else None  # the batches where the parameters are
    moved = [(batch_to(X, device), batch_to(y, device)) for X, y in batches]
    weights = _weights(moved, reduction)

    def closure() -> Tensor:
        twin.zero_grad(set_to_none=True)
        state = {**_state(model, [], [], None), **by_name}  # buffers cloned once per call
        total = None
        with torch.enable_grad():
            for (X, y), w in zip(moved, weights):
                part = loss_fn(functional_call(model, state, (X,)), y) * w
                part.backward()
                total = part.detach() if total is None else total + part.detach()
        assert total is not None
        return total

    with preserved_rng():  # dropout in train mode must not shift the training's stream
        twin.step(closure)
    return torch.cat([(by_name[n].detach() - named[n].detach()).reshape(-1) for n in names])


def _relink(twin: torch.optim.Optimizer, optimizer: torch.optim.Optimizer,
            memo: dict[int, Any]) -> None:
    """The attributes ``Optimizer.__getstate__`` leaves out of the copy (LBFGS's
    ``_params`` and ``_numel_cache``, say), deep-copied with the same ``memo``, so that
    those naming parameters name the copy's."""
    for key, value in vars(optimizer).items():
        if not hasattr(twin, key):
            setattr(twin, key, copy.deepcopy(value, memo))


def gradient_alignment(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    eigenvectors: Tensor,
    *,
    batch: Batch | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    params: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    reduction: str | None = None,
    eval_mode: bool = True,
) -> Alignment:
    """Alignment of the gradients with the span of ``eigenvectors``, and the split of
    one optimizer step's loss change (module docstring).

    Args:
        model, loss_fn, data: the probe set's loss, as for :class:`~spectra.HessianOperator`.
        eigenvectors: ``(P, k)`` orthonormal top eigenvectors of the Hessian over
            ``data`` (e.g. :attr:`spectra.ProbeResult.top_eigenvectors`), in ``params`` order,
            on any device (moved to the parameters').
        batch: a training minibatch ``(X, y)``: its gradient's alignment, and the
            batch the optimizer step is taken on (default: the probe set).
        optimizer: the training optimizer; without one the step columns are NaN.
        params: parameter names of the eigenvectors' coordinates (default: trainable).
        dtype: compute dtype of gradients and losses (default: the more precise of the
            parameters' and the eigenvectors', so float32 eigenvectors of a float64 model
            do not round its losses, and a bfloat16 model's run in float32).
        reduction: how ``loss_fn`` reduces a batch, ``"mean"`` or ``"sum"`` (default:
            ``loss_fn.reduction`` when it has one, else determined from the loss on the
            first batch of ``data`` as :class:`~spectra.HessianOperator` determines it,
            :func:`~spectra.operators.base.detect_reduction`).
        eval_mode: evaluate in eval mode (the model's mode is restored). Either way
            the global random state (dropout's) is left as it was.

    Raises:
        ValueError: ``eigenvectors`` does not have ``P`` rows, ``params`` is empty or a
            name in it is not a parameter of the model, ``optimizer`` holds none of
            those parameters, ``reduction`` contradicts ``loss_fn.reduction``, or an
            undeclared reduction cannot be told from the loss.
        TypeError: ``eigenvectors`` is not a real floating-point tensor, or
            ``optimizer`` is not a ``torch.optim.Optimizer``.
    """
    names = _names_of(model, params)
    V = eigenvectors
    if not isinstance(V, Tensor):
        raise TypeError(f"eigenvectors must be a (P, k) tensor, got {type(V).__name__}")
    if not V.is_floating_point():  # integer, bool or complex
        raise TypeError(f"eigenvectors must be a real floating-point tensor, got dtype {V.dtype}")
    if optimizer is not None:
        _check_optimizer(optimizer, model, names)
    P = sum(dict(model.named_parameters())[n].numel() for n in names)
    if V.dim() != 2 or V.shape[0] != P:
        raise ValueError(f"eigenvectors must be (P, k) with P={P}, got {tuple(V.shape)}")
    if names:  # e.g. eigenvectors kept on the CPU for a model on a GPU
        V = V.to(dict(model.named_parameters())[names[0]].device)
    if dtype is None:  # the more precise of the parameters' and the eigenvectors' dtypes
        first = dict(model.named_parameters())[names[0]].dtype if names else V.dtype
        dtype = torch.promote_types(first, V.dtype)
    batches = list(normalize_data(data))
    reduction = _reduction(loss_fn, reduction, model, batches, names, dtype)
    with _eval_mode(model, eval_mode):
        base = _values(model, names, dtype)
        loss0, grads = _loss(model, loss_fn, batches, names, base, dtype, reduction, grad=True)
        assert grads is not None
        g = torch.cat([t.reshape(-1) for t in grads])
        out: dict[str, Any] = {"k": int(V.shape[1]), "full_batch": subspace_fraction(g, V),
                               "gradient_norm": float(g.norm())}
        if batch is not None:
            _, gb = loss_and_gradient(model, loss_fn, batch, params=names, dtype=dtype, reduction=reduction)
            out["minibatch"] = subspace_fraction(gb, V)
        if optimizer is not None:
            step_on = [batch] if batch is not None else batches
            d = _step_over(optimizer, model, loss_fn, step_on, names, reduction).to(V.dtype)
            top = V @ (V.T @ d)
            out["step_top_fraction"] = subspace_fraction(d, V)

            def change(delta: Tensor) -> float:
                moved = [b + t.reshape(b.shape) for b, t in zip(base, _split(delta.to(dtype), base))]
                return _loss(model, loss_fn, batches, names, moved, dtype, reduction, grad=False)[0] - loss0

            out["step_loss_change"] = change(d)
            out["step_loss_change_top"] = change(top)
            out["step_loss_change_bulk"] = change(d - top)
    return Alignment(**out)


def _reduction(loss_fn: LossFn, reduction: str | None, model: nn.Module,
               batches: Sequence[Batch], names: Sequence[str], dtype: torch.dtype | None) -> str:
    """``reduction``, else ``loss_fn.reduction`` (``nn.MSELoss(reduction="sum")``;
    :func:`~spectra.operators.base.resolve_reduction`), else the reduction a
    :class:`~spectra.HessianOperator` over the same loss determines from the first batch
    (:func:`~spectra.operators.base.detect_reduction`, in eval mode), so that a plain
    function weighs batches here as the operators, :func:`spectra.landscape.loss_landscape`
    and :func:`spectra.curvature.block_spectra` weigh them. The operator is built for
    that only (a count of the samples and three forward passes over the first batch)."""
    declared = resolve_reduction(loss_fn, reduction)
    if declared is not None:
        return declared
    return HessianOperator(model, loss_fn, batches, params=list(names), dtype=dtype,
                           eval_mode=True).reduction


def _weights(batches: Sequence[Batch], reduction: str) -> list[float]:
    """Each batch's weight in the data-set loss: ``n_b / N`` for a mean, 1 for a sum."""
    if reduction != "mean":
        return [1.0] * len(batches)
    n_total = sum(batch_size(y) for _, y in batches)
    return [batch_size(y) / n_total for _, y in batches]


def _split(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    return list(flat.split([t.numel() for t in like]))


def _names_of(model: nn.Module, params: Sequence[str] | None) -> list[str]:
    """``params``, or the trainable parameters' names in ``named_parameters`` order; a
    name that is not one of the model's parameters, or an empty selection, is a
    ValueError naming it."""
    if params is None:
        names = [n for n, _ in trainable_parameters(model)]
        if not names:
            raise ValueError("the model has no parameters with requires_grad=True")
        return names
    if isinstance(params, str):
        raise TypeError(f"params must be a sequence of parameter names, got the string {params!r}")
    names, known = list(params), dict(model.named_parameters())
    if not names:
        raise ValueError("params is empty: select at least one parameter")
    for n in names:
        if n not in known:
            raise ValueError(f"params: {n!r} is not a parameter of the model."
                             f"{did_you_mean(str(n), known)}")
    return names
