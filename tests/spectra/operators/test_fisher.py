"""FisherOperator against dense float64 Fishers built by hand from per-sample gradients:
empirical (at the data's targets) and Monte-Carlo (at the operator's own sampled
targets), the MC Fisher's expectation against the GGN, and the errors."""

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jacrev
from torch.nn.attention import SDPBackend, sdpa_kernel

from spectra import FisherOperator, GGNOperator, PreconditionedOperator, eigsh
from tests.spectra.cases import CASES, Case

BY_NAME = {c.name: c for c in CASES}


def _sample(x, i: int):
    if isinstance(x, dict):
        return {k: v[i : i + 1] for k, v in x.items()}
    return x[i : i + 1]


def _dense_gradient_moment(case: Case, targets: list[Tensor] | None = None) -> Tensor:
    """``sum_b w_b a_b sum_i g_i g_i^T`` with ``g_i`` the gradient of the loss of the
    one-sample batch ``i`` (at ``targets[b][i]`` when given), by ``jacrev`` per sample."""
    flat = case.flat_params()
    P = flat.numel()
    Fm = torch.zeros(P, P, dtype=torch.float64)
    reduction = case.reduction or case.loss_fn.reduction
    for b, (w, (X, y)) in enumerate(zip(case._weights(), case.batches)):
        n = len(y)
        a = 1.0 / n if reduction == "mean" else 1.0
        yb = y if targets is None else targets[b]
        for i in range(n):
            def loss(f, i=i, X=X, yb=yb):
                out = functional_call(case.model, case._state(f), (_sample(X, i),))
                return case.loss_fn(out, _sample(yb, i))

            with sdpa_kernel(SDPBackend.MATH):
                g = jacrev(loss)(flat)
            Fm += w * a * torch.outer(g, g)
    return Fm


def _dense(op, P: int) -> Tensor:
    return op.matmat(torch.eye(P, dtype=torch.float64))


@pytest.mark.parametrize(
    "name", ["mlp-ce-mean", "mlp-mse-sum", "mlp-mse-mean", "cnn-ce", "batchnorm-eval", "param-subset",
             "attention-lm"],
)
def test_empirical_fisher_matches_per_sample_gradients(name):
    case = BY_NAME[name]
    F_op = FisherOperator(case.model, case.loss_fn, case.batches, params=case.params,
                          reduction=case.reduction)
    want = _dense_gradient_moment(case)
    got = _dense(F_op, want.shape[0])
    scale = want.abs().max()
    assert scale > 0
    assert torch.allclose(got, want, atol=1e-12 * scale, rtol=0), (got - want).abs().max() / scale


def test_empirical_fisher_of_a_sum_is_n_times_that_of_the_mean():
    case = BY_NAME["mlp-mse-mean"]
    N = sum(len(y) for _, y in case.batches)
    mean = FisherOperator(case.model, nn.MSELoss(), case.batches)
    total = FisherOperator(case.model, nn.MSELoss(reduction="sum"), case.batches)
    P = mean.shape[0]
    # per-sample MSE (mean over the 2 outputs) vs its sum: l_sum = 2 l_mean, so g g^T * 4
    assert torch.allclose(_dense(total, P), 4 * N * _dense(mean, P), rtol=1e-12, atol=0)


@pytest.mark.parametrize(("name", "factor"), [("mlp-ce-mean", 1.0), ("cnn-ce", 1.0),
                                              ("mlp-mse-sum", 0.5), ("mlp-mse-mean", 1.0)])
