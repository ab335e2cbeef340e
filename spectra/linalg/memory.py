"""Memory budgets of the Krylov solvers: how many bytes of vectors they may hold, and where.

:func:`~spectra.slq` and :func:`~spectra.linalg.eigsh` hold vectors of length ``P``
(the operator's size): a Lanczos basis of ``num_vectors * num_steps`` of them for SLQ
with reorthogonalization, a basis and its products (``2 * ncv``) for eigsh. On a
10M-parameter model these are gigabytes. Each solver compares what its fastest mode
needs with a budget, ``max_memory``, and falls back to a bounded mode when it does not
fit (SLQ: no stored basis; eigsh: the basis in host memory or on disk). The mode that
ran and why is recorded in the result as a :class:`MemoryPlan`.

The budget covers the solver's own vectors only, not the operator's products (the
autograd graph of a Hessian-vector product is the model's business).
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import dataclass
from typing import Any

import torch

from spectra.utils import checks as _checks

# the default budget: this fraction of the memory available on the device when the solver starts
DEFAULT_FRACTION = 0.5

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "kib": 2**10,
    "m": 10**6, "mb": 10**6, "mib": 2**20,
    "g": 10**9, "gb": 10**9, "gib": 2**30,
    "t": 10**12, "tb": 10**12, "tib": 2**40,
}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory(value: Any, name: str = "max_memory") -> int | None:
    """A memory size in bytes: an integer, or a string such as ``"2GB"``, ``"512MiB"``,
    ``"1.5g"`` (decimal units k/M/G/T and binary KiB/MiB/GiB/TiB, case-insensitive).
    ``None`` stays ``None`` (the caller's default).

    Raises:
        ValueError: naming ``name``, for a string that is not a size, or a size below 1 byte.
        TypeError: naming ``name``, for anything else (a bool, a list, ...).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number of bytes or a size such as '2GB', got {value!r}")
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        nbytes = float(value)  # numpy numbers too (np.int64(2**30))
    elif isinstance(value, str):
        m = _PATTERN.match(value)
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(
                f"{name} must be a number of bytes or a size such as '2GB', '512MiB', got {value!r}"
            )
        nbytes = float(m.group(1)) * _UNITS[unit]
    else:
        raise TypeError(
            f"{name} must be a number of bytes or a size such as '2GB', got {value!r} "
            f"(a {type(value).__name__})"
        )
    if not math.isfinite(nbytes) or nbytes < 1:
        raise ValueError(f"{name} must be at least 1 byte, got {value!r}")
    return int(nbytes)


def available_memory(device: torch.device | str | None) -> int | None:
    """Bytes available now on ``device``: ``MemAvailable`` of ``/proc/meminfo`` for the
    CPU (free pages as a fallback); for a CUDA device, its free memory plus what
    PyTorch's caching allocator holds unused (reserved, not allocated: a tensor made now
    gets it first, and after a few training steps it can be most of the device);
    ``None`` where it cannot be told."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    try:
        if dev.type == "cpu":
            try:
                with open("/proc/meminfo") as f:
                    for line in f:
                        if line.startswith("MemAvailable:"):
                            return int(line.split()[1]) * 1024
            except OSError:
                pass
            return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_AVPHYS_PAGES"))
        if dev.type == "cuda":
            cached = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
            return int(torch.cuda.mem_get_info(dev)[0]) + max(0, int(cached))
    except (ValueError, OSError, AttributeError, RuntimeError):
        return None
    return None


def format_bytes(nbytes: float) -> str:
    """``nbytes`` in binary units, e.g. ``"1.5 GiB"``."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(nbytes) >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{int(nbytes)} B"


def budget(max_memory: Any, device: torch.device | str | None,
           group: Any = None) -> tuple[float, str]:
    """The budget in bytes (``inf`` when none can be told) and a phrase stating it.

    ``max_memory`` as :func:`parse_memory` reads it, capped at the device's total
    memory (a budget above it is no reason to plan for more: the plan would fail when it
    allocates); ``None`` for the default, :data:`DEFAULT_FRACTION` of
    :func:`available_memory` on ``device``. With ``group`` (an operator's
    ``process_group`` of several ranks), the least of the ranks' budgets, so that every
    rank plans alike (a collective every rank calls).
    """
    limit, said = _own_budget(max_memory, device)
    from spectra.utils.distributed import least_over_ranks, several_ranks

    ranks = several_ranks(group) if group is not None else None
    if ranks is None:
        return limit, said
    import torch.distributed as dist

    least = least_over_ranks(limit, ranks, device)
    return least, f"{said}; the least of the {dist.get_world_size(ranks)} processes' budgets" + (
        f", {format_bytes(least)}" if least < limit else "")


def _own_budget(max_memory: Any, device: torch.device | str | None) -> tuple[float, str]:
    """:func:`budget` of this process alone."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    given = parse_memory(max_memory)
    if given is not None:
        said = f"max_memory={format_bytes(given)}"
        total = _checks.device_memory(dev)
        if total is not None and given > total:
            return float(total), f"{said} capped at the {dev.type}'s total memory of {format_bytes(total)}"
        return float(given), said
    avail = available_memory(device)
    if avail is None:
        return math.inf, f"no max_memory, and the {dev.type} memory available is unknown"
    said = (f"default max_memory: {DEFAULT_FRACTION:g} x the {format_bytes(avail)} available "
            f"on {dev.type}")
    return DEFAULT_FRACTION * avail, said


@dataclass(frozen=True)
class MemoryPlan:
    """Which mode of a solver ran, and why.

    Attributes:
        mode: SLQ: ``"full"`` (stored, reorthogonalized bases) or ``"bounded"`` (the
            three-term recurrence, no basis); eigsh: ``"device"``, ``"host"`` or
            ``"disk"`` (where the basis was kept).
        reason: one sentence: the bytes the modes need against the budget, or "requested".
        nbytes: the solver's vectors in this mode, bytes (an estimate of the peak).
        budget: the budget in bytes (``inf`` when none could be told).
        probes_per_pass: SLQ only: random vectors advanced together (``num_vectors``,
            or fewer when even the bounded block did not fit); 0 for eigsh.
    """

    mode: str
    reason: str
    nbytes: int
    budget: float
    probes_per_pass: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "reason": self.reason, "nbytes": int(self.nbytes),
                "budget": None if math.isinf(self.budget) else int(self.budget),
                "probes_per_pass": int(self.probes_per_pass)}


__all__ = ["DEFAULT_FRACTION", "MemoryPlan", "available_memory", "budget", "format_bytes",
           "parse_memory"]
