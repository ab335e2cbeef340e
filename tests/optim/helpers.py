"""Shared fixtures of the optimizer tests: a least-squares problem and generic checks."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.optim import Optimizer

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

OptimizerFactory = Callable[[Sequence[Tensor]], Optimizer]


class LeastSquares:
    """loss(W, b) = mean((X W + b - Y)^2) with X (20, 5), Y (20, 3); convex.

    Two parameters of different shapes, W (5, 3) and b (3,), so that per-tensor and
    global operations differ.
    """

    def __init__(self, seed: int = 0, dtype: torch.dtype = torch.float64, device: str = "cpu"):
        gen = torch.Generator().manual_seed(seed)
        self.X = torch.randn(20, 5, generator=gen, dtype=dtype).to(device)
        self.Y = torch.randn(20, 3, generator=gen, dtype=dtype).to(device)
        self.init = [
            torch.randn(5, 3, generator=gen, dtype=dtype).to(device),
            torch.randn(3, generator=gen, dtype=dtype).to(device),
        ]

    def params(self) -> list[torch.nn.Parameter]:
        return [torch.nn.Parameter(t.clone()) for t in self.init]

    def loss(self, params: Sequence[Tensor]) -> Tensor:
        W, b = params
        return ((self.X @ W + b - self.Y) ** 2).mean()

    def closure(self, params: Sequence[Tensor]) -> Callable[[], Tensor]:
        def closure() -> Tensor:
            for p in params:
                p.grad = None
            loss = self.loss(params)
            loss.backward()
            return loss

        return closure


def reference_gradients(params: Sequence[np.ndarray], problem: LeastSquares) -> list[np.ndarray]:
    """Gradients of `problem` at numpy parameters, in numpy (independent of autograd)."""
    X, Y = problem.X.cpu().numpy(), problem.Y.cpu().numpy()
    W, b = params
    residual = X @ W + b - Y
    scale = 2.0 / residual.size
    return [scale * X.T @ residual, scale * residual.sum(axis=0)]


def reference_loss(params: Sequence[np.ndarray], problem: LeastSquares) -> float:
    X, Y = problem.X.cpu().numpy(), problem.Y.cpu().numpy()
    W, b = params
    return float(((X @ W + b - Y) ** 2).mean())


def assert_lockstep_after_reload(
    factory: OptimizerFactory, *, device: str = "cpu", warmup: int = 5, steps: int = 20
) -> None:
    """Save the state after `warmup` steps, load it into a fresh optimizer over a copy of
    the parameters, and check both run bit-identically for `steps` more steps."""
    problem = LeastSquares(seed=1, device=device)
    params_a = problem.params()
    opt_a = factory(params_a)
    for _ in range(warmup):
        opt_a.step(problem.closure(params_a))

    buffer = io.BytesIO()
    torch.save(opt_a.state_dict(), buffer)
    buffer.seek(0)
    params_b = [torch.nn.Parameter(p.detach().clone()) for p in params_a]
    opt_b = factory(params_b)
    opt_b.load_state_dict(torch.load(buffer))

    for _ in range(steps):
        opt_a.step(problem.closure(params_a))
        opt_b.step(problem.closure(params_b))
        for pa, pb in zip(params_a, params_b, strict=True):
            assert torch.equal(pa, pb)
    _assert_states_equal(opt_a.state_dict()["state"], opt_b.state_dict()["state"])


def _assert_states_equal(a: object, b: object) -> None:
    if isinstance(a, Tensor):
        assert isinstance(b, Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            _assert_states_equal(a[key], b[key])
    else:
        assert a == b


def assert_lowers_loss(factory: OptimizerFactory, *, steps: int = 200, factor: float = 0.5) -> None:
    """After `steps` steps the least-squares loss is below `factor` times the initial one."""
    problem = LeastSquares(seed=2)
    params = problem.params()
    opt = factory(params)
    initial = problem.loss(params).item()
    for _ in range(steps):
        opt.step(problem.closure(params))
    final = problem.loss(params).item()
    assert final < factor * initial, (initial, final)


def assert_skips_params_without_grad(factory: OptimizerFactory) -> None:
    used = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    unused = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = factory([used, unused])

    def closure() -> Tensor:
        used.grad = None
        loss = (used**2).sum()
        loss.backward()
        return loss

    returned = opt.step(closure)
    assert torch.equal(unused, torch.ones(3, dtype=torch.float64))
    assert not torch.equal(used, torch.ones(3, dtype=torch.float64))
    assert unused not in opt.state
    assert float(returned.detach()) == 3.0  # step returns the closure's loss


def assert_rejects_sparse(factory: OptimizerFactory) -> None:
    p = torch.nn.Parameter(torch.ones(4))
    opt = factory([p])
    p.grad = torch.ones(4).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step(lambda: torch.tensor(1.0))


def assert_closure_runs_with_grad(factory: OptimizerFactory) -> None:
    """The closure runs under enable_grad, the update under no_grad."""
    p = torch.nn.Parameter(torch.ones(2))
    opt = factory([p])
    seen = []

    def closure() -> Tensor:
        seen.append(torch.is_grad_enabled())
        p.grad = None
        loss = (p**2).sum()
        loss.backward()
        return loss

    with torch.no_grad():
        opt.step(closure)
    assert seen == [True]


def assert_honors_lr_scheduler(factory: OptimizerFactory) -> None:
    """An LR scheduler that sets lr to 0 freezes the parameters."""
    problem = LeastSquares(seed=3)
    params = problem.params()
    opt = factory(params)
    opt.step(problem.closure(params))
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0 if epoch == 0 else 0.0)
    before = [p.detach().clone() for p in params]
    opt.step(problem.closure(params))
    assert not all(torch.equal(a, p) for a, p in zip(before, params, strict=True))
    scheduler.step()
    assert opt.param_groups[0]["lr"] == 0.0
    before = [p.detach().clone() for p in params]
    opt.step(problem.closure(params))
    assert all(torch.equal(a, p) for a, p in zip(before, params, strict=True))


def assert_validates_param_groups(factory: OptimizerFactory, key: str, bad: object) -> None:
    """A bad hyperparameter in a param group (not the defaults) is rejected too."""
    good = torch.nn.Parameter(torch.ones(2))
    other = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match=key.split("[")[0]):
        factory([{"params": [good]}, {"params": [other], key: bad}])
    opt = factory([good])
    with pytest.raises(ValueError, match=key.split("[")[0]):
        opt.add_param_group({"params": [other], key: bad})
