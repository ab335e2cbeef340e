from dataclasses import dataclass

import pytest
import torch
from torch import nn

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
    from spectra import HessianOperator

    model = nn.Linear(4, 3).double()
    X, y = torch.randn(9, 4, dtype=torch.float64), torch.randint(0, 3, (9,))
    data = [(X[:5], y[:5]), (X[5:], y[5:])]
    eye = torch.eye(15, dtype=torch.float64)
    H = HessianOperator(model, nn.CrossEntropyLoss(), data).matmat(eye)
    G = GGNOperator(model, nn.CrossEntropyLoss(), data).matmat(eye)
    assert torch.allclose(H, G, atol=1e-12)


class _LogitsOutput(dict):
    """Like a transformers ``ModelOutput``: a mapping whose fields are also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class _Output:
    hidden: torch.Tensor
    logits: torch.Tensor


class _Wrapped(nn.Module):
    """The case's model (same parameter order) with its logits in another return type."""

    def __init__(self, inner: nn.Module, kind: str) -> None:
        super().__init__()
        self.inner, self.kind = inner, kind

    def forward(self, x):
        logits = self.inner(x)
        hidden = logits.detach() * 0
        if self.kind == "dict":
            return {"hidden": hidden, "logits": logits}
        if self.kind == "model-output":
            return _LogitsOutput(logits=logits, hidden=hidden)
        if self.kind == "dataclass":
            return _Output(hidden, logits)
        if self.kind == "tuple":
            return logits, hidden
        return {"scores": logits}


@pytest.mark.parametrize("kind, output_fn", [
    ("dict", None), ("model-output", None), ("dataclass", None), ("tuple", lambda out: out[0]),
    ("dict", lambda out: out["logits"]),
])
@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("mlp-ce-mean", "attention-lm")],
                         ids=lambda c: c.name)
def test_linearizes_the_logits_of_a_model_that_returns_no_tensor(case, kind, output_fn):
    # the loss receives the selected tensor; a plain callable makes the base class detect the
    # reduction on it as well
    loss = lambda logits, y: case.loss_fn(logits, y)
    G = GGNOperator(_Wrapped(case.model, kind), loss, case.batches, output_fn=output_fn)
    assert G.reduction == "mean"
    dense = case.dense_ggn()
    got = G.matmat(torch.eye(dense.shape[0], dtype=torch.float64))
    assert torch.allclose(got, dense, atol=1e-10, rtol=0), (got - dense).abs().max()


@pytest.mark.parametrize("kind, output_fn, match", [
    ("tuple", None, r"returned a tuple of 2 items \(Tensor, Tensor\).*output_fn="),
    ("scores", None, r"returned a dict with keys \['scores'\].*output_fn="),
    ("dict", lambda out: out, "output_fn must return a tensor, got dict"),
])
def test_an_output_without_a_tensor_or_logits_is_refused_with_what_to_do(kind, output_fn, match):
    case = CASES[0]
    G = GGNOperator(_Wrapped(case.model, kind), case.loss_fn, case.batches, output_fn=output_fn)
    with pytest.raises(TypeError, match=match):
        G.matvec(torch.ones(G.shape[0], dtype=torch.float64))
    with pytest.raises(TypeError, match="output_fn must be callable"):
        GGNOperator(case.model, case.loss_fn, case.batches, output_fn="logits")


@pytest.mark.parametrize("kind", ["ggn", "fisher"])
def test_block_of_only_unused_parameters_is_the_zero_operator(kind):
    # outputs that do not depend on the selected parameters: J = 0 (was: autograd.grad RuntimeError)
    from spectra import FisherOperator
    from tests.spectra.cases import UnusedHead

    torch.manual_seed(0)
    model = UnusedHead().double()
    X, y = torch.randn(6, 3, dtype=torch.float64), torch.randint(0, 2, (6,))
    cls = GGNOperator if kind == "ggn" else FisherOperator
    op = cls(model, nn.CrossEntropyLoss(), (X, y), params=["unused.weight", "unused.bias"])
    assert torch.equal(op.matmat(torch.randn(20, 2, dtype=torch.float64)), torch.zeros(20, 2, dtype=torch.float64))
