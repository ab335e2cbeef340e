"""Per-block spectra against the dense Hessian's diagonal blocks; the Jensen-Shannon
distance and the heterogeneity score against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spectra.curvature.blocks import (
    block_heterogeneity,
    block_spectra,
    js_distance,
    parameter_blocks,
)
from tests.spectra.cases import make_cases


@pytest.fixture(scope="module")
def case():
    return make_cases()[0]  # mlp-ce-mean: Linear(5, 4), Tanh, Linear(4, 3), float64, 3 batches


def _slices(case, groups):
    """Index ranges of each block in the dense Hessian's coordinates."""
    named = dict(case.model.named_parameters())
    start, where = 0, {}
    for n in case.param_names:
        where[n] = range(start, start + named[n].numel())
        start += named[n].numel()
    return {g: [i for n in ps for i in where[n]] for g, ps in groups.items()}


def test_parameter_blocks(case):
    m = case.model
    assert parameter_blocks(m, "module") == {"0": ("0.weight", "0.bias"), "2": ("2.weight", "2.bias")}
    assert list(parameter_blocks(m, "tensor")) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert parameter_blocks(m, {"w": ["2.weight", "0.weight"]}) == {"w": ("0.weight", "2.weight")}
    with pytest.raises(ValueError, match="module, tensor"):
        parameter_blocks(m, "layer")
    with pytest.raises(ValueError, match="not a trainable"):
        parameter_blocks(m, {"a": ["3.weight"]})
    with pytest.raises(ValueError, match="in groups"):
        parameter_blocks(m, {"a": ["0.bias"], "b": ["0.bias"]})
    # two keys with one name: the second group used to replace the first, silently
    with pytest.raises(ValueError, match="groups 1 and '1' have the same name '1'"):
        parameter_blocks(m, {1: ["0.weight"], "1": ["2.weight"]})


@pytest.mark.parametrize("density", [5, (2,), "ab", (0, 5), (2, 1.5), (True, 5)])
def test_block_spectra_refuses_a_bad_density_by_name(case, density):
    with pytest.raises(ValueError, match="density"):
        block_spectra(case.model, case.loss_fn, case.batches, top=False, trace_matvecs=0,
                      density=density)


def test_block_spectra_takes_the_memory_budget_and_slq_mode(case):
    """The probe's max_memory and density_mode reach the blocks' solvers (they ran with
    the defaults: the full mode and the device)."""
    res = block_spectra(case.model, case.loss_fn, case.batches, top=False, trace_matvecs=0,
                        density=(2, 10), density_mode="bounded")
    assert {b.measure.plan.mode for b in res.blocks} == {"bounded"}
    full = block_spectra(case.model, case.loss_fn, case.batches, top=False, trace_matvecs=0,
                         density=(2, 10), max_memory=1)
    assert {b.measure.plan.mode for b in full.blocks} == {"bounded"}  # nothing fits in 1 byte


@pytest.mark.parametrize("kind", ["module", "tensor"])
def test_block_top_and_trace_equal_the_dense_diagonal_blocks(case, kind):
    H = case.dense_hessian()
    groups = parameter_blocks(case.model, kind)
    res = block_spectra(case.model, case.loss_fn, case.batches, kind, tol=1e-10,
                        trace_matvecs=90, density=(2, 30))
    assert res.names == list(groups)
    for b, idx in zip(res.blocks, _slices(case, groups).values()):
        Hbb = H[np.ix_(idx, idx)]
        evals = torch.linalg.eigvalsh(Hbb)
        scale = float(evals.abs().max())
        assert b.size == len(idx)
        assert abs(b.top_eigenvalue - float(evals[-1])) <= 1e-8 * scale
        # Hutch++ with a budget >= 3 P_b sketches the whole block: exact
        assert abs(b.trace - float(Hbb.trace())) <= 1e-8 * scale * len(idx)
        # the density is the block's: its first moment is tr(H_bb) / P_b
        assert b.measure.dim == len(idx)
        assert b.measure.trace() == pytest.approx(float(Hbb.trace()), abs=0.5 * scale * len(idx))
    assert 0.0 <= res.heterogeneity <= 1.0
    assert res.num_matvecs == sum(b.num_matvecs for b in res.blocks) > 0
    row = res.row(num_steps=30)
    assert row["layer_top_eigenvalue"].shape == (len(groups),)
    assert row["layer_ritz_nodes"].shape == (len(groups), 2, 30)
    # a block smaller than 30 is NaN-padded
    small = [i for i, b in enumerate(res.blocks) if b.size < 30]
    assert small and all(np.isnan(row["layer_ritz_nodes"][i, :, -1]).all() for i in small)


