"""The generalized Gauss-Newton (GGN) matrix of a model's loss, as a linear operator.

For outputs ``f(theta)`` of one batch and a loss ``l(f, y)`` convex in ``f``,
``G_b = J^T (d^2 l / d f^2) J`` with ``J = d f / d theta``. It is positive
semi-definite for the mean-squared error and the cross-entropy, and equals the
Hessian minus the term that carries the model's own second derivatives.

A product ``G v`` is three passes over cached graphs: ``J v`` (the
"double-vjp" trick: differentiate ``J^T u`` with respect to a dummy ``u``),
the loss Hessian with respect to the outputs times ``J v``, and ``J^T`` of
the result. As for the Hessian, the graphs of in-memory data are built once
per batch and reused until a parameter, a buffer or a module's mode changes
(:meth:`~spectra.operators.base.CurvatureOperator._check_cache`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from spectra.operators.base import Batch, CurvatureOperator, LossFn, call_loss, stack_columns


class GGNOperator(CurvatureOperator):
    """The ``P x P`` generalized Gauss-Newton matrix over a data set.

    ``G = sum_b (n_b / N) J_b^T H_b^out J_b`` for a mean-reduced loss (the
    Hessian ``H_b^out`` of the batch loss with respect to the outputs already
    carries the loss's own ``1/n_b``), ``sum_b`` for a sum.

    The outputs ``f`` are one tensor of what the model returns, chosen by
    ``output_fn``, and ``loss_fn`` receives that tensor: ``loss_fn(f, targets)``
    (it is differentiated twice in ``f``). For a model that returns a tensor this
    is the usual loss; for one that returns a dict or an object with a ``logits``
    field (a transformers ``ModelOutput``), ``f`` is the logits and ``loss_fn``
    must take logits, e.g. ``lambda logits, y: F.cross_entropy(logits.flatten(0, 1),
    y.flatten())`` (unlike :class:`~spectra.operators.hessian.HessianOperator`,
    whose loss receives the whole return value).

    Args:
        see :class:`~spectra.operators.base.CurvatureOperator`; ``cache`` keeps
        each batch's graphs between products (default: when the data is a
        list, tuple or a single pair).
        output_fn: ``output_fn(model_output) -> Tensor``, the outputs ``f`` to
            linearize, e.g. ``lambda out: out[0]`` for a tuple. Default
            (:func:`select_output`): the return value when it is a tensor, else its
            ``logits`` entry (mapping key or attribute); ``TypeError`` otherwise.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Batch | Iterable[Batch],
        *,
        params: Sequence[Tensor | str] | None = None,
        dtype: torch.dtype | None = None,
        reduction: str | None = None,
        eval_mode: bool = False,
        process_group: Any = None,
        check_finite: bool = True,
        progress: bool = False,
        cache: bool | None = None,
        output_fn: Callable[[Any], Tensor] | None = None,
    ) -> None:
        if output_fn is not None and not callable(output_fn):
            raise TypeError(f"output_fn must be callable, got {type(output_fn).__name__}")
        # set before the base class, which may evaluate the loss to find its reduction
        self.output_fn = output_fn
        super().__init__(
            model,
            loss_fn,
            data,
            params=params,
            dtype=dtype,
            reduction=reduction,
            eval_mode=eval_mode,
            process_group=process_group,
            check_finite=check_finite,
            progress=progress,
        )
        self.cache = isinstance(self._data, (list, tuple)) if cache is None else bool(cache)

    @property
    def _caches_graphs(self) -> bool:
        return self.cache

    def _loss_input(self, outputs: Any) -> Tensor:
        return select_output(outputs, self.output_fn)

    def _graphs(self, batch_index: int, inputs: Any, targets: Tensor) -> tuple[Any, ...]:
        if self.cache:  # kept current by the pass (_check_cache)
            hit = self._cache.get(batch_index)
            if hit is not None:
                return hit
        with torch.enable_grad():
            leaves = self._leaf_params()
            outputs = self._loss_input(
                functional_call(self.model, self._functional_state(leaves), (inputs,))
            )
            # J^T u as a function of a dummy u: its derivative in u applied to v is J v
            dummy = torch.zeros_like(outputs, requires_grad=True)
            if outputs.requires_grad:
                jt_dummy = torch.autograd.grad(
                    outputs, leaves, dummy, create_graph=True, allow_unused=True
                )
            else:  # the outputs do not depend on any selected parameter: J = 0
                jt_dummy = tuple(None for _ in leaves)
            live = [i for i, g in enumerate(jt_dummy) if g is not None]
            out_leaf = outputs.detach().requires_grad_(True)
            loss = call_loss(self.loss_fn, out_leaf, targets)
            (grad_out,) = torch.autograd.grad(loss, out_leaf, create_graph=True)
        if self.check_finite and not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"the loss of batch {batch_index} is {float(loss.detach())}")
        entry = (leaves, outputs, dummy, jt_dummy, live, out_leaf, grad_out)
        if self.cache:
            self._cache[batch_index] = entry
        return entry

    def _batch_matmat(
        self, batch_index: int, inputs: Any, targets: Tensor, tangents: list[Tensor]
    ) -> list[Tensor]:
        leaves, outputs, dummy, jt_dummy, live, out_leaf, grad_out = self._graphs(
            batch_index, inputs, targets
        )
        k = tangents[0].shape[0]
        if not live:
            return [torch.zeros_like(t) for t in tangents]
        cols: list[list[Tensor]] = []
        with torch.enable_grad():
            for j in range(k):
                (jv,) = torch.autograd.grad(
                    [jt_dummy[i] for i in live], dummy, [tangents[i][j] for i in live],
                    retain_graph=True,
                )
                if grad_out.requires_grad:
                    (hjv,) = torch.autograd.grad(grad_out, out_leaf, jv, retain_graph=True)
                else:  # the loss is linear in the outputs: zero curvature
                    hjv = torch.zeros_like(jv)
                col = torch.autograd.grad(
                    outputs, leaves, hjv, retain_graph=True, allow_unused=True
                )
                cols.append(
                    [torch.zeros_like(t[j]) if g is None else g for g, t in zip(col, tangents)]
                )
        return stack_columns(cols)


def select_output(outputs: Any, output_fn: Callable[[Any], Tensor] | None = None) -> Tensor:
    """The tensor of a model's return value that a GGN linearizes.

    ``output_fn(outputs)`` when given; else ``outputs`` itself when it is a tensor,
    else its ``logits`` (a mapping key, or an attribute as on a transformers
    ``ModelOutput``). Raises ``TypeError`` naming what was found otherwise.
    """
    if output_fn is not None:
        selected = output_fn(outputs)
        if not isinstance(selected, Tensor):
            raise TypeError(f"output_fn must return a tensor, got {type(selected).__name__}")
        return selected
    if isinstance(outputs, Tensor):
        return outputs
    logits = outputs.get("logits") if isinstance(outputs, Mapping) else None
    if logits is None:
        logits = getattr(outputs, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    found = type(outputs).__name__
    if isinstance(outputs, Mapping):
        found += f" with keys {sorted(map(str, outputs))}"
    elif isinstance(outputs, (tuple, list)):
        found += f" of {len(outputs)} items (" + ", ".join(type(o).__name__ for o in outputs) + ")"
    raise TypeError(
        f"the model returned a {found}: expected a tensor, or a mapping or object with a "
        "`logits` tensor. Pass output_fn= to pick the tensor to linearize, e.g. "
        "output_fn=lambda out: out[0]"
    )


__all__ = ["GGNOperator", "select_output"]
