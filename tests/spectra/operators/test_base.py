"""The base class's rule for the reduction of the loss: given, declared by
``loss_fn.reduction``, or determined from the loss on the first batch, never guessed."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spectra import GGNOperator, HessianOperator
from spectra.operators.base import detect_reduction
from tests.spectra.cases import CASES, REDUCTION_CASES, SEQ_CLASSES, SEQ_LEN, SEQ_VOCAB, Case

BACKENDS = ["graph", "backprop", "func"]


def _truth(case: Case) -> str:
    return case.reduction if case.reduction is not None else case.loss_fn.reduction


def _dense(op, P: int) -> torch.Tensor:
    return op.matmat(torch.eye(P, dtype=torch.float64))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", REDUCTION_CASES, ids=lambda c: c.name)
def test_hessian_matches_the_dense_hessian_of_the_concatenated_data(case, backend):
    # the reference is the Hessian of the loss of all the data in one batch: no batch weights
    dense = case.concatenated().dense_hessian()
    H = HessianOperator(case.model, case.loss_fn, case.batches, backend=backend)
    assert H.reduction == _truth(case)
    assert f"reduction={_truth(case)!r}" in repr(H)
    got = _dense(H, dense.shape[0])
    assert torch.allclose(got, dense, atol=1e-10, rtol=0), (got - dense).abs().max()


@pytest.mark.parametrize("case", REDUCTION_CASES, ids=lambda c: c.name)
def test_ggn_matches_the_dense_ggn_of_the_concatenated_data(case):
    dense = case.concatenated().dense_ggn()
    G = GGNOperator(case.model, case.loss_fn, case.batches)
    assert G.reduction == _truth(case)
    got = _dense(G, dense.shape[0])
    assert torch.allclose(got, dense, atol=1e-10, rtol=0), (got - dense).abs().max()


def _token_mean(o, t, reduction="mean"):
    """Cross-entropy over every token of ``(n, T, C)`` logits (-100: not counted)."""
    return F.cross_entropy(o.reshape(-1, SEQ_CLASSES), t.reshape(-1), reduction=reduction)


def _counting(model: nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def _seq_problem(dtype=torch.float64, n=7, sizes=(3, 4)):
    g = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    model = nn.Sequential(nn.Embedding(SEQ_VOCAB, 3), nn.Tanh(), nn.Linear(3, SEQ_CLASSES))
    model = model.to(dtype)
    X = torch.randint(0, SEQ_VOCAB, (n, SEQ_LEN), generator=g)
    y = torch.randint(0, SEQ_CLASSES, (n, SEQ_LEN), generator=g)
    batches, i = [], 0
    for s in sizes:
        batches.append((X[i : i + s], y[i : i + s]))
        i += s
    return model, batches


def test_a_declared_or_given_reduction_is_used_without_evaluating_the_loss():
    model, batches = _seq_problem()
    calls = _counting(model)
    flat = lambda o, t: _token_mean(o, t, "sum")

    assert HessianOperator(model, flat, batches, reduction="sum").reduction == "sum"
    loss = nn.MSELoss(reduction="sum")
    assert HessianOperator(model, loss, batches).reduction == "sum"
    assert calls[0] == 0
    # detection: the first batch and its two halves, once
    assert HessianOperator(model, flat, batches).reduction == "sum"
    assert calls[0] == 3
    with pytest.raises(ValueError, match="contradicts loss_fn.reduction='sum'"):
        HessianOperator(model, loss, batches, reduction="mean")
    with pytest.raises(ValueError, match="'mean' or 'sum'"):
        HessianOperator(model, flat, batches, reduction="none")


def test_detection_leaves_the_model_as_it_was():
    model, batches = _seq_problem()
    model.append(nn.Dropout(0.5))
    model.train()
    rng = torch.get_rng_state()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match="Dropout"):
        H = HessianOperator(model, _token_mean, batches)
    # dropout in train mode would make the halves disagree: detection ran in eval mode
    assert H.reduction == "mean"
    assert all(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def _mean_squared(o, t):
    return F.cross_entropy(o, t) ** 2


def _max(o, t):
    return F.cross_entropy(o, t, reduction="none").max()


def _median(o, t):
    return F.cross_entropy(o, t, reduction="none").median()


def _logsumexp(o, t):
    return torch.logsumexp(F.cross_entropy(o, t, reduction="none"), 0)


@pytest.mark.parametrize("loss", [_mean_squared, _max, _median, _logsumexp])
@pytest.mark.parametrize("Op", [HessianOperator, GGNOperator])
def test_refuses_a_loss_that_is_neither_a_per_sample_mean_nor_a_sum(loss, Op):
    case = REDUCTION_CASES[0]  # an MLP with class labels, batches of 10, 10, 3
    with pytest.raises(ValueError, match=r"neither the mean .* nor their sum .* reduction='mean'"):
        Op(case.model, loss, case.batches)
    # told the reduction, the operator takes the loss as it is
    assert Op(case.model, loss, case.batches, reduction="mean").reduction == "mean"


def test_refuses_a_per_token_mean_over_sequences_of_different_token_counts():
    model, batches = _seq_problem(n=8, sizes=(4, 4))
    X, y = batches[0]
    y = y.clone()
    y[0, 1:] = -100  # the first sequence counts one token, the others four
    with pytest.raises(ValueError, match="neither the mean"):
        HessianOperator(model, _token_mean, [(X, y), batches[1]])


def test_refuses_a_first_batch_of_one_sample():
    case = REDUCTION_CASES[0]
    X = torch.cat([b[0] for b in case.batches])
    y = torch.cat([b[1] for b in case.batches])
    data = [(X[:1], y[:1]), (X[1:], y[1:])]
    with pytest.raises(ValueError, match="holds 1 sample, on which a mean and a sum are the same"):
        HessianOperator(case.model, case.loss_fn, data)
    assert HessianOperator(case.model, case.loss_fn, data, reduction="sum").reduction == "sum"


def test_refuses_a_loss_that_is_zero_on_the_first_batch():
    model = nn.Linear(3, 2, bias=False).double()
    nn.init.zeros_(model.weight)
    X, y = torch.randn(6, 3, dtype=torch.float64), torch.zeros(6, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="both match, so the two cannot be told apart"):
        HessianOperator(model, lambda o, t: ((o - t) ** 2).sum(), (X, y))


def test_a_loss_that_fails_on_the_halves_is_refused_with_the_reason():
    model, batches = _seq_problem()
    X, y = batches[1]  # 4 sequences: fits the loss below, its halves do not

    def fixed_batch(o, t):
        return F.cross_entropy(o.reshape(4 * SEQ_LEN, SEQ_CLASSES), t.reshape(4 * SEQ_LEN))

    with pytest.raises(ValueError, match="evaluating it on the halves.*RuntimeError"):
        HessianOperator(model, fixed_batch, (X, y))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_float32_detection_on_a_large_batch(reduction):
    # float32 round-off of the batch and of its halves stays far inside the tolerance
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    X = torch.randn(4096, 32, generator=g) * 10
    y = torch.randint(0, 10, (4096,), generator=g)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    loss = lambda o, t: F.cross_entropy(o, t, reduction=reduction)
    assert HessianOperator(model, loss, (X, y)).reduction == reduction
    model, batches = _seq_problem(dtype=torch.float32, n=1001, sizes=(1001,))
    loss = lambda o, t: _token_mean(o, t, reduction)
    assert HessianOperator(model, loss, batches).reduction == reduction


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_losses_are_told_apart(dtype):
    """bfloat16 and float16 round each partial sum at 4e-3 and 5e-4: with float32's
    tolerance a linear model's batch of 64 was told wrongly or refused in 24 to 33 of 50
    seeds. Their own tolerance tells every seed."""
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        X, y = torch.randn(64, 10, generator=g).to(dtype), torch.randn(64, 1, generator=g).to(dtype)
        lin = nn.Linear(10, 1).to(dtype)
        for reduction in ("mean", "sum"):
            def loss_of(inputs, targets, reduction=reduction, lin=lin):
                with torch.no_grad():
                    return float(F.mse_loss(lin(inputs), targets, reduction=reduction))

            assert detect_reduction(loss_of, X, y, dtype=dtype) == reduction, (seed, reduction)


def test_detect_reduction_splits_every_tensor_of_a_nested_batch_along_dim_0():
    seen = []

    def loss_of(inputs, targets):
        pair = inputs["pair"]
        seen.append((inputs["x"].shape[0], pair[0].shape[0], pair[1].shape[0],
                     inputs["shared"].shape[0], len(inputs["names"]), inputs["k"], targets.shape[0]))
        return float(inputs["x"].sum() + targets.sum())

    inputs = {
        "x": torch.ones(5, 2),
        "pair": (torch.ones(5, 3), torch.ones(5)),
        "shared": torch.ones(7),  # dim 0 is not the batch: passed whole
        "names": ["a", "b", "c", "d", "e"],
        "k": 3,
    }
    assert detect_reduction(loss_of, inputs, torch.ones(5)) == "sum"
    assert seen == [(5, 5, 5, 7, 5, 3, 5), (2, 2, 2, 7, 2, 3, 2), (3, 3, 3, 7, 3, 3, 3)]


class _ForcedFlash(nn.Module):
    """Attention that forces the fused flash kernel, which has no double backward."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = next(c for c in CASES if c.name == "attention-lm").model

    def forward(self, batch):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return self.inner(batch)


