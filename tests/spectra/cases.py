"""Small float64 problems with their dense Hessians and GGNs, for exact comparisons.

Each case is a model, a loss, and data split into uneven batches. The dense
references differentiate the full-data loss ``sum_b w_b L_b(theta)`` (``w_b =
n_b / N`` for a mean-reduced loss, 1 for a sum) with ``torch.func``, entirely
independently of the operators under test. :meth:`Case.concatenated` puts all
the data in one batch, whose references are those of the data-set loss itself,
with no batch weights at all.

:data:`REDUCTION_CASES` are losses written as plain callables (no ``reduction``
attribute), for the operators' detection of the reduction; each knows its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, hessian, jacrev
from torch.nn.attention import SDPBackend, sdpa_kernel


@dataclass
class Case:
    name: str
    model: nn.Module
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    batches: list[tuple[Tensor, Tensor]]
    params: list[str] | None = None
    reduction: str | None = None  # the truth for a loss without a `reduction` attribute

    def concatenated(self) -> Case:
        """The same problem with all its batches in one."""
        X = _cat([X for X, _ in self.batches])
        y = _cat([y for _, y in self.batches])
        return Case(f"{self.name}-full", self.model, self.loss_fn, [(X, y)], self.params, self.reduction)

    @property
    def param_names(self) -> list[str]:
        return self.params or [n for n, p in self.model.named_parameters() if p.requires_grad]

    def _split(self, flat: Tensor) -> dict[str, Tensor]:
        named = dict(self.model.named_parameters())
        out, i = {}, 0
        for n in self.param_names:
            k = named[n].numel()
            out[n] = flat[i : i + k].view_as(named[n])
            i += k
        return out

    def flat_params(self) -> Tensor:
        named = dict(self.model.named_parameters())
        return torch.cat([named[n].detach().reshape(-1) for n in self.param_names])

    def _state(self, flat: Tensor) -> dict[str, Tensor]:
        state = {n: p.detach() for n, p in self.model.named_parameters()}
        state.update({n: b.detach().clone() for n, b in self.model.named_buffers()})
        state.update(self._split(flat))
        return state

    def _weights(self) -> list[float]:
        N = sum(len(y) for _, y in self.batches)
        reduction = self.reduction if self.reduction is not None else self.loss_fn.reduction
        if reduction == "sum":
            return [1.0] * len(self.batches)
        return [len(y) / N for _, y in self.batches]

    def dense_hessian(self) -> Tensor:
        if "_H" not in self.__dict__:
            self.__dict__["_H"] = self._dense_hessian()
        return self.__dict__["_H"]

    def dense_ggn(self) -> Tensor:
        if "_G" not in self.__dict__:
            self.__dict__["_G"] = self._dense_ggn()
        return self.__dict__["_G"]

    def _dense_hessian(self) -> Tensor:
        with sdpa_kernel(SDPBackend.MATH):  # the fused attention kernels have no double backward
            return self._dense_hessian_math()

    def _dense_ggn(self) -> Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            return self._dense_ggn_math()

    def _dense_hessian_math(self) -> Tensor:
        def total(flat: Tensor) -> Tensor:
            return sum(
                w * self.loss_fn(functional_call(self.model, self._state(flat), (X,)), y)
                for w, (X, y) in zip(self._weights(), self.batches)
            )

        return hessian(total)(self.flat_params())

    def _dense_ggn_math(self) -> Tensor:
        flat = self.flat_params()
        G = torch.zeros(flat.numel(), flat.numel(), dtype=flat.dtype)
        for w, (X, y) in zip(self._weights(), self.batches):
            out_fn: Callable[[Tensor], Tensor] = lambda f, X=X: functional_call(
                self.model, self._state(f), (X,)
            )
            out = out_fn(flat)
            J = jacrev(out_fn)(flat).reshape(out.numel(), -1)
            Hout = hessian(lambda o, shape=out.shape, y=y: self.loss_fn(o.reshape(shape), y))(out.reshape(-1))
            G += w * J.T @ Hout @ J
        return G


def _cat(parts: list) -> Tensor | dict:
    if isinstance(parts[0], Mapping):
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts)


def _uneven(X: Tensor | dict, y: Tensor, sizes: list[int]) -> list[tuple[Tensor, Tensor]]:
    out, i = [], 0
    for s in sizes:
        Xs = {k: v[i : i + s] for k, v in X.items()} if isinstance(X, Mapping) else X[i : i + s]
        out.append((Xs, y[i : i + s]))
        i += s
    return out


def make_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    dt = torch.float64
    cases = []
    X = torch.randn(23, 5, generator=g, dtype=dt)
    yc = torch.randint(0, 3, (23,), generator=g)
    yr = torch.randn(23, 2, generator=g, dtype=dt)

    mlp = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).to(dt)
    cases.append(Case("mlp-ce-mean", mlp, nn.CrossEntropyLoss(), _uneven(X, yc, [10, 10, 3])))

    mlp2 = nn.Sequential(nn.Linear(5, 4), nn.Sigmoid(), nn.Linear(4, 2)).to(dt)
    cases.append(Case("mlp-mse-sum", mlp2, nn.MSELoss(reduction="sum"), _uneven(X, yr, [8, 15])))
    cases.append(Case("mlp-mse-mean", mlp2, nn.MSELoss(), _uneven(X, yr, [7, 7, 7, 2])))

    Xi = torch.randn(11, 1, 6, 6, generator=g, dtype=dt)
    yi = torch.randint(0, 3, (11,), generator=g)
    cnn = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 3)
    ).to(dt)
    cases.append(Case("cnn-ce", cnn, nn.CrossEntropyLoss(), _uneven(Xi, yi, [4, 4, 3])))

    bn = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 3)).to(dt)
    with torch.no_grad():
        bn[1].running_mean.copy_(torch.randn(4, generator=g, dtype=dt))
        bn[1].running_var.copy_(torch.rand(4, generator=g, dtype=dt) + 0.5)
        bn[1].weight.copy_(torch.rand(4, generator=g, dtype=dt) + 0.5)
    bn.eval()
    cases.append(Case("batchnorm-eval", bn, nn.CrossEntropyLoss(), _uneven(X, yc, [12, 11])))

    sub = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).to(dt)
    cases.append(
        Case("param-subset", sub, nn.CrossEntropyLoss(), _uneven(X, yc, [23]), params=["2.weight", "0.bias"])
    )

    # a causal self-attention language model over {"input_ids", "attention_mask"} batches:
    # scaled_dot_product_attention picks a fused CPU kernel without double backward
    ids = torch.randint(0, ATTN_VOCAB, (9, 5), generator=g)
    mask = torch.ones(9, 5, dtype=torch.long)
    mask[::2, 3:] = 0  # padding at the end of every other sequence
    labels = torch.randint(0, ATTN_VOCAB, (9, 5), generator=g)
    Xa = {"input_ids": ids, "attention_mask": mask}
    cases.append(Case("attention-lm", TinyAttentionLM().to(dt), token_ce, _uneven(Xa, labels, [4, 5]),
                      reduction="mean"))
    return cases


ATTN_VOCAB = 5


class TinyAttentionLM(nn.Module):
    """Embedding, one causal 2-head self-attention layer through
    ``F.scaled_dot_product_attention`` with a key padding mask, a residual, and a
    linear head: ``{"input_ids": (n, T), "attention_mask": (n, T)} -> (n, T, V)`` logits."""

    def __init__(self, vocab: int = ATTN_VOCAB, dim: int = 4, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.emb = nn.Embedding(vocab, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        x = self.emb(batch["input_ids"])
        n, T, D = x.shape
        q, k, v = self.qkv(x).view(n, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        keep = causal & batch["attention_mask"].bool()[:, None, None, :]  # (n, 1, T, T)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        return self.head(x + a.transpose(1, 2).reshape(n, T, D))


def token_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy averaged over every token of ``(n, T, V)`` logits."""
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten())


