import pytest
import torch

from spectra import GGNOperator
from tests.spectra.cases import CASES


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_dense_float64_ggn(case, cache):
    G = GGNOperator(case.model, case.loss_fn, case.batches, params=case.params, cache=cache)
    dense = case.dense_ggn()
    P = dense.shape[0]
    got = G.matmat(torch.eye(P, dtype=torch.float64))
    assert torch.allclose(got, dense, atol=1e-10, rtol=0), (got - dense).abs().max()


@pytest.mark.parametrize("case", CASES[:3], ids=lambda c: c.name)
def test_ggn_is_positive_semidefinite_for_convex_losses(case):
    G = GGNOperator(case.model, case.loss_fn, case.batches)
    M = G.matmat(torch.eye(G.shape[0], dtype=torch.float64))
    assert torch.linalg.eigvalsh(M).min() > -1e-10


def test_ggn_equals_hessian_for_a_linear_model():
    from torch import nn

    from spectra import HessianOperator

    model = nn.Linear(4, 3).double()
    X, y = torch.randn(9, 4, dtype=torch.float64), torch.randint(0, 3, (9,))
    data = [(X[:5], y[:5]), (X[5:], y[5:])]
    eye = torch.eye(15, dtype=torch.float64)
    H = HessianOperator(model, nn.CrossEntropyLoss(), data).matmat(eye)
    G = GGNOperator(model, nn.CrossEntropyLoss(), data).matmat(eye)
    assert torch.allclose(H, G, atol=1e-12)