@pytest.mark.parametrize("make", [*(lambda m, l, d, b=b: HessianOperator(m, l, d, backend=b)
                                     for b in BACKENDS), GGNOperator],
                         ids=[*BACKENDS, "ggn"])
def test_an_op_without_double_backward_is_named_with_what_to_do(make):
    case = next(c for c in CASES if c.name == "attention-lm")
    op = make(_ForcedFlash(), case.loss_fn, case.batches)
    with pytest.raises(RuntimeError, match="flash_attention.*cannot be differentiated again.*eager"):
        op.matvec(torch.ones(op.shape[0], dtype=torch.float64))


@pytest.mark.parametrize("Op", [HessianOperator, GGNOperator])
def test_dict_inputs_with_an_attention_mask_give_the_batch_size_from_the_targets(Op):
    case = next(c for c in CASES if c.name == "attention-lm")
    op = Op(case.model, case.loss_fn, case.batches)
    assert op.num_data == 9 and op.reduction == "mean"  # detected on {input_ids, attention_mask}
    full = case.concatenated()
    dense = full.dense_hessian() if Op is HessianOperator else full.dense_ggn()
    got = _dense(op, dense.shape[0])
    assert torch.allclose(got, dense, atol=1e-10, rtol=0), (got - dense).abs().max()


