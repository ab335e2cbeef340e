"""The Fisher matrix of a model's loss, empirical or Monte-Carlo, as a linear operator.

For a batch loss ``L_b = a sum_i l_i`` over its ``n_b`` samples (``a = 1 / n_b`` for
a mean, ``1`` for a sum, as the operators' reduction rule reads it), with
``l_i = l(f_i, y_i)`` the loss of sample ``i`` and ``f_i`` its outputs:

``kind="empirical"``
    ``F_b = a sum_i g_i g_i^T`` with ``g_i = grad_theta l(f_i, y_i)`` at the data's
    targets: the uncentered second moment of the per-sample gradients. It needs no
    likelihood; any per-sample mean or sum loss works.
``kind="mc"``
    ``F_b = a sum_i J_i^T (1/M sum_m z_im z_im^T) J_i`` with ``J_i = d f_i / d theta``
    and ``z_im`` drawn so that ``E[z z^T]`` is the Hessian of ``l_i`` in ``f_i``,
    from targets sampled from the model's predictive distribution (``M =
    mc_samples`` draws per sample, a seeded generator). Its expectation is the GGN
    exactly (:class:`~spectra.operators.ggn.GGNOperator`):

    * ``nn.CrossEntropyLoss`` (class dim 1): ``y~ ~ Categorical(softmax(f))`` per
      position, ``z = sqrt(k) (softmax(f) - onehot(y~))``, the gradient of the
      cross-entropy at ``y~``;
    * ``nn.MSELoss``: ``y~ ~ N(f, I)`` (unit variance), ``z = sqrt(2 k) (y~ - f)``:
      ``(f - y)^2`` is twice the negative log-likelihood of ``N(f, 1)``, whose Fisher
      ``J^T J`` is scaled by the same 2 to match the loss;

    where ``k`` is ``1 / (positions per sample)`` when the loss averages over the
    non-batch positions (``reduction="mean"``) and ``1`` for ``"sum"``. Other losses
    have no predictive distribution here and are refused.

Products reuse the GGN's cached graphs (``J v`` by the double-vjp trick and one
``J^T u``) per batch: ``F_b v = a J^T [<(J v)_i, r_i> r_i]_i`` with ``r_i`` the
per-sample output gradients (``grad_f l_i``, or ``z_im``). Exact when each sample's
outputs depend only on that sample's inputs (no batch norm in train mode, the
operators' eval-mode rule) and its loss only on its own outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from spectra.operators.base import Batch, LossFn, batch_size, stack_columns
from spectra.operators.ggn import GGNOperator
from spectra.utils import checks

KINDS = ("empirical", "mc")
MC_LOSSES = "nn.CrossEntropyLoss (categorical) and nn.MSELoss (Gaussian with unit variance)"


class FisherOperator(GGNOperator):
    """The ``P x P`` empirical or Monte-Carlo Fisher matrix over a data set (module docstring).

    ``F = sum_b (n_b / N) F_b`` for a mean-reduced loss, ``sum_b F_b`` for a sum:
    for ``kind="empirical"`` and a mean, ``(1 / N) sum_i g_i g_i^T`` over all ``N``
    samples.

    Args:
        model, loss_fn, data, params, dtype, reduction, eval_mode, process_group,
        check_finite, progress, cache, output_fn: as for
        :class:`~spectra.operators.ggn.GGNOperator` (``loss_fn`` receives the
        selected output tensor ``f``, whose dim 0 must be the samples).
        kind: ``"empirical"`` (default) or ``"mc"``.
        generator: ``kind="mc"``: the source of the operator's seed (one draw at
            construction); default a generator seeded with 0. Every product then
            re-draws the same targets from that seed (batches in the same order), so
            the operator is one fixed matrix; another seed gives another sample.
        mc_samples: ``kind="mc"``: draws ``M`` per sample (default 1).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from spectra import FisherOperator
        >>> model = nn.Linear(2, 1, bias=False).double()
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[1.0, 0.0]]))
        >>> X = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
        >>> F = FisherOperator(model, nn.MSELoss(), (X, torch.zeros(2, 1, dtype=torch.float64)))
        >>> F.matmat(torch.eye(2, dtype=torch.float64))  # g_i = 2 f_i x_i: (2, 4), (18, 24); mean of g g^T
        tensor([[164., 220.],
                [220., 296.]], dtype=torch.float64)

    Raises:
        ValueError: an unknown ``kind``, ``mc_samples < 1``, or ``kind="mc"`` with a
            loss other than ``nn.CrossEntropyLoss`` / ``nn.MSELoss`` (or a
            cross-entropy with class weights, label smoothing, or ignored targets).
        TypeError: ``generator`` is not a ``torch.Generator``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Batch | Iterable[Batch],
        *,
        kind: str = "empirical",
        generator: torch.Generator | None = None,
        mc_samples: int = 1,
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
        if kind not in KINDS:
            hint = checks.did_you_mean(kind, KINDS) if isinstance(kind, str) else ""
            raise ValueError(f"kind must be 'empirical' or 'mc', got {kind!r}.{hint}".rstrip("."))
        self.kind = kind
        self.mc_samples = checks.integer("mc_samples", mc_samples, 1)
        checks.generator("generator", generator)
        if kind == "mc":
            _check_mc_loss(loss_fn)
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
            cache=cache,
            output_fn=output_fn,
        )
        g = checks.generator("generator", generator, seed=0)
        self.seed = int(torch.randint(0, 2**62, (1,), generator=g))
        self._rng: torch.Generator | None = None

    # ------------------------------------------------------------------ products
    def matmat(self, V: Tensor) -> Tensor:
        """``F V`` for ``V`` of shape ``(P, k)``; see :meth:`CurvatureOperator.matmat`.
        For ``kind="mc"`` the targets are re-drawn from :attr:`seed`, the same each product."""
        self._rng = self._fresh_rng()
        try:
            return super().matmat(V)
        finally:
            self._rng = None

    def sampled_targets(self) -> list[Tensor]:
        """``kind="mc"``: the targets ``y~`` a product draws, one tensor per batch
        (``(M, *targets)`` class indices for the cross-entropy, ``(M, *f.shape)``
        values for the MSE), in data order; draws them as a product does (one
        forward pass per batch). A batch of 0 samples draws nothing and has no
        tensor here, as it has no part in the products."""
        if self.kind != "mc":
            raise ValueError("sampled_targets() is defined for kind='mc' only")
        self._rng = self._fresh_rng()
        out = []
        try:
            with self._pass_modes():
                for b, inputs, targets in self._iter_batches():
                    f = self._graphs(b, inputs, targets)[1].detach()
                    out.append(self._draw(f, targets)[0])
        finally:
            self._rng = None
        return out

    def _fresh_rng(self) -> torch.Generator:
        rank = 0
        if self._group is not None:
            rank = torch.distributed.get_rank(self._group)
        return torch.Generator(device=self._device).manual_seed(self.seed + rank)

    def _batch_matmat(
        self, batch_index: int, inputs: Any, targets: Tensor, tangents: list[Tensor]
    ) -> list[Tensor]:
        leaves, outputs, dummy, jt_dummy, live, _out_leaf, grad_out = self._graphs(
            batch_index, inputs, targets
        )
        n = batch_size(targets)
        if outputs.dim() == 0 or outputs.shape[0] != n:
            raise ValueError(
                f"FisherOperator needs per-sample outputs: dim 0 of the model's output "
                f"({tuple(outputs.shape)}) must be the batch's {n} samples"
            )
        a = 1.0 / n if self.reduction == "mean" else 1.0
        if self.kind == "empirical":
            # grad_f L_b = a r_i per sample: F_b v = a sum_i r_i <r_i, J_i v> = J^T[G <G, Jv>] / a
            R = grad_out.detach().unsqueeze(0)
            scale = 1.0 / a
        else:
            R = self._draw(outputs.detach(), targets)[1]
            scale = a / self.mc_samples
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
                # c[m, i] = <r_mi, (J v)_i> over each sample's outputs
                c = (R * jv.unsqueeze(0)).flatten(2).sum(2)
                u = (c.view(*c.shape, *([1] * (R.dim() - 2))) * R).sum(0).mul_(scale)
                col = torch.autograd.grad(outputs, leaves, u, retain_graph=True, allow_unused=True)
                cols.append(
                    [torch.zeros_like(t[j]) if g is None else g for g, t in zip(col, tangents)]
                )
        return stack_columns(cols)

    def _draw(self, f: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """``(y~, z)`` for outputs ``f`` of one batch: ``M`` sampled targets and the
        vectors ``z`` of shape ``(M, *f.shape)`` with ``E[z_i z_i^T]`` the Hessian of
        the per-sample loss in ``f_i``."""
        assert self._rng is not None
        M, n = self.mc_samples, f.shape[0]
        loss = self.loss_fn
        mean = self.reduction == "mean"
        if isinstance(loss, nn.CrossEntropyLoss):
            if f.dim() < 2:
                raise ValueError(
                    f"nn.CrossEntropyLoss needs outputs (n, C, ...) with classes in dim 1, got {tuple(f.shape)}"
                )
            if not targets.is_floating_point() and bool((targets == loss.ignore_index).any()):
                raise ValueError(
                    f"kind='mc': the targets hold ignore_index={loss.ignore_index}, so the loss's "
                    "mean is over a varying number of positions; the sampled Fisher would not "
                    "match it. Drop those positions, or use kind='empirical'"
                )
            C = f.shape[1]
            positions = f.numel() // (n * C)
            kappa = 1.0 / positions if mean else 1.0
            p = torch.softmax(f, dim=1).movedim(1, -1)  # (n, *d, C)
            flat = p.reshape(-1, C)
            y = torch.multinomial(flat, M, replacement=True, generator=self._rng).T  # (M, n*d)
            onehot = torch.nn.functional.one_hot(y, C).to(f.dtype)  # (M, n*d, C)
            z = (flat.unsqueeze(0) - onehot).mul_(math.sqrt(kappa))
            z = z.view(M, *p.shape).movedim(-1, 2)  # (M, n, C, *d)
            return y.view(M, *p.shape[:-1]), z
        # nn.MSELoss (checked at construction)
        positions = f.numel() // n
        kappa = 1.0 / positions if mean else 1.0
        eps = torch.randn((M, *f.shape), generator=self._rng, dtype=f.dtype, device=f.device)
        return f.unsqueeze(0) + eps, eps.mul_(math.sqrt(2.0 * kappa))

    def __repr__(self) -> str:
        extra = f", mc_samples={self.mc_samples}, seed={self.seed}" if self.kind == "mc" else ""
        return super().__repr__()[:-1] + f", kind={self.kind!r}{extra})"


def _check_mc_loss(loss_fn: Any) -> None:
    """Refuse a loss without a predictive distribution to sample targets from."""
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        if loss_fn.weight is not None or loss_fn.label_smoothing != 0.0:
            raise ValueError(
                "kind='mc': a cross-entropy with class weights or label smoothing is not the "
                "negative log-likelihood of a categorical distribution; use kind='empirical'"
            )
        return
    if isinstance(loss_fn, nn.MSELoss):
        return
    raise ValueError(
        f"kind='mc' samples targets from the model's predictive distribution, known for "
        f"{MC_LOSSES}; got loss_fn {type(loss_fn).__name__}. Use kind='empirical' (any "
        "per-sample loss) or one of those losses"
    )


__all__ = ["KINDS", "FisherOperator"]
