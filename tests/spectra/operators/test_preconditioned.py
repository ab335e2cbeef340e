"""PreconditionedOperator: D^(-1/2) A D^(-1/2) against dense float64, its eigenvalues
against those of D^(-1) A (scipy), through spectra.eigsh and spectra.slq, and its errors."""

import numpy as np
import pytest
import scipy.linalg
import torch

from spectra import DenseOperator, HessianOperator, PreconditionedOperator, eigsh, slq
from tests.spectra.cases import CASES

CASE = CASES[0]  # mlp-ce-mean: P = 39, three uneven batches


def _diag(P: int, seed: int = 0) -> torch.Tensor:
    """Positive entries spread over four orders of magnitude, like Adam's."""
    g = torch.Generator().manual_seed(seed)
    return torch.exp(4.0 * torch.rand(P, generator=g, dtype=torch.float64) - 2.0) * 1e-2


def _hessian() -> tuple[HessianOperator, torch.Tensor]:
    H = HessianOperator(CASE.model, CASE.loss_fn, CASE.batches)
    return H, CASE.dense_hessian()


def test_matches_the_dense_preconditioned_hessian():
    H, dense = _hessian()
    P = dense.shape[0]
    d = _diag(P)
    op = PreconditionedOperator(H, d)
    want = dense / d.sqrt()[:, None] / d.sqrt()[None, :]
    got = op.matmat(torch.eye(P, dtype=torch.float64))
    scale = want.abs().max()
    assert torch.allclose(got, want, atol=1e-10 * scale, rtol=0), (got - want).abs().max()
    v = torch.randn(P, dtype=torch.float64)
    assert torch.allclose(op.matvec(v), want @ v, atol=1e-10 * scale * v.abs().sum(), rtol=0)
    assert torch.allclose(op @ v[:, None], (want @ v)[:, None], atol=1e-10 * scale * v.abs().sum(), rtol=0)
    assert op.shape == (P, P) and op.dtype == torch.float64 and op.device == torch.device("cpu")
    assert op.param_names == H.param_names


def test_counts_its_products_and_the_inner_operators():
    H, dense = _hessian()
    op = PreconditionedOperator(H, _diag(dense.shape[0]))
    before = H.num_matvecs
    op.matmat(torch.randn(dense.shape[0], 3, dtype=torch.float64))
    op.matvec(torch.randn(dense.shape[0], dtype=torch.float64))
    assert op.num_matvecs == 4
    assert H.num_matvecs - before == 4


def test_eigenvalues_equal_those_of_the_inverse_preconditioner_times_the_hessian():
    H, dense = _hessian()
    P = dense.shape[0]
    d = _diag(P, seed=1)
    op = PreconditionedOperator(H, d)
    M = op.matmat(torch.eye(P, dtype=torch.float64)).numpy()
    sym = scipy.linalg.eigh((M + M.T) / 2, eigvals_only=True)
    nonsym = scipy.linalg.eig(dense.numpy() / d.numpy()[:, None], right=False)
    assert np.abs(nonsym.imag).max() <= 1e-8 * np.abs(nonsym).max()
    scale = np.abs(sym).max()
    assert np.allclose(np.sort(nonsym.real), sym, atol=1e-9 * scale, rtol=0)
    # the preconditioning matters: the spectrum is not the Hessian's
    assert abs(sym[-1] - np.linalg.eigvalsh(dense.numpy())[-1]) > 0.1 * scale


def test_eigsh_finds_the_top_and_bottom_preconditioned_eigenvalues():
    H, dense = _hessian()
    P = dense.shape[0]
    d = _diag(P, seed=2)
    want = np.linalg.eigvalsh((dense / d.sqrt()[:, None] / d.sqrt()[None, :]).numpy())
    op = PreconditionedOperator(H, d)
    top = eigsh(op, k=3, which="LA", tol=1e-10, generator=torch.Generator().manual_seed(0))
    scale = np.abs(want).max()
    assert np.allclose(np.sort(top.eigenvalues.numpy()), want[-3:], atol=1e-7 * scale, rtol=0)
    assert top.num_matvecs == op.num_matvecs
    bottom = eigsh(op, k=1, which="SA", tol=1e-10, generator=torch.Generator().manual_seed(0))
    assert abs(float(bottom.eigenvalues[0]) - want[0]) <= 1e-7 * scale
    # the eigenvectors of the symmetric form give those of D^-1 H: (D^-1 H) x = lambda x
    X = op.right_eigenvectors(top.eigenvectors)
    R = dense @ X / d[:, None] - X * top.eigenvalues[None, :]
    assert float(R.abs().max()) <= 1e-6 * scale


