import pytest
import torch
from torch import nn

from spectra import HessianOperator
from tests.spectra.cases import CASES, UnusedHead

BACKENDS = ["graph", "backprop", "func"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_dense_float64_hessian(case, backend):
    H = HessianOperator(case.model, case.loss_fn, case.batches, params=case.params, backend=backend)
    dense = case.dense_hessian()
    P = dense.shape[0]
    assert H.shape == (P, P)
    got = H.matmat(torch.eye(P, dtype=torch.float64))
    assert torch.allclose(got, dense, atol=1e-10, rtol=0), (got - dense).abs().max()
    v = torch.randn(P, dtype=torch.float64)
    assert torch.allclose(H.matvec(v), dense @ v, atol=1e-10, rtol=0)
    assert H.num_matvecs == P + 1


def test_single_pair_data_and_float64_of_a_float32_model():
    case = CASES[0]
    X = torch.cat([b[0] for b in case.batches])
    y = torch.cat([b[1] for b in case.batches])
    model32 = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    model32.load_state_dict({k: v.float() for k, v in case.model.state_dict().items()})
    H = HessianOperator(model32, case.loss_fn, (X.float(), y), dtype=torch.float64)
    assert H.dtype == torch.float64
    assert next(model32.parameters()).dtype == torch.float32  # the model is untouched
    P = H.shape[0]
    got = H.matmat(torch.eye(P, dtype=torch.float64))
    # the float32 weights are exact in float64, so only the inputs' rounding differs
    assert torch.allclose(got, case.dense_hessian(), atol=1e-5)
    H32 = HessianOperator(model32, case.loss_fn, (X.float(), y))
    assert H32.dtype == torch.float32
    assert H32.matvec(torch.ones(P)).dtype == torch.float32


def test_cache_follows_in_place_parameter_updates():
    case = CASES[0]
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    model.load_state_dict(case.model.state_dict())
    H = HessianOperator(model, case.loss_fn, case.batches, backend="graph")
    v = torch.randn(H.shape[0], dtype=torch.float64)
    before = H.matvec(v)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)  # what an optimizer step does
    after = H.matvec(v)
    fresh = HessianOperator(model, case.loss_fn, case.batches, backend="backprop").matvec(v)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, fresh, atol=1e-12)


@pytest.mark.parametrize("operator", ["hessian", "ggn"])
def test_cached_graphs_follow_buffers_other_parameters_and_the_mode(operator):
    """The cached graphs were keyed on the selected parameters only: a batch norm's
    running statistics updated in place, a step on a parameter outside ``params`` and a
    flip to train mode all left the old products (relative errors 0.2 to 0.8)."""
    from spectra import GGNOperator

    torch.manual_seed(0)
    X, y = torch.randn(24, 5, dtype=torch.float64), torch.randint(0, 3, (24,))
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).double()
    loss = nn.CrossEntropyLoss()

    def make(**kw):
        if operator == "ggn":
            return GGNOperator(model, loss, [(X, y)], cache=True, **kw)
        return HessianOperator(model, loss, [(X, y)], backend="graph", **kw)

    def fresh_equals(op, v):
        got = op.matvec(v)
        kw = {"params": ["3.weight"]} if op.shape[0] == 18 else {}
        ref = (GGNOperator(model, loss, [(X, y)], cache=False, eval_mode=op.eval_mode, **kw)
               if operator == "ggn" else
               HessianOperator(model, loss, [(X, y)], backend="backprop", eval_mode=op.eval_mode, **kw))
        return torch.allclose(got, ref.matvec(v), atol=1e-12, rtol=0)

    op = make(eval_mode=True)
    v = torch.randn(op.shape[0], dtype=torch.float64)
    op.matvec(v)
    model.train()
    with torch.no_grad():
        model(X + 1.0)  # batch norm's running statistics move
    model.eval()
    assert fresh_equals(op, v)
    last = make(params=["3.weight"], eval_mode=True)
    w = torch.randn(18, dtype=torch.float64)
    last.matvec(w)
    with torch.no_grad():
        model[0].weight.mul_(1.5)  # a parameter the operator does not differentiate
    assert fresh_equals(last, w)
    own_mode = make(eval_mode=False)
    own_mode.matvec(v)
    model.train()  # the passes now use batch statistics
    assert fresh_equals(own_mode, v)


def test_batched_and_looped_products_agree():
    case = CASES[3]
    H = HessianOperator(case.model, case.loss_fn, case.batches, vmap_max_params=10**9)
    H_loop = HessianOperator(case.model, case.loss_fn, case.batches, vmap_max_params=0)
    V = torch.randn(H.shape[0], 7, dtype=torch.float64)
    assert torch.allclose(H.matmat(V), H_loop.matmat(V), atol=1e-12)


