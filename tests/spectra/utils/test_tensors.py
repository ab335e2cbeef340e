import math

import numpy as np
import torch

from spectra.utils import tensors
from spectra.utils.tensors import dot64, norm64, standard_strides


def test_transposed_column_gets_standard_strides_without_a_copy():
    x = torch.randn(7, 1).T
    assert x.stride() == (1, 1)
    y = standard_strides(x)
    assert y.stride() == (7, 1) and y.data_ptr() == x.data_ptr() and torch.equal(x, y)


def test_non_contiguous_input_is_copied_to_standard_layout():
    x = torch.randn(5, 3).T
    y = standard_strides(x)
    assert y.stride() == (5, 1) and torch.equal(x, y)


def test_dot64_and_norm64_sum_in_float64_slice_by_slice(monkeypatch):
    monkeypatch.setattr(tensors, "_SLICE", 1000)  # several slices and a short last one
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4321, generator=g), torch.randn(4321, generator=g)
    exact = float(np.dot(x.double().numpy(), y.double().numpy()))
    assert math.isclose(dot64(x, y), exact, rel_tol=1e-12)
    assert math.isclose(norm64(x), float(np.linalg.norm(x.double().numpy())), rel_tol=1e-12)
    # float32 ones: a large shift that float32 sums lose and float64 sums keep
    ones = torch.full((4321,), 1.0)
    big = torch.cat([torch.tensor([1e8]), ones[1:]])
    assert dot64(big, ones) == 1e8 + 4320
    assert dot64(x.double(), y.double()) == float(torch.dot(x.double(), y.double()))
