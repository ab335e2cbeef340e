"""Operators over data loaders: streamed batches, refused reshuffling, seeded subsamples."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, TensorDataset

from spectra import HessianOperator, subsample, top_eigenvalue_spread
from spectra.operators.base import batch_fingerprint
from spectra.operators.sampling import subsample_indices


def _problem(n=24):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    return model, X, y


class _LazyBatches:
    """Yields batches made on the fly, and counts what it made and what is alive."""

    def __init__(self, X, y, size):
        self.X, self.y, self.size = X, y, size
        self.made = 0

    def __iter__(self):
        for i in range(0, len(self.y), self.size):
            self.made += 1
            yield self.X[i:i + self.size].clone(), self.y[i:i + self.size].clone()


def test_a_loader_is_streamed_once_per_product_and_matches_the_full_batch():
    model, X, y = _problem()
    data = _LazyBatches(X, y, 5)
    op = HessianOperator(model, nn.CrossEntropyLoss(), data)
    made = data.made  # construction: one pass counting the samples
    v = torch.linspace(-1, 1, op.shape[0], dtype=torch.float64)
    Hv = op.matvec(v)
    assert data.made - made == 5  # one pass of 5 batches per product: nothing materialized
    op.matmat(torch.stack([v, -v], 1))
    assert data.made - made == 10  # k vectors share one pass
    full = HessianOperator(model, nn.CrossEntropyLoss(), (X, y)).matvec(v)
    torch.testing.assert_close(Hv, full, rtol=1e-12, atol=1e-12)


def test_a_dataloader_gives_the_full_batch_operator():
    model, X, y = _problem()
    loader = DataLoader(TensorDataset(X, y), batch_size=7, shuffle=False)
    v = torch.linspace(-1, 1, 43, dtype=torch.float64)
    a = HessianOperator(model, nn.CrossEntropyLoss(), loader).matvec(v)
    b = HessianOperator(model, nn.CrossEntropyLoss(), (X, y)).matvec(v)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda ds: DataLoader(ds, batch_size=5, shuffle=True),
    lambda ds: DataLoader(ds, batch_size=5, sampler=RandomSampler(ds)),
    lambda ds: DataLoader(ds, batch_size=5,
                          sampler=torch.utils.data.SubsetRandomSampler(range(10))),
    lambda ds: DataLoader(ds, batch_size=5, shuffle=True,
                          generator=torch.Generator().manual_seed(0)),
], ids=["shuffle", "random-sampler", "subset-random", "seeded-shuffle"])
def test_a_shuffling_loader_is_refused_with_the_fix(make):
    model, X, y = _problem()
    with pytest.raises(ValueError, match=r"shuffle=False.*spectra\.subsample"):
        HessianOperator(model, nn.CrossEntropyLoss(), make(TensorDataset(X, y)))


class _Augmented(Dataset):
    """Adds fresh noise to every input on every access (a random augmentation)."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.X[i] + 0.01 * torch.randn_like(self.X[i]), self.y[i]


