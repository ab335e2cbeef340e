"""Spectra of a Hugging Face GPT-2 built from a config, exact against dense float64.

A randomly initialized 1-layer GPT-2 (``n_embd`` 16, float64, no weights downloaded)
through ``transformers``' "sdpa" attention (the fused kernel path, which has no double
backward) and "eager" attention, fed ``{"input_ids", "attention_mask"}`` batches with
right padding, and the next-token loss of :mod:`examples.gpt2_factory` (padding
excluded by labels ``-100``). The two attention implementations compute the same
function, so one dense reference serves both.

The default tests differentiate a subset of the parameters (``SUBSET``, 208 entries:
position embeddings, both layer norms, the attention's input and output biases, so
every second derivative passes through the attention), whose dense Hessian takes
seconds; the whole model's 3,520 parameters are covered by a test marked ``slow``
(about two minutes on two busy cores).

The dense references are built here from the loss of a flat parameter vector: the
Hessian by differentiating its autograd gradient against every unit vector, the GGN
as ``sum_b J_b^T H_b^out J_b`` from the logits' Jacobian. (``torch.func.hessian`` and
``jacrev(jacrev)`` of this model return non-symmetric matrices in torch 2.13 with
transformers 5.24, so they cannot serve as references here; the autograd reference
is itself checked against central differences of the gradient.) Skipped when
``transformers`` is not installed: ``pip install -e ".[transformers]"``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.func import functional_call

pytest.importorskip("transformers")

from examples.gpt2_factory import (
    NextTokenLoss,
    num_predicted_tokens,
    tiny_gpt2,
    token_batches,
    transformer_blocks,
)
from spectra import GGNOperator, HessianOperator, eigsh, slq
from spectra.utils.modes import math_attention

VOCAB, SEQ = 7, 6
SIZES = [3, 2]  # uneven batches
IMPLS = ["sdpa", "eager"]
DT = torch.float64


def _model(impl: str):
    return tiny_gpt2(n_layer=1, n_embd=16, n_head=2, vocab_size=VOCAB, n_positions=SEQ,
                     attn_implementation=impl, dtype=DT, seed=0)


def _batches():
    return token_batches(SIZES, SEQ, VOCAB, seed=1, min_len=3)


def _cat(batches):
    X = {k: torch.cat([b[0][k] for b in batches]) for k in batches[0][0]}
    return [(X, torch.cat([b[1] for b in batches]))]


class Reference:
    """The data-set loss ``sum_b loss(model(X_b), y_b)`` (the loss is sum-reduced over
    sequences) of a flat parameter vector, with its dense Hessian and GGN."""

    def __init__(self, model, loss, batches, names: list[str] | None = None) -> None:
        self.model, self.loss, self.batches = model, loss, batches
        named = [(n, p) for n, p in model.named_parameters()
                 if p.requires_grad and (names is None or n in names)]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.theta = torch.cat([p.detach().reshape(-1) for _, p in named])

    def _state(self, flat: Tensor) -> dict[str, Tensor]:
        # the parameters outside the subset keep their values (functional_call reads them)
        return {n: c.view(s) for n, c, s in zip(self.names, flat.split(self.sizes), self.shapes)}

    def total(self, flat: Tensor) -> Tensor:
        return sum(self.loss(functional_call(self.model, self._state(flat), (X,)), y)
                   for X, y in self.batches)

    def gradient(self, flat: Tensor) -> Tensor:
        flat = flat.detach().requires_grad_(True)
        with math_attention():
            return torch.autograd.grad(self.total(flat), flat)[0]

    def hessian(self) -> Tensor:
        flat = self.theta.clone().requires_grad_(True)
        P = flat.numel()
        with math_attention():
            (g,) = torch.autograd.grad(self.total(flat), flat, create_graph=True)
            rows = [torch.autograd.grad(g, flat, E, retain_graph=True, is_grads_batched=True)[0]
                    for E in torch.eye(P, dtype=DT).split(512)]
        return torch.cat(rows)

    def ggn(self) -> Tensor:
        P = self.theta.numel()
        G = torch.zeros(P, P, dtype=DT)
        for X, y in self.batches:
            flat = self.theta.clone().requires_grad_(True)
            with math_attention():
                logits = functional_call(self.model, self._state(flat), (X,)).logits
                E = torch.eye(logits.numel(), dtype=DT).view(-1, *logits.shape)
                (J,) = torch.autograd.grad(logits, flat, E, is_grads_batched=True)
            out = logits.detach().reshape(-1)
            Hout = torch.func.hessian(
                lambda o, shape=logits.shape, y=y: self.loss(o.view(shape), y))(out)
            G += J.T @ Hout @ J
        return G


SUBSET = [
    "model.transformer.wpe.weight",
    "model.transformer.h.0.ln_1.weight",
    "model.transformer.h.0.ln_1.bias",
    "model.transformer.h.0.attn.c_attn.bias",
    "model.transformer.h.0.attn.c_proj.bias",
    "model.transformer.h.0.ln_2.bias",
    "model.transformer.ln_f.weight",
]


def _reference(names: list[str] | None) -> Reference:
    batches = _batches()
    loss = NextTokenLoss(num_predicted_tokens(batches))
    r = Reference(_model("eager"), loss, batches, names)
    r.H, r.G = r.hessian(), r.ggn()
    return r


@pytest.fixture(scope="module")
def ref() -> Reference:
    return _reference(SUBSET)


def _scale(M: Tensor) -> float:
    return float(M.abs().max())


def test_the_data_has_padding_and_uneven_batches(ref):
    masks = [X["attention_mask"] for X, _ in ref.batches]
    assert [len(m) for m in masks] == SIZES
    assert any(bool((m == 0).any()) for m in masks)
    for (X, y) in ref.batches:
        assert bool(((y == -100) == (X["attention_mask"] == 0)).all())


def test_dense_reference_is_symmetric_and_matches_finite_differences(ref):
    H = ref.H
    assert torch.allclose(H, H.T, atol=1e-12 * _scale(H), rtol=0)
    g = torch.Generator().manual_seed(2)
    eps = 1e-6  # the error shrinks as eps^2 down to here: 8e-8 of 20 at 1e-6
    for _ in range(2):
        v = torch.randn(H.shape[0], generator=g, dtype=DT)
        fd = (ref.gradient(ref.theta + eps * v) - ref.gradient(ref.theta - eps * v)) / (2 * eps)
        # central differences: O(eps^2) truncation, O(u / eps) rounding
        assert torch.allclose(fd, H @ v, atol=1e-5 * float((H @ v).abs().max()), rtol=0)


@pytest.mark.parametrize("impl", IMPLS)
def test_hessian_and_ggn_match_dense(ref, impl):
    model = _model(impl)
    assert model.model.config._attn_implementation == impl
    g = torch.Generator().manual_seed(3)
    V = torch.randn(ref.theta.numel(), 4, generator=g, dtype=DT)
    H = HessianOperator(model, ref.loss, ref.batches, params=ref.names)  # the loss receives the ModelOutput
    assert H.reduction == "sum" and H.num_data == sum(SIZES)
    assert torch.allclose(H.matmat(V), ref.H @ V, atol=1e-10 * _scale(ref.H @ V), rtol=0)
    G = GGNOperator(model, ref.loss, ref.batches, params=ref.names)  # linearizes the `logits` field
    assert torch.allclose(G.matmat(V), ref.G @ V, atol=1e-10 * _scale(ref.G @ V), rtol=0)


def test_batches_are_weighted_by_what_they_hold(ref):
    """The same data split 3+2, 1+4 and 5 gives one operator: for the token-mean loss
    (sum over a batch's tokens / the data set's count) and for a per-sequence mean
    loss (mean-reduced, batches weighted n_b / N)."""
    model = _model("sdpa")
    g = torch.Generator().manual_seed(4)
    V = torch.randn(ref.theta.numel(), 2, generator=g, dtype=DT)
    whole = _cat(ref.batches)
    other = token_batches([1, 4], SEQ, VOCAB, seed=1, min_len=3)
    assert torch.equal(_cat(other)[0][1], whole[0][1])

    def per_sequence_mean(out, labels):
        lp = torch.log_softmax(out.logits[:, :-1], -1)
        target = labels[:, 1:]
        keep = target != -100
        nll = -lp.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1) * keep
        return (nll.sum(1) / keep.sum(1)).mean()

    for loss, reduction in ((ref.loss, None), (per_sequence_mean, "mean")):
        prods = [HessianOperator(model, loss, data, params=ref.names,
                                 reduction=reduction).matmat(V)
                 for data in (ref.batches, other, whole)]
        for p in prods[:2]:
            assert torch.allclose(p, prods[2], atol=1e-12 * _scale(prods[2]), rtol=0)
    # detected from the loss itself: a per-sequence mean
    assert HessianOperator(model, per_sequence_mean, ref.batches).reduction == "mean"


def test_padding_tokens_change_nothing(ref):
    model = _model("sdpa")
    changed = []
    for X, y in ref.batches:
        ids = X["input_ids"].clone()
        ids[X["attention_mask"] == 0] = (ids[X["attention_mask"] == 0] + 1) % VOCAB
        changed.append(({"input_ids": ids, "attention_mask": X["attention_mask"]}, y))
    assert not all(torch.equal(a[0]["input_ids"], b[0]["input_ids"])
                   for a, b in zip(changed, ref.batches))
    v = torch.randn(ref.theta.numel(), generator=torch.Generator().manual_seed(5), dtype=DT)
    a = HessianOperator(model, ref.loss, ref.batches, params=ref.names).matvec(v)
    b = HessianOperator(model, ref.loss, changed, params=ref.names).matvec(v)
    assert torch.allclose(a, b, atol=1e-12 * _scale(a), rtol=0)


@pytest.mark.parametrize("impl", IMPLS)
def test_top_k_lambda_min_and_density_match_dense(ref, impl):
    H = HessianOperator(_model(impl), ref.loss, ref.batches, params=ref.names)
    exact = torch.linalg.eigvalsh(ref.H)
    lmax = float(exact.abs().max())
    top = eigsh(H, k=3, which="LA", tol=1e-8)
    assert bool(top.converged.all())
    # converged to residual r: each Ritz value is within r of an eigenvalue
    assert np.allclose(top.eigenvalues.numpy(), exact[-3:].flip(0).numpy(),
                       atol=1e-6 * lmax, rtol=0)
    bottom = eigsh(H, k=1, which="SA", tol=1e-8, atol=1e-9 * lmax)
    assert abs(float(bottom.eigenvalues[0]) - float(exact[0])) <= 1e-6 * lmax
    # SLQ of the operator and of the dense matrix: the same random vectors, the same quadrature
    m_op = slq(H, num_vectors=2, num_steps=12, generator=torch.Generator().manual_seed(6))
    m_dense = slq(ref.H, num_vectors=2, num_steps=12, generator=torch.Generator().manual_seed(6))
    assert np.allclose(m_op.nodes, m_dense.nodes, atol=1e-8 * lmax, rtol=0)
    assert np.allclose(m_op.weights, m_dense.weights, atol=1e-8, rtol=0)
    # and its first moment is v^T H v / v^T v of those vectors: inside the spectrum
    first = (m_op.nodes * m_op.weights).sum(1)
    assert np.all(first <= float(exact[-1])) and np.all(first >= float(exact[0]))


def _check_blocks(ref: Reference, blocks: dict[str, list[str]]) -> None:
    """Each block's operator (``params=`` its names) against the dense Hessian's
    diagonal block: products, and the top eigenvalue by eigsh."""
    model = _model("sdpa")
    offsets = dict(zip(ref.names, np.cumsum([0, *ref.sizes[:-1]]).tolist()))
    sizes = dict(zip(ref.names, ref.sizes))
    g = torch.Generator().manual_seed(7)
    for block, names in blocks.items():
        idx = torch.cat([torch.arange(offsets[n], offsets[n] + sizes[n]) for n in names])
        Hb = ref.H[idx][:, idx]
        op = HessianOperator(model, ref.loss, ref.batches, params=names)
        assert op.shape == Hb.shape
        v = torch.randn(len(idx), generator=g, dtype=DT)
        assert torch.allclose(op.matvec(v), Hb @ v, atol=1e-10 * float((Hb @ v).abs().max()),
                              rtol=0), block
        exact = torch.linalg.eigvalsh(Hb)
        res = eigsh(op, k=1, which="LA", tol=1e-8)
        assert abs(float(res.eigenvalues[0]) - float(exact[-1])) <= 1e-6 * float(exact.abs().max()), block


def test_per_tensor_spectra_are_the_dense_diagonal_blocks(ref):
    _check_blocks(ref, {n: [n] for n in ref.names})


@pytest.mark.slow
def test_whole_model_per_block_hessian_ggn_and_spectra():
    """All 3,520 parameters: products of the Hessian and the GGN with both attention
    implementations, top-3 and the most negative eigenvalue, and one block per
    transformer block (embeddings, h.0, ln_f)."""
    full = _reference(None)
    blocks = transformer_blocks(_model("sdpa"))
    assert list(blocks) == ["embeddings", "h.0", "ln_f"]
    assert [n for names in blocks.values() for n in names] == full.names  # every parameter in one block
    for impl in IMPLS:
        test_hessian_and_ggn_match_dense(full, impl)
    test_top_k_lambda_min_and_density_match_dense(full, "sdpa")
    _check_blocks(full, blocks)
