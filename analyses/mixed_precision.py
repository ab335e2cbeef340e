"""Mixed precision: the spectrum of a bfloat16 / float16 model against float64.

The operators' policy (:attr:`spectra.CurvatureOperator.compute_dtype`): a
bfloat16 or float16 model's products run in its own dtype, each batch's product
is raised to float32 before the batches are summed, and the solvers work on
float32 vectors (Lanczos coefficients, reorthogonalization and Ritz values in
float32/float64). This study measures what is left: the error of each quantity
of a low-precision copy of a trained digits MLP against the float64 evaluation of
the *same* rounded weights (so the error is the arithmetic's, not the weights').

    python -m analyses.mixed_precision [--quick]

writes ``analyses/results/mixed_precision.md``.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from analyses._study import out_dir, parser, write_results
from spectra import HessianOperator, eigsh, load_dataset, slq, trace


def _fit(n: int, steps: int) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    ds = load_dataset("digits", seed=0)
    X, y = ds.train_x[:n].float(), ds.train_y[:n]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(X[0].numel(), 32), nn.Tanh(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    return model, (X, y)


def _quantities(op: HessianOperator, tol: float) -> dict[str, float]:
    g = torch.Generator().manual_seed(1)
    top = eigsh(op, k=5, which="LA", tol=tol, generator=g, warn=False).eigenvalues
    low = eigsh(op, k=1, which="SA", tol=tol, atol=tol * float(top[0]), generator=g,
                warn=False).eigenvalues
    tr = trace(op, num_matvecs=90, generator=torch.Generator().manual_seed(2)).value
    m = slq(op, num_vectors=4, num_steps=60, generator=torch.Generator().manual_seed(3))
    w = torch.as_tensor(m.weights, dtype=torch.float64) / m.num_vectors
    nodes = torch.as_tensor(m.nodes, dtype=torch.float64)
    return {"top": top, "min": float(low[0]), "trace": tr,
            "m2": float((w * nodes**2).sum())}  # the SLQ measure's second moment


def _product_error(op: HessianOperator, ref: HessianOperator) -> float:
    V = torch.randn(op.shape[0], 8, generator=torch.Generator().manual_seed(4),
                    dtype=torch.float64)
    a, b = op.matmat(V.to(op.dtype)).double(), ref.matmat(V)
    return float(((a - b).norm(dim=0) / b.norm(dim=0)).max())


def main() -> None:
    args = parser("analyses.mixed_precision", __doc__.splitlines()[0]).parse_args()
    started = time.perf_counter()
    torch.set_num_threads(1)
    model, data = _fit(300 if args.quick else 1000, 50 if args.quick else 300)
    loss = nn.CrossEntropyLoss()
    rows = []
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        low = copy.deepcopy(model).to(dtype)
        ref = HessianOperator(copy.deepcopy(low).double(), loss, data)  # same rounded weights
        op = HessianOperator(low, loss, data)
        tol = 1e-6 if dtype == torch.float32 else 1e-2  # the products' noise floor
        got, want = _quantities(op, tol), _quantities(ref, 1e-10)
        lam1 = float(want["top"][0])
        rows.append((
            str(dtype).replace("torch.", ""), str(op.dtype).replace("torch.", ""),
            _product_error(op, ref),
            float(((got["top"] - want["top"]).abs() / want["top"].abs()).max()),
            abs(got["min"] - want["min"]) / lam1,
            abs(got["trace"] - want["trace"]) / abs(want["trace"]),
            abs(got["m2"] - want["m2"]) / want["m2"], tol, lam1))
    P = sum(p.numel() for p in model.parameters())
    lines = [
        (f"A digits MLP 64-32-10 ({P} parameters) fitted with Adam, probed on "
        f"{len(data[1])} samples; each row a copy of it in the model dtype against the float64 "
        "evaluation of the same rounded weights. Relative errors; λmin's is relative to λ1. "
        "eigsh tol 1e-6 (float32) or 1e-2 (half precisions: their products' noise floor); "
        "Hutch++ 90 products and SLQ 4 × 60 with the same seeded vectors as the reference."),
        "",
        ("| model dtype | solver dtype | product ‖ΔHV‖/‖HV‖ | λ1..λ5 (max) | λmin / λ1 | trace "
        "| SLQ 2nd moment | tol | λ1 (float64) |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append("| " + " | ".join([r[0], r[1]] + [f"{x:.2g}" for x in r[2:8]]
                                       + [f"{r[8]:.4g}"]) + " |")
    lines += ["", ("Policy: products in the model's dtype; each batch's product raised to "
              "float32 before the sum over batches; vectors, Lanczos coefficients and "
              "reorthogonalization in float32; the tridiagonal and Rayleigh-Ritz eigenproblems "
              "in float64. The half-precision products themselves carry the error of the "
              "product column, so eigsh tolerances much below it cannot be reached: probe a "
              "float32 or float64 copy (dtype=torch.float64) for more digits.")]
    write_results(out_dir(args) / "mixed_precision.md", "Mixed precision: bfloat16 / float16 "
                  "models against float64", started, "\n".join(lines), quick=args.quick)


if __name__ == "__main__":
    main()
