"""Argument checks shared by the solvers (:func:`~spectra.linalg.eigsh`, :func:`~spectra.slq`,
:func:`~spectra.linalg.trace`) and the probe settings: one home for each rule and its message.

Every message is one line that names the argument, what was expected, and the
value found.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch


def integer_range(low: int | None = None, high: int | None = None) -> str:
    """What :func:`integer` asks for, in words: ``"an integer in [1, 5]"``, ``"an integer
    >= 1"``, ``"an integer <= 5"`` or ``"an integer"``."""
    if low is not None and high is not None:
        return f"an integer in [{low}, {high}]"
    if low is not None:
        return f"an integer >= {low}"
    if high is not None:
        return f"an integer <= {high}"
    return "an integer"


def integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int``, refused unless it is an integer in ``[low, high]``.

    Python and numpy integers pass; ``bool`` (an ``int`` subclass: ``k=True``
    would mean ``k=1``), floats and strings do not.
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, torch.Tensor))
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        want = integer_range(low, high)
        kind = " (a bool)" if isinstance(value, bool) else ""
        if not isinstance(value, (numbers.Number, str, type(None))):
            kind = f" (a {type(value).__name__})"
        raise ValueError(f"{name} must be {want}, got {value!r}{kind}")
    return int(value)


def density_pair(name: str, value: Any) -> tuple[int, int] | None:
    """An SLQ size ``(num_vectors, num_steps)``: ``None``, or a tuple or list of two
    integers >= 1 (each checked as ``"{name} num_vectors"`` / ``"{name} num_steps"``)."""
    if value is None:
        return None
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ValueError(f"{name} must be None or a pair (num_vectors, num_steps), got {value!r}")
    return (integer(f"{name} num_vectors", value[0], 1), integer(f"{name} num_steps", value[1], 1))


def number(name: str, value: Any, *, low: float | None = None, positive: bool = False) -> float:
    """``value`` as a finite ``float``, refused unless it is a real number (not a bool,
    a string or ``None``), finite, ``> 0`` when ``positive`` and ``>= low`` when ``low``
    is given.

    >>> number("tol", 1e-3, positive=True)
    0.001
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, torch.Tensor))
    ok = ok and math.isfinite(value) and (not positive or value > 0)
    ok = ok and (low is None or value >= low)
    if not ok:
        if positive:
            want = "a positive number"
        elif low is not None:
            want = f"a finite number >= {low:g}"
        else:
            want = "a finite number"
        raise ValueError(f"{name} must be {want}, got {value!r}")
    return float(value)


def flag(name: str, value: Any) -> bool:
    """``value`` as a ``bool``, refused unless it is one (a Python or numpy bool): a
    string such as ``"no"`` is truthy and would silently mean ``True``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def generator(name: str, value: Any, *, seed: int | None = None) -> torch.Generator | None:
    """``value`` unless it is neither ``None`` nor a ``torch.Generator`` (a seed
    passed where a generator is expected): ``TypeError`` naming the argument. With
    ``seed``, ``None`` becomes a fresh CPU generator seeded with it (one stream for all
    the draws of a call)."""
    if value is not None and not isinstance(value, torch.Generator):
        hint = (f"; for a seed use {name}=torch.Generator().manual_seed({value})"
                if isinstance(value, numbers.Integral) and not isinstance(value, bool) else "")
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(value).__name__}"
                        + hint)
    if value is None and seed is not None:
        return torch.Generator().manual_seed(seed)
    return value


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


# --------------------------------------------------------------------------- factory options


def options(owner: str, factory: Any, kwargs: dict[str, Any]) -> None:
    """Refuse keyword options whose values do not fit ``factory``'s annotations.

    For the registries (models, data sets, optimizers), so that ``widths=abc`` or
    ``betas=0.9`` is refused by name before anything is built, not deep inside the
    factory with an unrelated message. Understood annotations: ``int``, ``float``,
    ``bool``, ``str``, ``None``, unions, ``Literal``, ``Sequence[X]``,
    ``tuple[X, ...]`` and ``tuple[X, Y]``; anything else (or a factory without
    resolvable annotations) accepts every value.

    Args:
        owner: how messages name the factory, e.g. ``"optimizer 'adam'"``.
        factory: a function or class (its ``__init__`` annotations are used).
        kwargs: the options given.

    Raises:
        ValueError: naming the option, what it takes, and the value found.
    """
    import typing

    target = factory.__init__ if isinstance(factory, type) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 (unresolvable annotations: no check)
        return
    for key, value in kwargs.items():
        hint = hints.get(key)
        if hint is not None and _fits(value, hint) is False:
            raise ValueError(f"{owner}: option {key}={value!r} is not {_describe(hint)}")


def _fits(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` fits ``hint``; None when the hint is not understood."""
    import collections.abc as cabc
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is torch.Tensor:
        return isinstance(value, torch.Tensor)
    if origin in (typing.Union, types.UnionType):
        results = [_fits(value, a) for a in args]
        return True if any(r is True for r in results) else (None if None in results else False)
    if origin is typing.Literal:
        return value in args
    if origin in (tuple, cabc.Sequence) or origin is typing.Sequence:
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                return False
            results = [_fits(v, a) for v, a in zip(value, args)]
        else:
            item = args[0] if args else Any
            results = [_fits(v, item) for v in value]
        return False if False in results else (None if None in results else True)
    return None


def _describe(hint: Any) -> str:
    import collections.abc as cabc
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             type(None): "none", torch.Tensor: "a tensor"}
    if hint in names:
        return names[hint]
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(a) for a in args if a is not torch.Tensor))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"{len(args)} values ({', '.join(_describe(a) for a in args)})"
    if origin in (tuple, cabc.Sequence) or origin is typing.Sequence:
        return f"a comma-separated list of {_plural(_describe(args[0]) if args else 'values')}"
    return str(hint)


def _plural(text: str) -> str:
    return {"an integer": "integers", "a number": "numbers", "a string": "strings"}.get(text, text)


# --------------------------------------------------------------------------- suggestions

# how alike (difflib's ratio, 0 to 1) a valid name must be to be suggested
CUTOFF = 0.5


def closest(word: str, choices: Iterable[str], cutoff: float = CUTOFF) -> str | None:
    """The valid name most like ``word``, or None when none is alike enough.

    >>> closest("adma", ["sgd", "adam", "adamw"])
    'adam'
    """
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = CUTOFF) -> str:
    """``" Did you mean 'x'?"`` for the closest valid name, or ``""``: the hint every
    "unknown name" message of the toolkit ends with."""
    close = closest(word, choices, cutoff)
    return f" Did you mean {close!r}?" if close else ""


__all__ = ["closest", "density_pair", "device_memory", "did_you_mean", "dtype_name",
           "fits_in_memory", "flag",
           "generator", "integer", "integer_range", "itemsize", "number", "options"]
