"""Loss landscapes: the loss on a line or a plane through the current parameters.

For directions ``d_1`` (and ``d_2``) in parameter space the landscape is

    L(a)    = loss(theta + a d_1)                 (1-D)
    L(a, b) = loss(theta + a d_1 + b d_2)         (2-D)

on an evenly spaced grid of ``a, b`` in ``[-span, span]``, evaluated over a fixed
data set in eval mode. Two kinds of directions:

* :func:`top_directions`: the top eigenvectors of the Hessian at ``theta``
  (:func:`spectra.linalg.eigsh` on a :class:`spectra.HessianOperator`), unit norm, so
  ``a`` is a Euclidean distance in parameter space and near ``a = 0`` the loss
  follows ``L(0) + a^2 lambda_1 / 2`` (the gradient at a minimum being small).
  :func:`loss_landscape` also takes the most negative eigenvectors
  (``directions="bottom"``), or the top one and the most negative one as a plane
  (``"extremes"``: a saddle's up and down directions).
* :func:`random_directions`: Gaussian directions, filter-normalized as in Li et
  al., "Visualizing the Loss Landscape of Neural Nets" (NeurIPS 2018): each
  filter (row of a weight matrix, output channel of a convolution) of the
  direction is scaled to the norm of the same filter of the weights, and
  directions of biases and other 1-D parameters (batch-norm scales) are zero.
  Then ``a = 1`` moves every filter by its own norm, which makes plots of
  differently scaled networks comparable.

Nothing here plots; :class:`Landscape` holds arrays.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from spectra.linalg.eigsh import eigsh
from spectra.operators.base import Batch, LossFn, batch_size, batch_to, normalize_data
from spectra.operators.hessian import HessianOperator
from spectra.utils import checks
from spectra.utils.modes import eval_mode
from spectra.utils.params import trainable_parameters

__all__ = ["Landscape", "describe_directions", "eigenvalue_names", "loss_landscape",
           "random_directions", "top_directions"]

DIRECTION_KINDS = ("top", "bottom", "extremes", "random")
# the eigenvector kinds and the eigsh spectrum end each takes
_WHICH = {"top": "LA", "bottom": "SA", "extremes": "BE"}


_DESCRIPTIONS = {"top": "top Hessian eigenvector", "bottom": "most negative Hessian eigenvector",
                 "extremes": "Hessian eigenvector", "random": "random filter-normalized direction"}


def describe_directions(kind: str, dims: int) -> str:
    """A landscape's directions in words, e.g. ``"top Hessian eigenvectors"`` (for the
    figure's title and the command line's summary); ``"extremes"`` adds which two."""
    text = _DESCRIPTIONS.get(kind, "direction") + ("s" if dims > 1 else "")
    return text + (" (the top and the most negative)" if kind == "extremes" else "")


def eigenvalue_names(kind: str, dims: int) -> list[str]:
    """The names of an eigenvector landscape's eigenvalues, one per direction:
    ``"top"`` λ1, λ2; ``"bottom"`` λmin, then the next smallest; ``"extremes"`` λ1
    and λmin (a plane through the top and the most negative curvature)."""
    names = {"top": ["\u03bb1", "\u03bb2"], "bottom": ["\u03bbmin", "\u03bb(2nd smallest)"],
             "extremes": ["\u03bb1", "\u03bbmin"]}[kind]
    return names[:dims]


@dataclass(frozen=True)
class Landscape:
    """The loss on a 1-D or 2-D grid around the parameters.

    Attributes:
        alphas: ``(n,)`` coefficients of the first direction.
        betas: ``(n,)`` coefficients of the second direction, ``None`` in 1-D.
        losses: ``(n,)`` in 1-D; ``(n, n)`` in 2-D with ``losses[j, i]`` the loss at
            ``theta + alphas[i] d_1 + betas[j] d_2`` (rows follow ``b``, as for contour plots).
        center_loss: the loss at ``theta`` (``a = b = 0``).
        kind: ``"top"``, ``"bottom"``, ``"extremes"``, ``"random"`` or ``"given"`` (how
            the directions were chosen, see :func:`loss_landscape`).
        eigenvalues: ``(dims,)`` Hessian eigenvalues of eigenvector directions (named by
            :func:`eigenvalue_names`), ``None`` for random or given ones.
        num_matvecs: Hessian-vector products spent finding the directions.
        seconds: wall time of the whole computation.
        reduction: ``"mean"`` or ``"sum"``: the loss over several batches is
            ``sum_b (n_b / N) L_b`` or ``sum_b L_b``.
    """

    alphas: np.ndarray
    betas: np.ndarray | None
    losses: np.ndarray
    center_loss: float
    kind: str
    eigenvalues: np.ndarray | None
    num_matvecs: int
    seconds: float
    reduction: str | None = None

    @property
    def dims(self) -> int:
        return 1 if self.betas is None else 2

    def to_dict(self) -> dict:
        """JSON-ready lists (non-finite losses as ``None``)."""

        losses = [None if not math.isfinite(x) else float(x) for x in self.losses.ravel()]
        return {
            "kind": self.kind,
            "dims": self.dims,
            "alphas": self.alphas.tolist(),
            "betas": None if self.betas is None else self.betas.tolist(),
            "losses": np.array(losses, dtype=object).reshape(self.losses.shape).tolist(),
            "center_loss": self.center_loss,
            "eigenvalues": None if self.eigenvalues is None else self.eigenvalues.tolist(),
            "num_matvecs": self.num_matvecs,
            "seconds": self.seconds,
            "reduction": self.reduction,
        }


def top_directions(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    k: int = 1,
    *,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
    reduction: str | None = None,
) -> tuple[np.ndarray, list[list[Tensor]], int]:
    """The top-``k`` Hessian eigenpairs: eigenvalues ``(k,)``, directions as
    parameter-shaped tensors (unit norm over all parameters), and the products spent.

    ``reduction`` (``"mean"``/``"sum"``) as for :class:`~spectra.HessianOperator`."""
    op = HessianOperator(model, loss_fn, data, reduction=reduction, eval_mode=True)
    return _eigen_directions(op, k, "LA", tol=tol, generator=generator)


def _eigen_directions(
    op: HessianOperator, k: int, which: str, *, tol: float, generator: torch.Generator | None
) -> tuple[np.ndarray, list[list[Tensor]], int]:
    """``k`` Hessian eigenpairs from ``which`` end of the spectrum (eigsh's ``"LA"``,
    ``"SA"`` or ``"BE"``), in eigsh's order, as for :func:`top_directions`."""
    model = op.model
    res = eigsh(op, k=k, which=which, tol=tol, generator=generator, warn=False)
    vecs = res.eigenvectors.to(next(model.parameters()).dtype)
    dirs = [op.unflatten(vecs[:, i].contiguous()) for i in range(vecs.shape[1])]
    n = op.num_matvecs
    op.clear_cache()
    return res.eigenvalues.numpy().astype(np.float64), dirs, n


