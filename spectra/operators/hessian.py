"""The Hessian of a model's loss over a data set, as a linear operator.

``H v = d/d eps  grad L(theta + eps v)`` at ``eps = 0``. This module holds every
Hessian-vector product (HVP) implementation of the toolkit, behind one
interface, chosen by ``backend``:

``"graph"``
    Double backprop on a cached first-order graph: each batch's gradient is
    built once with ``create_graph=True`` and kept; every product is then one
    backward pass through it (``torch.autograd.grad(g, theta, v)``), the
    fastest on CPU. The cache is rebuilt when any parameter or buffer of the model
    changes in place or is replaced (an optimizer step, batch norm's running
    statistics, ``p.data = ...`` as ``vector_to_parameters`` does, an edit through
    ``p.data``) or a module's train/eval mode changes: checked once per pass over the data,
    exactly, against a copy of the parameters and buffers kept with the cache
    (:meth:`~spectra.operators.base.CurvatureOperator._check_cache`).
    Memory: one first-order graph per batch, and that copy.
``"backprop"``
    The same double backprop, but the graph is rebuilt for every product and
    freed after it: lowest memory, slower than ``"graph"``. For data that does not
    fit as graphs (a ``DataLoader`` over many batches).
``"func"``
    Forward-over-reverse, ``torch.func.jvp`` of ``torch.func.grad`` of a
    ``functional_call``, ``vmap``-ed over the ``k`` tangents of a ``matmat``.
    Slower on CPU but needs no graph.
``"auto"`` (default)
    ``"graph"`` when the data is held in memory (one pair or a list/tuple of
    batches), else ``"backprop"``.

With ``"graph"`` and ``"backprop"``, a ``matmat`` of ``k`` vectors on a small
model (``P <= vmap_max_params``) pushes all ``k`` through one batched backward
(``is_grads_batched``); larger models loop, which is faster on CPU. Measured
costs of each backend: ``analyses/results/bench_core.md``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from spectra.operators.base import Batch, CurvatureOperator, LossFn, call_loss, stack_columns
from spectra.utils import checks

BACKENDS = ("auto", "graph", "backprop", "func")


class HessianOperator(CurvatureOperator):
    """The ``P x P`` Hessian of the loss averaged (or summed) over a data set.

    ``H = sum_b (n_b / N) H_b`` for a mean-reduced loss, ``sum_b H_b`` for a sum.

    Args:
        model, loss_fn, data, params, dtype, reduction, eval_mode, process_group,
        check_finite, progress: see :class:`~spectra.operators.base.CurvatureOperator`.
        backend: ``"auto"``, ``"graph"``, ``"backprop"`` or ``"func"`` (module docstring).
        vmap_max_params: largest ``P`` for which the ``k`` products of a ``matmat``
            go through one batched backward pass instead of a loop.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from spectra import HessianOperator
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> X, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64)
        >>> model = nn.Linear(3, 1, bias=False).double()
        >>> H = HessianOperator(model, nn.MSELoss(), (X, y))
        >>> H.shape
        (3, 3)
        >>> bool(torch.allclose(H.matmat(torch.eye(3, dtype=torch.float64)), 2 * X.T @ X / 20))
        True
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
        backend: str = "auto",
        vmap_max_params: int = 20_000,
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
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        if backend == "auto":
            backend = "graph" if isinstance(self._data, (list, tuple)) else "backprop"
        self.backend = backend
        self.vmap_max_params = checks.integer("vmap_max_params", vmap_max_params, 0)
        self._batched_backward_ok = True
        self._forward_mode_ok = True

    @property
    def _caches_graphs(self) -> bool:
        return self.backend == "graph"

    # ------------------------------------------------------------------ loss
    def _loss(self, params: Sequence[Tensor], inputs: Any, targets: Tensor) -> Tensor:
        outputs = functional_call(self.model, self._functional_state(params), (inputs,))
        return call_loss(self.loss_fn, outputs, targets)

    def _first_order(self, batch_index: int, inputs: Any, targets: Tensor):
        """Leaf parameters and the gradient graph of one batch (cached for "graph")."""
        if self.backend == "graph":  # kept current by the pass (_check_cache)
            hit = self._cache.get(batch_index)
            if hit is not None:
                return hit
        with torch.enable_grad():
            leaves = self._leaf_params()
            loss = self._loss(leaves, inputs, targets)
            if loss.requires_grad:
                grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
            else:
                # the loss does not depend on any selected parameter (a block of an unused
                # head): their gradients are zero and so are the products
                grads = tuple(None for _ in leaves)
        if self.check_finite and not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"the loss of batch {batch_index} is {float(loss.detach())}")
        # a gradient that is None (unused parameter) or constant (loss linear in it)
        # has zero curvature: keep only the live ones in the backward pass
        live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        entry = (leaves, grads, live)
        if self.backend == "graph":
            self._cache[batch_index] = entry
        return entry

    # ------------------------------------------------------------------ products
    def _batch_matmat(
        self, batch_index: int, inputs: Any, targets: Tensor, tangents: list[Tensor]
    ) -> list[Tensor]:
        if self.backend == "func":
            return self._func_matmat(inputs, targets, tangents)
        leaves, grads, live = self._first_order(batch_index, inputs, targets)
        if not live:
            return [torch.zeros_like(t) for t in tangents]
        outs = [grads[i] for i in live]
        ins = [tangents[i] for i in live]
        k = tangents[0].shape[0]
        retain = self.backend == "graph"
        if k > 1 and self._dim <= self.vmap_max_params and self._batched_backward_ok:
            try:
                with torch.enable_grad():
                    res = torch.autograd.grad(
                        outs, leaves, ins, retain_graph=True, is_grads_batched=True,
                        allow_unused=True,
                    )
                return _fill_unused(res, tangents)
            except torch.OutOfMemoryError:
                # k vectors at once take k times the backward's memory: one at a time
                self._batched_backward_ok = False
                warnings.warn(
                    f"HessianOperator: the product of {k} vectors at once ran out of memory "
                    f"on {tangents[0].device}; computing them one at a time from now on "
                    "(slower; a smaller probe batch or fewer vectors per product avoids it)",
                    RuntimeWarning, stacklevel=4)
            except RuntimeError:
                self._batched_backward_ok = False  # an op without a batching rule: loop
        cols: list[list[Tensor]] = []
        with torch.enable_grad():
            for j in range(k):
                keep = retain or j < k - 1
                col = torch.autograd.grad(
                    outs, leaves, [t[j] for t in ins], retain_graph=keep, allow_unused=True
                )
                cols.append(_fill_unused(col, [t[j] for t in tangents]))
        return stack_columns(cols)

    def _func_matmat(self, inputs: Any, targets: Tensor, tangents: list[Tensor]) -> list[Tensor]:
        primals = tuple(p.detach().to(self._dtype) for p in self._params)

        def loss_of(ps: tuple[Tensor, ...]) -> Tensor:
            return self._loss(ps, inputs, targets)

        grad_fn = torch.func.grad(loss_of)

        def fwd_over_rev(*ts: Tensor) -> tuple[Tensor, ...]:
            return torch.func.jvp(grad_fn, (primals,), (tuple(ts),))[1]

        def rev_over_rev(*ts: Tensor) -> tuple[Tensor, ...]:
            # H is symmetric, so the vjp of the gradient is also H v
            return torch.func.vjp(grad_fn, primals)[1](tuple(ts))[0]

        def run(hvp: Any) -> list[Tensor]:
            if tangents[0].shape[0] == 1:
                return [t.unsqueeze(0) for t in hvp(*[t[0] for t in tangents])]
            return list(torch.func.vmap(hvp)(*tangents))

        if self._forward_mode_ok:
            try:
                return run(fwd_over_rev)
            except torch.OutOfMemoryError:
                raise  # out of memory is not a missing forward-mode rule: say it as it is
            except RuntimeError:
                # some losses have no forward-mode rule that torch.func can use
                # (seen with MSELoss in torch 2.13: "ZeroTensors are immutable")
                self._forward_mode_ok = False
        return run(rev_over_rev)


def _fill_unused(grads: Sequence[Tensor | None], like: Sequence[Tensor]) -> list[Tensor]:
    """Parameters that the loss does not depend on have zero curvature."""
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, like)]


__all__ = ["BACKENDS", "HessianOperator"]