def test_slq_nodes_are_preconditioned_eigenvalues():
    H, dense = _hessian()
    P = dense.shape[0]
    d = _diag(P, seed=3)
    want = np.linalg.eigvalsh((dense / d.sqrt()[:, None] / d.sqrt()[None, :]).numpy())
    op = PreconditionedOperator(H, d)
    measure = slq(op, num_vectors=2, num_steps=P, generator=torch.Generator().manual_seed(0))
    scale = np.abs(want).max()
    # P Lanczos steps span the whole space: every weighted node is an eigenvalue
    nodes = measure.nodes[measure.weights > 1e-6]
    dist = np.abs(nodes[:, None] - want[None, :]).min(axis=1)
    assert dist.max() <= 1e-6 * scale, dist.max()
    lo, hi = measure.support()
    assert abs(hi - want[-1]) <= 1e-6 * scale and abs(lo - want[0]) <= 1e-6 * scale


def test_composes_with_dense_and_nested_operators():
    g = torch.Generator().manual_seed(4)
    B = torch.randn(6, 6, generator=g, dtype=torch.float64)
    A = B @ B.T
    d1, d2 = _diag(6, 5), _diag(6, 6)
    nested = PreconditionedOperator(PreconditionedOperator(DenseOperator(A), d1), d2)
    want = A / (d1 * d2).sqrt()[:, None] / (d1 * d2).sqrt()[None, :]
    got = nested.matmat(torch.eye(6, dtype=torch.float64))
    assert torch.allclose(got, want, atol=1e-12 * want.abs().max(), rtol=0)
    # a plain tensor works too, and scipy sees the same matrix
    op = PreconditionedOperator(A, d1)
    S = op.to_scipy()
    assert np.allclose(S.matmat(np.eye(6)), (A / d1.sqrt()[:, None] / d1.sqrt()[None, :]).numpy(), atol=1e-12)


def test_float32_operator_takes_a_float64_diagonal():
    A = torch.diag(torch.tensor([4.0, 9.0, 1.0]))
    op = PreconditionedOperator(A, torch.tensor([2.0, 3.0, 0.5], dtype=torch.float64))
    assert op.dtype == torch.float32 and op.diag.dtype == torch.float32
    assert torch.allclose(op.matvec(torch.ones(3)), torch.tensor([2.0, 3.0, 2.0]))


@pytest.mark.parametrize(
    ("diag", "error", "match"),
    [
        ([1.0, 2.0, 3.0], TypeError, "torch.Tensor"),
        (torch.tensor([1, 2, 3]), TypeError, "floating-point"),
        (torch.ones(2), ValueError, r"shape \(3,\)"),
        (torch.ones(3, 1), ValueError, r"shape \(3,\)"),
        (torch.tensor([1.0, 0.0, 2.0]), ValueError, r"<= 0, the first diag\[1\]"),
        (torch.tensor([1.0, -1.0, 2.0]), ValueError, "positive"),
        (torch.tensor([1.0, float("nan"), 2.0]), ValueError, r"non-finite.*diag\[1\]"),
        (torch.tensor([1.0, 2.0, float("inf")]), ValueError, "non-finite"),
        (torch.tensor([1.0, 1e-60, 2.0], dtype=torch.float64), ValueError, "after the cast"),
        (torch.tensor([1.0, 1e60, 2.0], dtype=torch.float64), ValueError, "after the cast"),
    ],
)
def test_refuses_a_bad_diagonal(diag, error, match):
    A = torch.eye(3)  # float32: the float64 diagonals under- or overflow in the cast
    with pytest.raises(error, match=match):
        PreconditionedOperator(A, diag)


def test_refuses_a_diagonal_on_another_device():
    A = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="diag is on meta"):
        PreconditionedOperator(A, torch.ones(3, dtype=torch.float64, device="meta"))


def test_a_device_named_without_its_index_is_the_default_one(monkeypatch):
    """An operator whose device is given by name (``cpu:0``, ``cuda``) takes a diagonal on
    that device: a tensor's device carries its index, the name may leave it out."""
    from spectra.operators.preconditioned import check_diagonal, same_device

    d = check_diagonal(torch.ones(3, dtype=torch.float64), 3, torch.float64, torch.device("cpu", 0))
    assert d.device.type == "cpu"
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert same_device("cuda", "cuda:1") and same_device("cuda:1", "cuda")
    assert not same_device("cuda", "cuda:0") and not same_device("cuda:0", "cuda:1")
    assert not same_device("cuda:0", "cpu") and same_device("cpu", "cpu")


def test_refuses_vectors_of_the_wrong_shape():
    op = PreconditionedOperator(torch.eye(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        op.matvec(torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"shape \(3, k\)"):
        op.matmat(torch.ones(4, 2, dtype=torch.float64))