def random_directions(
    model: nn.Module, k: int = 1, *, generator: torch.Generator | None = None
) -> list[list[Tensor]]:
    """``k`` filter-normalized Gaussian directions (see the module docstring);
    ``ValueError`` unless ``k`` is an integer >= 1."""
    k = checks.integer("k", k, 1)
    gen = checks.generator("generator", generator, seed=0)
    out = []
    for _ in range(k):
        d = []
        for _, p in trainable_parameters(model):
            w = p.detach()
            if w.dim() <= 1:
                d.append(torch.zeros_like(w))
                continue
            r = torch.randn(w.shape, generator=gen, dtype=w.dtype).to(w.device)
            wn = w.reshape(w.shape[0], -1).norm(dim=1)
            rn = r.reshape(r.shape[0], -1).norm(dim=1).clamp_min(1e-12)
            d.append(r * (wn / rn).reshape((-1,) + (1,) * (w.dim() - 1)))
        out.append(d)
    return out


@torch.no_grad()
def _loss_at(model, loss_fn, reduction, batches, names, base, dirs, coeffs) -> float:
    params = {n: b.clone() for n, b in zip(names, base)}
    for c, d in zip(coeffs, dirs):
        if c:
            for n, t in zip(names, d):
                params[n].add_(t, alpha=float(c))
    total, count = 0.0, 0
    device = base[0].device if base else None
    for X, y in batches:  # each batch where the parameters are, as the operators move theirs
        X, y = batch_to(X, device), batch_to(y, device)
        out = functional_call(model, params, (X,))
        val = float(loss_fn(out, y))
        m = batch_size(y)
        total += val * m if reduction == "mean" else val
        count += m
    return total / count if reduction == "mean" else total


def _check_span(span: float, dirs: list[list[Tensor]], base: list[Tensor]) -> None:
    """Raise ValueError when a step of ``span`` along one of ``dirs`` does not fit the
    parameters' floating-point type (``span`` times the direction's largest entry past
    the type's largest number): every grid point but the centre would be an overflow."""
    for i, d in enumerate(dirs):
        for t, b in zip(d, base):
            if not (t.is_floating_point() and b.is_floating_point()) or t.is_meta:
                continue  # (a meta tensor has no values to check)
            top = float(torch.finfo(b.dtype).max)
            largest = float(t.detach().abs().max()) if t.numel() else 0.0
            if span > top or span * largest > top:
                raise ValueError(
                    f"span={span:g} is too large for the {b.dtype} parameters: a step of span "
                    f"along direction {i + 1} (largest entry {largest:.3g}) passes {top:.3g}, "
                    "the largest number of that type; choose a smaller span")


