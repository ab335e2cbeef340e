"""The curvature-operator base class: one home for the data loop and the plumbing.

A curvature operator turns ``(model, loss_fn, data)`` into a symmetric linear
operator of size ``P x P`` over the flattened selected parameters. This module
owns everything the curvature types share:

* reading the data argument (one ``(X, y)`` pair, a list of batches, a
  ``DataLoader``) and moving batches to the parameters' device;
* the full-data weighting. For a mean-reduced loss the data-set loss is
  ``L = sum_b (n_b / N) L_b``, so its curvature is ``sum_b (n_b / N) C_b``
  (uneven last batch included); for a sum-reduced loss it is ``sum_b C_b``.
  The reduction is never guessed: it is given, read from ``loss_fn.reduction``,
  or determined from the loss itself on the first batch (:func:`detect_reduction`);
* flattening and unflattening of parameter-shaped tensors;
* counting products, checking them for NaN/Inf;
* differentiability twice over: every product (and the forward and gradient
  graphs it differentiates) runs with PyTorch's math attention kernel
  (:func:`~spectra.utils.modes.math_attention`), since the fused
  ``scaled_dot_product_attention`` kernels have no double backward; an op that
  still has none is reported by name (:func:`_no_double_backward`);
* float32 at float32's precision: products run with TF32 (cuDNN convolutions use it on
  recent GPUs by default) and oneDNN's bfloat16 rounding off, whatever the global
  settings (:func:`~spectra.utils.modes.ieee_float32`);
* the export to :class:`scipy.sparse.linalg.LinearOperator`;
* the ``torch.distributed`` all-reduce when each rank holds a shard of the data.

A subclass implements one method, :meth:`CurvatureOperator._batch_matmat`,
the product of the curvature of one batch's loss with ``k`` vectors.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._C._functorch import is_functorch_wrapped_tensor
from torch.func import functional_call
from torch.utils.weak import WeakIdKeyDictionary

from spectra.utils import checks
from spectra.utils.distributed import collective_device, several_ranks
from spectra.utils.modes import eval_mode, ieee_float32, math_attention
from spectra.utils.params import trainable_parameters
from spectra.utils.tensors import standard_strides

Batch = tuple[Any, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]

REDUCTIONS = ("mean", "sum")

_STOCHASTIC_MODULES = (
    nn.modules.dropout._DropoutNd,
    nn.modules.batchnorm._BatchNorm,
)


class CurvatureOperator:
    """Base class of the symmetric ``P x P`` curvature operators of a model's loss.

    Args:
        model: the network. Its parameters are read, never written.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, e.g. ``nn.CrossEntropyLoss()``.
            A function of the outputs and targets only: it must not read the model's
            parameters (a weight penalty over ``model.parameters()``). The operators
            put the parameters they differentiate into the model's forward pass only
            (``torch.func.functional_call``), so such a term is a constant to them and
            its curvature is silently left out. Put a penalty into the model's output,
            or add its curvature as a separate operator (``2 lam I`` for
            ``lam ||theta||^2``).
        data: one ``(inputs, targets)`` pair, an iterable of such batches (list,
            ``DataLoader``), re-iterated for every product: batches are streamed
            (one on the device at a time), so memory does not grow with the data
            set. The operator must be a fixed matrix, so an iterable must yield the
            same batches each pass: a shuffling loader is refused
            (:func:`normalize_data`), and an iterable other than a list or tuple is
            checked on every product (its first batch's :func:`batch_fingerprint`
            and its number of samples), ``ValueError`` when they change. A batch of
            0 samples (an empty shard) is skipped: it adds nothing to the data-set loss.
        params: the parameters to differentiate (tensors of ``model`` or their
            names); default all parameters with ``requires_grad``.
        dtype: compute dtype; ``torch.float64`` evaluates a float32 model in
            double precision without touching it. Default: the parameters' dtype.
        reduction: ``"mean"`` or ``"sum"``, how ``loss_fn`` reduces over a batch
            (the samples along dim 0). Read from ``loss_fn.reduction`` when it has
            one; otherwise determined from the loss on the first batch (see
            :func:`detect_reduction`), and ``ValueError`` when the loss is neither
            a per-sample mean nor a sum there.
        eval_mode: evaluate the model in eval mode during products (its mode is
            restored afterwards). Default ``False`` keeps the mode as it is and
            warns when dropout or batch norm in train mode make the products
            depend on more than the parameters.
        process_group: a ``torch.distributed`` group over which the data is
            sharded; default the global group when one is initialized. Every rank
            then holds a shard of the data and sees the same full-data operator.
        check_finite: raise ``FloatingPointError`` on a NaN/Inf product.
        progress: show a progress bar over batches (for long data sets).
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
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        self.model = model
        self.loss_fn = loss_fn
        self._names, self._params = _select_params(model, params)
        self._shapes = [p.shape for p in self._params]
        self._numels = [p.numel() for p in self._params]
        self._dim = sum(self._numels)
        first = self._params[0]
        self._device = first.device
        if dtype is not None and not isinstance(dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype (e.g. torch.float64) or None, got {dtype!r}")
        self._dtype = dtype if dtype is not None else first.dtype
        if not self._dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point dtype, got {self._dtype}")
        # mixed precision: vectors, batch sums and solvers at least in float32
        self._vdtype = torch.promote_types(self._dtype, torch.float32)
        declared = resolve_reduction(loss_fn, reduction)
        self.eval_mode = bool(eval_mode)
        self.check_finite = bool(check_finite)
        self.progress = bool(progress)
        self._data = normalize_data(data)
        self._group = _resolve_group(process_group)
        self.num_matvecs = 0
        # per-batch graphs a subclass keeps between passes (_caches_graphs), valid for
        # the model state _cache_key and _cache_state describe (_check_cache)
        self._cache: dict[int, Any] = {}
        self._cache_key: tuple[Any, ...] | None = None
        self._cache_state: list[Tensor] = []
        self._fingerprint: bytes | None = None
        self._local_count = 0
        self._num_data = self._count_data()
        self.reduction: str = declared if declared is not None else self._detect_reduction()
        if not self.eval_mode:
            _warn_if_stochastic(model)

    # ------------------------------------------------------------------ interface
    @property
    def shape(self) -> tuple[int, int]:
        """``(P, P)`` with ``P`` the number of selected parameter entries."""
        return (self._dim, self._dim)

    @property
    def process_group(self) -> Any:
        """The ``torch.distributed`` group of several ranks its products are all-reduced
        over (``None``: one process, or a group of one). The solvers take their memory budget as the least over its ranks, so
        that every rank chooses the same mode and the same collectives."""
        return self._group

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the vectors the operator takes and returns (and so of the
        solvers' work): the compute dtype, raised to float32 for a bfloat16 or
        float16 one (:attr:`compute_dtype`)."""
        return self._vdtype

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype of each batch's forward pass and product: ``dtype=`` or the
        parameters'. Mixed-precision policy: with bfloat16/float16 parameters the
        products run in that dtype (the model as it is), the vector is rounded to
        it on the way in, and each batch's product is raised to float32
        (:attr:`dtype`) before the batches are summed; the solvers (Lanczos
        coefficients, reorthogonalization, Ritz values) work in float32 and
        float64. The error is then the bfloat16 product's own (measured in
        ``analyses/mixed_precision.py``), not a bfloat16 Krylov recurrence's."""
        return self._dtype

    @property
    def device(self) -> torch.device:
        """The device of the parameters, vectors and products."""
        return self._device

    @property
    def num_data(self) -> int:
        """``N``, the number of samples over all batches (and all ranks)."""
        return self._num_data

    @property
    def param_names(self) -> list[str]:
        """Names of the selected parameters, in the order of the flat vectors."""
        return list(self._names)

    def matvec(self, v: Tensor) -> Tensor:
        """The product ``C v`` for ``v`` of shape ``(P,)``; returns shape ``(P,)``."""
        v = self._check_vector(v, ndim=1)
        return self.matmat(v.unsqueeze(1)).squeeze(1)

    def matmat(self, V: Tensor) -> Tensor:
        """The products ``C V`` for ``V`` of shape ``(P, k)``; returns ``(P, k)``.

        The result's columns are stored one after the other (it is the transpose
        of a contiguous ``(k, P)`` tensor), which is what the Krylov solvers read.

        The ``k`` products share each batch's forward (and, where the backend
        allows, backward) pass. Costs ``k`` in :attr:`num_matvecs`.
        """
        V = self._check_vector(V, ndim=2)
        k = V.shape[1]
        if k == 0:
            return torch.zeros(self._dim, 0, dtype=self._vdtype, device=self._device)
        low = self._dtype != self._vdtype
        tangents = self.unflatten(V.to(self._dtype) if low else V)  # list of (k, *shape)
        out: Tensor | None = None
        with self._pass_modes():
            for b, inputs, targets in self._iter_batches():
                n_b = batch_size(targets)
                weight = n_b / self._num_data if self.reduction == "mean" else 1.0
                try:
                    prod = self.flatten(self._batch_matmat(b, inputs, targets, tangents))
                    if low:
                        prod = prod.to(self._vdtype)
                except RuntimeError as exc:
                    clear = _no_double_backward(exc, type(self).__name__)
                    if clear is None:
                        raise
                    raise clear from exc
                # the first batch's product (a fresh tensor) becomes the sum: no zero fill
                if out is None:
                    out = prod.mul_(weight) if weight != 1.0 else prod
                else:
                    out.add_(prod, alpha=weight)
        if out is None:
            # no batch of this rank holds samples (a shard of a data set smaller than the
            # number of ranks; N > 0 over all ranks, :meth:`_count_data`): it adds nothing
            out = torch.zeros(k, self._dim, dtype=self._vdtype, device=self._device).T
        if self._group is not None:
            out = out.contiguous()
            torch.distributed.all_reduce(out, group=self._group)
        self.num_matvecs += k
        # a NaN or Inf entry makes the sum non-finite; a non-finite sum of finite
        # entries (overflow) is told apart by the exact test, run only then
        if self.check_finite and not (
            math.isfinite(float(out.sum())) or bool(torch.isfinite(out).all())
        ):
            raise FloatingPointError(
                f"{type(self).__name__}: the product has NaN or Inf entries; "
                "check the loss and the parameters for non-finite values"
            )
        return out

    __matmul__ = matmat

    def to_scipy(self) -> Any:
        """A :class:`scipy.sparse.linalg.LinearOperator` view (numpy float64 in and out)."""
        from scipy.sparse.linalg import LinearOperator

        def _mm(x: np.ndarray) -> np.ndarray:
            X = torch.as_tensor(np.asarray(x, dtype=np.float64))
            squeeze = X.ndim == 1
            X = X.reshape(self._dim, -1).to(device=self._device, dtype=self._vdtype)
            Y = self.matmat(X).to(device="cpu", dtype=torch.float64).numpy()
            return Y[:, 0] if squeeze else Y

        return LinearOperator(
            shape=self.shape, dtype=np.float64, matvec=_mm, rmatvec=_mm, matmat=_mm
        )

    def flatten(self, tensors: Sequence[Tensor]) -> Tensor:
        """Parameter-shaped tensors -> one vector.

        ``tensors[i]`` has shape ``shape_i`` (returns ``(P,)``) or ``(k, *shape_i)``
        (returns ``(P, k)``).
        """
        if len(tensors) != len(self._shapes):
            raise ValueError(f"expected {len(self._shapes)} tensors, got {len(tensors)}")
        batched = tensors[0].dim() == len(self._shapes[0]) + 1
        if batched:
            k = tensors[0].shape[0]
            return torch.cat([t.reshape(k, -1) for t in tensors], dim=1).T
        return torch.cat([t.reshape(-1) for t in tensors])

    def unflatten(self, v: Tensor) -> list[Tensor]:
        """A vector ``(P,)`` -> parameter shapes; ``(P, k)`` -> ``(k, *shape_i)`` each."""
        if v.dim() == 1:
            return [c.view(s) for c, s in zip(v.split(self._numels), self._shapes)]
        k = v.shape[1]
        cols = standard_strides(v.T)
        return [c.reshape(k, *s) for c, s in zip(cols.split(self._numels, dim=1), self._shapes)]

    def params_vector(self) -> Tensor:
        """The current values of the selected parameters as one ``(P,)`` vector."""
        return self.flatten([p.detach().to(self._vdtype) for p in self._params])

    def check_deterministic(self, *, rtol: float = 1e-6, generator: torch.Generator | None = None) -> None:
        """Raise ``RuntimeError`` unless two products of one random vector agree.

        Costs two products. Fails when the data iterable reshuffles, or when
        dropout or batch norm in train mode make the operator random.
        """
        g = checks.generator("generator", generator, seed=0)
        v = torch.randn(self._dim, generator=g, dtype=torch.float64).to(self._device, self._dtype)
        a, b = self.matvec(v), self.matvec(v)
        err = float((a - b).norm() / a.norm().clamp_min(torch.finfo(self._dtype).tiny))
        if not err <= rtol:
            raise RuntimeError(
                f"{type(self).__name__} is not deterministic: two products of the same "
                f"vector differ by {err:.3g} (relative). Use data that yields the same "
                "batches each pass (no shuffling) and eval_mode=True for dropout/batch norm."
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(P={self._dim}, N={self._num_data}, dtype={self._dtype}, "
            f"device={self._device}, reduction={self.reduction!r})"
        )

    # ------------------------------------------------------------------ subclass API
    def _batch_matmat(
        self, batch_index: int, inputs: Any, targets: Tensor, tangents: list[Tensor]
    ) -> list[Tensor]:
        """Curvature of one batch's (reduced) loss times ``k`` vectors.

        Args:
            batch_index: position of the batch in the data pass (for caches).
            inputs, targets: the batch, already on the device and in the dtype.
            tangents: ``tangents[i]`` of shape ``(k, *shape_i)``.

        Returns:
            The products in the same layout as ``tangents``.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def _loss_input(self, outputs: Any) -> Any:
        """What ``loss_fn`` receives of the model's ``outputs``: all of them here;
        a subclass that linearizes one tensor of them gives that tensor."""
        return outputs

    def _functional_state(self, params: Sequence[Tensor]) -> dict[str, Tensor]:
        """:func:`functional_state` with ``params`` for the selected parameters, in the
        compute dtype."""
        return functional_state(self.model, dict(zip(self._names, params)), self._dtype)

    def _leaf_params(self) -> list[Tensor]:
        """Fresh leaf copies of the selected parameters in the compute dtype."""
        return [p.detach().to(self._dtype).requires_grad_(True) for p in self._params]

    @property
    def _caches_graphs(self) -> bool:
        """Whether the products keep each batch's graphs in ``_cache`` (keyed by the
        batch's position in the data) from one pass to the next; a subclass that does
        says so, and :meth:`_check_cache` then drops them when the model changes."""
        return False

    def clear_cache(self) -> None:
        """Free the cached graphs and the copy of the model's state kept with them."""
        self._cache.clear()
        self._cache_key = None
        self._cache_state = []

    def _check_cache(self) -> None:
        """Drop the cached graphs unless the model is exactly as when they were built.

        Run once per pass, before its first batch (inside the pass's modes). A graph
        depends on every parameter of the model (selected or not), every buffer (batch
        norm's running statistics) and every module's train/eval mode. The key holds
        each tensor's identity, version counter (bumped by in-place ops: an optimizer
        step) and storage address (``p.data = new``, as
        ``torch.nn.utils.vector_to_parameters`` does, and ``.to()``), and the modes;
        none of them sees an edit through ``.data`` (``p.data.add_(...)``), so when the
        key matches, the values are compared exactly (:func:`_equal_all`) with a copy
        taken when the graphs were built. A tensor
        holding NaN never equals its copy: the graphs are then rebuilt every pass.

        Memory: the copy is one more set of all the model's parameters and buffers, on
        their device, whatever ``params`` selects: small beside the graphs of a batch of
        many samples (each batch's activations, kept for the backward), not beside those
        of a few samples of a large model (use ``backend="backprop"`` there).
        """
        tensors = [*self.model.parameters(), *self.model.buffers()]
        key = (tuple((id(t), t._version, t.data_ptr()) for t in tensors)
               + tuple(m.training for m in self.model.modules()))
        if key == self._cache_key and _equal_all(tensors, self._cache_state):
            return
        self._cache.clear()
        self._cache_key = key
        self._cache_state = [t.detach().clone() for t in tensors]

    @contextlib.contextmanager
    def _pass_modes(self) -> Iterator[None]:
        """The modes of a pass over the data whose graphs are differentiated: the model's
        eval mode (if ``eval_mode``), the math attention kernel (twice differentiable)
        and float32 at float32's precision; all given back on leaving."""
        with eval_mode(self.model, self.eval_mode), math_attention(), ieee_float32():
            yield

    def _iter_batches(self) -> Iterator[tuple[int, Any, Tensor]]:
        """One pass over the data: ``(b, inputs, targets)`` for every batch that holds
        samples, ``b`` its position in the data (the key of the cached graphs), the
        tensors on the device and in the compute dtype. A batch of 0 samples is skipped:
        its weight ``n_b / N`` is 0 (for a sum its loss is 0), and a mean over no samples
        is NaN (an empty shard when there are more ranks than samples). Run inside
        :meth:`_pass_modes`."""
        if self._caches_graphs:
            self._check_cache()
        it: Iterable[Batch] = self._data
        if self.progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc=type(self).__name__, leave=False, unit="batch")
        n = 0
        for b, batch in enumerate(it):
            inputs, targets = _split_batch(batch)
            if b == 0 and self._fingerprint is not None:
                self._check_same_batches(batch_fingerprint(batch), None)
            n_b = batch_size(targets)
            n += n_b
            if n_b == 0:
                continue
            yield (b, batch_to(inputs, self._device, self._dtype),
                   batch_to(targets, self._device, self._dtype))
        if self._fingerprint is not None:
            self._check_same_batches(None, n)

    def _check_same_batches(self, fingerprint: bytes | None, count: int | None) -> None:
        """Raise ``ValueError`` when a pass over a (non-list) iterable yields another
        first batch, or another number of samples, than the pass at construction."""
        if fingerprint is not None and fingerprint != self._fingerprint:
            what = "its first batch differs from the first pass's"
        elif count == 0 and self._local_count > 0:
            raise self._used_up()
        elif count is not None and count != self._local_count:
            what = f"it yielded {count} samples, the first pass {self._local_count}"
        else:
            return
        raise ValueError(
            f"{type(self).__name__}: data does not repeat the same batches on every pass "
            f"({what}): a shuffling sampler, random augmentation or a re-drawn sample makes "
            "every product one of a different matrix. Use a loader with shuffle=False and "
            "deterministic transforms; for a random sample of the data set, draw it once "
            "with spectra.subsample(dataset, n, seed=...)."
        )

    def _used_up(self) -> ValueError:
        """The error for data that yields no samples on a pass after the first pass
        (at construction) counted some: a one-pass iterable."""
        return ValueError(
            f"{type(self).__name__}: data yielded no batches on this pass: a one-pass "
            f"iterable ({type(self._data).__name__}, one whose __iter__ does not start "
            "again) is used up by the first pass; pass a list of batches or a DataLoader, "
            "which are iterated again for every product"
        )

    def _count_data(self) -> int:
        if _one_pass(self._data):  # counting would use it up, or never end
            raise ValueError(
                f"{type(self).__name__}: data is a one-pass iterator "
                f"({type(self._data).__name__}): every product is a pass over the data, and "
                "a generator or an iterator (itertools.cycle is one) is used up by the "
                "first pass or never ends; pass a list of batches or a DataLoader, which "
                "are iterated again for every product"
            )
        n = 0
        # lists and tuples are fixed; any other iterable (a DataLoader, an iterable of
        # one's own) is fingerprinted on its first batch and checked on every product
        fixed = isinstance(self._data, (list, tuple))
        for b, batch in enumerate(self._data):
            if b == 0 and not fixed:
                self._fingerprint = batch_fingerprint(batch)
            _, targets = _split_batch(batch)
            n += batch_size(targets)
        self._local_count = n
        if self._group is not None:
            # nccl all-reduces CUDA tensors only: the count goes where the group's collectives run
            t = torch.tensor([n], dtype=torch.float64, device=collective_device(self._group, self._device))
            torch.distributed.all_reduce(t, group=self._group)
            n = int(t.item())
        if n == 0:
            raise ValueError("data holds no samples: expected (inputs, targets) batches")
        return n

    def _detect_reduction(self) -> str:
        """:func:`detect_reduction` on the first batch that holds samples, in the compute
        dtype, in eval mode, without gradients; with sharded data every rank that holds
        samples must agree, and a rank that holds none takes their answer."""
        state = self._functional_state([p.detach().to(self._dtype) for p in self._params])

        def loss_of(inputs: Any, targets: Any) -> float:
            outputs = functional_call(self.model, state, (inputs,))
            return float(call_loss(self.loss_fn, self._loss_input(outputs), targets))

        found: str | None = None
        failure: Exception | None = None
        try:
            batch = self._first_batch_with_samples()
            if batch is not None:
                inputs, targets = batch
                _check_samples(inputs, targets)
                inputs = batch_to(inputs, self._device, self._dtype)
                targets = batch_to(targets, self._device, self._dtype)
                # eval mode: dropout noise and batch-norm batch statistics would make the
                # halves disagree for reasons that have nothing to do with the reduction
                with eval_mode(self.model), torch.no_grad():
                    found = detect_reduction(loss_of, inputs, targets, dtype=self._dtype)
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the ranks agree
            failure = exc
        if self._group is not None:
            # votes for "mean", "sum", and failures, summed over the ranks; every rank
            # takes part before any raises, and a rank without samples casts none
            votes = [0.0, 0.0, 1.0 if failure is not None else 0.0]
            if found is not None:
                votes[REDUCTIONS.index(found)] = 1.0
            t = torch.tensor(votes, dtype=torch.float64,
                             device=collective_device(self._group, self._device))
            torch.distributed.all_reduce(t, group=self._group)
            means, sums, failures = (float(x) for x in t)
            if failure is None and (failures > 0 or (means > 0) == (sums > 0)):
                here = f"this one found {found!r}" if found is not None else "this one holds no samples"
                raise ValueError(
                    "the ranks disagree on how loss_fn reduces a batch (or one rank could "
                    f"not tell; {here}); pass reduction='mean' or 'sum'"
                )
            found = found or REDUCTIONS[0 if means > 0 else 1]
        if failure is not None:
            raise failure
        assert found is not None
        return found

    def _first_batch_with_samples(self) -> tuple[Any, Any] | None:
        """``(inputs, targets)`` of the first batch holding samples (one more ``iter()``
        of the data); ``None`` when this rank holds no samples (:meth:`_count_data`).
        ``ValueError`` when the pass yields none although the first pass counted some:
        a one-pass iterable, used up by the count."""
        if self._local_count == 0:
            return None
        for batch in self._data:
            inputs, targets = _split_batch(batch)
            if batch_size(targets) > 0:
                return inputs, targets
        raise self._used_up()

    def _check_vector(self, v: Tensor, ndim: int) -> Tensor:
        if not isinstance(v, Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(v).__name__}")
        if v.dim() != ndim or v.shape[0] != self._dim:
            want = f"({self._dim},)" if ndim == 1 else f"({self._dim}, k)"
            raise ValueError(f"expected a tensor of shape {want}, got {tuple(v.shape)}")
        return v.to(device=self._device, dtype=self._vdtype)


# ---------------------------------------------------------------------- module helpers
def call_loss(loss_fn: LossFn, outputs: Any, targets: Any) -> Tensor:
    """``loss_fn(outputs, targets)``, the one place every operator evaluates the loss.

    Refuses, with ``ValueError``: class-index targets outside ``[0, C)`` (other than
    ``ignore_index``) of a cross-entropy or NLL loss (``nn.CrossEntropyLoss``,
    ``nn.NLLLoss``, ``F.cross_entropy``, ``F.nll_loss``) over ``C`` classes (dim 1 of
    ``outputs``, dim 0 when 1-d), which torch reports as an index error on the CPU and
    a device-side assert on a GPU; targets of another shape than the outputs for a
    mean-squared error (``nn.MSELoss``, ``F.mse_loss``), which torch broadcasts (outputs
    ``(n, 1)`` against targets ``(n,)`` give an ``(n, n)`` difference) with only a
    warning; and a return value that is not a 0-d tensor (a per-sample tensor, a
    Python float that carries no graph).
    """
    _check_class_targets(loss_fn, outputs, targets)
    _check_regression_targets(loss_fn, outputs, targets)
    loss = loss_fn(outputs, targets)
    if isinstance(loss, Tensor) and loss.dim() == 0:
        return loss
    got = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else (
        f"a {type(loss).__name__}")
    raise ValueError(
        f"loss_fn must return a scalar tensor (the batch's loss reduced with 'mean' or "
        f"'sum'), got {got}"
    )


def _check_class_targets(loss_fn: LossFn, outputs: Any, targets: Any) -> None:
    # the exact classes: a subclass may reshape its inputs (B, T, V) -> (B T, V) first
    if type(loss_fn) in (nn.CrossEntropyLoss, nn.NLLLoss):
        ignore = loss_fn.ignore_index
    elif loss_fn is F.cross_entropy or loss_fn is F.nll_loss:
        ignore = -100
    else:
        return
    if not (isinstance(outputs, Tensor) and isinstance(targets, Tensor)) or outputs.dim() == 0:
        return
    if targets.is_floating_point() or targets.is_complex() or targets.numel() == 0:
        return  # class probabilities, or nothing to check
    if is_functorch_wrapped_tensor(targets):
        return  # under vmap over samples: a value test would be data-dependent control flow
    C = int(outputs.shape[1] if outputs.dim() >= 2 else outputs.shape[0])
    if _CHECKED_TARGETS.get(targets) == (C, ignore, targets._version):
        return  # checked at an earlier product: no second read (a sync on a GPU)
    bad = ((targets < 0) | (targets >= C)) & (targets != ignore)
    if bool(bad.any()):
        first = int(targets[bad].reshape(-1)[0])
        raise ValueError(
            f"targets must be class indices in [0, {C - 1}] for the model's {C} classes "
            f"(dim {1 if outputs.dim() >= 2 else 0} of its outputs {tuple(outputs.shape)}), or "
            f"ignore_index={ignore}; {int(bad.sum())} of {targets.numel()} are not, e.g. {first}"
        )
    _CHECKED_TARGETS[targets] = (C, ignore, targets._version)


# The target tensors found valid, by identity, with (classes, ignore_index, version): a
# data set held as tensors is read once, not at every product (an in-place change bumps
# the version: read again); batches a loader or a move to another device makes anew are
# checked each time. Entries go with their tensors.
_CHECKED_TARGETS: WeakIdKeyDictionary = WeakIdKeyDictionary()


def _check_regression_targets(loss_fn: LossFn, outputs: Any, targets: Any) -> None:
    if not (type(loss_fn) is nn.MSELoss or loss_fn is F.mse_loss):
        return
    if isinstance(outputs, Tensor) and isinstance(targets, Tensor) and outputs.shape != targets.shape:
        raise ValueError(
            f"the MSE loss needs targets of the outputs' shape {tuple(outputs.shape)}, got "
            f"{tuple(targets.shape)}: torch would broadcast them into another loss"
            + (" (reshape the targets to (n, 1))" if targets.dim() == 1 and outputs.dim() == 2
               and outputs.shape[1] == 1 else "")
        )


def _equal_all(tensors: list[Tensor], kept: list[Tensor]) -> bool:
    """Whether each tensor equals its kept copy exactly (same shape and values; NaN never
    equals). On the CPU one ``torch.equal`` each (no temporaries); on an accelerator one
    host synchronization in all, not one per tensor."""
    if len(tensors) != len(kept) or any(t.shape != k.shape for t, k in zip(tensors, kept)):
        return False
    if all(t.device.type == "cpu" for t in tensors):
        return all(torch.equal(t.detach(), k) for t, k in zip(tensors, kept))
    if not tensors:
        return True
    where = tensors[0].device
    differs = [torch.ne(t.detach(), k).any().to(where) for t, k in zip(tensors, kept)]
    return not bool(torch.stack(differs).any())


def _one_pass(data: Any) -> bool:
    """Whether ``data`` is a generator, one of Python's own iterators (``iter(list)``,
    ``map``, ``zip``, ``itertools.cycle``, ...) or a ``DataLoader``'s iterator
    (``iter(loader)``), which a pass uses up or never ends.
    Told from the type alone: calling ``iter()`` could draw from the global RNG (a
    DataLoader's sampler) or start a loader's workers; a class of one's own whose
    ``__iter__`` rewinds and returns itself is left alone."""
    loader_iter = getattr(torch.utils.data.dataloader, "_BaseDataLoaderIter", ())
    return inspect.isgenerator(data) or isinstance(data, loader_iter) or (
        isinstance(data, Iterator) and type(data).__module__ in ("builtins", "itertools"))


def _check_samples(inputs: Any, targets: Any) -> None:
    """Refuse a first batch whose inputs tensor and targets tensor differ in dim 0 when
    the reduction is to be detected: :func:`detect_reduction` halves the batch along dim
    0 of both, so a mismatch (a mix-up of the data, or a sequence-first model) is named
    here rather than met as a broadcasting error. A declared ``reduction`` skips this:
    targets laid out otherwise (flattened tokens, a subset of a graph's nodes) are the
    loss function's business."""
    if (isinstance(inputs, Tensor) and isinstance(targets, Tensor) and inputs.dim() > 0
            and targets.dim() > 0 and inputs.shape[0] != targets.shape[0]):
        raise ValueError(
            f"the first batch of data: inputs of shape {tuple(inputs.shape)} and targets of "
            f"shape {tuple(targets.shape)} hold different numbers of samples along dim 0 "
            f"({inputs.shape[0]} and {targets.shape[0]}), so the batch cannot be halved to "
            "tell how loss_fn reduces it: put the samples along dim 0 of both (a recurrent "
            "model: batch_first=True), or pass reduction='mean' or 'sum'"
        )


def stack_columns(cols: Sequence[Sequence[Tensor]]) -> list[Tensor]:
    """Per-vector products ``cols[j][i]`` (vector ``j``, parameter ``i``) -> ``(k, *shape_i)``.

    One vector is a view (no copy); more are stacked.
    """
    if len(cols) == 1:
        return [t.unsqueeze(0) for t in cols[0]]
    return [torch.stack(parts) for parts in zip(*cols)]


def _no_double_backward(exc: RuntimeError, operator: str) -> RuntimeError | None:
    """When ``exc`` says that an op has no derivative of its backward ("derivative
    for aten::X is not implemented"), an error naming the op and what to do
    instead; else ``None``."""
    msg = str(exc)
    if not ("derivative for" in msg and "not implemented" in msg):
        return None
    op = msg.split("derivative for", 1)[1].split("is not implemented", 1)[0].strip()
    return RuntimeError(
        f"{operator}: the model's forward uses {op}, whose backward cannot be "
        "differentiated again, and a curvature product needs exactly that (it "
        "differentiates the gradient). Attention through scaled_dot_product_attention "
        "is already switched to its math kernel here; a module that forces a fused "
        "kernel or calls one directly (flash or memory-efficient attention, fused "
        "layers) must use a plain-PyTorch (math/eager) implementation instead, e.g. "
        "attn_implementation='eager' for a transformers model, or set its eval-mode "
        f"switch for it. Original error: {msg}"
    )


def _select_params(
    model: nn.Module, params: Sequence[Tensor | str] | None
) -> tuple[list[str], list[Tensor]]:
    named = list(model.named_parameters())
    if params is None:
        chosen = trainable_parameters(model)
        if not chosen:
            raise ValueError("the model has no parameters with requires_grad=True")
        return [n for n, _ in chosen], [p for _, p in chosen]
    if isinstance(params, (str, Tensor)):
        # a name would be iterated as characters, a tensor as its rows
        what = repr(params) if isinstance(params, str) else f"a tensor of shape {tuple(params.shape)}"
        raise TypeError(f"params must be a sequence of parameters or names, got {what}; "
                        "wrap one in a list: params=[...]")
    by_id = {id(p): n for n, p in named}
    by_name = dict(named)
    names: list[str] = []
    for p in params:
        if isinstance(p, str):
            if p not in by_name:
                tied = dict(model.named_parameters(remove_duplicate=False)).get(p)
                if tied is not None:  # a second name of a shared (tied) parameter
                    raise ValueError(f"{p!r} is the parameter {by_id[id(tied)]!r} under another "
                                     f"name (tied weights); name it {by_id[id(tied)]!r}")
                raise ValueError(f"no parameter named {p!r} in the model; it has {sorted(by_name)}")
            names.append(p)
        elif isinstance(p, Tensor):
            if id(p) not in by_id:
                raise ValueError(
                    f"a tensor of shape {tuple(p.shape)} in params is not a parameter of the model"
                )
            names.append(by_id[id(p)])
        else:
            raise TypeError(f"params entries must be tensors or names, got {type(p).__name__}")
    if not names:
        raise ValueError("params is empty: select at least one parameter")
    if len(set(names)) != len(names):
        raise ValueError("params lists a parameter more than once")
    return names, [by_name[n] for n in names]


def resolve_reduction(loss_fn: LossFn, reduction: str | None) -> str | None:
    """The reduction passed or declared by ``loss_fn.reduction``; ``None`` when
    neither says (then it is determined from the loss, :func:`detect_reduction`).
    ``nn.KLDivLoss``'s ``"batchmean"`` (the sum over a batch divided by its size) is
    a per-sample mean: ``"mean"``."""
    attr = getattr(loss_fn, "reduction", None)
    if attr == "batchmean":
        attr = "mean"
    if reduction is None:
        reduction = attr
    elif attr is not None and attr != reduction:
        raise ValueError(f"reduction={reduction!r} contradicts loss_fn.reduction={attr!r}")
    if reduction is not None and reduction not in REDUCTIONS:
        raise ValueError(
            f"the loss must reduce a batch to a scalar with 'mean' or 'sum', got reduction={reduction!r}"
        )
    return reduction


def _reduction_rtol(dtype: torch.dtype) -> float:
    """Relative tolerance of the comparison in :func:`detect_reduction`.

    Round-off separates a loss from the same loss put together from its halves:
    the order of the summation over samples, and matrix products that a library
    may block differently for ``n`` and ``n / 2`` rows. In float32 that is about
    ``1e-6`` of the loss on batches of thousands (``log2(n)`` roundings of
    ``6e-8``; measured: below ``1e-7`` for 65536 samples), and ``1e-4`` leaves
    a margin of 100 for the loss's own cancellations; float64's ``1e-9`` is a
    larger margin still over its ``1e-14``. bfloat16 and float16 round each
    partial sum at ``4e-3`` and ``5e-4``: their tolerance is 16 units of their
    precision (``0.125`` and ``0.016``; with ``1e-4`` bfloat16 told a linear model's
    batch of 64 wrongly or not at all in 33 of 50 seeds). Mean and sum of
    non-negative per-sample losses differ by at least a third (halves of 1 and 2
    samples), above every tolerance, so at most one of them matches.
    """
    eps = torch.finfo(dtype).eps
    return 1e-9 if eps < 1e-10 else max(1e-4, 16 * eps)


def detect_reduction(
    loss_of: Callable[[Any, Any], float],
    inputs: Any,
    targets: Any,
    *,
    dtype: torch.dtype = torch.float32,
) -> str:
    """Whether a batch loss is the mean (``"mean"``) or the sum (``"sum"``) of the
    losses of its samples, told from its values on the batch and its two halves.

    The batch of ``n`` samples (dim 0 of every tensor in ``inputs`` and ``targets``,
    ``n`` read from ``targets``) is split into its first ``h = n // 2`` samples and
    the other ``n - h``, and the loss ``L`` of the whole is compared with
    ``(h L_1 + (n - h) L_2) / n`` (a per-sample mean) and with ``L_1 + L_2`` (a
    sum), relative to the magnitude of the terms (:func:`_reduction_rtol`). Exactly
    one must match.

    This is the property the operators need: the data-set loss is then
    ``sum_b (n_b / N) L_b`` or ``sum_b L_b``. A per-token mean over sequences
    (outputs ``(n, T, C)``, targets ``(n, T)``) in which every sequence counts the
    same number of tokens is a mean over the sequences too: ``"mean"``, batches
    weighted by their number of sequences ``n_b / N``. When sequences count
    different numbers of tokens (padding with ``ignore_index``) the halves
    usually differ in tokens and the loss is refused. When only ``T`` changes
    from batch to batch the first batch cannot show it, and batches are still
    weighted by sequences, not tokens; for a mean over all tokens of the data
    set use a sum divided by the data set's token count (detected as ``"sum"``).
    A mean plus a constant is still a mean; a function of the mean (its square), a
    maximum or a median is neither. (A weight penalty read from ``model.parameters()``
    inside the loss would pass as such a constant here, and it is one to the
    operators too: its curvature is left out, see :class:`CurvatureOperator`'s
    ``loss_fn``.)

    Args:
        loss_of: ``loss_of(inputs, targets) -> float``, the reduced loss of a batch
            (the model's forward included).
        inputs, targets: one batch: tensors, or mappings, tuples or lists of them.
            Tensors whose dim 0 is ``n`` (and lists of ``n`` non-tensor items) are
            split; any other leaf is passed whole to both halves.
        dtype: the dtype the loss is computed in (sets the tolerance).

    Returns:
        ``"mean"`` or ``"sum"``.

    Raises:
        ValueError: the batch has fewer than 2 samples (a mean and a sum of one
            sample are the same number), or the loss matches neither rule, or both
            (a loss of 0, or values that cancel).
    """
    n = batch_size(targets)
    advice = "pass reduction='mean' or reduction='sum' to say how loss_fn reduces a batch"
    if n < 2:
        raise ValueError(
            f"cannot tell how loss_fn reduces a batch: it has no `reduction` attribute and "
            f"the first batch holds {n} sample{'s' if n != 1 else ''}, on which a mean and a sum "
            f"are the same number; {advice}"
        )
    h = n // 2
    whole = loss_of(inputs, targets)
    try:
        first = loss_of(_slice_samples(inputs, 0, h, n), _slice_samples(targets, 0, h, n))
        second = loss_of(_slice_samples(inputs, h, n, n), _slice_samples(targets, h, n, n))
    except Exception as exc:
        raise ValueError(
            f"cannot tell how loss_fn reduces a batch: it has no `reduction` attribute, and "
            f"evaluating it on the halves ({h} and {n - h} samples along dim 0) of the first "
            f"batch of {n} failed ({type(exc).__name__}: {exc}); {advice}"
        ) from exc
    rtol = _reduction_rtol(dtype)
    as_mean = (h * first + (n - h) * second) / n
    as_sum = first + second
    mean_scale = max(abs(whole), (h * abs(first) + (n - h) * abs(second)) / n)
    sum_scale = max(abs(whole), abs(first) + abs(second))
    is_mean = abs(whole - as_mean) <= rtol * mean_scale
    is_sum = abs(whole - as_sum) <= rtol * sum_scale
    if is_mean != is_sum and math.isfinite(whole):
        return "mean" if is_mean else "sum"
    found = (
        f"on the first batch of {n} samples its value is {whole:.9g}, and on the halves of "
        f"{h} and {n - h} samples {first:.9g} and {second:.9g}: "
    )
    if not math.isfinite(whole):
        why = "a non-finite loss tells nothing"
    elif is_mean:
        why = (
            f"the mean of the halves ({as_mean:.9g}) and their sum ({as_sum:.9g}) both match, "
            "so the two cannot be told apart here"
        )
    else:
        why = (
            f"neither the mean of the halves ({as_mean:.9g}) nor their sum ({as_sum:.9g}) matches "
            f"(to a relative {rtol:g}), so the loss is not a per-sample mean or sum and the "
            "batch weights n_b / N (mean) or 1 (sum) of the data-set loss are not defined"
        )
    raise ValueError(
        f"cannot tell how loss_fn reduces a batch: it has no `reduction` attribute; {found}{why}; "
        f"{advice}"
    )


def _warn_if_stochastic(model: nn.Module) -> None:
    culprits = sorted(
        {type(m).__name__ for m in model.modules() if isinstance(m, _STOCHASTIC_MODULES) and m.training}
    )
    if culprits:
        warnings.warn(
            f"the model is in train mode with {', '.join(culprits)}: dropout makes the "
            "products random and batch norm makes them depend on the batch composition. "
            "Pass eval_mode=True (or call model.eval()) for the Hessian of the eval-mode loss.",
            stacklevel=3,
        )


def _resolve_group(group: Any) -> Any:
    import torch.distributed as dist

    if group is not None and not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("process_group was given but torch.distributed is not initialized")
    return several_ranks(group)


# ---------------------------------------------------------------------- data helpers
def normalize_data(data: Any) -> Iterable[Batch]:
    """One ``(X, y)`` pair becomes a one-batch list; iterables are kept as they are.

    A ``DataLoader`` whose sampler draws a new order every pass (``shuffle=True``,
    a ``RandomSampler``, ``SubsetRandomSampler`` or ``WeightedRandomSampler``, or any
    sampler holding a ``generator``) is refused with ``ValueError``: the operator
    must be one fixed matrix. Loaders that change their batches in other ways
    (random augmentation, a sampler that reshuffles by itself) are caught on the
    first product instead, by the first batch's fingerprint (:func:`batch_fingerprint`).
    """
    if is_pair(data):
        return [data]
    if isinstance(data, Tensor):
        raise TypeError("data must be (inputs, targets) or an iterable of such batches, got a tensor")
    if not isinstance(data, Iterable):
        raise TypeError(
            f"data must be (inputs, targets) or an iterable of such batches, got {type(data).__name__}"
        )
    shuffler = _shuffling_sampler(data)
    if shuffler is not None:
        raise ValueError(
            f"data is a loader whose {shuffler} draws a new order of the samples every pass, "
            "so every product would be of a different matrix. Use a loader with shuffle=False "
            "(a SequentialSampler); for a random sample of the data set, draw it once with "
            "spectra.subsample(dataset, n, seed=...) and load that in order."
        )
    return data


def is_pair(data: Any) -> bool:
    """Whether ``data`` is one ``(inputs, targets)`` pair rather than a sequence of
    batches: a tuple of two items whose second is a tensor (the targets), whatever the
    inputs are (tensors, a mapping or tuple of them, an object of one's own). A tuple
    of batches never has a bare tensor second: each of its batches is a pair."""
    return isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], Tensor)


