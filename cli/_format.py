"""Numbers as the console shows them: 4 significant digits, percentages, a sparkline.

A missing or non-finite value shows as ``-``; a ``width`` right-aligns the text in
that many columns (a table's).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SPARK_BARS = " ▁▂▃▄▅▆▇█"


def as_float(x: Any) -> float:
    """``float(x)``, or NaN for None and anything that is not a number."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def fmt(x: Any, width: int = 0) -> str:
    """``x`` to 4 significant digits: ``fmt(0.012345) == "0.01235"``, ``fmt(None) == "-"``."""
    v = as_float(x)
    return (f"{v:.4g}" if math.isfinite(v) else "-").rjust(width)


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