class _Reshuffling:
    """A sampler that reshuffles by itself (no generator attribute to see)."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(torch.randperm(self.n).tolist())

    def __len__(self):
        return self.n


@pytest.mark.parametrize("kind", ["augmentation", "own-sampler"])
def test_a_loader_that_changes_its_batches_is_caught_on_the_first_product(kind):
    model, X, y = _problem()
    if kind == "augmentation":
        loader = DataLoader(_Augmented(X, y), batch_size=5, shuffle=False)
    else:
        loader = DataLoader(TensorDataset(X, y), batch_size=5, sampler=_Reshuffling(len(y)))
    op = HessianOperator(model, nn.CrossEntropyLoss(), loader)
    with pytest.raises(ValueError, match=r"does not repeat the same batches.*spectra\.subsample"):
        op.matvec(torch.ones(op.shape[0], dtype=torch.float64))


@pytest.mark.parametrize("kind", ["generator", "endless"])
def test_a_one_pass_iterator_is_refused_at_construction(kind):
    """A generator would be used up by the count at construction, an endless iterator
    (itertools.cycle) would never let it end: both are refused before any pass."""
    import itertools
    import signal

    model, X, y = _problem()
    batches = [(X[i:i + 6], y[i:i + 6]) for i in (0, 6)]
    data = iter(batches) if kind == "generator" else itertools.cycle(batches)
    old = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the operator did not return"))
    signal.alarm(20)
    try:
        with pytest.raises(ValueError, match=r"one-pass iterator \((list_iterator|cycle)\)"):
            HessianOperator(model, nn.CrossEntropyLoss(), data, reduction="mean")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_fingerprint_tells_batches_apart_and_repeats():
    _, X, y = _problem()
    assert batch_fingerprint((X, y)) == batch_fingerprint((X.clone(), y.clone()))
    Z = X.clone()
    Z[-1, -1] += 1e-12  # the last entry is one of the sampled ones
    assert batch_fingerprint((X, y)) != batch_fingerprint((Z, y))
    assert batch_fingerprint((X, y)) != batch_fingerprint((X, y.flip(0)))


def test_subsample_is_seeded_distinct_and_a_fixed_pair():
    model, X, y = _problem(50)
    a, b = subsample((X, y), 20, seed=3), subsample((X, y), 20, seed=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    idx = subsample_indices(50, 20, seed=3)
    assert len(set(idx.tolist())) == 20 and torch.equal(a[0], X[idx])
    assert not torch.equal(subsample_indices(50, 20, seed=4), idx)
    sub = subsample(TensorDataset(X, y), 20, seed=3)
    assert list(sub.indices) == idx.tolist()
    # the subset in order through a loader is the pair's operator
    v = torch.linspace(-1, 1, 43, dtype=torch.float64)
    ha = HessianOperator(model, nn.CrossEntropyLoss(), a).matvec(v)
    hb = HessianOperator(model, nn.CrossEntropyLoss(), DataLoader(sub, batch_size=6)).matvec(v)
    torch.testing.assert_close(ha, hb, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="more than the data set's 50"):
        subsample((X, y), 51)


def test_top_eigenvalue_spread_repeats_eigsh_on_each_subsample():
    model, X, y = _problem(60)
    spread = top_eigenvalue_spread(model, nn.CrossEntropyLoss(), (X, y), 15, [0, 1, 2], tol=1e-8)
    for s, value in zip(spread.seeds, spread.values):
        H = HessianOperator(model, nn.CrossEntropyLoss(), subsample((X, y), 15, seed=s))
        dense = torch.linalg.eigvalsh(H.matmat(torch.eye(43, dtype=torch.float64)))
        assert abs(value - float(dense[-1])) <= 1e-6 * abs(float(dense[-1]))
    vals = torch.tensor(spread.values, dtype=torch.float64)
    assert spread.mean == pytest.approx(float(vals.mean()), rel=1e-12)
    assert spread.std == pytest.approx(float(vals.std()), rel=1e-12)
    assert spread.std > 0  # different subsamples, different Hessians


def test_a_distributed_sampler_repeats_its_order_and_is_accepted():
    from torch.utils.data.distributed import DistributedSampler

    model, X, y = _problem()
    ds = TensorDataset(X, y)
    sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=3)
    op = HessianOperator(model, nn.CrossEntropyLoss(), DataLoader(ds, batch_size=5, sampler=sampler))
    v = torch.linspace(-1, 1, op.shape[0], dtype=torch.float64)
    a, b = op.matvec(v), op.matvec(v)  # the same permutation each pass until set_epoch
    full = HessianOperator(model, nn.CrossEntropyLoss(), (X, y)).matvec(v)
    torch.testing.assert_close(a, full, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    sampler.set_epoch(1)  # a new order: caught
    with pytest.raises(ValueError, match="does not repeat the same batches"):
        op.matvec(v)


def test_subsample_refuses_inputs_that_do_not_pair_with_the_targets():
    _, X, y = _problem(24)
    # the inputs used to be kept whole (not subsampled), silently unpaired from the targets
    with pytest.raises(ValueError, match=r"inputs of shape \(24, 4\), targets 20"):
        subsample((X, y[:20]), 5)
    with pytest.raises(ValueError, match=r"no tensor of the inputs holds the targets' 20 samples"):
        subsample(({"x": X}, y[:20]), 5)
    Xs, ys = subsample(({"x": X, "scale": torch.ones(3)}, y), 5)  # shared leaves stay whole
    assert Xs["x"].shape == (5, 4) and Xs["scale"].shape == (3,) and ys.shape == (5,)


@pytest.mark.parametrize("seed", [1.5, "a", None])
def test_subsample_seed_must_be_an_integer(seed):
    _, X, y = _problem(24)
    with pytest.raises(ValueError, match="seed must be an integer"):
        subsample((X, y), 5, seed=seed)


def test_top_eigenvalue_spread_refuses_repeated_seeds_and_a_bare_seed():
    model, X, y = _problem(24)
    # a repeated seed draws the same subsample: the spread would shrink (std 0 for [1, 1])
    with pytest.raises(ValueError, match=r"seeds must be distinct, got \[1, 2, 1\]"):
        top_eigenvalue_spread(model, nn.CrossEntropyLoss(), (X, y), 8, [1, 2, 1])
    with pytest.raises(TypeError, match=r"for one subsample use seeds=\[3\]"):
        top_eigenvalue_spread(model, nn.CrossEntropyLoss(), (X, y), 8, 3)
    # a list of batches used to be taken as a data set of 1 item ("n=8 is more than 1")
    with pytest.raises(TypeError, match=r"data must be the full \(inputs, targets\) pair .* "
                                        r"got list of 1 items"):
        top_eigenvalue_spread(model, nn.CrossEntropyLoss(), [(X, y)], 8, [0])
    # a process count of 0, or a rank outside it, used to be ignored (one process)
    with pytest.raises(ValueError, match="world_size must be an integer >= 1"):
        top_eigenvalue_spread(model, nn.CrossEntropyLoss(), (X, y), 8, [0], world_size=0)
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 1\]"):
        top_eigenvalue_spread(model, nn.CrossEntropyLoss(), (X, y), 8, [0], rank=2,
                              world_size=2)


def test_building_an_operator_passes_over_a_loader_once():
    """The construction's count is the only pass: no extra iter() (each draws a seed from
    the global RNG in a DataLoader, and would start its workers)."""
    model, X, y = _problem()
    loader = DataLoader(TensorDataset(X, y), batch_size=5, shuffle=False)
    torch.manual_seed(0)
    for _ in loader:
        pass
    expected = torch.rand(1)
    torch.manual_seed(0)
    HessianOperator(model, nn.CrossEntropyLoss(), loader)
    assert torch.equal(torch.rand(1), expected)


def test_a_rewinding_iterable_of_ones_own_is_not_taken_for_a_one_pass_iterator():
    model, X, y = _problem()

    class Rewinding:
        def __init__(self, batches):
            self.batches, self.i = batches, 0

        def __iter__(self):
            self.i = 0
            return self

        def __next__(self):
            if self.i == len(self.batches):
                raise StopIteration
            self.i += 1
            return self.batches[self.i - 1]

    data = Rewinding([(X[:6], y[:6]), (X[6:], y[6:])])
    op = HessianOperator(model, nn.CrossEntropyLoss(), data, reduction="mean")
    ref = HessianOperator(model, nn.CrossEntropyLoss(), list(data.batches), reduction="mean")
    v = torch.ones(op.shape[0], dtype=torch.float64)
    assert torch.allclose(op.matvec(v), ref.matvec(v))


def test_subsample_takes_the_rows_of_any_mapping_of_inputs():
    """Inputs in a Mapping that is not a dict (collections.UserDict, as transformers'
    BatchEncoding is) were returned whole beside subsampled targets."""
    from collections import UserDict

    _, X, y = _problem(30)
    Z = torch.arange(30.0).unsqueeze(1)
    idx = subsample_indices(30, 7, seed=2)
    inputs, targets = subsample((UserDict({"x": X, "z": Z}), y), 7, seed=2)
    assert type(inputs) is UserDict and torch.equal(targets, y[idx])
    assert torch.equal(inputs["x"], X[idx]) and torch.equal(inputs["z"], Z[idx])
    with pytest.raises(ValueError, match=r"no tensor of the inputs holds the targets' 20 samples"):
        subsample((UserDict({"x": X}), y[:20]), 5)


def test_subsample_rebuilds_named_tuple_inputs():
    """Named-tuple inputs raised "missing 1 required positional argument"."""
    from collections import namedtuple

    _, X, y = _problem(30)
    Z = torch.arange(30.0).unsqueeze(1)
    idx = subsample_indices(30, 7, seed=2)
    Pair = namedtuple("Pair", "x z")
    inputs, targets = subsample((Pair(X, Z), y), 7, seed=2)
    assert type(inputs) is Pair and torch.equal(targets, y[idx])
    assert torch.equal(inputs.x, X[idx]) and torch.equal(inputs.z, Z[idx])


def test_top_eigenvalue_spread_refuses_fewer_samples_than_processes():
    """With n < world_size some ranks' shards are empty (cli/probe.py refuses it too)."""
    model, X, y = _problem(24)
    with pytest.raises(ValueError, match=r"n=1 samples per subsample are fewer than the "
                                         r"world_size=2 processes"):
        top_eigenvalue_spread(model, nn.CrossEntropyLoss(), (X, y), 1, [0], rank=0, world_size=2)


