import torch

from spectra.utils.tensors import standard_strides


def test_transposed_column_gets_standard_strides_without_a_copy():
    x = torch.randn(7, 1).T
    assert x.stride() == (1, 1)
    y = standard_strides(x)
    assert y.stride() == (7, 1) and y.data_ptr() == x.data_ptr() and torch.equal(x, y)


def test_non_contiguous_input_is_copied_to_standard_layout():
    x = torch.randn(5, 3).T
    y = standard_strides(x)
    assert y.stride() == (5, 1) and torch.equal(x, y)
