"""One spectral probe of a model: what the CLI, the monitor and users' loops record.

:func:`probe` runs, on one Hessian operator, the top-``k`` eigenvalues, the
most negative eigenvalue, a Hutch++ trace and an SLQ density, each optional,
and returns a :class:`ProbeResult` holding numbers and raw quadrature, ready
to print, serialize (:meth:`ProbeResult.to_dict`) or append to a run file.

Given the training optimizer, a probe also records the quantities built on it
(:mod:`spectra.curvature`), each an option of :class:`ProbeSettings` with its cost:

* the optimizer's stability threshold (:func:`spectra.stability_threshold`): free,
  always recorded when an optimizer is given;
* ``preconditioned``: ``lambda_1(P^-1/2 H P^-1/2)`` for the optimizer's diagonal
  preconditioner ``P`` (:func:`spectra.preconditioner`,
  :class:`spectra.PreconditionedOperator`): one Lanczos run, about as many products
  as the top eigenvalue;
* ``alignment``: the gradients' alignment with the top-``k`` eigenvectors and the
  split of one optimizer step's loss change (:mod:`spectra.curvature.alignment`): no
  products given the eigenvectors; gradients and forward passes only;
* ``layers``: ``lambda_1``, trace and (``layer_density``) density of each block of
  parameters (:mod:`spectra.curvature.blocks`): per block, the products of a top
  eigenvalue, ``trace_matvecs`` and ``num_vectors * num_steps``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from spectra.curvature.alignment import Alignment, gradient_alignment
from spectra.curvature.blocks import BLOCK_KINDS, BlockSpectra, block_spectra
from spectra.curvature.preconditioner import preconditioner, stepped
from spectra.curvature.stability import StabilityThreshold, stability_threshold
from spectra.linalg.density import SLQ_MODES, SpectralMeasure, slq
from spectra.linalg.density import check_memory as check_slq_memory
from spectra.linalg.eigsh import check_memory as check_eigsh_memory
from spectra.linalg.eigsh import eigsh
from spectra.linalg.memory import parse_memory
from spectra.linalg.trace import check_memory as check_trace_memory
from spectra.linalg.trace import trace
from spectra.operators.base import Batch, LossFn
from spectra.operators.hessian import HessianOperator
from spectra.operators.preconditioned import PreconditionedOperator
from spectra.utils import checks as _checks
from spectra.utils.modes import preserved_rng


@dataclass(frozen=True)
class ProbeSettings:
    """What a probe computes.

    Attributes:
        top_k: number of largest eigenvalues (0 for none).
        bottom: also the smallest (most negative) eigenvalue.
        tol: relative residual tolerance of the eigenvalues.
        trace_matvecs: Hutch++ budget (0 for no trace).
        density: ``(num_vectors, num_steps)`` of SLQ, or ``None`` for no density.
        seed: seed of the probe's own random generator.
        dtype: compute dtype name (``"float32"`` or ``"float64"``), ``None`` for the model's.
        eval_mode: evaluate the model in eval mode during the probe.
        preconditioned: also ``lambda_1`` of the optimizer's preconditioned Hessian
            ``P^-1/2 H P^-1/2`` (needs an optimizer with a diagonal preconditioner).
        alignment: also the gradient alignment with the top-``k`` eigenvectors and the
            step split (needs ``top_k >= 1``; the step split needs an optimizer).
        layers: per-block spectra, blocks by ``"module"``, ``"tensor"``, or a mapping
            ``name -> parameter names``; ``None`` for none.
        layer_density: ``(num_vectors, num_steps)`` of each block's SLQ density (and
            the heterogeneity score), or ``None``.
        max_memory: bytes (or a size such as ``"2GB"``) the solvers' vectors may take;
            ``None``: half the memory available on the device. Above it SLQ runs without
            a stored basis and eigsh keeps its basis on the host or on disk (see
            :mod:`spectra.linalg.memory`; the mode is recorded in each result's ``plan``).
        density_mode: SLQ's mode (see :func:`spectra.slq`): ``"auto"`` (full
            reorthogonalization when its bases fit in ``max_memory``, else bounded),
            ``"full"`` or ``"bounded"``.
    """

    top_k: int = 5
    bottom: bool = True
    tol: float = 1e-3
    trace_matvecs: int = 60
    density: tuple[int, int] | None = (4, 80)
    seed: int = 0
    dtype: str | None = None
    eval_mode: bool = True
    preconditioned: bool = False
    alignment: bool = False
    layers: str | dict[str, list[str]] | None = None
    layer_density: tuple[int, int] | None = None
    max_memory: int | str | None = None
    density_mode: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_memory", parse_memory(self.max_memory))
        if self.density_mode not in SLQ_MODES:
            raise ValueError(f"density_mode must be one of {', '.join(SLQ_MODES)}, "
                             f"got {self.density_mode!r}")
        # integers, not bools (top_k=True is not a request for one eigenvalue)
        object.__setattr__(self, "top_k", _checks.integer("top_k", self.top_k, 0))
        object.__setattr__(self, "tol", _checks.number("tol", self.tol, positive=True))
        # the range torch.Generator.manual_seed takes
        object.__setattr__(self, "seed", _checks.integer("seed", self.seed, -(2**63), 2**64 - 1))
        # a string such as "no" is truthy: refused, not taken as True
        for name in ("bottom", "eval_mode", "preconditioned", "alignment"):
            object.__setattr__(self, name, _checks.flag(name, getattr(self, name)))
        tm = _checks.integer("trace_matvecs", self.trace_matvecs, 0)
        if 0 < tm < 4:
            raise ValueError(f"trace_matvecs must be 0 or >= 4, got {tm}")
        object.__setattr__(self, "trace_matvecs", tm)
        object.__setattr__(self, "density", _checks.density_pair("density", self.density))
        if self.dtype not in (None, "float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.alignment and not self.top_k:
            raise ValueError("alignment needs the top eigenvectors: ask for top_k >= 1")
        if isinstance(self.layers, str) and self.layers not in BLOCK_KINDS:
            raise ValueError(f"layers must be one of {', '.join(BLOCK_KINDS)}, a mapping of "
                             f"groups, or None, got {self.layers!r}")
        if self.layers is not None and not isinstance(self.layers, (str, dict)):
            raise TypeError(f"layers must be a string, a dict of groups or None, got "
                            f"{type(self.layers).__name__}")
        if isinstance(self.layers, dict):
            for k, v in self.layers.items():
                if not (isinstance(v, str) or (isinstance(v, (list, tuple))
                                               and all(isinstance(n, str) for n in v))):
                    raise TypeError(f"layers: group {k!r} must be a parameter name or a list of "
                                    f"them, got {v!r}")
            object.__setattr__(self, "layers", {str(k): [v] if isinstance(v, str) else list(v)
                                                for k, v in self.layers.items()})
        object.__setattr__(self, "layer_density",
                           _checks.density_pair("layer_density", self.layer_density))
        if self.layer_density is not None and self.layers is None:
            raise ValueError("layer_density needs layers ('module', 'tensor' or groups)")

    def check(self, dim: int, dtype: torch.dtype, device: Any = None) -> None:
        """Refuse settings that an operator of size ``dim`` (``P``, the number of
        parameters) in ``dtype`` on ``device`` rules out; called by :func:`probe` and
        by :class:`~spectra.SpectralMonitor` when it is built, before any probe.

        Rules: ``top_k <= P`` (a ``P x P`` Hessian has ``P`` eigenvalues); the
        Lanczos bases of the eigensolver, of SLQ (``num_vectors * min(num_steps, P)``
        vectors) and the trace's random vectors each fit in the device's memory.
        ``num_steps > P`` is capped at ``P`` with a warning: after ``P`` steps the
        nodes are the exact eigenvalues, more steps cannot give more.

        Raises:
            ValueError: the rule broken, with the value and the limit.
        """
        dtype = getattr(torch, self.dtype) if self.dtype else dtype
        if self.top_k > dim:
            raise ValueError(
                f"top_k={self.top_k} exceeds the number of parameters P={dim}: the Hessian "
                f"has {dim} eigenvalues; ask for top_k <= {dim}"
            )
        if self.top_k:
            check_eigsh_memory(dim, self.top_k, None, dtype, device, self.max_memory)
        if self.density is not None:
            n_v, m = self.density
            check_slq_memory(dim, n_v, m, dtype, device, self.max_memory, self.density_mode)
            if m > dim:
                warnings.warn(
                    f"density num_steps={m} exceeds the number of parameters P={dim}: SLQ runs "
                    f"{dim} Lanczos steps (the exact eigenvalues; more steps give no more nodes)",
                    stacklevel=3,
                )
        if self.trace_matvecs:
            check_trace_memory(dim, self.trace_matvecs, dtype, device)

    def to_dict(self) -> dict[str, Any]:
        return {
            "top_k": self.top_k,
            "bottom": self.bottom,
            "tol": self.tol,
            "trace_matvecs": self.trace_matvecs,
            "density": list(self.density) if self.density is not None else None,
            "seed": self.seed,
            "dtype": self.dtype,
            "eval_mode": self.eval_mode,
            "preconditioned": self.preconditioned,
            "alignment": self.alignment,
            "layers": self.layers,
            "layer_density": list(self.layer_density) if self.layer_density is not None else None,
            "max_memory": self.max_memory,
            "density_mode": self.density_mode,
        }


@dataclass(frozen=True, eq=False)
class ProbeResult:
    """The spectrum of one probe.

    Two results compare by identity (``==`` of the generated dataclass would compare
    arrays, an error, and their wall times always differ): compare fields, e.g.
    ``np.array_equal(a.top_eigenvalues, b.top_eigenvalues)``.

    Attributes:
        top_eigenvalues: ``(k,)`` float64, descending (empty if not asked).
        top_residuals: ``(k,)`` residual norms of those pairs.
        bottom_eigenvalue: the smallest eigenvalue (NaN if not asked), accurate
            to ``tol * lambda_1`` when the top eigenvalues were probed too.
        trace, trace_stderr: Hutch++ estimate and standard error (NaN if not asked).
        measure: the SLQ measure (``None`` if not asked).
        num_matvecs: Hessian-vector products spent.
        seconds: wall time of the probe.
        converged: whether every eigenpair met ``tol``.
        reduction: ``"mean"`` or ``"sum"``, how the loss reduces a batch, i.e. how the
            Hessian weights the batches (``n_b / N`` or 1); see :class:`~spectra.HessianOperator`.
        threshold: the optimizer's stability threshold (``None``: no optimizer given,
            or none in theory).
        preconditioned_top: ``lambda_1(P^-1/2 H P^-1/2)`` (NaN if not asked, or before
            the optimizer's first step, when it has no preconditioner yet).
        alignment: :class:`~spectra.curvature.alignment.Alignment` (``None`` if not asked).
        layers: :class:`~spectra.curvature.blocks.BlockSpectra` (``None`` if not asked).
        memory: the memory plan of each solver that ran, by part (``"top"``,
            ``"bottom"``, ``"density"``): the :meth:`~spectra.linalg.memory.MemoryPlan.to_dict`
            of the mode it ran in (eigsh: where its basis was kept; SLQ: full or bounded)
            and why.
    """

    top_eigenvalues: np.ndarray
    top_residuals: np.ndarray
    bottom_eigenvalue: float
    trace: float
    trace_stderr: float
    measure: SpectralMeasure | None
    num_matvecs: int
    seconds: float
    converged: bool
    top_eigenvectors: torch.Tensor | None = field(default=None, repr=False, compare=False)
    reduction: str | None = None
    threshold: StabilityThreshold | None = None
    preconditioned_top: float = math.nan
    alignment: Alignment | None = None
    layers: BlockSpectra | None = field(default=None, repr=False)
    memory: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: lists and floats (NaN as ``None``); raw SLQ nodes/weights included."""

        def num(x: float) -> float | None:
            return None if not math.isfinite(x) else float(x)

        out: dict[str, Any] = {
            "top_eigenvalues": [float(x) for x in self.top_eigenvalues],
            "top_residuals": [float(x) for x in self.top_residuals],
            "bottom_eigenvalue": num(self.bottom_eigenvalue),
            "trace": num(self.trace),
            "trace_stderr": num(self.trace_stderr),
            "num_matvecs": int(self.num_matvecs),
            "seconds": float(self.seconds),
            "converged": bool(self.converged),
            "reduction": self.reduction,
        }
        if self.measure is not None:
            out["ritz_nodes"] = self.measure.nodes.tolist()
            out["ritz_weights"] = self.measure.weights.tolist()
        out["threshold"] = self.threshold.to_dict() if self.threshold is not None else None
        out["preconditioned_top"] = num(self.preconditioned_top)
        out["alignment"] = self.alignment.to_dict() if self.alignment is not None else None
        out["layers"] = self.layers.to_dict() if self.layers is not None else None
        out["memory"] = {k: dict(v) for k, v in self.memory.items()}
        return out


def probe(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    settings: ProbeSettings | None = None,
    *,
    v0: torch.Tensor | None = None,
    reduction: str | None = None,
    optimizer: Any = None,
    batch: Batch | None = None,
    progress: bool = False,
) -> ProbeResult:
    """Probe the Hessian spectrum of ``loss_fn(model(X), y)`` over ``data``.

    The probe has its own ``torch.Generator`` (seeded from ``settings.seed``) for its
    random vectors, and the global random state is restored on return (with
    ``settings.eval_mode=False`` dropout draws from it in every forward pass), so a
    training loop runs the same with or without probes; the model's parameters,
    buffers and train/eval modes are left as they were.

    Args:
        model, loss_fn, data: as for :class:`~spectra.HessianOperator`.
        settings: what to compute (default :class:`ProbeSettings`).
        v0: warm start for the top eigenvectors, e.g. the previous probe's
            ``top_eigenvectors``.
        reduction: ``"mean"`` or ``"sum"``, how ``loss_fn`` reduces a batch; by default
            ``loss_fn.reduction``, else determined from the loss on the first batch
            (``ValueError`` when it is neither). The result states the one used.
        optimizer: the training optimizer: its stability threshold is recorded, and
            ``settings.preconditioned`` reads its preconditioner, ``settings.alignment``
            takes one step of it (on a copy) for the step split.
        batch: a training minibatch ``(X, y)`` for ``settings.alignment``.
        progress: progress bars for each part (eigensolver, trace, SLQ).

    Raises:
        ValueError: settings the model rules out (see :meth:`ProbeSettings.check`);
            ``settings.preconditioned`` without an optimizer.
        TypeError: ``settings.preconditioned`` with an optimizer that has no diagonal
            preconditioner (SGD, ...; see :func:`spectra.preconditioner`).
    """
    if settings is not None and not isinstance(settings, ProbeSettings):
        raise TypeError(f"settings must be a ProbeSettings or None, got {type(settings).__name__}"
                        + (": use ProbeSettings(**settings)" if isinstance(settings, dict) else ""))
    with preserved_rng():
        return _probe(model, loss_fn, data, settings or ProbeSettings(), v0, reduction,
                      optimizer, batch, progress)


def _probe(model: nn.Module, loss_fn: LossFn, data: Batch | Iterable[Batch], s: ProbeSettings,
           v0: torch.Tensor | None, reduction: str | None, optimizer: Any, batch: Batch | None,
           progress: bool) -> ProbeResult:
    """:func:`probe`'s work, inside its restored random state."""
    start = time.perf_counter()
    dtype = getattr(torch, s.dtype) if s.dtype else None
    op = HessianOperator(model, loss_fn, data, dtype=dtype, reduction=reduction, eval_mode=s.eval_mode)
    s.check(op.shape[0], op.dtype, op.device)
    if s.alignment and op.process_group is not None:  # a group of several ranks
        raise ValueError("alignment is not available across processes: its gradient and "
                         "trial step would be each rank's shard's, not the data's; probe it "
                         "in one process")
    if s.preconditioned and optimizer is None:
        raise ValueError("preconditioned needs the optimizer whose preconditioner it reads "
                         "(pass optimizer=)")
    gen = torch.Generator().manual_seed(s.seed)
    top = np.zeros(0)
    top_res = np.zeros(0)
    vecs = None
    converged = True
    memory: dict[str, dict[str, Any]] = {}
    if s.top_k:
        r = eigsh(op, k=s.top_k, which="LA", tol=s.tol, generator=gen, v0=v0,
                  progress=progress, warn=False, max_memory=s.max_memory)
        top, top_res, vecs = r.eigenvalues.numpy(), r.residuals.numpy(), r.eigenvectors
        if r.plan is not None:
            memory["top"] = r.plan.to_dict()
        converged &= bool(r.converged.all())
    bottom = math.nan
    if s.bottom:
        # accuracy relative to the spectrum's scale: lambda_min of a trained network
        # sits near 0 in a dense cluster, where a relative residual is out of reach
        scale = float(abs(top[0])) if len(top) else 0.0
        r = eigsh(op, k=1, which="SA", tol=s.tol, atol=s.tol * scale, generator=gen,
                  progress=progress, warn=False, max_memory=s.max_memory)
        bottom = float(r.eigenvalues[0])
        converged &= bool(r.converged.all())
        if r.plan is not None:
            memory["bottom"] = r.plan.to_dict()
    tr, tr_se = math.nan, math.nan
    if s.trace_matvecs:
        t = trace(op, num_matvecs=s.trace_matvecs, generator=gen, progress=progress)
        tr, tr_se = t.value, t.stderr
    measure = None
    if s.density is not None:
        measure = slq(op, num_vectors=s.density[0], num_steps=s.density[1], generator=gen,
                      progress=progress, max_memory=s.max_memory, mode=s.density_mode)
        if measure.plan is not None:
            memory["density"] = measure.plan.to_dict()
    if measure is not None and math.isfinite(bottom):
        # every Ritz value bounds lambda_min from above (Cauchy interlacing): keep the lowest
        bottom = min(bottom, float(measure.nodes[measure.weights > 0].min()))
    pre_top = math.nan
    if s.preconditioned:
        pre_top, plan = _preconditioned_top(op, model, optimizer, s.tol, gen, progress,
                                            s.max_memory)
        if plan is not None:
            memory["preconditioned"] = plan.to_dict()
    align = None
    if s.alignment and vecs is not None:
        align = gradient_alignment(model, loss_fn, data, vecs, batch=batch, optimizer=optimizer,
                                   # float32 at least: its loss changes of one step are
                                   # below bfloat16's resolution of a loss
                                   params=op.param_names, dtype=op.dtype, reduction=op.reduction,
                                   eval_mode=s.eval_mode)
    layers = None
    if s.layers is not None:
        layers = block_spectra(model, loss_fn, data, s.layers, trace_matvecs=s.trace_matvecs,
                               density=s.layer_density, tol=s.tol, generator=gen, dtype=op.compute_dtype,
                               reduction=op.reduction, eval_mode=s.eval_mode,
                               max_memory=s.max_memory, density_mode=s.density_mode)
    op.clear_cache()
    return ProbeResult(
        top_eigenvalues=top,
        top_residuals=top_res,
        bottom_eigenvalue=bottom,
        trace=tr,
        trace_stderr=tr_se,
        measure=measure,
        num_matvecs=op.num_matvecs + (layers.num_matvecs if layers is not None else 0),
        seconds=time.perf_counter() - start,
        converged=converged,
        top_eigenvectors=vecs,
        reduction=op.reduction,
        threshold=stability_threshold(optimizer) if optimizer is not None else None,
        preconditioned_top=pre_top,
        alignment=align,
        layers=layers,
        memory=memory,
    )


def _preconditioned_top(op: HessianOperator, model: nn.Module, optimizer: Any, tol: float,
                        gen: torch.Generator, progress: bool,
                        max_memory: int | None) -> tuple[float, Any]:
    """``lambda_1(P^-1/2 H P^-1/2)``, NaN before the optimizer's first step (no state, no
    preconditioner yet), and the memory plan of its eigsh (``None`` then); its products
    count in ``op.num_matvecs``."""
    named = dict(model.named_parameters())
    params = [named[n] for n in op.param_names]
    state = getattr(optimizer, "state", None)
    try:
        diag = preconditioner(optimizer, params=params).to(device=op.device)
    except ValueError:
        if isinstance(state, Mapping) and not any(stepped(state.get(p)) for p in params):
            return math.nan, None  # not stepped yet
        raise
    r = eigsh(PreconditionedOperator(op, diag), k=1, which="LA", tol=tol, generator=gen,
              progress=progress, warn=False, max_memory=max_memory)
    return float(r.eigenvalues[0]), r.plan


__all__ = ["ProbeResult", "ProbeSettings", "probe"]