def test_unused_parameter_has_zero_curvature():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(3, 2)
            self.unused = nn.Linear(3, 2)

        def forward(self, x):
            return self.used(x)

    model = Model().double()
    X, y = torch.randn(6, 3, dtype=torch.float64), torch.randint(0, 2, (6,))
    for backend in ("graph", "backprop"):
        H = HessianOperator(model, nn.CrossEntropyLoss(), (X, y), backend=backend)
        M = H.matmat(torch.eye(H.shape[0], dtype=torch.float64))
        assert torch.all(M[8:, :] == 0) and torch.all(M[:, 8:] == 0)
        assert M[:8, :8].abs().sum() > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_block_of_only_unused_parameters_is_the_zero_operator(backend):
    # the loss does not require grad w.r.t. the selected parameters: no first-order
    # graph to differentiate, their products are 0 (was: autograd.grad RuntimeError)
    torch.manual_seed(0)
    model = UnusedHead().double()
    X, y = torch.randn(6, 3, dtype=torch.float64), torch.randint(0, 2, (6,))
    H = HessianOperator(model, nn.CrossEntropyLoss(), (X, y), params=["unused.weight", "unused.bias"],
                        backend=backend)
    assert H.shape == (20, 20)
    assert torch.equal(H.matmat(torch.randn(20, 3, dtype=torch.float64)), torch.zeros(20, 3, dtype=torch.float64))
    assert torch.equal(H.matvec(torch.ones(20, dtype=torch.float64)), torch.zeros(20, dtype=torch.float64))
    # the full model's product is unchanged: the used block as a Hessian of its own, zeros elsewhere
    full = HessianOperator(model, nn.CrossEntropyLoss(), (X, y), backend=backend)
    used = HessianOperator(model, nn.CrossEntropyLoss(), (X, y), params=["used.weight", "used.bias"],
                           backend=backend)
    M = full.matmat(torch.eye(full.shape[0], dtype=torch.float64))
    assert torch.all(M[8:, :] == 0) and torch.all(M[:, 8:] == 0)
    assert torch.allclose(M[:8, :8], used.matmat(torch.eye(8, dtype=torch.float64)), atol=1e-14)
    assert M[:8, :8].abs().sum() > 0


def test_eval_mode_option_restores_train_mode_and_train_mode_warns():
    model = nn.Sequential(nn.Linear(5, 4), nn.Dropout(0.5), nn.Linear(4, 3)).double()
    X, y = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 3, (8,))
    with pytest.warns(UserWarning, match="Dropout"):
        HessianOperator(model, nn.CrossEntropyLoss(), (X, y))
    H = HessianOperator(model, nn.CrossEntropyLoss(), (X, y), eval_mode=True)
    H.check_deterministic()
    assert model.training and model[1].training


def test_train_mode_batchnorm_leaves_running_stats_untouched():
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 3)).double()
    X, y = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 3, (8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match="BatchNorm1d"):
        H = HessianOperator(model, nn.CrossEntropyLoss(), (X, y))
    H.matvec(torch.randn(H.shape[0], dtype=torch.float64))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_nonfinite_loss_raises():
    model = nn.Linear(3, 2).double()
    X = torch.full((4, 3), float("nan"), dtype=torch.float64)
    H = HessianOperator(model, nn.CrossEntropyLoss(), (X, torch.zeros(4, dtype=torch.long)))
    with pytest.raises(FloatingPointError, match="loss"):
        H.matvec(torch.ones(H.shape[0], dtype=torch.float64))


