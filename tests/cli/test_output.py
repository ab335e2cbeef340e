"""cli._output: strict JSON."""

from __future__ import annotations

import json
import math

from cli._output import finite_json, jsonable


def test_finite_json_makes_strict_json():
    obj = {"a": math.nan, "b": [1.0, math.inf, (2, -math.inf)], "c": "x"}
    assert finite_json(obj) == {"a": None, "b": [1.0, None, [2, None]], "c": "x"}
    json.dumps(finite_json(obj), allow_nan=False)


def test_jsonable_lists_tuples_and_reprs_other_objects():
    assert jsonable({"w": (1, 2), "p": object}) == {"w": [1, 2], "p": repr(object)}
