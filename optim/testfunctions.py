"""Two-dimensional test functions of the CALR and SMARAN papers, and a runner.

Each `TestFunction` has its value and analytic gradient as torch functions of a
point ``xy`` of shape (..., 2) (a (2,) parameter tensor, or a grid of points), its
known minima and its standard start points:

=========== ============================================== ======================= ============
name        f(x, y)                                        minima (f = 0)          starts
=========== ============================================== ======================= ============
rosenbrock  (1 - x)^2 + 100 (y - x^2)^2                    (1, 1)                  (-1.2, 1), (-2, 2)
himmelblau  (x^2 + y - 11)^2 + (x + y^2 - 7)^2             (3, 2) and three more   (0, 0)
beale       (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2         (3, 0.5)                (1, 1)
            + (2.625 - x + xy^3)^2
saddle      x^2 - y^2                                      none (unbounded below)  (1, 0.01)
=========== ============================================== ======================= ============

The Rosenbrock and saddle starts are those of ALGORITHMS.md; the papers give none for
Himmelblau and Beale, so (0, 0) and (1, 1) are this module's choices. On the saddle,
measure escape (the |y| reached), not a distance to a minimum.

`run(optimizer, function, steps=...)` runs a registry optimizer (with its schedule,
see `optim.registry.create_bundle`) from a start point and returns the `Trajectory`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .registry import create_bundle

__all__ = [
    "BEALE",
    "FUNCTIONS",
    "HIMMELBLAU",
    "ROSENBROCK",
    "SADDLE",
    "TestFunction",
    "Trajectory",
    "get_function",
    "run",
]

Point = tuple[float, float]


@dataclass(frozen=True)
class TestFunction:
    """A function of two variables with known minima.

    Attributes:
        name: registry name, e.g. "rosenbrock".
        value: ``value(xy)``, xy of shape (..., 2) -> values of shape (...).
        gradient: ``gradient(xy)``, (..., 2) -> (..., 2), the analytic gradient.
        minima: the global minima (x, y); empty when the function is unbounded below.
        starts: standard start points; the first is the default of `run`.
    """

    __test__ = False  # not a pytest test class

    name: str
    value: Callable[[Tensor], Tensor]
    gradient: Callable[[Tensor], Tensor]
    minima: tuple[Point, ...]
    starts: tuple[Point, ...]

    def __call__(self, xy: Tensor) -> Tensor:
        return self.value(xy)

    def distance_to_minimum(self, xy: Tensor | Sequence[float]) -> float:
        """Euclidean distance from the point xy (2,) to the nearest minimum; nan if none."""
        if not self.minima:
            return math.nan
        x, y = (float(c) for c in xy)
        return min(math.hypot(x - mx, y - my) for mx, my in self.minima)


# Written with x * x rather than x**2 and few temporaries: `run` calls these once per
# step on a (2,) tensor, where the cost is the number of tensor operations.
def _rosenbrock(xy: Tensor) -> Tensor:
    x, y = xy[..., 0], xy[..., 1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def _rosenbrock_grad(xy: Tensor) -> Tensor:
    x, y = xy[..., 0], xy[..., 1]
    r = y - x * x
    return torch.stack((2 * (x - 1) - 400 * x * r, 200 * r), dim=-1)


def _himmelblau(xy: Tensor) -> Tensor:
    x, y = xy[..., 0], xy[..., 1]
    return (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2


def _himmelblau_grad(xy: Tensor) -> Tensor:
    x, y = xy[..., 0], xy[..., 1]
    a, b = x * x + y - 11, x + y * y - 7
    return torch.stack((4 * x * a + 2 * b, 2 * a + 4 * y * b), dim=-1)


def _beale(xy: Tensor) -> Tensor:
    x, y = xy[..., 0], xy[..., 1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def _beale_grad(xy: Tensor) -> Tensor:
    x, y = xy[..., 0], xy[..., 1]
    t1, t2, t3 = 1.5 - x + x * y, 2.25 - x + x * y**2, 2.625 - x + x * y**3
    dx = 2 * t1 * (y - 1) + 2 * t2 * (y**2 - 1) + 2 * t3 * (y**3 - 1)
    dy = 2 * t1 * x + 4 * t2 * x * y + 6 * t3 * x * y**2
    return torch.stack((dx, dy), dim=-1)


def _saddle(xy: Tensor) -> Tensor:
    x, y = xy[..., 0], xy[..., 1]
    return x * x - y * y


def _saddle_grad(xy: Tensor) -> Tensor:
    return xy * torch.tensor((2.0, -2.0), dtype=xy.dtype, device=xy.device)


ROSENBROCK = TestFunction(
    "rosenbrock", _rosenbrock, _rosenbrock_grad, minima=((1.0, 1.0),),
    starts=((-1.2, 1.0), (-2.0, 2.0)),
)
HIMMELBLAU = TestFunction(
    "himmelblau", _himmelblau, _himmelblau_grad,
    # The four minima to double precision (Newton's method on the gradient).
    minima=(
        (3.0, 2.0),
        (-2.805118086952745, 3.131312518250573),
        (-3.779310253377747, -3.2831859912861696),
        (3.5844283403304917, -1.8481265269644036),
    ),
    starts=((0.0, 0.0),),
)
BEALE = TestFunction("beale", _beale, _beale_grad, minima=((3.0, 0.5),), starts=((1.0, 1.0),))
SADDLE = TestFunction("saddle", _saddle, _saddle_grad, minima=(), starts=((1.0, 0.01),))

FUNCTIONS: dict[str, TestFunction] = {f.name: f for f in (ROSENBROCK, HIMMELBLAU, BEALE, SADDLE)}


def get_function(name: str) -> TestFunction:
    """The test function called `name` (see `FUNCTIONS`)."""
    try:
        return FUNCTIONS[name.lower()]
    except KeyError:
        raise ValueError(
            f"Unknown test function {name!r}; valid names: {', '.join(FUNCTIONS)}"
        ) from None


@dataclass(frozen=True)
class Trajectory:
    """The iterates of one run.

    Attributes:
        function: the test function.
        optimizer: the registry name of the optimizer.
        points: (steps + 1, 2) float64 tensor; points[0] is the start.
        values: (steps + 1,) float64 tensor, the function at each point.
    """

    function: TestFunction
    optimizer: str
    points: Tensor
    values: Tensor

    @property
    def final_value(self) -> float:
        return float(self.values[-1])

    @property
    def final_distance(self) -> float:
        """Distance from the last point to the nearest minimum (nan for the saddle)."""
        return self.function.distance_to_minimum(self.points[-1])


def run(
    optimizer: str,
    function: TestFunction | str,
    *,
    steps: int,
    start: Sequence[float] | None = None,
    device: torch.device | str = "cpu",
    **overrides: float,
) -> Trajectory:
    """Run the registry optimizer `optimizer` on `function` for `steps` steps.

    The parameter is a float64 (2,) tensor starting at `start` (default: the function's
    first start point); its gradient is the analytic one and the closure returns the
    value, so loss-driven optimizers (SMARAN) work too. A name's schedule is built for
    this run: ``total_steps = steps`` and, for per-epoch schedules, every step counts as
    one epoch (LPSGD's p goes from p_max to 2 over the run).

    Args:
        optimizer: a name of `optim.available()`.
        function: a `TestFunction` or its name.
        steps: number of optimizer steps.
        start: the start point (x, y).
        device: where the parameter lives.
        overrides: hyperparameters passed to the optimizer (e.g. lr=1e-2).
    """
    fn = get_function(function) if isinstance(function, str) else function
    start = fn.starts[0] if start is None else start
    xy = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64, device=device))
    bundle = create_bundle(optimizer, [xy], total_steps=steps, total_epochs=steps, **overrides)

    def closure() -> Tensor:
        xy.grad = fn.gradient(xy.detach())
        return fn.value(xy.detach())

    points = torch.empty(steps + 1, 2, dtype=torch.float64, device=device)
    points[0] = xy.detach()
    for t in range(steps):
        bundle.optimizer.step(closure)
        bundle.after_step()
        bundle.after_epoch()
        points[t + 1] = xy.detach()
    return Trajectory(fn, optimizer, points.cpu(), fn.value(points).cpu())
