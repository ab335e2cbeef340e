"""Models, data and float64 references of the core benchmark (``python -m analyses.bench_core``).

Everything here is library-neutral: plain torch for the models and the training, and a
float64 Hessian-vector product of our own (double backward through autograd on a float64
copy of the model) for the reference spectra, so that no library under test grades itself.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

N_SAMPLES = 1000
REF_TOL = 1e-10
REF_NCV_MIN = 60
TARGET_LOSS = 0.3


def load_digits_data(n: int = N_SAMPLES, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` of a seeded permutation of scikit-learn's digits, features / 16."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(d.target))[:n]
    X = torch.tensor(d.data[idx] / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target[idx], dtype=torch.long)
    return X, y


class Flat2Img(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], 1, 8, 8)


def mlp(widths: list[int], act: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def cnn() -> nn.Sequential:
    return nn.Sequential(
        Flat2Img(),
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: object  # () -> nn.Module
    lr: float
    dense_reference: bool  # dense float64 Hessian instead of eigsh for the reference
    expensive: bool = False  # one HVP costs ~0.1 s or more: the benchmark trims extras


MODELS: dict[str, ModelSpec] = {
    "mlp-tanh-2k": ModelSpec(
        "mlp-tanh-2k", "MLP 64-32-10 tanh", lambda: mlp([64, 32, 10], nn.Tanh), 1e-2, True
    ),
    "mlp-relu-51k": ModelSpec(
        "mlp-relu-51k", "MLP 64-256-128-10 ReLU", lambda: mlp([64, 256, 128, 10], nn.ReLU),
        3e-3, False,
    ),
    "cnn-38k": ModelSpec(
        "cnn-38k", "CNN 1x8x8: conv3x3(16)-conv3x3(32)-pool2-512-64-10 ReLU", cnn, 3e-3, False,
        expensive=True,
    ),
    "mlp-relu-1.1m": ModelSpec(
        "mlp-relu-1.1m", "MLP 64-1024-1024-10 ReLU",
        lambda: mlp([64, 1024, 1024, 10], nn.ReLU), 1e-3, False, expensive=True,
    ),
}


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train(
    spec: ModelSpec, X: torch.Tensor, y: torch.Tensor, seed: int = 0, max_steps: int = 2000
) -> tuple[nn.Module, dict]:
    """Full-batch Adam (seeded) until the training loss first drops to TARGET_LOSS; frozen."""
    torch.manual_seed(seed)
    model = spec.build()
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    t0 = time.perf_counter()
    steps = 0
    loss = float("nan")
    for steps in range(1, max_steps + 1):
        opt.zero_grad(set_to_none=True)
        out = F.cross_entropy(model(X), y)
        loss = out.item()
        if loss <= TARGET_LOSS:
            steps -= 1
            break
        out.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = None
    with torch.no_grad():
        final = F.cross_entropy(model(X), y).item()
        acc = (model(X).argmax(1) == y).float().mean().item()
    info = {"steps": steps, "loss": final, "acc": acc, "seconds": time.perf_counter() - t0}
    return model, info


def state_hash(model: nn.Module) -> str:
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


class UnfoldConv2d(nn.Module):
    """A Conv2d (stride 1) as unfold + matmul, same parameters. torch's float64 CPU
    convolution takes the slow im2col path whose double backward is ~10x dearer than this."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        assert conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
        self.weight, self.bias = conv.weight, conv.bias
        self.kernel_size, self.padding = conv.kernel_size, conv.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        cols = F.unfold(x, self.kernel_size, padding=self.padding)  # (n, C*k*k, h*w)
        out = self.weight.view(self.weight.shape[0], -1) @ cols
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1)
        return out.view(n, -1, h, w)


def _unfold_convs(model: nn.Module) -> nn.Module:
    for name, child in model.named_children():
        if isinstance(child, nn.Conv2d) and child.padding == (1, 1):
            setattr(model, name, UnfoldConv2d(child))
        else:
            _unfold_convs(child)
    return model


