"""spectra.utils.params: trainable parameters and P."""

from torch import nn

from spectra.utils.params import num_parameters, trainable_parameters


def test_only_parameters_with_requires_grad_count():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].bias.requires_grad_(False)
    assert [n for n, _ in trainable_parameters(model)] == ["0.weight", "1.weight", "1.bias"]
    assert num_parameters(model) == 12 + 8 + 2
