"""Cost of curvature products and spectra on a Hugging Face GPT-2 (issue 17's setting).

A randomly initialized 2-layer GPT-2 from ``transformers.GPT2Config`` (``n_embd`` 64,
4 heads, vocabulary 128, 16 positions: 109,312 parameters, float32, "sdpa"
attention as a user gets it by default), 24 sequences of 16 tokens as one
``{"input_ids", "attention_mask"}`` batch, the next-token loss of
:mod:`examples.gpt2_factory`. Measured:

* a gradient (forward, loss, backward; the default fused attention kernel, and
  under the math kernel the products use), a Hessian product and a GGN product
  (``matvec``, graphs cached as the operators keep them between products). Each
  round times the four back to back and takes the ratios within the round, so a
  change of load hits them alike; the table gives medians over rounds;
* the time and products of top-3 eigenvalues (``eigsh`` LA, tol 1e-3) and an SLQ
  density (4 vectors x 40 steps) of the Hessian and the GGN, and the Hessian's most
  negative eigenvalue (``eigsh`` SA, tol 1e-3, atol 1e-3 lambda_1, at most 2000
  products); median over repeats. One torch thread by default (``--threads``).

Wall times on a shared machine are upper bounds; CPU times (this process) are
given beside them, and the 1-minute load average at the start and the end.

Run: ``python -m analyses.bench_transformers`` (15 rounds, 3 spectral repeats) or
``--quick`` (5 rounds, 1 repeat, SLQ 4 x 20, λmin at most 400 products); writes
``analyses/results/bench_transformers.md``.
Needs ``pip install -e ".[transformers]"``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "bench_transformers.md"

CONFIG = {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 128, "n_positions": 16}
NUM_SEQUENCES, SEQ_LEN = 24, 16


def _timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """``(wall seconds, CPU seconds of this process, result)`` of one call."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def main(argv: list[str] | None = None) -> None:
    import transformers

    import spectra
    from examples.gpt2_factory import NextTokenLoss, num_predicted_tokens, tiny_gpt2, token_batches
    from spectra import GGNOperator, HessianOperator, eigsh, slq
    from spectra.utils.modes import math_attention

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 rounds, 1 spectral repeat, SLQ 4 x 20, λmin budget 400")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared machine spinning threads "
                         "inflate both wall and CPU times)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rounds, repeats = (5, 1) if args.quick else (15, 3)
    start = datetime.now()
    load0 = os.getloadavg()[0]

    model = tiny_gpt2(**CONFIG, dtype=torch.float32, attn_implementation="sdpa", seed=0)
    P = sum(p.numel() for p in model.parameters())
    batches = token_batches([NUM_SEQUENCES], SEQ_LEN, CONFIG["vocab_size"], seed=0)
    loss = NextTokenLoss(num_predicted_tokens(batches))
    (X, y), = batches
    params = [p for p in model.parameters() if p.requires_grad]

    def gradient() -> object:
        return torch.autograd.grad(loss(model(X), y), params)

    def gradient_math() -> object:
        with math_attention():
            return gradient()

    H = HessianOperator(model, loss, batches)
    G = GGNOperator(model, loss, batches)
    v = torch.randn(P, generator=torch.Generator().manual_seed(0))
    for f in (gradient, gradient_math, lambda: H.matvec(v), lambda: G.matvec(v)):
        f()  # warm-up: allocator, cached graphs
    names = ["gradient", "gradient (math kernel)", "Hessian product", "GGN product"]
    fns = [gradient, gradient_math, lambda: H.matvec(v), lambda: G.matvec(v)]
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for n, f in zip(names, fns):
            w, c, _ = _timed(f)
            wall[n].append(w)
            cpu[n].append(c)
    print(f"products timed ({rounds} rounds)", flush=True)
    ratio = {n: statistics.median(a / b for a, b in zip(wall[n], wall["gradient"])) for n in names}
    ratio_cpu = {n: statistics.median(a / b for a, b in zip(cpu[n], cpu["gradient"]))
                 for n in names}

    ops = {"Hessian": HessianOperator, "GGN": GGNOperator}
    top1: dict[str, float] = {}  # lambda_1 from top-3: the scale of lambda_min's atol
    steps = 20 if args.quick else 40
    budget = 400 if args.quick else 2000  # products for lambda_min, the slow one
    tasks: list[tuple[str, str, Callable[[object], object]]] = [
        (label, "top-3 (eigsh LA, tol 1e-3)", lambda op: eigsh(op, k=3, tol=1e-3)) for label in ops
    ]
    tasks += [(label, f"density (SLQ 4 x {steps})",
               lambda op: slq(op, num_vectors=4, num_steps=steps)) for label in ops]
    # the GGN is positive semi-definite: its lambda_min is 0
    tasks.append(("Hessian", f"λmin (eigsh SA, tol 1e-3, atol 1e-3 λ1, at most {budget} products)",
                  lambda op: eigsh(op, k=1, which="SA", tol=1e-3, atol=1e-3 * top1["Hessian"],
                                   max_matvecs=budget, warn=False)))
    spectral: list[tuple] = []

    def report(done: bool) -> None:
        """Write the results file: after each measurement, so a stopped run leaves what it had."""
        load1 = os.getloadavg()[0]
        minutes = (datetime.now() - start).total_seconds() / 60
        lines = [
            "# Curvature of a Hugging Face GPT-2: cost of products and spectra",
            "",
            (f"Generated by `python -m analyses.bench_transformers{' --quick' if args.quick else ''}` "
            f"on {start:%Y-%m-%d %H:%M} ({platform.machine()}, {os.cpu_count()} CPUs, torch threads "
            f"= {torch.get_num_threads()}), {minutes:.1f} min. Versions: python "
            f"{platform.python_version()}, torch {torch.__version__}, transformers "
            f"{transformers.__version__}, spectra {spectra.__version__}."),
            "",
            (f"Model: `GPT2LMHeadModel(GPT2Config({', '.join(f'{k}={v}' for k, v in CONFIG.items())}))`, "
            f"randomly initialized (seed 0), float32, attn_implementation=\"sdpa\", dropout off: "
            f"P = {P:,}. Data: {NUM_SEQUENCES} random sequences of {SEQ_LEN} tokens, one "
            "`{input_ids, attention_mask}` batch; loss: `examples.gpt2_factory.NextTokenLoss` "
            "(mean next-token cross-entropy). Products use the math attention kernel "
            "(`spectra.utils.modes.math_attention`); the Hessian's and the GGN's graphs are cached "
            "between products, as the operators do for in-memory data."),
            "",
            (f"**Load**: 1-min load average {load0:.1f} at the start, {load1:.1f} at the end "
            f"({os.cpu_count()} CPUs; this job alone keeps it near 1). Under other work the wall "
            "times are upper bounds. The ratios are taken within each round (gradient and products "
            "timed back to back), then the median over rounds, which cancels most of a slow change "
            "of load."),
            "",
            f"## Products ({rounds} rounds, medians)",
            "",
            "| computation | wall | CPU | wall / gradient | CPU / gradient |",
            "|---|---|---|---|---|",
        ]
        for n in names:
            lines.append(f"| {n} | {statistics.median(wall[n]) * 1e3:.1f} ms | "
                         f"{statistics.median(cpu[n]) * 1e3:.1f} ms | {ratio[n]:.2f} | "
                         f"{ratio_cpu[n]:.2f} |")
        lines += [
            "",
            f"## Spectra (median of {repeats} run{'s' if repeats > 1 else ''})"
        + ("" if done else f" — PARTIAL: the run stopped after {len(spectral)} of {len(tasks)}"),
            "",
            "| operator | computation | wall | CPU | products | result |",
            "|---|---|---|---|---|---|",
        ]
        for label, what, w, c, products, values in spectral:
            lines.append(f"| {label} | {what} | {w:.2f} s | {c:.2f} s | {products} | {values} |")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
        if done:
            print("\n".join(lines))

    report(False)
    for label, what, run in tasks:
        ws, cs, products, values = [], [], 0, ""
        for _ in range(repeats):
            op = ops[label](model, loss, batches)
            w, c, res = _timed(lambda op=op, run=run: run(op))
            ws.append(w)
            cs.append(c)
            products = op.num_matvecs
            if hasattr(res, "eigenvalues"):
                top1.setdefault(label, float(res.eigenvalues[0]))
                values = ", ".join(f"{float(x):.4g}" for x in res.eigenvalues)
                values += "" if bool(res.converged.all()) else " (not converged)"
            else:
                lo, hi = res.support()
                values = f"support [{lo:.4g}, {hi:.4g}]"
        print(f"{label} {what}: {statistics.median(ws):.1f} s, {products} products", flush=True)
        spectral.append((label, what, statistics.median(ws), statistics.median(cs), products,
                         values))
        report(False)
    report(True)


if __name__ == "__main__":
    main()
