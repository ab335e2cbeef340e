"""Per-layer (block) spectra: the diagonal blocks of the Hessian, one per parameter group.

For a partition of the parameters into blocks ``b`` (by module, by tensor, or groups
a user names) the diagonal block ``H_bb`` is the Hessian of the loss with respect to
the block's parameters alone, the others held fixed: exactly what
:class:`~spectra.HessianOperator` computes over ``params=`` the block's parameters.
Per block this module computes ``lambda_1(H_bb)`` (Lanczos), ``tr(H_bb)`` (the
trace estimator) and optionally its SLQ density.

Block heterogeneity (Zhang et al. 2024, "Why transformers need Adam: a Hessian
perspective"): the blocks' spectral densities differ far more in transformers than
in CNNs. The score here is the mean, over pairs of blocks, of the Jensen-Shannon
distance between their densities smoothed onto one common grid
(:func:`spectra.linalg.scales.smooth_densities`, symmetric-log axis by default,
each density turned into cell probabilities ``phi(c_i) * width_i`` normalized to
sum 1)::

    JS(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m),  m = (p + q) / 2,  log base 2
    distance = sqrt(JS(p, q))  in [0, 1]
    heterogeneity = mean_{b < b'} distance(p_b, p_b')

0 for identical densities, 1 for densities with disjoint support.

Cost, in Hessian-vector products of a block (each costs about one full product: the
backward pass runs through the whole network): per block, the eigensolver's products
for ``lambda_1``, ``trace_matvecs``, and ``num_vectors * min(num_steps, P_b)``
for a density; the total is reported (:attr:`BlockSpectra.num_matvecs`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from spectra.linalg.density import SpectralMeasure, slq
from spectra.linalg.eigsh import eigsh
from spectra.linalg.scales import smooth_densities
from spectra.linalg.trace import trace
from spectra.operators.base import Batch, LossFn
from spectra.operators.hessian import HessianOperator
from spectra.utils import checks
from spectra.utils.params import trainable_parameters

__all__ = [
    "BLOCK_KINDS",
    "BlockSpectra",
    "BlockSpectrum",
    "block_heterogeneity",
    "block_spectra",
    "js_distance",
    "parameter_blocks",
]

#: How :func:`parameter_blocks` groups parameters when not given groups.
BLOCK_KINDS: tuple[str, ...] = ("module", "tensor")

Blocks = str | Mapping[str, Sequence[str]]


def parameter_blocks(model: nn.Module, blocks: Blocks = "module") -> dict[str, tuple[str, ...]]:
    """Block name -> parameter names, in ``named_parameters`` order.

    Args:
        model: the network; only parameters with ``requires_grad`` are grouped.
        blocks: ``"module"`` (the parameters of each module, named by the module's
            qualified name, e.g. ``"0"`` for ``0.weight`` and ``0.bias``; a parameter
            of the root module is its own block), ``"tensor"`` (one block per
            parameter tensor, named by it), or a mapping ``name -> parameter names``
            (user groups; parameters not named are left out).

    Raises:
        ValueError: an unknown kind, an unknown or frozen parameter name, a parameter
            in two groups, an empty group or no group.
    """
    names = [n for n, _ in trainable_parameters(model)]
    out: dict[str, list[str]] = {}
    if isinstance(blocks, str):
        if blocks not in BLOCK_KINDS:
            raise ValueError(f"blocks must be one of {', '.join(BLOCK_KINDS)} or a mapping of "
                             f"groups, got {blocks!r}")
        for n in names:
            key = n if blocks == "tensor" or "." not in n else n.rsplit(".", 1)[0]
            out.setdefault(key, []).append(n)
    elif isinstance(blocks, Mapping):
        known, seen, keys = set(names), {}, {}
        for group, members in blocks.items():
            members = [members] if isinstance(members, str) else list(members)
            if not members:
                raise ValueError(f"blocks: group {group!r} is empty")
            for m in members:
                if m not in known:
                    raise ValueError(f"blocks: group {group!r} names {m!r}, not a trainable "
                                     f"parameter of the model (those are: {', '.join(names)})")
                if m in seen:
                    raise ValueError(f"blocks: {m!r} is in groups {seen[m]!r} and {group!r}")
                seen[m] = group
            if str(group) in keys:  # e.g. 1 and "1": one name for two groups
                raise ValueError(f"blocks: groups {keys[str(group)]!r} and {group!r} have the "
                                 f"same name {str(group)!r}")
            keys[str(group)] = group
            out[str(group)] = sorted(members, key=names.index)
    else:
        raise TypeError(f"blocks must be a string or a mapping, got {type(blocks).__name__}")
    if not out:
        raise ValueError("blocks: no group holds a parameter")
    return {k: tuple(v) for k, v in out.items()}


@dataclass(frozen=True)
class BlockSpectrum:
    """The spectrum of one diagonal block ``H_bb``.

    Attributes:
        name: the block's name.
        params: its parameter names.
        size: ``P_b``, its number of scalar parameters.
        top_eigenvalue, top_residual: ``lambda_1(H_bb)`` and its residual norm (NaN if
            not asked).
        trace, trace_stderr: ``tr(H_bb)`` and its error estimate (NaN if not asked).
        measure: the SLQ density (``None`` if not asked).
        num_matvecs: products spent on the block.
    """

    name: str
    params: tuple[str, ...]
    size: int
    top_eigenvalue: float
    top_residual: float
    trace: float
    trace_stderr: float
    measure: SpectralMeasure | None = field(default=None, repr=False)
    num_matvecs: int = 0


@dataclass(frozen=True)
class BlockSpectra:
    """The spectra of every block, and their heterogeneity.

    Attributes:
        blocks: one :class:`BlockSpectrum` per block, in order.
        heterogeneity: mean pairwise Jensen-Shannon distance of the blocks' densities
            (NaN without densities or with fewer than two blocks).
        num_matvecs: products spent on all blocks.
    """

    blocks: tuple[BlockSpectrum, ...]
    heterogeneity: float
    num_matvecs: int

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.blocks]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per block, name, size, lambda_1, trace (NaN as ``None``) and the raw
        SLQ nodes and weights when computed."""

        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        out: list[dict[str, Any]] = []
        for b in self.blocks:
            d: dict[str, Any] = {
                "name": b.name, "params": list(b.params), "size": b.size,
                "top_eigenvalue": num(b.top_eigenvalue), "trace": num(b.trace),
                "trace_stderr": num(b.trace_stderr), "num_matvecs": b.num_matvecs,
            }
            if b.measure is not None:
                d["ritz_nodes"] = b.measure.nodes.tolist()
                d["ritz_weights"] = b.measure.weights.tolist()
            out.append(d)
        return {"blocks": out, "heterogeneity": num(self.heterogeneity),
                "num_matvecs": int(self.num_matvecs)}

    def row(self, num_steps: int | None = None) -> dict[str, np.ndarray | float]:
        """The probe-table columns (:mod:`spectra.runs.format`): ``layer_top_eigenvalue``,
        ``layer_trace``, ``layer_trace_stderr`` ``(B,)``, ``layer_heterogeneity``, and with
        densities ``layer_ritz_nodes``, ``layer_ritz_weights`` ``(B, n_v, num_steps)``,
        NaN-padded where a block is smaller than ``num_steps``.

        ``num_steps`` is the width the densities are padded to (default: the longest
        block's); ``ValueError`` when it is not an integer at least the longest block's
        number of steps, whose nodes would not fit."""
        row: dict[str, np.ndarray | float] = {
            "layer_top_eigenvalue": np.array([b.top_eigenvalue for b in self.blocks]),
            "layer_trace": np.array([b.trace for b in self.blocks]),
            "layer_trace_stderr": np.array([b.trace_stderr for b in self.blocks]),
            "layer_heterogeneity": float(self.heterogeneity),
        }
        measures = [b.measure for b in self.blocks]
        if all(m is not None for m in measures):
            n_v = max(m.num_vectors for m in measures)  # type: ignore[union-attr]
            longest = max(m.num_steps for m in measures)  # type: ignore[union-attr]
            m_max = longest if num_steps is None else checks.integer("num_steps", num_steps, longest)
            nodes = np.full((len(measures), n_v, m_max), np.nan)
            weights = np.full((len(measures), n_v, m_max), np.nan)
            for i, m in enumerate(measures):
                nodes[i, : m.num_vectors, : m.num_steps] = m.nodes  # type: ignore[union-attr]
                weights[i, : m.num_vectors, : m.num_steps] = m.weights  # type: ignore[union-attr]
            row["layer_ritz_nodes"], row["layer_ritz_weights"] = nodes, weights
        return row


