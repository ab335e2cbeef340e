"""``SpectralMonitor``: probe the Hessian spectrum on a schedule from any training loop.

::

    monitor = SpectralMonitor(model, loss_fn, (X_probe, y_probe), run_writer,
                              every=1, unit="epoch", top_k=5, density=(4, 80))
    for epoch in range(epochs):
        train_one_epoch(...)
        monitor.maybe_probe(step=global_step, epoch=epoch + 1)

Each probe is :func:`spectra.probe.probe` on a fixed probe set: top-``k``
eigenvalues, the smallest eigenvalue, a Hutch++ trace and raw SLQ nodes and
weights, appended as one row of the run's ``probes`` table. The monitor
restores the model's modes, buffers and the global RNG, times itself and
counts its Hessian-vector products, so training time and probe time are
reported apart (:attr:`seconds`, :attr:`num_matvecs`).

Each probe draws its random vectors from a generator seeded by ``(seed,
step)``, not from a stream carried across probes: a resumed run repeats the
probes of an uninterrupted one exactly.

Given the training optimizer (``optimizer=`` here, or per call, as
:func:`spectra.runs.trainer.train` passes it), each probe also records, with the
cost of each in Hessian-vector products (measured per probe in the README's
edge-of-stability runs: 8.6 for lambda_1 alone, 15.9 for lambda_1 and
``preconditioned_top``):

============================  =====================================================  ==================
option                        columns of the ``probes`` table                        cost
============================  =====================================================  ==================
(always, with an optimizer)   ``threshold``, ``threshold_kind``,                     free
                              ``threshold_preconditioned``
``preconditioned=True``       ``preconditioned_top``                                 one Lanczos run
``alignment=True``            ``alignment_full``, ``alignment_batch``,               0 products: two
                              ``step_loss_change``, ``step_loss_change_top``,        gradients, one
                              ``step_loss_change_bulk``, ``step_top_fraction``       optimizer step on a
                                                                                     copy, 3 forward
                                                                                     passes
``layers="module"|"tensor"``  ``layer_top_eigenvalue``, ``layer_trace``,             per block: a
                              ``layer_trace_stderr`` (B,), ``layer_heterogeneity``;  Lanczos run, the
                              with ``layer_density``: ``layer_ritz_nodes``,          trace budget, and
                              ``layer_ritz_weights`` (B, n_v, m)                     n_v x m for SLQ
============================  =====================================================  ==================

(:mod:`spectra.runs.format` describes the columns; the block names are the
run config's ``layer_names``.) All are off by default except the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from spectra.curvature.blocks import parameter_blocks
from spectra.curvature.preconditioner import preconditioner
from spectra.operators.base import Batch, LossFn
from spectra.operators.hessian import HessianOperator
from spectra.probe import ProbeResult, ProbeSettings, probe
from spectra.utils import checks as _checks
from spectra.utils.distributed import replicate_

UNITS = ("epoch", "step")


class SpectralMonitor:
    """A training-loop callback that probes the spectrum on a schedule and records it.

    Args:
        model, loss_fn: the network and its loss, ``loss_fn(model(X), y)``.
        probe_data: fixed ``(X, y)`` or a list of batches; the Hessian averages over it.
            Under an initialized ``torch.distributed`` group of several ranks, each
            rank's ``probe_data`` is its shard and the Hessian is that of the union of
            the shards (:class:`spectra.HessianOperator`): the same data on every rank is
            that many copies (the same Hessian for a mean loss, that many times it for
            a summed one).
        store: a :class:`spectra.runs.store.RunWriter` to append rows to, or ``None``.
        every: probe every this-many units.
        unit: ``"epoch"`` or ``"step"``: which counter ``every`` refers to.
        top_k, bottom, tol, density, seed, dtype, eval_mode: the probe's settings,
            see :class:`spectra.probe.ProbeSettings`; ``density=None`` skips SLQ.
        trace: Hutch++ budget in products (``0``/``False`` for no trace; ``True`` = 60).
        reduction: ``"mean"`` or ``"sum"``, how ``loss_fn`` reduces a batch. By default
            ``loss_fn.reduction``, else determined here, once, from the loss on the first
            probe batch (``ValueError`` when it is neither; see
            :class:`~spectra.HessianOperator`); every probe then uses it (:attr:`reduction`).
        on_probe: called with ``(result, step, epoch)`` after each probe.
        progress: progress during probes: ``False``, ``True`` (a bar per part), or a bar
            factory (:mod:`spectra.utils.progress`) shared by a probe's parts; a factory
            with a ``close()`` method (``spectra probe``'s and ``spectra train``'s one
            line) is closed after each probe.
        optimizer: the training optimizer (or give it to each :meth:`probe` call): its
            stability threshold is recorded with every probe (free).
        preconditioned: also record ``preconditioned_top``, ``lambda_1`` of the
            optimizer's preconditioned Hessian ``P^-1/2 H P^-1/2`` (Adam, AdamW,
            RMSprop, ...; a ``TypeError`` here for an optimizer without a diagonal
            preconditioner; NaN before its first step). Costs one Lanczos run.
        alignment: also record the gradient alignment with the top-``k``
            eigenvectors and the step split (:mod:`spectra.curvature.alignment`); in one
            process only (its gradient would be a rank's shard's: refused under several).
            No products; two gradients, a step of a copy of the optimizer, three
            forward passes of the probe set.
        layers: per-block spectra: ``"module"``, ``"tensor"``, or a dict ``name ->
            parameter names`` (:func:`spectra.curvature.blocks.parameter_blocks`);
            per block, a Lanczos run and the trace budget in products.
        layer_density: ``(num_vectors, num_steps)`` of each block's SLQ density (and the
            heterogeneity score), ``num_vectors * num_steps`` products per block.
        max_memory, density_mode: the solvers' memory budget (bytes or a size such as
            ``"2GB"``; ``None``: half the device's available memory) and SLQ's mode
            (``"auto"``, ``"full"``, ``"bounded"``), see :class:`spectra.probe.ProbeSettings`;
            each probe's ``result.memory`` says which mode ran and why.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        probe_data: Batch | Iterable[Batch],
        store: Any = None,
        *,
        every: int = 1,
        unit: str = "epoch",
        top_k: int = 5,
        bottom: bool = True,
        density: tuple[int, int] | None = (4, 80),
        trace: int | bool = True,
        tol: float = 1e-3,
        seed: int = 0,
        dtype: str | None = None,
        eval_mode: bool = True,
        reduction: str | None = None,
        on_probe: Callable[[ProbeResult, int, float | None], None] | None = None,
        progress: bool = False,
        optimizer: Any = None,
        preconditioned: bool = False,
        alignment: bool = False,
        layers: str | dict[str, list[str]] | None = None,
        layer_density: tuple[int, int] | None = None,
        max_memory: int | str | None = None,
        density_mode: str = "auto",
    ) -> None:
        if unit not in UNITS:
            raise ValueError(f"unit must be 'epoch' or 'step', got {unit!r}")
        every = _checks.integer("every", every, 1)
        if isinstance(trace, bool):
            trace_matvecs = 60 if trace else 0
        else:
            trace_matvecs = _checks.integer("trace", trace, 0)
            if 0 < trace_matvecs < 4:  # ProbeSettings would name its own trace_matvecs
                raise ValueError(f"trace must be 0, a bool or >= 4 (Hutch++'s products), got "
                                 f"{trace_matvecs}")
        # ProbeSettings checks the rest (density and layer_density: pairs of integers)
        self.settings = ProbeSettings(
            top_k=top_k, bottom=bottom, tol=tol, trace_matvecs=trace_matvecs,
            density=density, seed=seed, dtype=dtype,
            eval_mode=eval_mode, preconditioned=preconditioned, alignment=alignment, layers=layers,
            layer_density=layer_density, max_memory=max_memory, density_mode=density_mode,
        )
        if on_probe is not None and not callable(on_probe):
            raise TypeError(f"on_probe must be callable or None, got {type(on_probe).__name__}")
        self.model = model
        self.loss_fn = loss_fn
        self.probe_data = probe_data
        # fixed once for the run: the operator's rule, with no product computed
        op = HessianOperator(
            model, loss_fn, probe_data, dtype=getattr(torch, dtype) if dtype else None,
            reduction=reduction, eval_mode=True,
        )
        self.reduction: str = op.reduction
        # settings the model rules out (top_k > P, bases beyond memory) fail here, before
        # any training step or run file
        self.settings.check(op.shape[0], op.dtype, op.device)
        if preconditioned and optimizer is not None:
            _check_preconditioner(optimizer)
        # block names and sizes, fixed for the run (a bad group fails here)
        self.layer_names: list[str] = []
        self.layer_sizes: list[int] = []
        if layers is not None:
            named = dict(model.named_parameters())
            for name, params in parameter_blocks(model, layers).items():
                self.layer_names.append(name)
                self.layer_sizes.append(sum(named[p].numel() for p in params))
        self.optimizer = optimizer
        self.store = store
        self.every = every
        self.unit = unit
        self.on_probe = on_probe
        self.progress = progress
        self.seconds = 0.0
        self.num_matvecs = 0
        self.num_probes = 0
        self.last: ProbeResult | None = None
        self._last_key: int | None = None

    def config(self) -> dict[str, Any]:
        """The probe settings as JSON-able config (stored with the run); with ``layers``,
        the blocks' names and sizes (``layer_names``, ``layer_sizes``), in the order of
        the ``layer_*`` columns."""
        out = {"every": self.every, "unit": self.unit, **self.settings.to_dict()}
        if self.layer_names:
            out["layer_names"], out["layer_sizes"] = list(self.layer_names), list(self.layer_sizes)
        return out

    def due(self, *, step: int, epoch: float | None = None) -> bool:
        """Whether a probe is due at this step/epoch (and not already taken there).

        Raises:
            ValueError: ``step`` not an integer >= 0, ``epoch`` not ``None`` or a finite
                number >= 0, or no ``epoch`` for a monitor with ``unit="epoch"`` (which
                would never be due).
        """
        if self.unit == "epoch" and epoch is None:
            raise ValueError(
                "SpectralMonitor(unit='epoch') needs the epoch to tell whether a probe is "
                "due: pass epoch= (e.g. epoch + 1 at the end of each epoch), or build the "
                "monitor with unit='step'"
            )
        key = self._key(step, epoch)
        return key is not None and key % self.every == 0 and key != self._last_key

    def maybe_probe(self, *, step: int, epoch: float | None = None, optimizer: Any = None,
                    batch: Batch | None = None) -> ProbeResult | None:
        """Probe if due; returns the result or ``None`` (arguments as for :meth:`probe`)."""
        if not self.due(step=step, epoch=epoch):
            return None
        return self.probe(step=step, epoch=epoch, optimizer=optimizer, batch=batch)

    def probe(self, *, step: int, epoch: float | None = None, optimizer: Any = None,
              batch: Batch | None = None) -> ProbeResult:
        """Probe now, record the row, and return the result.

        Args:
            step, epoch: where training stands.
            optimizer: the training optimizer, instead of the one given when the monitor
                was built (for the threshold, ``preconditioned`` and ``alignment``).
            batch: the last training minibatch ``(X, y)`` (``alignment``: its gradient's
                alignment, and the batch of the optimizer step split); without one the
                minibatch column is NaN and the step is taken on the probe set.
        """
        key = self._key(step, epoch)  # checks step and epoch before any work
        optimizer = optimizer if optimizer is not None else self.optimizer
        if self.settings.preconditioned and optimizer is None:
            raise ValueError("SpectralMonitor(preconditioned=True) needs the optimizer: pass "
                             "optimizer= to the monitor or to probe()")
        # under torchrun the products are all-reduced: every rank probes rank 0's model
        replicate_(self.model)
        # probe() restores the global random state (dropout draws from it in train mode)
        settings = ProbeSettings(**{**self.settings.__dict__, "seed": _probe_seed(self.settings.seed, step)})
        result = probe(self.model, self.loss_fn, self.probe_data, settings,
                       reduction=self.reduction, optimizer=optimizer,
                       batch=batch if self.settings.alignment else None, progress=self.progress)
        close = getattr(self.progress, "close", None)
        if callable(close):  # a caller's one line for the probe's parts ends with the probe
            close()
        self.seconds += result.seconds
        self.num_matvecs += result.num_matvecs
        self.num_probes += 1
        self.last = result
        self._last_key = key
        if self.store is not None:
            self.store.append_probe(self.row(result, step=step, epoch=epoch))
        if self.on_probe is not None:
            self.on_probe(result, step, epoch)
        return result

    @staticmethod
    def row(result: ProbeResult, *, step: int, epoch: float | None) -> dict[str, Any]:
        """The ``probes`` row of a result (see :mod:`spectra.runs.store`)."""
        row: dict[str, Any] = {
            "step": int(step),
            "epoch": math.nan if epoch is None else float(epoch),
            "bottom_eigenvalue": result.bottom_eigenvalue,
            "trace": result.trace,
            "trace_stderr": result.trace_stderr,
            "num_matvecs": float(result.num_matvecs),
            "seconds": float(result.seconds),
            "converged": float(result.converged),
        }
        if len(result.top_eigenvalues):
            row["top_eigenvalues"] = np.asarray(result.top_eigenvalues, dtype=np.float64)
        if result.measure is not None:
            row["ritz_nodes"] = result.measure.nodes
            row["ritz_weights"] = result.measure.weights
        if result.threshold is not None:
            row["threshold"] = float(result.threshold.value)
            row["threshold_kind"] = result.threshold.kind
            row["threshold_preconditioned"] = float(result.threshold.preconditioned)
        if math.isfinite(result.preconditioned_top):
            row["preconditioned_top"] = float(result.preconditioned_top)
        if result.alignment is not None:
            row.update(result.alignment.row())
        if result.layers is not None:
            row.update(result.layers.row())
        return row

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "num_matvecs": self.num_matvecs, "num_probes": self.num_probes,
                "last_key": self._last_key}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [k for k in ("seconds", "num_matvecs", "num_probes", "last_key")
                   if not isinstance(state, dict) or k not in state]
        if missing:
            raise ValueError(f"not a SpectralMonitor state: missing {', '.join(missing)} (use "
                             "the dict that SpectralMonitor.state_dict() returned)")
        self.seconds = float(state["seconds"])
        self.num_matvecs = int(state["num_matvecs"])
        self.num_probes = int(state["num_probes"])
        self._last_key = state["last_key"]

    def _key(self, step: int, epoch: float | None) -> int | None:
        step = _checks.integer("step", step, 0)
        if epoch is not None:
            epoch = _checks.number("epoch", epoch, low=0)
        if self.unit == "step":
            return int(step)
        if epoch is None:
            return None
        if float(epoch) != int(epoch):  # mid-epoch calls never trigger an epoch probe
            return None
        return int(epoch)


def _check_preconditioner(optimizer: Any) -> None:
    """``TypeError`` now, before training, for an optimizer without a diagonal
    preconditioner; one that has not stepped yet (no state) passes."""
    try:
        preconditioner(optimizer)
    except ValueError:
        pass  # no state yet: the probes before its first step record NaN


def _probe_seed(seed: int, step: int) -> int:
    return (int(seed) * 1_000_003 + int(step)) % (2**63 - 1)


__all__ = ["UNITS", "SpectralMonitor"]
