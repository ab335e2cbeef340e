"""The operators, the solvers, the monitor and the trainer on every device present:
the CPU always, CUDA whenever ``torch.cuda.is_available()`` (``-m cuda`` for those
alone). Each result is checked against the dense float64 Hessian on the CPU."""

import numpy as np
import torch
from torch import nn

from spectra import HessianOperator, eigsh, slq, trace
from spectra.runs.monitor import SpectralMonitor
from spectra.runs.trainer import train


def _problem(device, n=40):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    return model.to(device), X.to(device), y.to(device)


def _dense(model, X, y):
    """The dense float64 Hessian of the mean cross-entropy, on the CPU."""
    cpu = [p.detach().cpu() for p in model.parameters()]
    shapes = [p.shape for p in cpu]
    flat = torch.cat([p.reshape(-1) for p in cpu])
    ref = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    names = [n for n, _ in ref.named_parameters()]

    def loss(v):
        parts, i = {}, 0
        for name, s in zip(names, shapes):
            k = int(np.prod(s))
            parts[name] = v[i:i + k].view(s)
            i += k
        out = torch.func.functional_call(ref, parts, (X.cpu(),))
        return nn.functional.cross_entropy(out, y.cpu())

    return torch.autograd.functional.hessian(loss, flat)


def test_hvp_matches_the_dense_hessian(device):
    model, X, y = _problem(device)
    op = HessianOperator(model, nn.CrossEntropyLoss(), (X, y))
    assert op.device.type == device.type
    H = _dense(model, X, y)
    V = torch.randn(op.shape[0], 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    HV = op.matmat(V.to(device))
    assert HV.device.type == device.type
    torch.testing.assert_close(HV.cpu(), H @ V, rtol=1e-10, atol=1e-12)


def test_eigsh_slq_and_trace_match_the_dense_spectrum(device):
    model, X, y = _problem(device)
    op = HessianOperator(model, nn.CrossEntropyLoss(), (X, y))
    lam = torch.linalg.eigvalsh(_dense(model, X, y))
    res = eigsh(op, k=2, which="LA", tol=1e-10, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(res.eigenvalues, lam[-2:].flip(0), rtol=1e-8, atol=1e-12)
    assert res.eigenvectors.device.type == device.type
    P = op.shape[0]
    m = slq(op, num_vectors=2, num_steps=P, generator=torch.Generator().manual_seed(3))
    # P Lanczos steps: the extreme nodes are the extreme eigenvalues (to rounding)
    assert abs(float(m.nodes.max()) - float(lam[-1])) <= 1e-8 * float(lam.abs().max())
    assert float(m.nodes.min()) >= float(lam[0]) - 1e-8 * float(lam.abs().max())
    t = trace(op, num_matvecs=3 * P, generator=torch.Generator().manual_seed(4))
    # Hutch++ with >= P products captures the whole range: exact to rounding
    assert abs(t.value - float(lam.sum())) <= 1e-8 * float(lam.abs().sum())


def test_monitor_one_probe(device):
    model, X, y = _problem(device)
    mon = SpectralMonitor(model, nn.CrossEntropyLoss(), (X, y), None, top_k=2, density=(2, 10),
                          trace=10, tol=1e-8)
    res = mon.probe(step=0)
    lam = torch.linalg.eigvalsh(_dense(model, X, y))
    np.testing.assert_allclose(res.top_eigenvalues, lam[-2:].flip(0).numpy(), rtol=1e-6)
    assert res.bottom_eigenvalue >= float(lam[0]) - 1e-6 * float(lam.abs().max())


def test_trainer_one_epoch_with_a_probe(device):
    model, X, y = _problem(device)
    mon = SpectralMonitor(model, nn.CrossEntropyLoss(), (X[:20], y[:20]), None, top_k=1,
                          density=None, trace=0, bottom=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = train(model, opt, (X, y), loss_fn=nn.CrossEntropyLoss(), epochs=1, batch_size=10,
                test_data=(X, y), monitor=mon, seed=0)
    assert mon.num_probes >= 1 and np.isfinite(mon.last.top_eigenvalues[0])
    assert all(p.device.type == device.type for p in model.parameters())
    assert out is not None


def test_a_bfloat16_model_computes_in_bfloat16_and_solves_in_float32(device):
    model, X, y = _problem(device, n=60)
    low = model.to(torch.bfloat16)
    batches = [(X[i:i + 6], y[i:i + 6]) for i in range(0, 60, 6)]
    op = HessianOperator(low, nn.CrossEntropyLoss(), batches)
    assert (op.compute_dtype, op.dtype) == (torch.bfloat16, torch.float32)
    ref = HessianOperator(low.double(), nn.CrossEntropyLoss(), batches)  # the same weights
    V = torch.randn(op.shape[0], 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    HV = op.matmat(V.to(device, torch.float32))
    assert HV.dtype == torch.float32
    err = ((HV.double() - ref.matmat(V.to(device))).norm(dim=0) / ref.matmat(V.to(device)).norm(dim=0))
    # bfloat16 products: ~1e-2 relative (unit roundoff 2^-8 through a few layers), far from 1
    assert float(err.max()) < 0.1
    lam = eigsh(op, k=1, which="LA", tol=3e-2, generator=torch.Generator().manual_seed(6),
                warn=False).eigenvalues
    lam_ref = eigsh(ref, k=1, which="LA", tol=1e-10,
                    generator=torch.Generator().manual_seed(6)).eigenvalues
    assert abs(float(lam[0]) - float(lam_ref[0])) <= 0.1 * abs(float(lam_ref[0]))


def test_cpu_data_and_cpu_eigenvectors_serve_a_model_on_the_device(device):
    """Data loaded on the CPU trains and evaluates a model on ``device`` (the trainer moves
    each minibatch), and eigenvectors kept on the CPU measure its gradient alignment."""
    from spectra.curvature.alignment import gradient_alignment

    model, X, y = _problem(device)
    X, y = X.cpu(), y.cpu()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = train(model, opt, (X, y), loss_fn=nn.CrossEntropyLoss(), epochs=1, batch_size=10,
                test_data=(X, y), seed=0)
    assert np.isfinite(out.history[-1]["test_loss"])
    assert all(p.device.type == device.type for p in model.parameters())
    op = HessianOperator(model, nn.CrossEntropyLoss(), (X, y))
    V = eigsh(op, k=2, which="LA", tol=1e-8).eigenvectors.cpu()
    on_device = gradient_alignment(model, nn.CrossEntropyLoss(), (X, y), V.to(device))
    from_cpu = gradient_alignment(model, nn.CrossEntropyLoss(), (X, y), V, batch=(X[:10], y[:10]),
                                  optimizer=opt)
    assert abs(on_device.full_batch - from_cpu.full_batch) <= 1e-10
    assert 0.0 <= from_cpu.minibatch <= 1.0 + 1e-12
