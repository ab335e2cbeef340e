"""spectra.landscape against closed forms."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from spectra.landscape import loss_landscape, random_directions


def _regression(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randn(40, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(5, 1).double()  # one output: a simple top eigenvalue
    return model, nn.MSELoss(), (X, y)


def test_top_direction_of_a_quadratic_loss_is_exact():
    """MSE of a linear model is quadratic: L(a) = L(0) + a g.v + a^2 lambda_1 / 2."""
    model, loss_fn, (X, y) = _regression()
    before = [p.detach().clone() for p in model.parameters()]
    land = loss_landscape(model, loss_fn, (X, y), directions="top", dims=1, span=2.0, points=9,
                          tol=1e-8)
    # dense Hessian and gradient
    params = torch.cat([p.reshape(-1) for p in model.parameters()])

    def f(theta):
        W, b = theta[:5].reshape(1, 5), theta[5:]
        return loss_fn(X @ W.T + b, y)

    H = torch.autograd.functional.hessian(f, params.detach())
    g = torch.autograd.functional.jacobian(f, params.detach())
    evals, evecs = torch.linalg.eigh(H)
    lam, v = float(evals[-1]), evecs[:, -1]
    assert land.eigenvalues[0] == pytest.approx(lam, rel=1e-6)
    a = land.alphas
    # the eigenvector's sign is arbitrary: compare with both
    pred = [float(f(params.detach())) + a * s * float(g @ v) + 0.5 * lam * a**2 for s in (1, -1)]
    assert min(np.max(np.abs(land.losses - p)) for p in pred) < 1e-9
    assert land.center_loss == pytest.approx(float(f(params.detach())), abs=1e-12)
    for p, q in zip(model.parameters(), before):  # the model is left as it was
        assert torch.equal(p, q)


def _saddle(seed=0):
    """A loss quadratic in the parameters with an indefinite Hessian: mean(y out^2) for
    a linear model and targets y = +-1, whose Hessian is 2 mean(y [x,1][x,1]^T)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(40, 4, generator=g, dtype=torch.float64)
    y = torch.where(torch.rand(40, 1, generator=g) < 0.5, -1.0, 1.0).double()
    torch.manual_seed(seed)
    model = nn.Linear(4, 1).double()

    def loss_fn(out, t):
        return (t * out**2).mean()

    params = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def f(theta):
        return loss_fn(X @ theta[:4].reshape(1, 4).T + theta[4:], y)

    H = torch.autograd.functional.hessian(f, params)
    grad = torch.autograd.functional.jacobian(f, params)
    return model, loss_fn, (X, y), (f, params, H, grad)


def test_bottom_and_extreme_directions_of_a_saddle_are_exact():
    """directions='bottom' takes the most negative eigenvector, 'extremes' the top and
    the most negative as a plane: on a quadratic loss the landscape is exactly
    L(0) + a g.v1 + b g.v2 + (l1 a^2 + l2 b^2) / 2 (eigenvectors: no cross term)."""
    model, loss_fn, data, (f, params, H, grad) = _saddle()
    evals, evecs = torch.linalg.eigh(H)
    assert evals[0] < 0 < evals[-1]  # a saddle
    L0 = float(f(params))
    bottom = loss_landscape(model, loss_fn, data, directions="bottom", dims=1, span=1.0,
                            points=7, tol=1e-10, reduction="mean")
    assert bottom.kind == "bottom"
    assert bottom.eigenvalues[0] == pytest.approx(float(evals[0]), rel=1e-8)
    a, v = bottom.alphas, evecs[:, 0]
    pred = [L0 + a * s * float(grad @ v) + 0.5 * float(evals[0]) * a**2 for s in (1, -1)]
    assert min(np.max(np.abs(bottom.losses - p)) for p in pred) < 1e-10

    plane = loss_landscape(model, loss_fn, data, directions="extremes", dims=2, span=1.0,
                           points=5, tol=1e-10, reduction="mean")
    np.testing.assert_allclose(plane.eigenvalues, [float(evals[-1]), float(evals[0])], rtol=1e-8)
    A, B = np.meshgrid(plane.alphas, plane.betas)  # losses[j, i]: a = alphas[i], b = betas[j]
    g1, g2 = float(grad @ evecs[:, -1]), float(grad @ evecs[:, 0])
    best = min(
        np.max(np.abs(plane.losses - (L0 + s1 * g1 * A + s2 * g2 * B
                                      + 0.5 * (float(evals[-1]) * A**2 + float(evals[0]) * B**2))))
        for s1 in (1, -1) for s2 in (1, -1))
    assert best < 1e-10


def test_extreme_plane_axes_name_both_eigenvalues():
    from spectra.plots import plot_landscape

    model, loss_fn, data, _ = _saddle()
    plane = loss_landscape(model, loss_fn, data, directions="extremes", dims=2, points=3,
                           reduction="mean")
    ax = plot_landscape(plane).axes[0]
    assert ax.get_xlabel().startswith("top eigenvector (\u03bb1 = ")
    assert ax.get_ylabel().startswith("most negative eigenvector (\u03bbmin = -")
    line = plot_landscape(loss_landscape(model, loss_fn, data, directions="bottom", points=3,
                                         reduction="mean")).axes[0]
    assert "most negative eigenvector" in line.get_xlabel()
    assert any("\u03bbmin a\u00b2/2" in t.get_text() for t in line.get_legend().get_texts())