def loss_landscape(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    *,
    directions: str | Sequence[Sequence[Tensor]] = "top",
    dims: int = 1,
    span: float = 1.0,
    points: int = 21,
    tol: float = 1e-3,
    seed: int = 0,
    reduction: str | None = None,
) -> Landscape:
    """The loss of ``model`` over ``data`` on a grid around its parameters.

    Args:
        model, loss_fn, data: as for :class:`~spectra.HessianOperator` (``data`` one
            ``(X, y)`` pair or a list of batches); the model is evaluated in eval mode
            and its parameters are not changed.
        directions: Hessian eigenvectors (unit norm): ``"top"`` (the largest
            eigenvalues), ``"bottom"`` (the most negative) or ``"extremes"`` (2-D only: the
            top one and the most negative one, the plane of a saddle); ``"random"``
            (filter-normalized Gaussian directions); or ``dims`` lists of
            parameter-shaped tensors (on any device: moved to the parameters').
        dims: 1 (a line) or 2 (a plane).
        span: the grid covers ``[-span, span]`` in each direction.
        points: grid points per direction (odd, so that 0 is on the grid).
        tol: eigensolver tolerance for the eigenvector directions.
        seed: seed of the random start of the eigensolver / the random directions.
        reduction: ``"mean"`` or ``"sum"``, how ``loss_fn`` reduces a batch, which sets
            how the batches add up; as for :class:`~spectra.HessianOperator` (by default
            ``loss_fn.reduction``, else determined from the loss on the first batch).

    Raises:
        ValueError: bad ``dims``, ``span``, ``points`` or ``directions``, a direction
            that is zero (random directions of a model whose weights are all zero), a
            non-finite loss at the parameters themselves, or a loss whose reduction is
            neither a per-sample mean nor a sum.
    """
    dims = checks.integer("dims", dims, 1, 2)
    points = checks.integer("points", points, 3)
    if points % 2 == 0:
        raise ValueError(f"points must be an odd integer >= 3 (so that 0 is on the grid), got {points!r}")
    span = checks.number("span", span, positive=True)
    seed = checks.integer("seed", seed, 0, 2**63 - 1)
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    eigenvalues, hvps = None, 0
    # the operator fixes the reduction (one rule for the Hessian and the loss sums)
    op = HessianOperator(model, loss_fn, data, reduction=reduction, eval_mode=True)
    if isinstance(directions, str):
        kind = directions
        if kind == "extremes" and dims != 2:
            raise ValueError("directions='extremes' (the top and the most negative eigenvector) "
                             f"span a plane: it needs dims=2, got {dims}")
        if kind in _WHICH:
            eigenvalues, dirs, hvps = _eigen_directions(op, dims, _WHICH[kind], tol=tol,
                                                        generator=gen)
        elif kind == "random":
            dirs = random_directions(model, dims, generator=gen)
        else:
            raise ValueError(f"directions must be one of {', '.join(DIRECTION_KINDS)} (or "
                             f"tensors), got {directions!r}")
    else:
        kind = "given"
        dirs = [list(d) for d in directions]
        if not all(isinstance(t, Tensor) for d in dirs for t in d):
            raise TypeError("directions must be 'top', 'bottom', 'extremes', 'random' or lists of "
                            "parameter-shaped torch tensors (one list per dimension)")
        if len(dirs) != dims:
            raise ValueError(f"{dims}-D landscape needs {dims} directions, got {len(dirs)}")
    named = trainable_parameters(model)
    names = [n for n, _ in named]
    base = [p.detach() for _, p in named]
    for d in dirs:
        if len(d) != len(base) or any(t.shape != b.shape for t, b in zip(d, base)):
            raise ValueError("each direction must be a list of tensors shaped like the model's parameters")
    for i, d in enumerate(dirs):
        if not any(bool(t.ne(0).any()) for t in d):
            why = (": every weight filter has norm zero (a zero-initialised model?), and "
                   "filter normalization scales by those norms; use the 'top' directions"
                   if kind == "random" else "")
            raise ValueError(f"direction {i + 1} of the landscape is zero, so the loss along it "
                             f"is trivially flat{why}")
    # given directions may live elsewhere (on the CPU for a CUDA model): where the parameters are
    dirs = [[t.to(device=b.device) for t, b in zip(d, base)] for d in dirs]
    _check_span(span, dirs, base)
    batches = list(normalize_data(data))
    grid = span * np.linspace(-1.0, 1.0, points)  # linspace(-span, span) overflows past 9e307
    red = op.reduction
    with eval_mode(model):
        center = _loss_at(model, loss_fn, red, batches, names, base, dirs, [0.0] * dims)
        if not math.isfinite(center):
            raise ValueError(f"the loss at the parameters themselves is {center}: there is no "
                             "landscape around them (non-finite weights, or a diverged model?)")
        if dims == 1:
            losses = np.array([_loss_at(model, loss_fn, red, batches, names, base, dirs, [a])
                               for a in grid])
            betas = None
        else:
            losses = np.array([[_loss_at(model, loss_fn, red, batches, names, base, dirs, [a, b])
                                for a in grid] for b in grid])
            betas = grid.copy()
    return Landscape(alphas=grid, betas=betas, losses=losses, center_loss=center, kind=kind,
                     eigenvalues=eigenvalues, num_matvecs=hvps, seconds=time.perf_counter() - start,
                     reduction=red)
