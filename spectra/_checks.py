"""Argument checks shared by the solvers (:func:`~spectra.eigsh`, :func:`~spectra.slq`,
:func:`~spectra.trace`) and the probe settings: one home for each rule and its message.

Every message is one line that names the argument, what was expected, and the
value found.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

import torch

from spectra.operators.dense import as_operator


def integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int``, refused unless it is an integer in ``[low, high]``.

    Python and numpy integers pass; ``bool`` (an ``int`` subclass: ``k=True``
    would mean ``k=1``), floats and strings do not.
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, torch.Tensor))
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        if low is not None and high is not None:
            want = f"an integer in [{low}, {high}]"
        elif low is not None:
            want = f"an integer >= {low}"
        elif high is not None:
            want = f"an integer <= {high}"
        else:
            want = "an integer"
        kind = " (a bool)" if isinstance(value, bool) else ""
        if not isinstance(value, (numbers.Number, str, type(None))):
            kind = f" (a {type(value).__name__})"
        raise ValueError(f"{name} must be {want}, got {value!r}{kind}")
    return int(value)


def operator(op: Any, who: str) -> tuple[Any, int]:
    """The solvers' preamble: ``op`` with the operator interface, and its size ``P >= 1``."""
    A = as_operator(op)
    P = int(A.shape[0])
    if P == 0:
        raise ValueError(f"{who}: the operator is 0 x 0 (no parameters); there is no spectrum to compute")
    return A, P


def itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def device_memory(device: torch.device | str | None) -> int | None:
    """Total memory of ``device`` in bytes (the machine's RAM for the CPU), or
    ``None`` where it cannot be told (then no memory check is made)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    try:
        if dev.type == "cpu":
            return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
        if dev.type == "cuda":
            return int(torch.cuda.get_device_properties(dev).total_memory)
    except (ValueError, OSError, AttributeError, RuntimeError):
        return None
    return None


def fits_in_memory(what: str, nbytes: int, device: torch.device | str | None, hint: str) -> None:
    """Refuse a request whose working memory ``nbytes`` exceeds the device's total
    memory: it could never run, and would fail only after an allocation attempt."""
    total = device_memory(device)
    if total is not None and nbytes > total:
        dev = torch.device(device) if device is not None else torch.device("cpu")
        raise ValueError(
            f"{what} needs {_gib(nbytes)} but the {dev.type} memory is {_gib(total)}; {hint}"
        )


def _gib(nbytes: int) -> str:
    return f"{nbytes / 1024**3:,.1f} GiB"


__all__ = ["device_memory", "dtype_name", "fits_in_memory", "integer", "itemsize", "operator"]
