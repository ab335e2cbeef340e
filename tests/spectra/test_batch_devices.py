"""The alignment and landscape losses move each batch to the parameters' device, as the
operators do, so data kept on the CPU works with a model on a GPU.

Without a GPU the parameters are put on the ``meta`` device: the model below records
where its inputs arrive and computes its output without its parameters (on the CPU),
so only the movement of the batches is exercised, not a meta forward pass."""

from __future__ import annotations

import numpy as np
import pytest
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


def test_probe_with_alignment_and_a_landscape_take_data_left_on_the_cpu(device):
    """The model on ``device`` (CUDA when present, ``-m cuda``), its data on the CPU, as
    the operators accept it: the alignment and the landscape agree with data on ``device``."""
    from spectra.probe import ProbeSettings, probe

    g = torch.Generator().manual_seed(0)
    X = torch.randn(24, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (24,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double().to(device)
    loss_fn = nn.CrossEntropyLoss()
    s = ProbeSettings(top_k=2, bottom=False, trace_matvecs=0, density=None, tol=1e-8,
                      alignment=True)
    out = {}
    for where in ("cpu", device):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        data, batch = (X.to(where), y.to(where)), (X[:8].to(where), y[:8].to(where))
        r = probe(model, loss_fn, data, s, optimizer=opt, batch=batch)
        land = loss_landscape(model, loss_fn, data, directions="random", points=3)
        out[str(where)] = (r.alignment.to_dict(), land.losses)
    (a_cpu, l_cpu), (a_dev, l_dev) = out["cpu"], out[str(device)]
    for key, value in a_cpu.items():
        assert value == pytest.approx(a_dev[key], rel=1e-9, abs=1e-12), key
    np.testing.assert_allclose(l_cpu, l_dev, rtol=1e-12)
