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
