"""spectra.probe: the reduction of the loss is stated and never guessed."""

import pytest
import torch
import torch.nn.functional as F

from spectra.probe import ProbeSettings, probe
from tests.spectra.cases import REDUCTION_CASES

EXACT = ProbeSettings(top_k=2, bottom=False, tol=1e-10, trace_matvecs=0, density=None)


@pytest.mark.parametrize("name", ["seq-ce-sum", "seq-ce-token-mean", "lambda-mse-sum"])
def test_probe_of_a_custom_loss_matches_the_dense_spectrum(name):
    case = next(c for c in REDUCTION_CASES if c.name == name)
    dense = torch.linalg.eigvalsh(case.concatenated().dense_hessian())
    res = probe(case.model, case.loss_fn, case.batches, EXACT)
    assert res.reduction == case.reduction
    assert res.to_dict()["reduction"] == case.reduction
    top = torch.as_tensor(res.top_eigenvalues)
    assert torch.allclose(top, dense.flip(0)[:2], rtol=1e-8, atol=0), (top, dense[-2:])


def test_probe_refuses_a_loss_it_cannot_read_and_takes_reduction():
    case = REDUCTION_CASES[0]

    def squared_mean(o, t):
        return F.cross_entropy(o, t) ** 2

    with pytest.raises(ValueError, match="reduction='mean' or reduction='sum'"):
        probe(case.model, squared_mean, case.batches, EXACT)
    res = probe(case.model, squared_mean, case.batches, EXACT, reduction="sum")
    assert res.reduction == "sum"