def test_js_distance_by_hand():
    # m = (1/4, 1/2, 1/4); KL(p||m) = 1/2 log2 2 + 1/2 log2 1 = 1/2 = KL(q||m); JS = 1/2
    assert js_distance([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]) == pytest.approx(math.sqrt(0.5), rel=1e-14)
    assert js_distance([1.0, 0.0], [0.0, 3.0]) == pytest.approx(1.0, rel=1e-14)  # disjoint; normalized
    assert js_distance([2.0, 1.0], [2.0, 1.0]) == 0.0
    p, q = np.array([0.2, 0.3, 0.5]), np.array([0.6, 0.3, 0.1])
    m = (p + q) / 2
    by_hand = 0.5 * sum(p * np.log2(p / m)) + 0.5 * sum(q * np.log2(q / m))
    assert js_distance(p, q) == pytest.approx(math.sqrt(by_hand), rel=1e-13)
    with pytest.raises(ValueError, match="non-negative"):
        js_distance([-1.0, 2.0], [1.0, 1.0])


def test_heterogeneity_on_a_common_grid_by_hand():
    """Three one-node measures on a linear axis, sigma fixed: the score is the mean of
    the three pairwise distances between Gaussians sampled on the common grid."""
    rules = [(np.array([[c]]), np.array([[1.0]])) for c in (0.0, 1.0, 5.0)]
    sigma = 0.5
    got = block_heterogeneity(rules, xscale="linear", grid=400, sigma=sigma)
    # the same grid by hand: 400 cells evenly spaced from lo - pad to hi + pad
    pad = min(3 * sigma, 0.1 * 5.0)
    edges = np.linspace(-pad, 5.0 + pad, 401)
    c = 0.5 * (edges[1:] + edges[:-1])
    dens = [np.exp(-0.5 * ((c - mu) / sigma) ** 2) for mu in (0.0, 1.0, 5.0)]
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = np.mean([js_distance(dens[i], dens[j]) for i, j in pairs])
    assert got == pytest.approx(expected, rel=1e-10)
    assert 0.3 < got < 1.0  # 0 and 1 overlap a lot, 5 is apart from both
    assert math.isnan(block_heterogeneity(rules[:1]))
    same = block_heterogeneity([rules[0], rules[0]], xscale="linear", sigma=sigma)
    assert same == pytest.approx(0.0, abs=1e-7)


def test_block_unused_by_the_loss_has_zero_curvature():
    # a head the loss never reaches: lambda_1 = 0 and trace 0 (was: RuntimeError from autograd.grad)
    from torch import nn

    from tests.spectra.cases import UnusedHead

    torch.manual_seed(0)
    model = UnusedHead(5, 3).double()
    X, y = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 3, (8,))
    res = block_spectra(model, nn.CrossEntropyLoss(), (X, y), trace_matvecs=10, density=(1, 4))
    assert res.names == ["used", "unused"]
    unused = res.blocks[1]
    assert unused.size == 20 and unused.top_eigenvalue == 0.0 and unused.trace == 0.0
    assert res.blocks[0].top_eigenvalue > 0
    assert np.all(unused.measure.nodes == 0)


def test_row_num_steps_shorter_than_the_densities_is_refused(case):
    res = block_spectra(case.model, case.loss_fn, case.batches, "module", density=(1, 5),
                        trace_matvecs=0, top=False)
    with pytest.raises(ValueError, match=r"num_steps must be an integer >= 5, got 3"):
        res.row(num_steps=3)
    with pytest.raises(ValueError, match="num_steps"):
        res.row(num_steps=2.5)
    assert res.row(num_steps=5)["layer_ritz_nodes"].shape[2] == 5
    assert res.row(num_steps=7)["layer_ritz_nodes"].shape[2] == 7
