"""spectra.utils.params: trainable parameters, P and the model's device."""

import torch
from torch import nn

from spectra.utils.params import model_device, num_parameters, trainable_parameters


def test_only_parameters_with_requires_grad_count():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].bias.requires_grad_(False)
    assert [n for n, _ in trainable_parameters(model)] == ["0.weight", "1.weight", "1.bias"]
    assert num_parameters(model) == 12 + 8 + 2


def test_model_device_is_the_first_parameter_or_buffer_device():
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.Linear(2, 2, device="meta")) == torch.device("meta")
    norm = nn.BatchNorm1d(3, affine=False, device="meta")  # buffers only
    assert model_device(norm) == torch.device("meta")
    assert model_device(nn.ReLU()) is None
