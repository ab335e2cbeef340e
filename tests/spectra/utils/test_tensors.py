import math

import numpy as np
import pytest
import torch

from spectra.utils.tensors import pairwise_dot, pairwise_norm, standard_strides


def test_transposed_column_gets_standard_strides_without_a_copy():
    x = torch.randn(7, 1).T
    assert x.stride() == (1, 1)
    y = standard_strides(x)
    assert y.stride() == (7, 1) and y.data_ptr() == x.data_ptr() and torch.equal(x, y)


def test_non_contiguous_input_is_copied_to_standard_layout():
    x = torch.randn(5, 3).T
    y = standard_strides(x)
    assert y.stride() == (5, 1) and torch.equal(x, y)


def test_pairwise_dot_and_norm_keep_what_a_running_float32_sum_loses():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4321, generator=g), torch.randn(4321, generator=g)
    exact = float(np.dot(x.double().numpy(), y.double().numpy()))
    assert math.isclose(pairwise_dot(x, y), exact, rel_tol=1e-5)
    assert math.isclose(pairwise_norm(x), float(np.linalg.norm(x.double().numpy())), rel_tol=1e-6)
    # a million float32 ones after a large first entry: a running float32 sum stalls
    # (each 1 is below half an ulp of the total), a pairwise one does not
    ones = torch.ones(1_000_000)
    big = torch.cat([torch.tensor([2.0**25]), ones[1:]])
    total = 2.0**25 + 999_999
    running = float(np.cumsum((big * ones).numpy(), dtype=np.float32)[-1])
    assert abs(running - total) > 1e-2 * total  # a running float32 sum loses them all
    assert abs(pairwise_dot(big, ones) - total) <= 4e-6 * total
    # half precision: summed in float32 (squares of float16 overflow past a norm of 256)
    assert math.isclose(pairwise_norm(torch.full((1000,), 10.0, dtype=torch.float16)),
                        math.sqrt(1000) * 10, rel_tol=1e-3)
    assert pairwise_dot(x.double(), y.double()) == pytest.approx(exact, rel=1e-14)
