"""The least-squares problem the optimizer tests share, with numpy references of its loss
and gradients (independent of autograd), and the devices the tests run on.

The conformance checks every optimizer must pass are in ``test_conformance.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


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


def complex_and_real_view_trajectories(
    make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer],
    steps: int = 3,
    loss: Callable[[int], Tensor | float] | None = None,
) -> tuple[Tensor, Tensor]:
    """A complex parameter ``(4, 3)`` and the real parameter ``view_as_real`` of it
    ``(4, 3, 2)``, each stepped ``steps`` times by its own optimizer ``make([param])``
    with the same random gradients (one purely imaginary); returns both end points as
    real ``(4, 3, 2)`` tensors, which agree when the optimizer treats a complex
    parameter as its real view (torch's Adam's convention). ``loss(t)``, when given,
    is passed as ``step(loss=...)`` at step t (SMARAN)."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4, 3, dtype=torch.complex128, generator=gen)
    pc = torch.nn.Parameter(z.clone())
    pr = torch.nn.Parameter(torch.view_as_real(z).clone())
    opt_c, opt_r = make([pc]), make([pr])
    for t in range(steps):
        g = torch.randn(4, 3, dtype=torch.complex128, generator=gen)
        if t == 0:
            g = 1j * g.imag  # purely imaginary: the real parts must not move by it alone
        pc.grad, pr.grad = g.clone(), torch.view_as_real(g).clone()
        for opt in (opt_c, opt_r):
            if loss is None:
                opt.step()
            else:
                opt.step(loss=loss(t))
    return torch.view_as_real(pc.detach()), pr.detach()
