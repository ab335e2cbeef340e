"""The alignment and landscape losses move each batch to the parameters' device, as the
operators do, so data kept on the CPU works with a model on a GPU.

Without a GPU the parameters are put on the ``meta`` device: the model below records
where its inputs arrive and computes its output without its parameters (on the CPU),
so only the movement of the batches is exercised, not a meta forward pass."""

from __future__ import annotations

import torch
from torch import nn

from spectra.curvature.alignment import loss_and_gradient, optimizer_step
from spectra.landscape import loss_landscape


class _Recorder(nn.Module):
    """A parameter on ``meta``; records the device of every input it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(3, 2, device="meta"))
        self.seen: list[torch.device] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.device)
        return torch.zeros(x.shape[0], 1, requires_grad=True)  # on the CPU


class _SumLoss:
    """A loss that ignores its targets' device (they may be on ``meta``)."""

    reduction = "mean"

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return out.sum()


def _data():
    return torch.randn(4, 2), torch.randn(4, 1)


def test_loss_and_gradient_moves_the_batches_to_the_parameters_device():
    model = _Recorder()
    X, y = _data()
    _, g = loss_and_gradient(model, _SumLoss(), [(X[:2], y[:2]), (X[2:], y[2:])])
    assert model.seen == [torch.device("meta")] * 2
    assert g.device.type == "meta" and g.shape == (6,)


def test_optimizer_step_moves_the_batch_to_the_parameters_device():
    model = _Recorder()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    d = optimizer_step(opt, model, _SumLoss(), _data())
    assert model.seen == [torch.device("meta")]
    assert d.shape == (6,)


def test_loss_landscape_moves_the_batches_and_given_directions_to_the_parameters_device():
    model = _Recorder()
    land = loss_landscape(model, _SumLoss(), _data(), directions=[[torch.ones(3, 2)]], dims=1,
                          points=3)
    assert land.losses.shape == (3,)
    assert model.seen and set(model.seen) == {torch.device("meta")}
