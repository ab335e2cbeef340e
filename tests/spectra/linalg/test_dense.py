"""The adapter of operator-like objects: the device the solvers put their vectors on."""

import numpy as np
import pytest
import torch

from spectra import eigsh
from spectra.linalg.dense import as_operator, work_dtype


class _Op:
    shape = (3, 3)

    def __init__(self, device):
        if device is not None:
            self.device = device

    def matvec(self, v):
        return 2 * v


@pytest.mark.parametrize("device", ["meta", torch.device("meta")])
def test_a_callback_operator_keeps_its_device_given_as_a_name_or_a_device(device):
    """``device = "cuda"`` (a name) must not send CPU vectors to a GPU operator."""
    assert as_operator(_Op(device)).device == torch.device("meta")


def test_a_callback_operator_without_a_device_is_on_the_cpu_and_a_bad_name_is_refused():
    assert as_operator(_Op(None)).device == torch.device("cpu")
    assert as_operator(_Op(3)).device == torch.device("cpu")  # not a device: not read as one
    with pytest.raises(ValueError, match="'gpu0' is not a torch device"):
        as_operator(_Op("gpu0"))


def test_a_complex_matrix_is_refused_not_cut_to_its_real_part():
    H = torch.tensor([[1, 1j], [-1j, 1]], dtype=torch.complex128)  # eigenvalues 0 and 2
    with pytest.raises(ValueError, match=r"the matrix is complex \(torch.complex128\)"):
        as_operator(H)
    with pytest.raises(ValueError, match="the matrix is complex"):
        as_operator(H.numpy())


def test_a_matvec_that_returns_numpy_is_taken():
    """The module's "anything with matvec": a numpy result as well as a tensor one."""
    class NumpyOp:
        shape = (3, 3)

        def matvec(self, v):
            return np.diag([1.0, 2.0, 3.0]) @ np.asarray(v)

    res = eigsh(NumpyOp(), k=1, which="LA", tol=1e-10)
    assert abs(float(res.eigenvalues[0]) - 3.0) <= 1e-10


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_products_stay_in_their_dtype_and_come_back_in_the_vectors(dtype):
    """The solvers work in float32 (work_dtype); the product is the operator's own."""
    seen = []

    class HalfOp:
        shape = (3, 3)

        def __init__(self):
            self.dtype = dtype

        def matmat(self, V):
            seen.append(V.dtype)
            return 2 * V

    for op in (as_operator(HalfOp()), as_operator(torch.eye(3, dtype=dtype))):
        assert work_dtype(op) == torch.float32
        V = torch.full((3, 1), 1.0 + 2.0**-12)  # rounds to 1 in float16 and bfloat16
        out = op.matmat(V)
        assert out.dtype == torch.float32
        assert float(out.max()) == float(out.min()) in (1.0, 2.0)  # computed in half
    assert seen == [dtype]
    assert work_dtype(as_operator(torch.eye(3, dtype=torch.float64))) == torch.float64
    assert work_dtype(as_operator(torch.eye(3, dtype=torch.int64))) == torch.float64
