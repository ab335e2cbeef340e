"""spectra.utils.checks.options: registry options checked against the factory's annotations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pytest
import torch

from spectra.utils.checks import options


def factory(*, n: int = 1, x: float = 0.5, flag: bool = False, name: str = "a",
            sizes: Sequence[int] = (1,), pair: tuple[float, float] = (0.1, 0.2),
            maybe: int | None = None, mode: Literal["a", "b"] = "a", free=None) -> None:
    """A factory with one option of each understood annotation."""


@pytest.mark.parametrize("kwargs", [
    {"n": 3}, {"x": 2}, {"x": 0.1}, {"flag": True}, {"name": "b"}, {"sizes": (1, 2)},
    {"sizes": [3]}, {"pair": (1, 2.5)}, {"maybe": None}, {"maybe": 4}, {"mode": "b"},
    {"free": object()}, {"x": torch.tensor(0.3).item()},
])
def test_values_that_fit_pass(kwargs):
    options("f", factory, kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"n": True}, "option n=True is not an integer"),
    ({"n": 2.0}, "option n=2.0 is not an integer"),
    ({"x": "abc"}, "option x='abc' is not a number"),
    ({"flag": 1}, "option flag=1 is not true or false"),
    ({"name": 3}, "option name=3 is not a string"),
    ({"sizes": "abc"}, "option sizes='abc' is not a comma-separated list of integers"),
    ({"sizes": (1, 2.5)}, "is not a comma-separated list of integers"),
    ({"pair": 0.9}, "option pair=0.9 is not 2 values (a number, a number)"),
    ({"pair": (1, 2, 3)}, "is not 2 values"),
    ({"maybe": "x"}, "option maybe='x' is not an integer or none"),
    ({"mode": "c"}, "option mode='c' is not one of 'a', 'b'"),
])
def test_values_that_do_not_fit_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match="^f: ") as err:
        options("f", factory, kwargs)
    assert match in str(err.value)


def test_torch_optimizer_annotations_are_understood():
    with pytest.raises(ValueError, match="betas=0.9 is not 2 values"):
        options("optimizer 'adam'", torch.optim.Adam, {"betas": 0.9})
    options("optimizer 'adam'", torch.optim.Adam, {"betas": (0.9, 0.99), "lr": 1e-3})
