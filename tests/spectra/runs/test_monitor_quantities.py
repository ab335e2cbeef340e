"""The monitor's issue-13 options through the reference trainer: the threshold,
the preconditioned sharpness, the alignment and per-layer columns of the run file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from spectra.runs.monitor import SpectralMonitor
from spectra.runs.store import RunStore, read_run
from spectra.runs.trainer import train


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(64, 5, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).long() + (X[:, 2] > 0.5).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    return model, nn.CrossEntropyLoss(), X, y


def _train(tmp_path, make_opt, **options):
    model, loss_fn, X, y = _problem()
    opt = make_opt(model.parameters())
    path = tmp_path / "r.h5"
    with RunStore(path) as store:
        run = store.create_run("r")
        mon = SpectralMonitor(model, loss_fn, (X[:32], y[:32]), run, top_k=2, density=None,
                              trace=12, **options)
        train(model, opt, (X, y), loss_fn=loss_fn, epochs=2, batch_size=16, monitor=mon, store=run)
    return read_run(path, "r").probes, mon


def test_adam_run_records_every_quantity(tmp_path):
    probes, mon = _train(tmp_path, lambda p: torch.optim.Adam(p, lr=0.01), preconditioned=True,
                         alignment=True, layers="module", layer_density=(2, 8))
    assert list(probes.step) == [0, 4, 8]  # epochs 0, 1, 2
    np.testing.assert_allclose(probes["threshold"], 38 / 0.01, rtol=1e-12)
    assert list(probes["threshold_kind"]) == ["(2+2b1)/((1-b1)lr)"] * 3
    assert list(probes["threshold_preconditioned"]) == [1.0] * 3  # bounds lambda_1(P^-1 H)
    pre = probes["preconditioned_top"]
    assert math.isnan(pre[0]) and np.all(pre[1:] > 0)  # no preconditioner before the first step
    a_full, a_batch = probes["alignment_full"], probes["alignment_batch"]
    assert np.all((a_full >= 0) & (a_full <= 1))
    assert math.isnan(a_batch[0]) and np.all((a_batch[1:] >= 0) & (a_batch[1:] <= 1))
    assert np.all(np.isfinite(probes["step_loss_change"]))
    assert probes["layer_top_eigenvalue"].shape == (3, 2)
    assert probes["layer_trace"].shape == (3, 2)
    assert probes["layer_ritz_nodes"].shape == (3, 2, 2, 8)
    assert np.all((probes["layer_heterogeneity"] >= 0) & (probes["layer_heterogeneity"] <= 1))
    assert mon.config()["layer_names"] == ["0", "2"] and mon.config()["layer_sizes"] == [48, 27]
    # a diagonal block's lambda_1 is at most the whole Hessian's (Cauchy interlacing)
    top = probes["top_eigenvalues"][:, 0]
    assert np.all(probes["layer_top_eigenvalue"].max(axis=1) <= top * (1 + 1e-2))


def test_sgd_momentum_threshold_and_refusals(tmp_path):
    probes, _ = _train(tmp_path, lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9))
    np.testing.assert_allclose(probes["threshold"], 3.8 / 0.05, rtol=1e-12)
    assert set(probes["threshold_kind"]) == {"(2+2b)/lr"}
    assert list(probes["threshold_preconditioned"]) == [0.0] * 3  # bounds lambda_1(H)
    assert "preconditioned_top" not in probes.extra and "alignment_full" not in probes.extra
    model, loss_fn, X, y = _problem()
    with pytest.raises(TypeError, match="no preconditioner"):
        SpectralMonitor(model, loss_fn, (X, y), preconditioned=True,
                        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="needs the optimizer"):
        SpectralMonitor(model, loss_fn, (X, y), preconditioned=True, density=None).probe(step=0)
    with pytest.raises(ValueError, match="not a trainable"):
        SpectralMonitor(model, loss_fn, (X, y), layers={"a": ["9.weight"]})


def test_threshold_preconditioned_tells_rmsprop_from_sgd_of_the_same_kind(tmp_path):
    # both thresholds are 2/lr; RMSprop's bounds the preconditioned sharpness, SGD's the Hessian's
    (tmp_path / "rms").mkdir(), (tmp_path / "sgd").mkdir()
    rms, _ = _train(tmp_path / "rms", lambda p: torch.optim.RMSprop(p, lr=0.02))
    sgd, _ = _train(tmp_path / "sgd", lambda p: torch.optim.SGD(p, lr=0.02))
    for probes in (rms, sgd):
        np.testing.assert_allclose(probes["threshold"], 2 / 0.02, rtol=1e-12)
        assert set(probes["threshold_kind"]) == {"2/lr"}
    assert list(rms["threshold_preconditioned"]) == [1.0] * 3
    assert list(sgd["threshold_preconditioned"]) == [0.0] * 3


def test_optimizer_without_threshold_records_none(tmp_path):
    probes, _ = _train(tmp_path, lambda p: torch.optim.Adagrad(p, lr=0.05))  # no theory
    for column in ("threshold", "threshold_kind", "threshold_preconditioned"):
        assert column not in probes.extra  # never given: absent (NaN beside rows that give it)


def test_monitor_without_optimizer_writes_no_threshold(tmp_path):
    model, loss_fn, X, y = _problem()
    with RunStore(tmp_path / "m.h5") as store:
        run = store.create_run("r")
        SpectralMonitor(model, loss_fn, (X, y), run, top_k=1, density=None, trace=False).probe(step=0)
    extra = read_run(tmp_path / "m.h5", "r").probes.extra
    assert "threshold" not in extra and "threshold_preconditioned" not in extra
