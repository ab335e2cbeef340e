"""spectra.utils.modules: KeywordInputs unpacks a dict batch into keyword arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spectra
from spectra.utils.modules import KeywordInputs


class _Keywords(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2, dtype=torch.float64)

    def forward(self, features, scale):
        return self.lin(features) * scale


def test_operator_over_a_keyword_model_equals_the_plain_one():
    torch.manual_seed(0)
    inner = _Keywords()
    X, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,))
    scale = torch.full((8, 1), 2.0, dtype=torch.float64)
    wrapped = spectra.HessianOperator(KeywordInputs(inner), nn.CrossEntropyLoss(),
                                      ({"features": X, "scale": scale}, y))

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = inner

        def forward(self, x):
            return self.model(x, 2.0)

    plain = spectra.HessianOperator(Plain(), nn.CrossEntropyLoss(), (X, y))
    V = torch.randn(wrapped.shape[0], 3, dtype=torch.float64)
    torch.testing.assert_close(wrapped.matmat(V), plain.matmat(V), rtol=1e-12, atol=1e-14)


def test_errors_name_what_is_wrong():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        KeywordInputs(lambda x: x)
    with pytest.raises(TypeError, match="dict of keyword arguments"):
        KeywordInputs(_Keywords())(torch.zeros(2, 3))