class _TwoHeads(nn.Module):
    """A model with two outputs (class logits and a regression value)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 5)
        self.cls, self.reg = nn.Linear(5, 3), nn.Linear(5, 1)

    def forward(self, x):
        h = torch.tanh(self.body(x))
        return self.cls(h), self.reg(h).squeeze(-1)


def _two_head_loss(out, targets):
    labels, values = targets
    return F.cross_entropy(out[0], labels) + F.mse_loss(out[1], values)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tuple_targets_weigh_batches_by_their_samples(backend):
    """Targets (labels, values) of batches of 6 and 2 samples: the mean-reduced
    operator weighs them 6:2 (the samples), not 2:2 (the targets' two parts), so it
    equals the operator of the concatenated batch."""
    torch.manual_seed(0)
    model = _TwoHeads().double()
    x = torch.randn(8, 4, dtype=torch.float64)
    labels, values = torch.randint(0, 3, (8,)), torch.randn(8, dtype=torch.float64)
    batches = [(x[:6], (labels[:6], values[:6])), (x[6:], (labels[6:], values[6:]))]
    split = HessianOperator(model, _two_head_loss, batches, reduction="mean", backend=backend)
    whole = HessianOperator(model, _two_head_loss, [(x, (labels, values))], reduction="mean")
    assert split.num_data == 8
    P = split.shape[0]
    got, want = _dense(split, P), _dense(whole, P)
    assert torch.allclose(got, want, atol=1e-12, rtol=0), (got - want).abs().max()


def test_batch_to_moves_every_tensor_and_casts_only_floating_ones():
    from spectra.operators.base import batch_to

    batch = ({"x": torch.randn(3, 2), "ids": torch.arange(3)}, [torch.randn(3)], "tag")
    moved = batch_to(batch, torch.device("meta"), torch.float64)
    (inputs, (extra,), tag) = moved
    assert inputs["x"].device.type == inputs["ids"].device.type == extra.device.type == "meta"
    assert inputs["x"].dtype == extra.dtype == torch.float64 and inputs["ids"].dtype == torch.int64
    assert tag == "tag"
    x = torch.randn(2)
    assert batch_to(x, x.device) is x and batch_to(x, None) is x


# ---------------------------------------------------------------------- bad input
def _small():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(12, 3, generator=g, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    return model, X


def test_params_given_as_one_name_or_one_tensor_is_refused_with_the_fix():
    model, X = _small()
    y = torch.randn(12, 2, dtype=torch.float64)
    # a name used to be iterated as characters ("no parameter named '0'"), a tensor as
    # its rows ("not a parameter of the model")
    with pytest.raises(TypeError, match=r"got '0.weight'; wrap one in a list"):
        HessianOperator(model, nn.MSELoss(), (X, y), params="0.weight")
    with pytest.raises(TypeError, match=r"got a tensor of shape \(4, 3\); wrap one in a list"):
        HessianOperator(model, nn.MSELoss(), (X, y), params=model[0].weight)
    assert HessianOperator(model, nn.MSELoss(), (X, y), params=["0.weight"]).shape == (12, 12)


def test_dtype_must_be_a_torch_dtype():
    model, X = _small()
    with pytest.raises(TypeError, match="dtype must be a torch.dtype .* got 'float64'"):
        HessianOperator(model, nn.MSELoss(), (X, torch.randn(12, 2)), dtype="float64")


@pytest.mark.parametrize("operator", [HessianOperator, GGNOperator])
def test_a_loss_that_returns_a_python_number_is_refused_by_name(operator):
    model, X = _small()
    with pytest.raises(ValueError, match="loss_fn must return a scalar tensor .* got a float"):
        operator(model, lambda out, y: 1.0, (X, torch.randn(12, 2)), reduction="mean").matvec(
            torch.ones(26, dtype=torch.float64))


def test_inputs_and_targets_of_different_lengths_are_refused_when_the_reduction_is_detected():
    model, X = _small()
    with pytest.raises(ValueError, match=r"the first batch of data: inputs of shape \(12, 3\) "
                                         r"and targets of shape \(10, 2\) .* pass "
                                         r"reduction='mean' or 'sum'"):
        # a plain function: its reduction is found by halving the batch
        HessianOperator(model, lambda out, y: F.mse_loss(out, y),
                        (X, torch.randn(10, 2, dtype=torch.float64)))


def test_targets_laid_out_otherwise_work_with_a_declared_reduction():
    """Inputs (n, T) of token ids and flattened targets (n T,): the loss function pairs
    them, and with reduction given nothing needs them paired along dim 0."""
    g = torch.Generator().manual_seed(0)
    emb = nn.Sequential(nn.Embedding(5, 3), nn.Flatten(0, 1), nn.Linear(3, 4)).double()
    ids = torch.randint(0, 5, (2, 6), generator=g)
    y = torch.randint(0, 4, (12,), generator=g)
    H = HessianOperator(emb, nn.CrossEntropyLoss(), (ids, y), reduction="mean")
    dense = H.matmat(torch.eye(H.shape[0], dtype=torch.float64))
    assert torch.allclose(dense, dense.T, atol=1e-10)
    assert float(torch.linalg.eigvalsh(dense)[-1]) > 0


@pytest.mark.parametrize("operator", [HessianOperator, GGNOperator])
@pytest.mark.parametrize("loss_fn", [nn.CrossEntropyLoss(), F.cross_entropy])
def test_class_indices_out_of_range_are_refused_by_name(operator, loss_fn):
    model, X = _small()
    y = torch.tensor([0, 1] * 5 + [2, -1])
    with pytest.raises(ValueError, match=r"targets must be class indices in \[0, 1\] for the "
                                         r"model's 2 classes .* 2 of 12 are not, e.g. 2"):
        operator(model, loss_fn, (X, y), reduction="mean").matvec(
            torch.ones(26, dtype=torch.float64))
    # ignore_index is not a class and is allowed
    y_ignored = torch.tensor([0, 1] * 5 + [1, -100])
    operator(model, loss_fn, (X, y_ignored), reduction="mean").matvec(
        torch.ones(26, dtype=torch.float64))


def test_class_targets_held_as_a_tensor_are_read_once(monkeypatch):
    """The range check reads a data set's target tensor at the first product only (on a
    GPU each read is a synchronization); the next product does not read it again."""
    from spectra.operators import base

    model, X = _small()
    y = torch.tensor([0, 1] * 6)
    # backprop: the loss is evaluated again at every product (the graph backend keeps it)
    op = HessianOperator(model, F.cross_entropy, (X, y), reduction="mean", backend="backprop")
    reads = []
    real = torch.Tensor.any
    monkeypatch.setattr(torch.Tensor, "any", lambda t, *a, **k: reads.append(1) or real(t, *a, **k))
    op.matvec(torch.ones(26, dtype=torch.float64))
    first = len(reads)
    assert first >= 1 and base._CHECKED_TARGETS.get(y) == (2, -100, y._version)
    op.matvec(torch.ones(26, dtype=torch.float64))
    assert len(reads) == first


def test_mse_targets_that_torch_would_broadcast_are_refused():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(12, 3, generator=g, dtype=torch.float64)
    model = nn.Linear(3, 1).double()
    # outputs (12, 1) against targets (12,): torch broadcasts to a (12, 12) difference
    with pytest.raises(ValueError, match=r"targets of the outputs' shape \(12, 1\), got \(12,\)"):
        HessianOperator(model, nn.MSELoss(), (X, torch.randn(12, dtype=torch.float64))).matvec(
            torch.ones(4, dtype=torch.float64))


def test_a_loss_subclass_that_reshapes_is_not_range_checked_as_its_base():
    """A CrossEntropyLoss subclass that flattens (B, T, V) logits itself: dim 1 of its
    outputs is T, not the classes, so only the exact torch classes are range-checked."""

    class TokenCE(nn.CrossEntropyLoss):
        def forward(self, out, y):
            return super().forward(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Embedding(7, 3), nn.Linear(3, 7)).double()
    ids = torch.randint(0, 7, (4, 2), generator=g)  # T = 2 < 7 classes
    y = torch.randint(2, 7, (4, 2), generator=g)
    H = HessianOperator(model, TokenCE(), (ids, y), reduction="mean")
    assert torch.isfinite(H.matvec(torch.ones(H.shape[0], dtype=torch.float64))).all()


def test_call_loss_works_under_vmap_over_samples():
    from torch.func import vmap

    from spectra.operators.base import call_loss

    logits = torch.randn(5, 3, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1, 0])
    per_sample = vmap(lambda o, t: call_loss(F.cross_entropy, o, t))(logits, y)
    assert torch.allclose(per_sample, F.cross_entropy(logits, y, reduction="none"))


class _PrecisionSpy(nn.Module):
    """A linear model that records the float32 precision switches at each forward."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.seen: list[tuple[str, ...]] = []

    def forward(self, x):
        self.seen.append(_switches())
        return self.lin(x)