class _OnePass:
    """An iterator of one's own that does not start again (not told from its type)."""

    def __init__(self, batches):
        self.it = iter(batches)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.it)


@pytest.mark.parametrize("loss_fn", [nn.CrossEntropyLoss(), nn.functional.cross_entropy],
                         ids=["declared", "detected"])
def test_a_used_up_iterator_is_named_whether_the_reduction_is_declared_or_detected(loss_fn):
    """With a detected reduction, iter(DataLoader) (and any one-pass iterator used up by
    the count) raised a bare StopIteration from the constructor; a declared one built an
    operator whose first product failed."""
    model, X, y = _problem()
    loader = DataLoader(TensorDataset(X, y), batch_size=5)
    with pytest.raises(ValueError, match=r"one-pass iterator \(_\w*DataLoaderIter\)"):
        HessianOperator(model, loss_fn, iter(loader))
    used_up = r"data yielded no batches on this pass: a one-pass iterable \(_OnePass"
    data = _OnePass([(X[:6], y[:6]), (X[6:], y[6:])])
    if loss_fn is nn.functional.cross_entropy:
        with pytest.raises(ValueError, match=used_up):
            HessianOperator(model, loss_fn, data)
    else:
        op = HessianOperator(model, loss_fn, data)
        with pytest.raises(ValueError, match=used_up):
            op.matvec(torch.ones(op.shape[0], dtype=torch.float64))
