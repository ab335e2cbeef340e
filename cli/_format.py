"""Numbers as the console shows them, in one place: every measured number (loss,
eigenvalue, trace, lr) with ``DIGITS`` significant digits (:func:`fmt`), error bars and
residuals with 2 (``fmt(x, digits=2)``), fractions as percentages with one decimal
(:func:`pct`), durations with 3 significant digits and no exponent (:func:`seconds`),
and a sparkline.

A missing or non-finite value shows as ``-``; a ``width`` right-aligns the text in
that many columns (a table's).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SPARK_BARS = " ▁▂▃▄▅▆▇█"
DIGITS = 4


def as_float(x: Any) -> float:
    """``float(x)``, or NaN for None and anything that is not a number."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def fmt(x: Any, width: int = 0, digits: int = DIGITS) -> str:
    """``x`` to ``digits`` significant digits: ``fmt(0.012345) == "0.01235"``,
    ``fmt(3.1e-5, digits=2) == "3.1e-05"``, ``fmt(None) == "-"``."""
    v = as_float(x)
    return (f"{v:.{digits}g}" if math.isfinite(v) else "-").rjust(width)


def seconds(x: Any, width: int = 0) -> str:
    """A duration to 3 significant digits, never an exponent: ``seconds(0.01234) ==
    "0.0123 s"``, ``seconds(12.34) == "12.3 s"``, ``seconds(1234.5) == "1234 s"``."""
    v = as_float(x)
    if not math.isfinite(v):
        return "-".rjust(width)
    decimals = 0 if v == 0 else max(0, 2 - math.floor(math.log10(abs(v))))
    return f"{v:.{decimals}f} s".rjust(width)


def pct(x: Any, width: int = 0) -> str:
    """A fraction as a percentage with one decimal: ``pct(0.9731) == "97.3%"``."""
    v = as_float(x)
    return (f"{100 * v:.1f}%" if math.isfinite(v) else "-").rjust(width)


def sparkline(values: np.ndarray) -> str:
    """A one-line bar chart of non-negative ``values`` (log-scaled heights)."""
    v = np.log10(np.maximum(values, 1e-12 * max(values.max(), 1e-300)))
    lo, hi = v.min(), v.max()
    if hi - lo < 1e-12:
        return SPARK_BARS[-1] * len(values)
    idx = np.round((v - lo) / (hi - lo) * (len(SPARK_BARS) - 1)).astype(int)
    return "".join(SPARK_BARS[i] for i in idx)
