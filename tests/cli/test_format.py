"""cli._format: numbers as the console shows them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cli._format import SPARK_BARS, fmt, pct, seconds, sparkline


@pytest.mark.parametrize(("x", "width", "text"), [
    (0.012345, 0, "0.01235"), (6.0295, 10, "     6.029"), (None, 0, "-"),
    (math.nan, 10, "         -"), (math.inf, 0, "-"), ("text", 0, "-"), (np.float32(2.5), 0, "2.5"),
])
def test_fmt(x, width, text):
    assert fmt(x, width) == text


@pytest.mark.parametrize(("x", "width", "text"), [
    (0.9731, 0, "97.3%"), (0.016, 9, "     1.6%"), (None, 9, "        -"), (math.nan, 0, "-"),
])
def test_pct(x, width, text):
    assert pct(x, width) == text


def test_sparkline_spans_the_bars_on_a_log_scale():
    line = sparkline(np.array([1e-6, 1e-3, 1.0]))
    assert line == SPARK_BARS[0] + SPARK_BARS[4] + SPARK_BARS[-1]
    assert sparkline(np.ones(3)) == SPARK_BARS[-1] * 3


@pytest.mark.parametrize(("x", "digits", "text"), [
    (3.14159e-5, 2, "3.1e-05"), (0.5, 2, "0.5"), (123456.0, 4, "1.235e+05"), (None, 2, "-"),
])
def test_fmt_digits(x, digits, text):
    assert fmt(x, digits=digits) == text


@pytest.mark.parametrize(("x", "width", "text"), [
    (0.01234, 0, "0.0123 s"), (1.234, 0, "1.23 s"), (12.34, 0, "12.3 s"), (123.4, 0, "123 s"),
    (1234.5, 0, "1234 s"), (0.0, 0, "0 s"), (None, 4, "   -"), (12.34, 8, "  12.3 s"),
])
def test_seconds(x, width, text):
    assert seconds(x, width) == text