def _switches() -> tuple[str, ...]:
    b = torch.backends
    spaces = (b.cudnn.conv, b.cudnn.rnn, b.cuda.matmul, b.mkldnn.matmul)
    return tuple(ns.fp32_precision for ns in spaces if hasattr(ns, "fp32_precision"))


@pytest.mark.skipif(not _switches(), reason="torch < 2.9: no fp32_precision switches")
@pytest.mark.parametrize("Op", [HessianOperator, GGNOperator])
def test_products_run_in_full_float32_whatever_the_users_settings(Op):
    # TF32 in cuDNN convolutions is torch's default on a GPU, bfloat16 rounding in oneDNN
    # a user's choice: neither reaches a curvature product, and both are given back
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
    model = _PrecisionSpy()
    op = Op(model, F.cross_entropy, (X, y))
    saved = torch.backends.mkldnn.matmul.fp32_precision
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        users = _switches()
        model.seen.clear()
        op.matmat(torch.randn(op.shape[0], 2, generator=g))
        assert model.seen and all(set(s) == {"ieee"} for s in model.seen)
        assert _switches() == users
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = saved


class _TwoInputs(nn.Module):
    """A model whose input is a pair (or a named pair) of tensors."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 2), nn.Linear(2, 2)

    def forward(self, xz):
        x, z = xz
        return torch.tanh(self.a(x)) + self.b(z)


def test_batches_whose_inputs_are_tuples_lists_or_named_tuples():
    """One (inputs, targets) pair with tuple inputs was read as a list of batches ("each
    batch must be an (inputs, targets) pair, got Tensor"), and a named tuple of inputs
    failed to rebuild when moved or split ("missing 1 required positional argument")."""
    from collections import namedtuple

    torch.manual_seed(0)
    model = _TwoInputs().double()
    X, Z = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    y = torch.randint(0, 2, (10,))
    Pair = namedtuple("Pair", "x z")
    summed = lambda o, t: F.cross_entropy(o, t, reduction="sum")  # detected: the batch is split
    reference = HessianOperator(model, summed, [((X, Z), y)])
    v = torch.randn(reference.shape[0], dtype=torch.float64)
    expected = reference.matvec(v)
    for data in (((X, Z), y), ([X, Z], y), (Pair(X, Z), y), [(Pair(X, Z), y)]):
        op = HessianOperator(model, summed, data)
        assert op.reduction == "sum" and op.num_data == 10
        torch.testing.assert_close(op.matvec(v), expected, rtol=1e-12, atol=1e-12)


def test_kl_divergence_batchmean_is_a_per_sample_mean():
    """nn.KLDivLoss(reduction="batchmean") was refused, and reduction="mean" with it was
    called a contradiction; batchmean (the batch's sum over its size) is a mean."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax(dim=1)).double()
    X = torch.randn(12, 4, dtype=torch.float64)
    target = torch.softmax(torch.randn(12, 3, dtype=torch.float64), dim=1)
    batches = [(X[:5], target[:5]), (X[5:], target[5:])]
    kl = nn.KLDivLoss(reduction="batchmean")
    op = HessianOperator(model, kl, batches)
    assert op.reduction == "mean"
    assert HessianOperator(model, kl, batches, reduction="mean").reduction == "mean"
    by_hand = HessianOperator(model, lambda o, t: F.kl_div(o, t, reduction="sum") / len(t), batches,
                              reduction="mean")
    v = torch.randn(op.shape[0], dtype=torch.float64)
    torch.testing.assert_close(op.matvec(v), by_hand.matvec(v), rtol=1e-12, atol=1e-12)


def test_a_tied_parameter_named_by_its_second_name_is_explained():
    """named_parameters() lists a shared tensor once, under its first name: the second
    name was refused as "no parameter named ..."."""
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    model[2].weight = model[0].weight  # tied
    X, y = torch.randn(6, 3, dtype=torch.float64), torch.randint(0, 3, (6,))
    with pytest.raises(ValueError, match=r"'2.weight' is the parameter '0.weight' under another "
                                         r"name \(tied weights\); name it '0.weight'"):
        HessianOperator(model, nn.CrossEntropyLoss(), (X, y), params=["2.weight"])
    assert HessianOperator(model, nn.CrossEntropyLoss(), (X, y), params=["0.weight"]).shape == (9, 9)


def _fisher(**kw):
    from spectra import FisherOperator

    return lambda m, lf, d: FisherOperator(m, lf, d, **kw)


_EMPTY_BATCH_CASES = [
    pytest.param(lambda m, lf, d, b=b: HessianOperator(m, lf, d, backend=b), lf, id=f"hessian-{b}-{how}")
    for b in BACKENDS for lf, how in ((nn.CrossEntropyLoss(), "declared"), (F.cross_entropy, "detected"))
] + [
    pytest.param(lambda m, lf, d: GGNOperator(m, lf, d), F.cross_entropy, id="ggn-detected"),
    pytest.param(_fisher(), nn.CrossEntropyLoss(), id="fisher-empirical"),
    pytest.param(_fisher(kind="mc"), nn.CrossEntropyLoss(), id="fisher-mc"),
]


@pytest.mark.parametrize(("make", "loss_fn"), _EMPTY_BATCH_CASES)
def test_a_batch_of_no_samples_is_skipped(make, loss_fn):
    """A batch of 0 samples (an empty shard when there are more ranks than samples) has
    weight n_b / N = 0, but its mean loss is NaN: the products raised "the loss of batch
    1 is nan" (or returned NaN, or divided by 0), and detection refused it as a first
    batch "of 0 samples"."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    X, y = torch.randn(10, 3, dtype=torch.float64), torch.randint(0, 3, (10,))
    empty = (X[:0], y[:0])
    full = [(X[:4], y[:4]), (X[4:], y[4:])]
    reference = make(model, loss_fn, full)
    op = make(model, loss_fn, [empty, full[0], empty, full[1]])
    assert op.reduction == reference.reduction == "mean" and op.num_data == 10
    V = torch.randn(op.shape[0], 2, dtype=torch.float64)
    expected = reference.matmat(V)
    for _ in range(2):  # the second product from the cached graphs, where there are any
        torch.testing.assert_close(op.matmat(V), expected, rtol=1e-12, atol=1e-12)
    if getattr(op, "kind", None) == "mc":  # one draw per batch that holds samples
        drawn = op.sampled_targets()
        assert [t.shape for t in drawn] == [t.shape for t in reference.sampled_targets()]


class _Boxed:
    """Inputs of one's own type: neither a tensor, a mapping nor a sequence."""

    def __init__(self, x):
        self.x = x


class _Unboxing(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, boxed):
        return self.lin(boxed.x)


def test_one_pair_whose_inputs_are_an_object_of_ones_own():
    """``(inputs, targets)`` with inputs of a custom type was read as a list of two
    batches ("each batch must be an (inputs, targets) pair, got _Boxed"), though a
    tensor as the second item already means a pair."""
    torch.manual_seed(0)
    model = _Unboxing().double()
    X, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 3, (8,))
    as_list = HessianOperator(model, nn.CrossEntropyLoss(), [(_Boxed(X), y)])
    pair = HessianOperator(model, nn.CrossEntropyLoss(), (_Boxed(X), y))
    assert pair.num_data == 8
    v = torch.randn(pair.shape[0], dtype=torch.float64)
    torch.testing.assert_close(pair.matvec(v), as_list.matvec(v), rtol=0, atol=0)
    # a tuple of two batches is still two batches
    two = HessianOperator(model, nn.CrossEntropyLoss(), ((_Boxed(X[:3]), y[:3]), (_Boxed(X[3:]), y[3:])))
    assert two.num_data == 8
    torch.testing.assert_close(two.matvec(v), as_list.matvec(v), rtol=1e-12, atol=1e-12)