CASES = make_cases()


class UnusedHead(nn.Module):
    """A model with a head the loss never reaches: ``used`` (``inputs -> outputs``) makes
    the output, ``unused`` (4 -> 4, 20 parameters) is never called."""

    def __init__(self, inputs: int = 3, outputs: int = 2) -> None:
        super().__init__()
        self.used = nn.Linear(inputs, outputs)
        self.unused = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.used(x)


class _TwoInputs(nn.Module):
    """Reads a dict batch ``{"a": (n, 5), "b": (n, 2)}``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 3)
        self.b = nn.Linear(2, 3, bias=False)

    def forward(self, batch: dict) -> Tensor:
        return torch.tanh(self.a(batch["a"])) * self.b(batch["b"])


SEQ_VOCAB, SEQ_LEN, SEQ_CLASSES = 6, 4, 5


def seq_ce_sum(out: Tensor, t: Tensor) -> Tensor:
    """Cross-entropy summed over every token of ``(n, T, C)`` logits."""
    return F.cross_entropy(out.reshape(-1, SEQ_CLASSES), t.reshape(-1), reduction="sum")


def seq_ce_token_mean(out: Tensor, t: Tensor) -> Tensor:
    """Cross-entropy averaged over every token of ``(n, T, C)`` logits."""
    return F.cross_entropy(out.reshape(-1, SEQ_CLASSES), t.reshape(-1))


def make_reduction_cases() -> list[Case]:
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    dt = torch.float64
    cases = []
    X = torch.randn(23, 5, generator=g, dtype=dt)
    yc = torch.randint(0, 3, (23,), generator=g)
    yr = torch.randn(23, 2, generator=g, dtype=dt)

    mlp = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).to(dt)
    cases.append(Case("lambda-ce-mean", mlp, lambda o, t: F.cross_entropy(o, t),
                      _uneven(X, yc, [10, 10, 3]), reduction="mean"))
    mlp2 = nn.Sequential(nn.Linear(5, 4), nn.Sigmoid(), nn.Linear(4, 2)).to(dt)
    cases.append(Case("lambda-mse-sum", mlp2, lambda o, t: ((o - t) ** 2).sum(),
                      _uneven(X, yr, [8, 15]), reduction="sum"))
    cases.append(Case("lambda-mse-mean-plus-constant", mlp2, lambda o, t: ((o - t) ** 2).mean() + 3.0,
                      _uneven(X, yr, [7, 7, 7, 2]), reduction="mean"))

    # a language-model-style sequence loss over (batch, seq, classes) outputs
    tokens = torch.randint(0, SEQ_VOCAB, (7, SEQ_LEN), generator=g)
    labels = torch.randint(0, SEQ_CLASSES, (7, SEQ_LEN), generator=g)
    seq = nn.Sequential(nn.Embedding(SEQ_VOCAB, 3), nn.Tanh(), nn.Linear(3, SEQ_CLASSES)).to(dt)
    cases.append(Case("seq-ce-sum", seq, seq_ce_sum, _uneven(tokens, labels, [3, 4]), reduction="sum"))
    cases.append(Case("seq-ce-token-mean", seq, seq_ce_token_mean, _uneven(tokens, labels, [3, 4]),
                      reduction="mean"))

    two = _TwoInputs().to(dt)
    Xd = {"a": X, "b": torch.randn(23, 2, generator=g, dtype=dt)}
    cases.append(Case("dict-inputs-sum", two, lambda o, t: F.cross_entropy(o, t, reduction="sum"),
                      _uneven(Xd, yc, [9, 14]), reduction="sum"))

    # torch.nn losses declare their reduction: nothing to detect
    cases.append(Case("nn-ce-sum", mlp, nn.CrossEntropyLoss(reduction="sum"), _uneven(X, yc, [6, 17])))
    cases.append(Case("nn-mse-mean", mlp2, nn.MSELoss(), _uneven(X, yr, [5, 18])))
    return cases


REDUCTION_CASES = make_reduction_cases()