def test_random_directions_are_filter_normalized():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    (d,) = random_directions(model, 1, generator=torch.Generator().manual_seed(1))
    for t, (_, p) in zip(d, model.named_parameters()):
        if p.dim() == 1:
            assert torch.count_nonzero(t) == 0
        else:
            torch.testing.assert_close(t.norm(dim=1), p.detach().norm(dim=1))


def test_2d_grid_shape_and_center():
    model, loss_fn, data = _regression(1)
    land = loss_landscape(model, loss_fn, data, directions="random", dims=2, span=0.5, points=5)
    assert land.losses.shape == (5, 5) and land.eigenvalues is None
    assert land.losses[2, 2] == land.center_loss


@pytest.mark.parametrize("kw, match", [
    ({"dims": 3}, r"dims must be an integer in \[1, 2\], got 3"),
    ({"dims": True}, "dims must be an integer in .* got True"),  # was accepted as 1
    ({"span": "1"}, "span must be a positive number, got '1'"),  # was a raw TypeError
    ({"seed": None}, "seed must be an integer"),  # was a RuntimeError of manual_seed
    ({"points": 4}, "points must be an odd integer"),
    ({"span": -1.0}, "span must be a positive number"),
    ({"directions": "sideways"}, "directions must be one of top, bottom, extremes, random"),
    ({"directions": "extremes", "dims": 1}, "directions='extremes' .* needs dims=2"),
])
def test_bad_arguments(kw, match):
    model, loss_fn, data = _regression()
    with pytest.raises(ValueError, match=match):
        loss_landscape(model, loss_fn, data, **kw)


@pytest.mark.parametrize("span", [1e308, 1e39])
def test_a_span_past_the_parameters_largest_number_is_refused(span):
    """float32 weights: span 1e39 is past float32's 3.4e38 itself, 1e308 made the grid
    overflow before (a RuntimeError about a conversion, naming no argument)."""
    model, loss_fn, (X, y) = _regression()
    model, data = model.float(), (X.float(), y.float())
    expected = (f"span={span:g} is too large for the torch.float32 parameters: a step of span "
                "along direction 1 (largest entry ")
    with pytest.raises(ValueError, match=re.escape(expected)):
        loss_landscape(model, loss_fn, data, directions="random", span=span)
    # float64 weights take it: the loss far out is huge, the landscape is drawn
    land = loss_landscape(model.double(), loss_fn, (X, y), directions="random", span=1e39,
                          points=3)
    assert land.losses[1] == land.center_loss and land.losses[0] > 1e60


@pytest.mark.parametrize("dims, directions", [(1, "top"), (2, "random")])
def test_plot_landscape_writes_an_image(tmp_path, dims, directions):
    from spectra.plots import plot_landscape, save_figure

    model, loss_fn, data = _regression()
    land = loss_landscape(model, loss_fn, data, directions=directions, dims=dims, points=5)
    fig = plot_landscape(land)
    assert "Loss along" in fig._suptitle.get_text()
    path = save_figure(fig, tmp_path / "l.png")
    assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 1000


def test_batches_add_up_by_the_reduction_of_a_custom_loss():
    import torch.nn.functional as F

    model, _, (X, y) = _regression()
    data = [(X[:15], y[:15]), (X[15:], y[15:])]
    summed = loss_landscape(model, lambda o, t: ((o - t) ** 2).sum(), data, directions="random", points=3)
    assert summed.reduction == "sum" and summed.to_dict()["reduction"] == "sum"
    with torch.no_grad():
        assert summed.center_loss == pytest.approx(float(((model(X) - y) ** 2).sum()), rel=1e-12)
    top = loss_landscape(model, lambda o, t: F.mse_loss(o, t), data, directions="top", points=3)
    assert top.reduction == "mean"
    with torch.no_grad():
        assert top.center_loss == pytest.approx(float(F.mse_loss(model(X), y)), rel=1e-12)
    with pytest.raises(ValueError, match="reduction="):
        loss_landscape(model, lambda o, t: ((o - t) ** 2).max(), data, directions="random", points=3)


def test_a_zero_direction_is_refused_not_drawn_flat():
    """Filter-normalized random directions of an all-zero model are zero: a flat plot would lie."""
    model, loss_fn, data = _regression()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    with pytest.raises(ValueError, match="direction 1 of the landscape is zero.*filter has norm zero"):
        loss_landscape(model, loss_fn, data, directions="random", points=3)
    zero = [[torch.zeros_like(p) for p in model.parameters()]]
    with pytest.raises(ValueError, match="direction 1 of the landscape is zero"):
        loss_landscape(model, loss_fn, data, directions=zero, points=3)


def test_a_nonfinite_loss_at_the_parameters_is_refused():
    """NaN weights: random directions would give an all-NaN landscape, silently."""
    model, loss_fn, data = _regression()
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="loss at the parameters themselves is nan"):
        loss_landscape(model, loss_fn, data, directions="random", points=3)


def test_numpy_integers_are_points_and_given_directions_must_be_tensors():
    model, loss_fn, data = _regression()
    land = loss_landscape(model, loss_fn, data, directions="random", points=np.int64(5))
    assert land.losses.shape == (5,)  # a numpy integer was refused
    dirs = [[np.ones(tuple(p.shape)) for p in model.parameters()]]
    with pytest.raises(TypeError, match="lists of parameter-shaped torch tensors"):
        loss_landscape(model, loss_fn, data, directions=dirs)  # was an AttributeError


@pytest.mark.parametrize("k", [-1, 0, 1.0, True, "2"])
def test_random_directions_refuses_a_bad_k(k):
    model = nn.Linear(5, 3).double()
    with pytest.raises(ValueError, match=r"^k must be an integer >= 1, got"):
        random_directions(model, k)
