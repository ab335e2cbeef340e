"""Shared plumbing of the optimizers in this package (private).

`SpectraOptimizer` owns what every optimizer here does the same way, so that each
optimizer module holds only its own math:

- hyperparameter validation of the defaults and of every param group, including
  groups added later with `add_param_group` (torch itself checks only the defaults);
- calling the closure under `torch.enable_grad()`;
- collecting the parameters of a group that have a gradient, rejecting sparse ones,
  and creating their per-parameter state lazily.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.optim import Optimizer

from spectra.utils.checks import flag, integer, integer_range

Closure = Callable[[], Any]
ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]]


def check_lr(lr: Any) -> None:
    """Learning rates are finite numbers >= 0."""
    if not _is_real(lr) or not (math.isfinite(lr) and lr >= 0.0):
        raise ValueError(f"Invalid learning rate: {lr} (expected a finite number >= 0{_kind(lr)})")


def check_nonnegative(name: str, value: Any) -> None:
    if not _is_real(value) or not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"Invalid {name} value: {value} (expected a finite number >= 0{_kind(value)})")


def check_positive(name: str, value: Any) -> None:
    if not _is_real(value) or not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"Invalid {name} value: {value} (expected a finite number > 0{_kind(value)})")


def check_finite(name: str, value: Any) -> None:
    if not _is_real(value) or not math.isfinite(value):
        raise ValueError(f"Invalid {name} value: {value} (expected a finite number{_kind(value)})")


def check_unit_interval(name: str, value: Any) -> None:
    """Decay rates of moving averages lie in [0, 1)."""
    if not _is_real(value) or not (0.0 <= value < 1.0):
        raise ValueError(f"Invalid {name} value: {value} (expected 0 <= {name} < 1{_kind(value)})")


def check_betas(betas: Any) -> None:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"Invalid betas value: {betas!r} (expected a pair (beta1, beta2))")
    for i, beta in enumerate(betas):
        check_unit_interval(f"betas[{i}]", beta)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"Invalid {name} value: {value!r} (expected one of {choices})")


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None,
              expected: str | None = None) -> int:
    """``value`` as an ``int``, refused unless it is an integer in ``[low, high]``: Python's
    or numpy's (``np.int64(5)``), not a bool (``True`` would mean 1) nor a float.

    The rule is :func:`spectra.utils.checks.integer`'s; the message is this package's
    ``"Invalid {name} value: ..."``, ending with ``expected`` when given (what the
    argument means), else with the range."""
    try:
        return integer(name, value, low, high)
    except ValueError:
        expected = integer_range(low, high) if expected is None else expected
        raise ValueError(f"Invalid {name} value: {value!r} (expected {expected})") from None


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a ``bool``, refused unless it is one (Python's or numpy's): a switch
    given ``"no"`` or ``1`` would otherwise silently mean ``True``. The rule is
    :func:`spectra.utils.checks.flag`'s, raised as this package's ``ValueError``."""
    try:
        return flag(name, value)
    except TypeError:
        raise ValueError(f"Invalid {name} value: {value!r} (expected true or false)") from None


def real_view(t: Tensor) -> Tensor:
    """``torch.view_as_real(t)`` for a complex ``t`` (shape ``(*t.shape, 2)``, sharing
    its memory, so in-place updates write ``t``), else ``t`` itself.

    A complex parameter is optimized as its real and imaginary parts, two independent
    real coordinates (torch's Adam does the same): an update function maps its
    parameter, gradient and state tensors through this before any elementwise math, so
    that a complex parameter follows exactly the trajectory of the real parameter
    ``view_as_real(p)``. Without it ``g * g`` is the complex square (a purely
    imaginary gradient would move the real part), ``|g|`` the modulus, and ``sign``
    and ``clamp`` are not defined."""
    return torch.view_as_real(t) if t.is_complex() else t


def widened(t: Tensor) -> Tensor:
    """``t`` in float32 when it is float16, else ``t`` itself: for the arithmetic that adds
    an ``eps``-sized number. float16's smallest subnormal is 6e-8, so the usual
    ``eps = 1e-8`` rounds to 0 there and a zero entry divides 0 by 0 (torch's Adam has
    this NaN with float16 parameters; bfloat16 has float32's range and no such problem).
    The caller writes the result back in ``t``'s dtype."""
    return t.float() if t.dtype == torch.float16 else t


def _is_real(value: Any) -> bool:
    """A real number: Python's, or numpy's (``np.float32(0.01)``); not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _kind(value: Any) -> str:
    """``", not a Tensor"`` (the type) for a value that is no Python number, else ``""``:
    so that a message never calls a valid-looking number invalid without saying why."""
    return "" if _is_real(value) else f", not a {type(value).__name__}"


def plain_numbers(group: dict[str, Any]) -> dict[str, Any]:
    """``group`` with numpy scalars (``np.float32(0.01)``, also inside tuples such as
    ``betas``) turned into Python numbers, in place: the checks take them as the numbers
    they are, and a ``state_dict`` then holds only Python numbers (a checkpoint loaded
    with ``weights_only=True`` refuses numpy objects). Returns ``group``."""
    for key, value in group.items():
        if key == "params":
            continue
        if isinstance(value, (tuple, list)):
            group[key] = type(value)(_plain(v) for v in value)
        else:
            group[key] = _plain(value)
    return group


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic) and not isinstance(value, np.bool_):
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            return float(value)
    return value


class SpectraOptimizer(Optimizer):
    """Base class: validated hyperparameters, closure handling, lazy state.

    Subclasses implement `_validate(group)`, raising `ValueError` that names the bad
    hyperparameter, and their own `step`.
    """

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        defaults = plain_numbers(dict(defaults))
        self._validate(defaults)
        super().__init__(params, defaults)

    def _validate(self, group: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``, after the group (with the defaults it does not
        set) passed ``_validate``: a refused group is never added."""
        if isinstance(param_group, dict):
            plain_numbers(param_group)
            self._validate({**self.defaults, **param_group})
        super().add_param_group(param_group)

    @staticmethod
    def _closure_loss(closure: Closure | None) -> Any:
        if closure is None:
            return None
        with torch.enable_grad():
            return closure()

    def _params_with_grad(
        self, group: Mapping[str, Any], init_state: Callable[[Tensor], dict[str, Any]]
    ) -> tuple[list[Tensor], list[Tensor], list[dict[str, Any]]]:
        """The group's parameters that have a gradient, their gradients and states.

        Parameters whose `.grad` is None are skipped. A state is created with
        `init_state(param)` the first time a parameter has a gradient.
        """
        params, grads, states = [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(
                    f"{type(self).__name__} does not support sparse gradients; "
                    "use dense gradients (e.g. nn.Embedding(sparse=False))"
                )
            state = self.state[p]
            if not state:
                state.update(init_state(p))
            params.append(p)
            grads.append(p.grad)
            states.append(state)
        return params, grads, states
