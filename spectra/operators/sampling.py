"""A fixed random subsample of a data set, and λ1's spread across subsamples.

The Hessian of a large training set is usually probed on a subsample of it.
The subsample must be drawn once (a fixed matrix: the operators refuse loaders
that reshuffle) and reproducibly (a seeded generator), and the spread of the
result across subsamples says whether the sample is large enough (PyHessian
issue 5: the top eigenvalue of a ResNet on 200 vs 2000 CIFAR images).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from spectra.operators.base import Batch, LossFn, _same_sequence, batch_size, is_pair
from spectra.utils import checks


def subsample_indices(num_samples: int, n: int, *, seed: int = 0) -> Tensor:
    """``n`` distinct indices of ``range(num_samples)`` drawn uniformly without
    replacement by a ``torch.Generator`` seeded with ``seed``, in increasing order
    (int64, shape ``(n,)``). The same ``(num_samples, n, seed)`` give the same
    indices on every machine and every rank."""
    n = checks.integer("n", n, 1)
    seed = checks.integer("seed", seed)
    if n > num_samples:
        raise ValueError(f"n={n} is more than the data set's {num_samples} samples")
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(num_samples, generator=g)[:n].sort().values


def subsample(data: Any, n: int, *, seed: int = 0) -> Any:
    """A fixed random subsample of ``n`` samples of ``data``, drawn with ``seed``.

    Args:
        data: an ``(inputs, targets)`` pair of tensors (dim 0 the samples; inputs
            may also be a mapping, tuple, list or named tuple of such tensors), or a
            map-style ``torch.utils.data.Dataset`` (anything with ``__len__`` and
            ``__getitem__``).
        n: the number of samples (at most the data set's).
        seed: the seed of the draw (:func:`subsample_indices`).

    Returns:
        For a pair: the pair of the chosen rows (``(inputs[idx], targets[idx])``,
        a copy; inputs keep their type, a ``BatchEncoding`` stays one). For a data set:
        a ``torch.utils.data.Subset`` of it, to be loaded in order
        (``DataLoader(subset, batch_size=..., shuffle=False)``).
    """
    if is_pair(data):
        N = batch_size(data[1])
        _check_rows(data[0], N)
        idx = subsample_indices(N, n, seed=seed)
        return _slice_rows(data[0], idx, N), data[1][idx.to(data[1].device)]
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        idx = subsample_indices(len(data), n, seed=seed)
        return torch.utils.data.Subset(data, idx.tolist())
    raise TypeError(
        "data must be an (inputs, targets) pair of tensors or a map-style Dataset "
        f"(with __len__ and __getitem__), got {type(data).__name__}"
    )


def _check_rows(inputs: Any, n: int) -> None:
    """Refuse inputs that do not hold the targets' ``n`` samples along dim 0: a tensor
    whose dim 0 is not ``n``, or a mapping/tuple of tensors none of which has ``n``
    rows. Rows are taken from tensors whose dim 0 is ``n`` only (others are kept whole,
    :func:`_slice_rows`), so such inputs would be kept whole, silently unpaired."""
    if isinstance(inputs, Tensor):
        rows = int(inputs.shape[0]) if inputs.dim() > 0 else None
        if rows != n:
            raise ValueError(
                f"inputs and targets hold different numbers of samples (dim 0): inputs of "
                f"shape {tuple(inputs.shape)}, targets {n}"
            )
        return
    leaves: list[Tensor] = []

    def visit(x: Any) -> None:
        if isinstance(x, Tensor):
            leaves.append(x)
        elif isinstance(x, Mapping):
            for v in x.values():
                visit(v)
        elif isinstance(x, (tuple, list)):
            for v in x:
                visit(v)

    visit(inputs)
    if leaves and not any(t.dim() > 0 and t.shape[0] == n for t in leaves):
        shapes = ", ".join(str(tuple(t.shape)) for t in leaves)
        raise ValueError(
            f"no tensor of the inputs holds the targets' {n} samples along dim 0 "
            f"(shapes {shapes})"
        )


def _slice_rows(x: Any, idx: Tensor, n: int) -> Any:
    """Rows ``idx`` (int64, ``(m,)``) of every tensor of ``x`` whose dim 0 is ``n``, inside
    mappings, tuples, lists and named tuples, each rebuilt with its own type (as
    :func:`~spectra.operators.base.batch_to` does); anything else is kept whole."""
    if isinstance(x, Tensor):
        return x[idx.to(x.device)] if x.dim() > 0 and x.shape[0] == n else x
    if isinstance(x, Mapping):
        return type(x)({k: _slice_rows(v, idx, n) for k, v in x.items()})
    if isinstance(x, (tuple, list)):
        return _same_sequence(x, [_slice_rows(v, idx, n) for v in x])
    return x


@dataclass(frozen=True)
class SubsampleSpread:
    """The top eigenvalue of the loss Hessian on several seeded subsamples.

    Attributes:
        seeds: the seeds of the subsamples.
        num_samples: samples per subsample.
        values: λ1 on each subsample (loss units per parameter unit squared).
        mean, std: their mean and sample standard deviation (``ddof=1``; NaN
            for one subsample).
    """

    seeds: tuple[int, ...]
    num_samples: int
    values: tuple[float, ...]
    mean: float
    std: float

    def to_dict(self) -> dict[str, Any]:
        return {"seeds": list(self.seeds), "num_samples": self.num_samples,
                "values": list(self.values), "mean": self.mean,
                "std": None if math.isnan(self.std) else self.std}


def top_eigenvalue_spread(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch,
    n: int,
    seeds: Sequence[int],
    *,
    tol: float = 1e-3,
    operator: Callable[..., Any] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    **operator_kwargs: Any,
) -> SubsampleSpread:
    """λ1 of the Hessian of ``loss_fn`` on ``len(seeds)`` subsamples of ``n`` samples.

    Each subsample is :func:`subsample` ``(data, n, seed=s)``; λ1 is
    :func:`spectra.eigsh` ``(k=1, which="LA", tol=tol)``, its start vector seeded
    by ``s`` too. Costs one eigsh per seed.

    Args:
        model, loss_fn: as for :class:`spectra.HessianOperator`.
        data: the full ``(inputs, targets)`` pair to draw from.
        n: samples per subsample.
        seeds: one subsample per seed.
        tol: eigsh's relative residual tolerance.
        operator: the operator class (default :class:`spectra.HessianOperator`).
        rank, world_size: under several processes (``torch.distributed``
            initialized), this rank takes its :func:`spectra.utils.distributed.shard`
            of each subsample and the operator all-reduces the products: every
            rank gets the same values. Default: this process's rank and the size of
            the operator's group (``process_group`` in ``operator_kwargs``, else the
            global group; ``0`` and ``1`` in one process), the group the operator
            all-reduces over: a whole subsample on each of 2 ranks was a union of 2
            copies, twice the Hessian of a summed loss. ``ValueError`` when
            ``n < world_size`` (a rank would hold no sample).
        **operator_kwargs: passed to it (``dtype``, ``eval_mode``, ``process_group`` ...).
    """
    from spectra.linalg.eigsh import eigsh
    from spectra.operators.hessian import HessianOperator
    from spectra.utils.distributed import shard

    if not is_pair(data):
        # a list of batches or a Dataset would be subsampled as a data set of batches
        raise TypeError(f"data must be the full (inputs, targets) pair of tensors to draw "
                        f"subsamples from, got {type(data).__name__}"
                        + (f" of {len(data)} items" if isinstance(data, (list, tuple)) else ""))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise TypeError(f"seeds must be a sequence of integers (one subsample each), got "
                        f"{seeds!r}" + (f"; for one subsample use seeds=[{seeds}]"
                                        if isinstance(seeds, int) else ""))
    seeds = tuple(checks.integer("seeds entry", s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must name at least one subsample")
    if len(set(seeds)) != len(seeds):
        # one seed draws one subsample: a repeat would count the same value twice and
        # shrink the spread (std 0 for all-equal seeds)
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        raise ValueError(f"seeds must be distinct, got {list(seeds)} (repeated: {repeated})")
    if rank is None or world_size is None:
        from spectra.utils.distributed import several_ranks

        group = several_ranks(operator_kwargs.get("process_group"))
        if group is None:
            own_rank, own_size = 0, 1
        else:
            import torch.distributed as dist

            own_rank, own_size = dist.get_rank(group), dist.get_world_size(group)
        rank = own_rank if rank is None else rank
        world_size = own_size if world_size is None else world_size
    world_size = checks.integer("world_size", world_size, 1)
    rank = checks.integer("rank", rank, 0, world_size - 1)
    n = checks.integer("n", n, 1)
    if n < world_size:
        raise ValueError(
            f"n={n} samples per subsample are fewer than the world_size={world_size} "
            "processes, so some ranks would hold no sample of it: draw at least one "
            "sample per process"
        )
    make = operator or HessianOperator
    values = []
    for s in seeds:
        X, y = subsample(data, n, seed=s)
        if world_size > 1:
            part = shard(n, rank, world_size)
            X, y = _slice_rows(X, torch.arange(n)[part], n), y[part]
        op = make(model, loss_fn, (X, y), **operator_kwargs)
        res = eigsh(op, k=1, which="LA", tol=tol, generator=torch.Generator().manual_seed(s))
        values.append(float(res.eigenvalues[0]))
    t = torch.tensor(values, dtype=torch.float64)
    std = float(t.std()) if len(values) > 1 else float("nan")
    return SubsampleSpread(seeds, n, tuple(values), float(t.mean()), std)


__all__ = ["SubsampleSpread", "subsample", "subsample_indices", "top_eigenvalue_spread"]
