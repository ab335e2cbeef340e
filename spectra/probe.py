"""One spectral probe of a model: what the CLI, the monitor and users' loops record.

:func:`probe` runs, on one Hessian operator, the top-``k`` eigenvalues, the
most negative eigenvalue, a Hutch++ trace and an SLQ density, each optional,
and returns a :class:`ProbeResult` holding numbers and raw quadrature, ready
to print, serialize (:meth:`ProbeResult.to_dict`) or append to a run file.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from spectra.linalg.density import SpectralMeasure, slq
from spectra.linalg.density import check_memory as check_slq_memory
from spectra.linalg.eigsh import check_memory as check_eigsh_memory
from spectra.linalg.eigsh import eigsh
from spectra.linalg.trace import check_memory as check_trace_memory
from spectra.linalg.trace import trace
from spectra.operators.base import Batch, LossFn
from spectra.operators.hessian import HessianOperator
from spectra.utils import checks as _checks


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
    """

    top_k: int = 5
    bottom: bool = True
    tol: float = 1e-3
    trace_matvecs: int = 60
    density: tuple[int, int] | None = (4, 80)
    seed: int = 0
    dtype: str | None = None
    eval_mode: bool = True

    def __post_init__(self) -> None:
        # integers, not bools (top_k=True is not a request for one eigenvalue)
        object.__setattr__(self, "top_k", _checks.integer("top_k", self.top_k, 0))
        if not (isinstance(self.tol, (int, float)) and not isinstance(self.tol, bool)
                and math.isfinite(self.tol) and self.tol > 0):
            raise ValueError(f"tol must be a positive number, got {self.tol!r}")
        tm = _checks.integer("trace_matvecs", self.trace_matvecs, 0)
        if 0 < tm < 4:
            raise ValueError(f"trace_matvecs must be 0 or >= 4, got {tm}")
        object.__setattr__(self, "trace_matvecs", tm)
        if self.density is not None:
            if not (isinstance(self.density, (tuple, list)) and len(self.density) == 2):
                raise ValueError(f"density must be None or a pair (num_vectors, num_steps), "
                                 f"got {self.density!r}")
            n_v = _checks.integer("density num_vectors", self.density[0], 1)
            m = _checks.integer("density num_steps", self.density[1], 1)
            object.__setattr__(self, "density", (n_v, m))
        if self.dtype not in (None, "float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

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
            check_eigsh_memory(dim, self.top_k, None, dtype, device)
        if self.density is not None:
            n_v, m = self.density
            check_slq_memory(dim, n_v, m, dtype, device)
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
        }


@dataclass(frozen=True)
class ProbeResult:
    """The spectrum of one probe.

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
        return out


def probe(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch | Iterable[Batch],
    settings: ProbeSettings | None = None,
    *,
    v0: torch.Tensor | None = None,
    reduction: str | None = None,
    progress: bool = False,
) -> ProbeResult:
    """Probe the Hessian spectrum of ``loss_fn(model(X), y)`` over ``data``.

    The probe has its own ``torch.Generator`` (seeded from ``settings.seed``),
    so it never touches the global RNG; the model's parameters, buffers and
    train/eval modes are left as they were.

    Args:
        model, loss_fn, data: as for :class:`~spectra.HessianOperator`.
        settings: what to compute (default :class:`ProbeSettings`).
        v0: warm start for the top eigenvectors, e.g. the previous probe's
            ``top_eigenvectors``.
        reduction: ``"mean"`` or ``"sum"``, how ``loss_fn`` reduces a batch; by default
            ``loss_fn.reduction``, else determined from the loss on the first batch
            (``ValueError`` when it is neither). The result states the one used.
        progress: progress bars for each part (eigensolver, trace, SLQ).

    Raises:
        ValueError: settings the model rules out (see :meth:`ProbeSettings.check`).
    """
    s = settings or ProbeSettings()
    start = time.perf_counter()
    dtype = getattr(torch, s.dtype) if s.dtype else None
    op = HessianOperator(model, loss_fn, data, dtype=dtype, reduction=reduction, eval_mode=s.eval_mode)
    s.check(op.shape[0], op.dtype, op.device)
    gen = torch.Generator().manual_seed(s.seed)
    top = np.zeros(0)
    top_res = np.zeros(0)
    vecs = None
    converged = True
    if s.top_k:
        r = eigsh(op, k=s.top_k, which="LA", tol=s.tol, generator=gen, v0=v0,
                  progress=progress, warn=False)
        top, top_res, vecs = r.eigenvalues.numpy(), r.residuals.numpy(), r.eigenvectors
        converged &= bool(r.converged.all())
    bottom = math.nan
    if s.bottom:
        # accuracy relative to the spectrum's scale: lambda_min of a trained network
        # sits near 0 in a dense cluster, where a relative residual is out of reach
        scale = float(abs(top[0])) if len(top) else 0.0
        r = eigsh(op, k=1, which="SA", tol=s.tol, atol=s.tol * scale, generator=gen,
                  progress=progress, warn=False)
        bottom = float(r.eigenvalues[0])
        converged &= bool(r.converged.all())
    tr, tr_se = math.nan, math.nan
    if s.trace_matvecs:
        t = trace(op, num_matvecs=s.trace_matvecs, generator=gen, progress=progress)
        tr, tr_se = t.value, t.stderr
    measure = None
    if s.density is not None:
        measure = slq(op, num_vectors=s.density[0], num_steps=s.density[1], generator=gen,
                      progress=progress)
    if measure is not None and math.isfinite(bottom):
        # every Ritz value bounds lambda_min from above (Cauchy interlacing): keep the lowest
        bottom = min(bottom, float(measure.nodes[measure.weights > 0].min()))
    op.clear_cache()
    return ProbeResult(
        top_eigenvalues=top,
        top_residuals=top_res,
        bottom_eigenvalue=bottom,
        trace=tr,
        trace_stderr=tr_se,
        measure=measure,
        num_matvecs=op.num_matvecs,
        seconds=time.perf_counter() - start,
        converged=converged,
        top_eigenvectors=vecs,
        reduction=op.reduction,
    )


__all__ = ["ProbeResult", "ProbeSettings", "probe"]