def block_spectra(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    blocks: Blocks = "module",
    *,
    top: bool = True,
    trace_matvecs: int = 60,
    density: tuple[int, int] | None = None,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    reduction: str | None = None,
    eval_mode: bool = True,
    xscale: str = "symlog",
    max_memory: int | str | None = None,
    density_mode: str = "auto",
) -> BlockSpectra:
    """``lambda_1``, trace and density of each diagonal block of the Hessian.

    Args:
        model, loss_fn, data, dtype, reduction: as for :class:`~spectra.HessianOperator`.
        eval_mode: as for :class:`~spectra.HessianOperator`, but on by default (as in
            :func:`spectra.probe.probe`): dropout and batch statistics off.
        blocks: how to group the parameters (:func:`parameter_blocks`).
        top: compute ``lambda_1`` of each block.
        trace_matvecs: the trace estimator's budget per block (0: no trace).
        density: ``(num_vectors, num_steps)`` of SLQ per block (``num_steps`` capped at
            the block's size), or ``None``; needed for the heterogeneity score.
        tol: relative residual tolerance of ``lambda_1``.
        generator: the random vectors' source (default: seeded with 0).
        xscale: the axis of the heterogeneity's common grid (``"symlog"`` or ``"linear"``).
        max_memory, density_mode: the solvers' memory budget and SLQ's mode, as for
            :func:`spectra.eigsh` and :func:`spectra.slq` (``mode``), block by block.
    """
    density = checks.density_pair("density", density)
    groups = parameter_blocks(model, blocks)
    gen = checks.generator("generator", generator, seed=0)
    out: list[BlockSpectrum] = []
    total = 0
    for name, params in groups.items():
        op = HessianOperator(model, loss_fn, data, params=list(params), dtype=dtype,
                             reduction=reduction, eval_mode=eval_mode)
        P = op.shape[0]
        lam, res = math.nan, math.nan
        if top:
            r = eigsh(op, k=1, which="LA", tol=tol, generator=gen, warn=False,
                      max_memory=max_memory)
            lam, res = float(r.eigenvalues[0]), float(r.residuals[0])
        tr, se = math.nan, math.nan
        if trace_matvecs:
            t = trace(op, num_matvecs=trace_matvecs, generator=gen)
            tr, se = t.value, t.stderr
        measure = None
        if density is not None:
            measure = slq(op, num_vectors=density[0], num_steps=min(density[1], P), generator=gen,
                          max_memory=max_memory, mode=density_mode)
        op.clear_cache()
        out.append(BlockSpectrum(name=name, params=params, size=P, top_eigenvalue=lam, top_residual=res,
                                 trace=tr, trace_stderr=se, measure=measure, num_matvecs=op.num_matvecs))
        total += op.num_matvecs
    het = math.nan
    if density is not None and len(out) > 1:
        het = block_heterogeneity([(b.measure.nodes, b.measure.weights) for b in out  # type: ignore[union-attr]
                                   ], xscale=xscale)
    return BlockSpectra(blocks=tuple(out), heterogeneity=het, num_matvecs=total)


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """The Jensen-Shannon distance (log base 2, in ``[0, 1]``) of two discrete
    distributions ``(g,)`` (non-negative; each normalized to sum 1 here)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"p and q must be 1-D of one length, got {p.shape} and {q.shape}")
    if (p < 0).any() or (q < 0).any() or p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("p and q must be non-negative with a positive sum")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return math.sqrt(max(0.5 * kl(p) + 0.5 * kl(q), 0.0))


def block_heterogeneity(
    measures: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    xscale: str = "symlog",
    grid: int = 1000,
    sigma: float | None = None,
) -> float:
    """Mean pairwise Jensen-Shannon distance of the densities of ``measures``, smoothed
    onto one common grid (module docstring); NaN for fewer than two.

    Args:
        measures: ``(nodes, weights)`` SLQ rules, each ``(n_v, m)``.
        xscale, grid, sigma: as for :func:`spectra.linalg.scales.smooth_densities`.
    """
    if len(measures) < 2:
        return math.nan
    smoothed = smooth_densities(measures, xscale=xscale, grid=grid, sigma=sigma)
    widths = np.diff(smoothed.grid.edges)
    probs = [np.clip(v, 0.0, None) * widths for v in smoothed.values]
    dists = [js_distance(probs[i], probs[j])
             for i in range(len(probs)) for j in range(i + 1, len(probs))]
    return float(np.mean(dists))
