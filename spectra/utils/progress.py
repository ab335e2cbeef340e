"""Progress of a computation counted in operator products, in one place.

Every solver's ``progress`` argument (:func:`~spectra.eigsh`, :func:`~spectra.slq`,
:func:`~spectra.trace`, :func:`~spectra.probe`, the monitor) takes ``False`` (none),
``True`` (a tqdm bar per call, cleared when it ends) or a callable that makes the
caller's own bar: ``progress(total=..., desc=..., unit="Hv")`` returning an object with
``update(n)`` and ``close()`` (``tqdm.tqdm`` itself fits), so that a caller can show
one line for several calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Progress = bool | Callable[..., Any]


def progress_bar(progress: Progress, total: int, desc: str, unit: str = "Hv") -> Any | None:
    """A bar over ``total`` units (products by default) for ``progress``, or ``None``.

    Example::

        >>> progress_bar(False, 10, "eigsh") is None
        True
        >>> calls = []
        >>> bar = progress_bar(lambda **kw: calls.append(kw) or "bar", 10, "eigsh")
        >>> bar, calls
        ('bar', [{'total': 10, 'desc': 'eigsh', 'unit': 'Hv'}])
    """
    if not progress:
        return None
    if callable(progress):
        return progress(total=total, desc=desc, unit=unit)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False)
