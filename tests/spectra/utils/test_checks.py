"""spectra.utils.checks.options: registry options checked against the factory's annotations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pytest
import torch

from spectra.utils.checks import flag, generator, number, options


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


@pytest.mark.parametrize("value, kw, match", [
    ("1e-3", {"positive": True}, "tol must be a positive number, got '1e-3'"),
    (None, {"positive": True}, "tol must be a positive number, got None"),
    (True, {"positive": True}, "tol must be a positive number, got True"),
    (0.0, {"positive": True}, "tol must be a positive number, got 0.0"),
    (float("inf"), {"low": 0}, "tol must be a finite number >= 0, got inf"),
    (-1, {"low": 0}, "tol must be a finite number >= 0, got -1"),
])
def test_number_refuses_non_numbers_and_values_out_of_range_by_name(value, kw, match):
    with pytest.raises(ValueError) as err:
        number("tol", value, **kw)
    assert str(err.value) == match


def test_number_flag_and_generator_pass_good_values():
    assert number("tol", 1, positive=True) == 1.0 and number("atol", 0, low=0) == 0.0
    assert flag("bottom", False) is False
    g = torch.Generator()
    assert generator("generator", g) is g and generator("generator", None) is None
    # with a seed, a given generator is kept and None becomes a fresh one seeded with it
    assert generator("generator", g, seed=3) is g
    fresh = generator("generator", None, seed=3)
    assert torch.equal(torch.rand(4, generator=fresh),
                       torch.rand(4, generator=torch.Generator().manual_seed(3)))


def test_flag_refuses_truthy_strings_and_generator_refuses_seeds():
    with pytest.raises(TypeError, match="bottom must be True or False, got 'no'"):
        flag("bottom", "no")
    with pytest.raises(TypeError, match=r"generator=torch.Generator\(\).manual_seed\(3\)"):
        generator("generator", 3)