class Float64Hvp:
    """Reference HVP in float64: double backward through autograd on a float64 copy
    (convolutions rewritten as unfold + matmul, which is the same function).
    ``dtype=torch.float32`` gives the same product in float32 (convolutions untouched), used
    only to find a starting vector for the float64 solve."""

    def __init__(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor,
                 dtype: torch.dtype = torch.float64):
        import copy

        self.dtype = dtype
        self.model = copy.deepcopy(model).to(dtype)
        if dtype == torch.float64:
            self.model = _unfold_convs(self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.X = X.to(dtype)
        self.y = y
        self.P = sum(p.numel() for p in self.params)
        self.num_matvecs = 0
        # the first-order graph is built once and kept: each product is one backward pass
        loss = F.cross_entropy(self.model(self.X), self.y)
        self.grads = torch.autograd.grad(loss, self.params, create_graph=True)

    def matvec(self, v: np.ndarray) -> np.ndarray:
        self.num_matvecs += 1
        vt = torch.as_tensor(np.asarray(v).reshape(-1), dtype=self.dtype)
        vs, o = [], 0
        for p in self.params:
            vs.append(vt[o : o + p.numel()].view_as(p))
            o += p.numel()
        hv = torch.autograd.grad(self.grads, self.params, grad_outputs=vs, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv]).double().numpy()

    def scipy(self):
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator(
            (self.P, self.P), matvec=self.matvec, rmatvec=self.matvec, dtype=np.float64
        )

    def dense(self) -> np.ndarray:
        """Dense float64 Hessian via torch.func (only for small models)."""
        from torch.func import functional_call, hessian

        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        shapes = [p.shape for p in self.params]
        sizes = [p.numel() for p in self.params]
        theta = torch.cat([p.detach().reshape(-1) for p in self.params])

        def f(flat: torch.Tensor) -> torch.Tensor:
            ps = {n: t.view(s) for n, t, s in zip(names, flat.split(sizes), shapes)}
            return F.cross_entropy(functional_call(self.model, ps, (self.X,)), self.y)

        return hessian(f)(theta).numpy()


def reference_spectrum(model: nn.Module, X, y, dense: bool, k: int = 5, log=None) -> dict:
    """Tight float64 top-k (algebraic) eigenvalues, lambda_min and (dense only) trace."""
    from scipy.sparse.linalg import eigsh

    ref = Float64Hvp(model, X, y)
    t0 = time.perf_counter()
    out: dict = {"P": ref.P}
    if dense:
        H = ref.dense()
        H = 0.5 * (H + H.T)
        w = np.linalg.eigvalsh(H)
        out.update(top=w[::-1][:k].tolist(), lmin=float(w[0]), trace=float(np.trace(H)),
                   method="dense float64 Hessian (torch.func.hessian) + numpy eigvalsh",
                   num_matvecs=0)
    else:
        A = ref.scipy()
        rng = np.random.default_rng(0)
        v0 = rng.standard_normal(ref.P)
        w = eigsh(A, k=k, which="LA", tol=REF_TOL, v0=v0, return_eigenvectors=False,
                  ncv=max(4 * k, 20))
        n_top = ref.num_matvecs
        if log:
            log(f"    f64 top-{k}: {ref.num_matvecs} HVPs, {time.perf_counter() - t0:.1f}s")
        wmin = eigsh(A, k=1, which="SA", tol=REF_TOL, v0=v0, return_eigenvectors=False,
                     ncv=REF_NCV_MIN)
        if log:
            log(f"    f64 lambda_min: {ref.num_matvecs - n_top} HVPs, {time.perf_counter() - t0:.1f}s")
        out.update(top=sorted(w.tolist(), reverse=True), lmin=float(wmin[0]), trace=None,
                   method=f"scipy eigsh (ARPACK) on a float64 double-backward HVP, tol={REF_TOL:g}",
                   num_matvecs=ref.num_matvecs, num_matvecs_top=n_top)
    out["seconds"] = time.perf_counter() - t0
    return out