class _Scale(nn.Module):
    """``p * x``: with a summed squared error, ``H = 2 diag(x^2)``, no sums inside ``H v``."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(n))

    def forward(self, x):
        return self.p * x


def test_nonfinite_product_raises_but_huge_finite_products_pass():
    n = 8
    H = HessianOperator(_Scale(n), nn.MSELoss(reduction="sum"), (torch.ones(1, n), torch.zeros(1, n)))
    v = torch.ones(n)
    v[0] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN or Inf"):
        H.matvec(v)
    # entries near the float32 limit: their sum overflows, yet every entry is finite
    out = H.matvec(torch.full((n,), 1e38))
    torch.testing.assert_close(out, torch.full((n,), 2e38))
    assert not bool(torch.isfinite(out.sum()))


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        HessianOperator(nn.Linear(2, 1), nn.MSELoss(), (torch.ones(2, 2), torch.ones(2, 1)), backend="x")


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_loss_receives_what_the_model_returns(backend):
    case = CASES[0]

    class DictOut(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = case.model

        def forward(self, x):
            return {"logits": self.inner(x)}

    H = HessianOperator(DictOut(), lambda out, y: case.loss_fn(out["logits"], y), case.batches,
                        reduction="mean", backend=backend)
    dense = case.dense_hessian()
    got = H.matmat(torch.eye(dense.shape[0], dtype=torch.float64))
    assert torch.allclose(got, dense, atol=1e-10, rtol=0), (got - dense).abs().max()


def _small_problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    X, y = torch.randn(12, 4, dtype=torch.float64), torch.randint(0, 3, (12,))
    return model, (X, y)


def test_a_batched_product_out_of_memory_falls_back_to_one_vector_at_a_time(monkeypatch):
    """k vectors at once take k times the backward's memory: on an out-of-memory error
    the operator says so and computes them one at a time, with the same result."""
    model, data = _small_problem()
    op = HessianOperator(model, nn.functional.cross_entropy, data)
    V = torch.randn(op.shape[0], 3, dtype=torch.float64)
    expected = op.matmat(V)
    grad = torch.autograd.grad

    def oom_when_batched(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", oom_when_batched)
    op2 = HessianOperator(model, nn.functional.cross_entropy, data)
    with pytest.warns(RuntimeWarning, match="3 vectors at once ran out of memory.*one at a time"):
        out = op2.matmat(V)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_out_of_memory_in_the_func_backend_is_raised_not_taken_for_a_missing_rule(monkeypatch):
    model, data = _small_problem()
    op = HessianOperator(model, nn.functional.cross_entropy, data, backend="func")
    jvp = torch.func.jvp

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(torch.func, "jvp", oom)
    with pytest.raises(torch.OutOfMemoryError):
        op.matmat(torch.randn(op.shape[0], 2, dtype=torch.float64))
    monkeypatch.setattr(torch.func, "jvp", jvp)
    assert op.matmat(torch.randn(op.shape[0], 1, dtype=torch.float64)).shape == (op.shape[0], 1)


def test_vmap_max_params_must_be_an_integer():
    X, y = torch.randn(8, 3), torch.randn(8, 1)
    with pytest.raises(ValueError, match="vmap_max_params must be an integer >= 0, got 'x'"):
        HessianOperator(nn.Linear(3, 1), nn.MSELoss(), (X, y), vmap_max_params="x")


@pytest.mark.parametrize("operator", ["hessian", "ggn"])
@pytest.mark.parametrize("edit", ["vector_to_parameters", "data_add"])
def test_cached_graphs_follow_parameters_replaced_or_edited_through_data(operator, edit):
    """``p.data = new`` (torch.nn.utils.vector_to_parameters) and ``p.data.add_(...)``
    bump no version counter: a reused operator kept serving the old point's matrix
    (relative difference 0.97 for the Hessian, 0.84 for the GGN)."""
    from torch.nn.utils import parameters_to_vector, vector_to_parameters

    from spectra import GGNOperator

    torch.manual_seed(0)
    X, y = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 3, (16,))
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    loss = nn.CrossEntropyLoss()

    def make(cached):
        if operator == "ggn":
            return GGNOperator(model, loss, [(X, y)], cache=cached)
        return HessianOperator(model, loss, [(X, y)], backend="graph" if cached else "backprop")

    op = make(True)
    V = torch.randn(op.shape[0], 3, dtype=torch.float64)
    before = op.matmat(V)
    theta = parameters_to_vector(model.parameters()).detach()
    step = 0.5 * torch.randn_like(theta)
    if edit == "vector_to_parameters":
        vector_to_parameters(theta + step, model.parameters())
    else:
        for p, s in zip(model.parameters(), step.split([p.numel() for p in model.parameters()])):
            p.data.add_(s.view_as(p))
    after = op.matmat(V)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, make(False).matmat(V), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("operator", ["hessian", "ggn"])
def test_cached_graphs_are_reused_while_the_model_is_unchanged(operator):
    from spectra import GGNOperator

    torch.manual_seed(0)
    X, y = torch.randn(12, 3, dtype=torch.float64), torch.randint(0, 3, (12,))
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    forwards = [0]
    model.register_forward_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    batches = [(X[:5], y[:5]), (X[5:], y[5:])]
    op = (GGNOperator(model, nn.CrossEntropyLoss(), batches) if operator == "ggn"
          else HessianOperator(model, nn.CrossEntropyLoss(), batches, backend="graph"))
    v = torch.randn(op.shape[0], dtype=torch.float64)
    first = op.matvec(v)
    assert forwards[0] == 2  # one graph per batch
    torch.testing.assert_close(op.matvec(v), first, rtol=0, atol=0)
    assert forwards[0] == 2  # the same graphs
    with torch.no_grad():
        model[0].weight.data[0, 0] += 1.0  # one entry, through .data
    op.matvec(v)
    assert forwards[0] == 4  # rebuilt
    op.clear_cache()
    op.matvec(v)
    assert forwards[0] == 6