def test_mc_fisher_matches_the_gradients_at_its_sampled_targets(name, factor):
    """For the cross-entropy z is the loss gradient at the sampled class; for the MSE,
    z = sqrt(2 k) (y~ - f) while the gradient of k |f - y~|^2 is 2 k (f - y~): the
    dense reference is 1 / (2 k) times the gradients' moment (k = 1 for a sum,
    1 / 2 for the mean over the case's 2 outputs)."""
    case = BY_NAME[name]
    F_op = FisherOperator(case.model, case.loss_fn, case.batches, kind="mc", mc_samples=3,
                          generator=torch.Generator().manual_seed(7))
    drawn = F_op.sampled_targets()
    assert [t.shape[0] for t in drawn] == [3] * len(case.batches)
    want = sum(_dense_gradient_moment(case, [t[m] for t in drawn]) for m in range(3)) * (factor / 3)
    got = _dense(F_op, want.shape[0])
    scale = want.abs().max()
    assert torch.allclose(got, want, atol=1e-12 * scale, rtol=0), (got - want).abs().max() / scale
    # the targets are the model's: classes in range, or Gaussian around the outputs
    if isinstance(case.loss_fn, nn.CrossEntropyLoss):
        assert all(int(t.min()) >= 0 and int(t.max()) < 3 for t in drawn)


def test_mc_fisher_is_one_fixed_matrix_per_seed():
    case = BY_NAME["mlp-ce-mean"]

    def make(seed):
        return FisherOperator(case.model, case.loss_fn, case.batches, kind="mc",
                              generator=torch.Generator().manual_seed(seed))

    a, b, c = make(1), make(1), make(2)
    a.check_deterministic(rtol=1e-14)
    P = a.shape[0]
    assert torch.equal(_dense(a, P), _dense(b, P))
    assert not torch.allclose(_dense(a, P), _dense(c, P))
    assert "kind='mc'" in repr(a) and f"seed={a.seed}" in repr(a)