_RANDOM_SAMPLERS = (
    torch.utils.data.RandomSampler,
    torch.utils.data.SubsetRandomSampler,
    torch.utils.data.WeightedRandomSampler,
)


def _shuffling_sampler(data: Any) -> str | None:
    """The name of the sampler of a loader-like ``data`` (its ``sampler`` and
    ``batch_sampler``, and the samplers they wrap) that draws a new order every
    pass: a random sampler of ``torch.utils.data``, or one holding a ``generator``;
    ``None`` when there is none. A ``DistributedSampler`` repeats its order until
    ``set_epoch`` is called, so it is not one."""
    for attr in ("sampler", "batch_sampler"):
        s, depth = getattr(data, attr, None), 0
        while s is not None and depth < 4:
            if isinstance(s, _RANDOM_SAMPLERS) or getattr(s, "generator", None) is not None:
                return f"{attr} ({type(s).__name__})"
            s, depth = getattr(s, "sampler", None), depth + 1
    return None


def batch_fingerprint(batch: Any, values: int = 256) -> bytes:
    """A cheap fingerprint of one batch: the shapes of its tensors and up to
    ``values`` evenly spaced entries of each (exact bytes, in float64), so two
    passes that yield different first batches (another order, another random
    augmentation) are told apart. Costs one small device-to-host copy per tensor."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)

    def visit(x: Any) -> None:
        if isinstance(x, Tensor):
            t = x.detach().reshape(-1)
            t = t[:: max(1, t.numel() // values)][:values]
            h.update(repr(tuple(x.shape)).encode())
            h.update(t.to(device="cpu", dtype=torch.float64).numpy().tobytes())
        elif isinstance(x, Mapping):
            for k in sorted(x, key=str):
                h.update(str(k).encode())
                visit(x[k])
        elif isinstance(x, (tuple, list)):
            for v in x:
                visit(v)
        else:
            h.update(repr(x).encode())

    visit(batch)
    return h.digest()


def _split_batch(batch: Any) -> tuple[Any, Tensor]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise TypeError(
        f"each batch must be an (inputs, targets) pair, got {type(batch).__name__}"
        + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
    )


def batch_size(targets: Any) -> int:
    """Samples in a batch's ``targets``: dim 0 of a tensor (1 for a 0-d one); of a
    mapping, tuple or list holding tensors, dim 0 of the first one (nested
    structures included: ``(labels, boxes)`` counts samples, not its two parts);
    else (a list of labels, say) its length."""
    if isinstance(targets, Tensor):
        return int(targets.shape[0]) if targets.dim() > 0 else 1
    first = _first_tensor(targets)
    if first is not None:
        return batch_size(first)
    return len(targets)


def _first_tensor(x: Any) -> Tensor | None:
    if isinstance(x, Tensor):
        return x
    values = x.values() if isinstance(x, Mapping) else x if isinstance(x, (tuple, list)) else ()
    for v in values:
        t = _first_tensor(v)
        if t is not None:
            return t
    return None


def _slice_samples(x: Any, start: int, stop: int, n: int) -> Any:
    """Samples ``start:stop`` of a batch of ``n``: dim 0 of every tensor whose dim 0
    is ``n``, inside mappings, tuples and lists; a list of ``n`` non-tensor items is
    sliced itself; anything else is kept whole."""
    if isinstance(x, Tensor):
        return x[start:stop] if x.dim() > 0 and x.shape[0] == n else x
    if isinstance(x, Mapping):
        return type(x)({k: _slice_samples(v, start, stop, n) for k, v in x.items()})
    if isinstance(x, (tuple, list)):
        if len(x) == n and not any(isinstance(v, (Tensor, Mapping, tuple, list)) for v in x):
            return x[start:stop]
        return _same_sequence(x, [_slice_samples(v, start, stop, n) for v in x])
    return x


def functional_state(model: nn.Module, values: Mapping[str, Tensor],
                     dtype: torch.dtype | None) -> dict[str, Tensor]:
    """The mapping for ``torch.func.functional_call(model, ...)``: ``values`` for the
    parameters they name; every other parameter detached and cast to ``dtype`` (``None``:
    its own); every buffer detached, cast when floating, and cloned, so that batch norm
    in train mode cannot update the model's running statistics (``.to`` of a buffer
    already in ``dtype`` returns its own storage)."""
    state: dict[str, Tensor] = {}
    for name, p in model.named_parameters():
        state[name] = values[name] if name in values else p.detach().to(dtype or p.dtype)
    for name, buf in model.named_buffers():
        cast = buf.detach().to(dtype) if (dtype is not None and buf.is_floating_point()) else buf.detach()
        state[name] = cast.clone()
    return state


def batch_to(x: Any, device: torch.device | None, dtype: torch.dtype | None = None) -> Any:
    """A batch (or a part of one) on ``device``, as the operators move each batch: every
    tensor of ``x`` (a tensor, or mappings, tuples and lists of them) on ``device``, the
    floating-point ones cast to ``dtype`` when it is given; other leaves as they are. A
    tensor already there is returned as it is (no copy); ``device=None`` leaves each
    tensor where it is."""
    if isinstance(x, Tensor):
        if x.is_floating_point():
            return x.to(device=device, dtype=dtype)
        return x.to(device=device)
    if isinstance(x, Mapping):
        return type(x)({k: batch_to(v, device, dtype) for k, v in x.items()})
    if isinstance(x, (tuple, list)):
        return _same_sequence(x, [batch_to(v, device, dtype) for v in x])
    return x


def _same_sequence(x: tuple | list, items: list) -> tuple | list:
    """``items`` in a sequence of ``x``'s type: a list, a tuple, or a named tuple (whose
    constructor takes the fields one by one)."""
    return type(x)(*items) if hasattr(x, "_fields") else type(x)(items)


__all__ = [
    "REDUCTIONS", "Batch", "CurvatureOperator", "LossFn", "batch_fingerprint", "batch_size",
    "batch_to", "call_loss", "detect_reduction", "functional_state", "is_pair", "normalize_data",
    "resolve_reduction",
    "stack_columns",
]
