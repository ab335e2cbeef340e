"""The generalized Gauss-Newton (GGN) matrix of a model's loss, as a linear operator.

For outputs ``f(theta)`` of one batch and a loss ``l(f, y)`` convex in ``f``,
``G_b = J^T (d^2 l / d f^2) J`` with ``J = d f / d theta``. It is positive
semi-definite for the mean-squared error and the cross-entropy, and equals the
Hessian minus the term that carries the model's own second derivatives.

A product ``G v`` is three passes over cached graphs: ``J v`` (the
"double-vjp" trick: differentiate ``J^T u`` with respect to a dummy ``u``),
the loss Hessian with respect to the outputs times ``J v``, and ``J^T`` of
the result. As for the Hessian, the graphs of in-memory data are built once
per batch and reused until a parameter changes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from spectra.operators.base import Batch, CurvatureOperator, LossFn, stack_columns


class GGNOperator(CurvatureOperator):
    """The ``P x P`` generalized Gauss-Newton matrix over a data set.

    ``G = sum_b (n_b / N) J_b^T H_b^out J_b`` for a mean-reduced loss (the
    Hessian ``H_b^out`` of the batch loss with respect to the outputs already
    carries the loss's own ``1/n_b``), ``sum_b`` for a sum.

    Args:
        see :class:`~spectra.operators.base.CurvatureOperator`; ``cache`` keeps
        each batch's graphs between products (default: when the data is a
        list, tuple or a single pair).
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
    ) -> None:
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
        self._cache: dict[int, tuple[Any, ...]] = {}
        self._cache_version: tuple[int, ...] | None = None

    def clear_cache(self) -> None:
        """Free the cached graphs."""
        self._cache.clear()
        self._cache_version = None

    def _graphs(self, batch_index: int, inputs: Any, targets: Tensor) -> tuple[Any, ...]:
        if self.cache:
            version = self._params_version()
            if version != self._cache_version:
                self._cache.clear()
                self._cache_version = version
            hit = self._cache.get(batch_index)
            if hit is not None:
                return hit
        with torch.enable_grad():
            leaves = self._leaf_params()
            outputs = functional_call(self.model, self._functional_state(leaves), (inputs,))
            # J^T u as a function of a dummy u: its derivative in u applied to v is J v
            dummy = torch.zeros_like(outputs, requires_grad=True)
            jt_dummy = torch.autograd.grad(
                outputs, leaves, dummy, create_graph=True, allow_unused=True
            )
            live = [i for i, g in enumerate(jt_dummy) if g is not None]
            out_leaf = outputs.detach().requires_grad_(True)
            loss = self.loss_fn(out_leaf, targets)
            if loss.dim() != 0:
                raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
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


__all__ = ["GGNOperator"]
