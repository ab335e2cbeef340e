"""The probe's optional quantities: the preconditioned sharpness against dense
P^-1/2 H P^-1/2, the threshold, the alignment and per-layer spectra in one probe."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from spectra.probe import ProbeSettings, probe
from tests.spectra.cases import make_cases

BASE = {"top_k": 2, "bottom": False, "trace_matvecs": 0, "density": None, "tol": 1e-10}


@pytest.fixture()
def trained():
    """The mlp case after 5 Adam steps, and the optimizer."""
    case = make_cases()[0]
    model = copy.deepcopy(case.model)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.9, 0.99))
    X, y = case.batches[0]
    for _ in range(5):
        opt.zero_grad()
        case.loss_fn(model(X), y).backward()
        opt.step()
    c = copy.copy(case)
    c.model = model
    return c, opt


def test_preconditioned_top_equals_dense(trained):
    case, opt = trained
    r = probe(case.model, case.loss_fn, case.batches, ProbeSettings(**BASE, preconditioned=True), optimizer=opt)
    # Adam's P by hand from its state (Cohen et al. 2022): (1 - b1^t)(sqrt(v / (1 - b2^t)) + eps)
    parts = []
    for p in case.model.parameters():
        st = opt.state[p]
        t = float(st["step"])
        parts.append(((1 - 0.9**t) * ((st["exp_avg_sq"] / (1 - 0.99**t)).sqrt() + 1e-8)).reshape(-1))
    d = torch.cat(parts).double()
    H = case.dense_hessian()
    M = H / d.sqrt()[:, None] / d.sqrt()[None, :]
    exact = float(torch.linalg.eigvalsh(M)[-1])
    assert r.preconditioned_top == pytest.approx(exact, rel=1e-8)
    assert exact > 10 * float(torch.linalg.eigvalsh(H)[-1])  # a different number than lambda_1(H)
    assert r.threshold.kind == "(2+2b1)/((1-b1)lr)" and r.threshold.value == pytest.approx(38 / 0.01)


def test_preconditioned_before_the_first_step_is_nan_and_sgd_is_refused():
    case = make_cases()[0]
    for cls in (torch.optim.Adam, torch.optim.Adagrad):  # Adagrad makes a step-0 state at once
        fresh = cls(case.model.parameters())
        r = probe(case.model, case.loss_fn, case.batches, ProbeSettings(**BASE, preconditioned=True),
                  optimizer=fresh)
        assert math.isnan(r.preconditioned_top), cls
    with pytest.raises(TypeError, match="no preconditioner"):
        probe(case.model, case.loss_fn, case.batches, ProbeSettings(**BASE, preconditioned=True),
              optimizer=torch.optim.SGD(case.model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="optimizer"):
        probe(case.model, case.loss_fn, case.batches, ProbeSettings(**BASE, preconditioned=True))


def test_settings_checks():
    with pytest.raises(ValueError, match="top_k"):
        ProbeSettings(top_k=0, alignment=True)
    with pytest.raises(ValueError, match="module, tensor"):
        ProbeSettings(layers="layer")
    with pytest.raises(ValueError, match="needs layers"):
        ProbeSettings(layer_density=(2, 10))
    s = ProbeSettings(layers={"w": "0.weight"}, layer_density=[2, 10])
    assert s.layers == {"w": ["0.weight"]} and s.layer_density == (2, 10)
    json.dumps(s.to_dict())


def test_all_quantities_in_one_probe_and_json(trained):
    case, opt = trained
    s = ProbeSettings(**BASE, preconditioned=True, alignment=True, layers="module", layer_density=(2, 10))
    r = probe(case.model, case.loss_fn, case.batches, s, optimizer=opt, batch=case.batches[0])
    d = json.loads(json.dumps(r.to_dict()))
    assert d["threshold"]["kind"] == "(2+2b1)/((1-b1)lr)"
    assert d["preconditioned_top"] > 0
    assert 0 <= d["alignment"]["full_batch"] <= 1 and 0 <= d["alignment"]["minibatch"] <= 1
    assert d["alignment"]["step_loss_change"] is not None
    assert [b["name"] for b in d["layers"]["blocks"]] == ["0", "2"]
    assert 0 <= d["layers"]["heterogeneity"] <= 1
    # block products are counted with the probe's
    assert r.num_matvecs >= r.layers.num_matvecs > 0


def test_a_low_precision_models_layers_compute_in_its_dtype_and_alignment_in_float32(
        trained, monkeypatch):
    """The per-layer spectra were computed in the vectors' float32 (the operator's `dtype`)
    for a bfloat16 model, whose whole-model spectrum is of its bfloat16 products: two
    different models in one probe. They now get its compute dtype. The alignment stays in
    float32: one step's loss changes are below bfloat16's resolution of a loss."""
    import importlib

    probe_module = importlib.import_module("spectra.probe")  # the module, not the function
    case, _ = trained
    low = copy.deepcopy(case.model).to(torch.bfloat16)
    seen = {}
    real_blocks, real_align = probe_module.block_spectra, probe_module.gradient_alignment

    def blocks(*args, **kwargs):
        seen["layers"] = kwargs["dtype"]
        return real_blocks(*args, **kwargs)

    def align(*args, **kwargs):
        seen["alignment"] = kwargs["dtype"]
        return real_align(*args, **kwargs)

    monkeypatch.setattr(probe_module, "block_spectra", blocks)
    monkeypatch.setattr(probe_module, "gradient_alignment", align)
    settings = ProbeSettings(**{**BASE, "tol": 1e-2}, layers="module", alignment=True)
    probe(low, case.loss_fn, case.batches, settings)
    assert seen == {"layers": torch.bfloat16, "alignment": torch.float32}


def test_the_memory_budget_reaches_the_preconditioned_and_layer_solvers(trained):
    """max_memory and density_mode were passed to top, bottom and density only: the
    preconditioned eigsh (as large as the top one) and the layers' solvers used the
    defaults, and result.memory did not say so."""
    case, opt = trained
    s = ProbeSettings(**{**BASE, "density": (2, 10)}, preconditioned=True, layers="module",
                      layer_density=(2, 10), max_memory=1, density_mode="bounded")
    r = probe(case.model, case.loss_fn, case.batches, s, optimizer=opt)
    assert r.memory["preconditioned"]["mode"] == "disk" == r.memory["top"]["mode"]
    assert {b.measure.plan.mode for b in r.layers.blocks} == {"bounded"}