@pytest.mark.parametrize("name", ["mlp-ce-mean", "mlp-mse-sum", "cnn-ce", "seq-ce-mean"])
def test_mc_fisher_expectation_is_the_ggn(name):
    """K independent MC Fishers (M draws each): for fixed vectors v the mean of v^T F v
    lies within 6 standard errors of v^T G v (each estimate averages M iid terms,
    so it is near-Gaussian; a wrong scale, e.g. 2x for the MSE, is hundreds of
    standard errors off)."""
    case = _seq_case("mean") if name == "seq-ce-mean" else BY_NAME[name]
    G = GGNOperator(case.model, case.loss_fn, case.batches)
    P = G.shape[0]
    V = torch.randn(P, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    exact = (V * G.matmat(V)).sum(0)
    K, M = 12, 64
    est = torch.stack([
        (V * FisherOperator(case.model, case.loss_fn, case.batches, kind="mc", mc_samples=M,
                            generator=torch.Generator().manual_seed(100 + k)).matmat(V)).sum(0)
        for k in range(K)
    ])
    se = est.std(0) / K**0.5
    t = (est.mean(0) - exact) / se
    assert bool((t.abs() < 6).all()), t
    # and the estimate is informative: its standard error is small against the value
    assert bool((se < 0.2 * exact.abs()).all()), (se, exact)


def test_mc_fisher_of_a_linear_model_under_mse_converges_to_the_ggn():
    """Linear model, MSE: G = 2 X^T X / N, and F_mc = (2 / N) sum_i x_i x_i^T (1/M sum_m eps_im^2)
    with eps ~ N(0, 1): each sample's factor has standard error sqrt(2 / M) = 2.2% at M = 4000."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False).double()
    X, y = torch.randn(40, 3, dtype=torch.float64), torch.randn(40, 1, dtype=torch.float64)
    G = 2 * X.T @ X / 40  # the GGN (= Hessian) of the mean squared error
    F_op = FisherOperator(model, nn.MSELoss(), (X, y), kind="mc", mc_samples=4000)
    got = _dense(F_op, 3)
    rel = float((got - G).norm() / G.norm())
    assert rel < 0.1, rel


def _seq_case(reduction: str) -> Case:
    """Outputs (n, C, T) with classes in dim 1: nn.CrossEntropyLoss averages over n * T positions."""
    g = torch.Generator().manual_seed(11)
    model = nn.Sequential(nn.Conv1d(2, 3, 1), nn.Tanh(), nn.Conv1d(3, 3, 1)).double()
    X = torch.randn(9, 2, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (9, 4), generator=g)
    return Case(f"seq-ce-{reduction}", model, nn.CrossEntropyLoss(reduction=reduction),
                [(X[:5], y[:5]), (X[5:], y[5:])])


@pytest.mark.parametrize(("reduction", "factor"), [("mean", 4.0), ("sum", 1.0)])
def test_cross_entropy_over_positions(reduction, factor):
    """With T = 4 positions per sample and a mean, k = 1/4: z = sqrt(k) (p - onehot) against
    the loss gradient k (p - onehot), so the reference is 1/k = 4 times the gradients' moment."""
    case = _seq_case(reduction)
    emp = FisherOperator(case.model, case.loss_fn, case.batches)
    want = _dense_gradient_moment(case)
    assert torch.allclose(_dense(emp, want.shape[0]), want, atol=1e-12 * want.abs().max(), rtol=0)
    mc = FisherOperator(case.model, case.loss_fn, case.batches, kind="mc", mc_samples=2)
    drawn = mc.sampled_targets()
    assert drawn[0].shape == (2, 5, 4)
    want = sum(_dense_gradient_moment(case, [t[m] for t in drawn]) for m in range(2)) * (factor / 2)
    got = _dense(mc, want.shape[0])
    assert torch.allclose(got, want, atol=1e-12 * want.abs().max(), rtol=0)


def test_composes_with_the_solvers_and_preconditioning():
    case = BY_NAME["mlp-ce-mean"]
    F_op = FisherOperator(case.model, case.loss_fn, case.batches)
    dense = _dense_gradient_moment(case)
    top = eigsh(F_op, k=2, tol=1e-10)
    want = torch.linalg.eigvalsh(dense)[-2:]
    assert torch.allclose(top.eigenvalues.sort().values, want, rtol=1e-7, atol=0)
    d = torch.linspace(0.5, 2.0, dense.shape[0], dtype=torch.float64)
    op = PreconditionedOperator(F_op, d)
    got = op.matmat(torch.eye(dense.shape[0], dtype=torch.float64))
    assert torch.allclose(got, dense / d.sqrt()[:, None] / d.sqrt()[None, :], atol=1e-12 * dense.abs().max())


def test_errors():
    case = BY_NAME["mlp-ce-mean"]
    m, data = case.model, case.batches
    with pytest.raises(ValueError, match="kind must be 'empirical' or 'mc', got 'mcc'. Did you mean 'mc'"):
        FisherOperator(m, case.loss_fn, data, kind="mcc")
    with pytest.raises(ValueError, match=r"mc_samples must be an integer >= 1, got 0"):
        FisherOperator(m, case.loss_fn, data, kind="mc", mc_samples=0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        FisherOperator(m, case.loss_fn, data, kind="mc", generator=3)
    with pytest.raises(ValueError, match=r"known for nn.CrossEntropyLoss \(categorical\) and nn.MSELoss.*got "
                                         r"loss_fn function"):
        FisherOperator(m, lambda o, t: F.cross_entropy(o, t), data, kind="mc")
    with pytest.raises(ValueError, match="label smoothing"):
        FisherOperator(m, nn.CrossEntropyLoss(label_smoothing=0.1), data, kind="mc")
    with pytest.raises(ValueError, match="sampled_targets"):
        FisherOperator(m, case.loss_fn, data).sampled_targets()
    X, y = data[0]
    y = y.clone()
    y[0] = -100
    F_op = FisherOperator(m, nn.CrossEntropyLoss(), (X, y), kind="mc")
    with pytest.raises(ValueError, match="ignore_index=-100"):
        F_op.matvec(torch.ones(F_op.shape[0], dtype=torch.float64))
    # a lambda loss is fine for the empirical Fisher
    FisherOperator(m, lambda o, t: F.cross_entropy(o, t), data)
