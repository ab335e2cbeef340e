"""Small float64 problems with their dense Hessians and GGNs, for exact comparisons.

Each case is a model, a loss, and data split into uneven batches. The dense
references differentiate the full-data loss ``sum_b w_b L_b(theta)`` (``w_b =
n_b / N`` for a mean-reduced loss, 1 for a sum) with ``torch.func``, entirely
independently of the operators under test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, hessian, jacrev


@dataclass
class Case:
    name: str
    model: nn.Module
    loss_fn: nn.Module
    batches: list[tuple[Tensor, Tensor]]
    params: list[str] | None = None

    @property
    def param_names(self) -> list[str]:
        return self.params or [n for n, p in self.model.named_parameters() if p.requires_grad]

    def _split(self, flat: Tensor) -> dict[str, Tensor]:
        named = dict(self.model.named_parameters())
        out, i = {}, 0
        for n in self.param_names:
            k = named[n].numel()
            out[n] = flat[i : i + k].view_as(named[n])
            i += k
        return out

    def flat_params(self) -> Tensor:
        named = dict(self.model.named_parameters())
        return torch.cat([named[n].detach().reshape(-1) for n in self.param_names])

    def _state(self, flat: Tensor) -> dict[str, Tensor]:
        state = {n: p.detach() for n, p in self.model.named_parameters()}
        state.update({n: b.detach().clone() for n, b in self.model.named_buffers()})
        state.update(self._split(flat))
        return state

    def _weights(self) -> list[float]:
        N = sum(len(y) for _, y in self.batches)
        if self.loss_fn.reduction == "sum":
            return [1.0] * len(self.batches)
        return [len(y) / N for _, y in self.batches]

    def dense_hessian(self) -> Tensor:
        if "_H" not in self.__dict__:
            self.__dict__["_H"] = self._dense_hessian()
        return self.__dict__["_H"]

    def dense_ggn(self) -> Tensor:
        if "_G" not in self.__dict__:
            self.__dict__["_G"] = self._dense_ggn()
        return self.__dict__["_G"]

    def _dense_hessian(self) -> Tensor:
        def total(flat: Tensor) -> Tensor:
            return sum(
                w * self.loss_fn(functional_call(self.model, self._state(flat), (X,)), y)
                for w, (X, y) in zip(self._weights(), self.batches)
            )

        return hessian(total)(self.flat_params())

    def _dense_ggn(self) -> Tensor:
        flat = self.flat_params()
        G = torch.zeros(flat.numel(), flat.numel(), dtype=flat.dtype)
        for w, (X, y) in zip(self._weights(), self.batches):
            out_fn: Callable[[Tensor], Tensor] = lambda f, X=X: functional_call(
                self.model, self._state(f), (X,)
            )
            out = out_fn(flat)
            J = jacrev(out_fn)(flat).reshape(out.numel(), -1)
            Hout = hessian(lambda o, shape=out.shape, y=y: self.loss_fn(o.reshape(shape), y))(out.reshape(-1))
            G += w * J.T @ Hout @ J
        return G


def _uneven(X: Tensor, y: Tensor, sizes: list[int]) -> list[tuple[Tensor, Tensor]]:
    out, i = [], 0
    for s in sizes:
        out.append((X[i : i + s], y[i : i + s]))
        i += s
    return out


def make_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    dt = torch.float64
    cases = []
    X = torch.randn(23, 5, generator=g, dtype=dt)
    yc = torch.randint(0, 3, (23,), generator=g)
    yr = torch.randn(23, 2, generator=g, dtype=dt)

    mlp = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).to(dt)
    cases.append(Case("mlp-ce-mean", mlp, nn.CrossEntropyLoss(), _uneven(X, yc, [10, 10, 3])))

    mlp2 = nn.Sequential(nn.Linear(5, 4), nn.Sigmoid(), nn.Linear(4, 2)).to(dt)
    cases.append(Case("mlp-mse-sum", mlp2, nn.MSELoss(reduction="sum"), _uneven(X, yr, [8, 15])))
    cases.append(Case("mlp-mse-mean", mlp2, nn.MSELoss(), _uneven(X, yr, [7, 7, 7, 2])))

    Xi = torch.randn(11, 1, 6, 6, generator=g, dtype=dt)
    yi = torch.randint(0, 3, (11,), generator=g)
    cnn = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 3)
    ).to(dt)
    cases.append(Case("cnn-ce", cnn, nn.CrossEntropyLoss(), _uneven(Xi, yi, [4, 4, 3])))

    bn = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 3)).to(dt)
    with torch.no_grad():
        bn[1].running_mean.copy_(torch.randn(4, generator=g, dtype=dt))
        bn[1].running_var.copy_(torch.rand(4, generator=g, dtype=dt) + 0.5)
        bn[1].weight.copy_(torch.rand(4, generator=g, dtype=dt) + 0.5)
    bn.eval()
    cases.append(Case("batchnorm-eval", bn, nn.CrossEntropyLoss(), _uneven(X, yc, [12, 11])))

    sub = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).to(dt)
    cases.append(
        Case("param-subset", sub, nn.CrossEntropyLoss(), _uneven(X, yc, [23]), params=["2.weight", "0.bias"])
    )
    return cases


CASES = make_cases()
