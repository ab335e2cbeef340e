"""DCAO's probe overhead and lambda_1 accuracy with the controller active, at the
paper's setting (m = 20 products every T_c = 100 steps) and at our defaults.

Trains two models on scikit-learn's digits with minibatches of 64 (about 23
steps per epoch), once per DCAO probe setting: the digits MLP (64-128-10, ReLU;
9k parameters) and a larger MLP (64-1024-1024-10, ReLU; 1.1M parameters). The
controller runs with its defaults (reference from the first probe), so every
run adapts from its second probe on: the table counts the adapted probes and
gives the range of the learning-rate multiplier. For each setting it reports:

* overhead: probe seconds / training seconds without probes, both measured in
  the same run (DCAO times its probes; the training loop times itself), so
  the ratio is robust to other load on the machine; and the wall-clock ratio
  against the same training with probes switched off;
* lambda_1 accuracy: at every probe, the probe's lambda_1 against a tight
  (tol 1e-8, float64) lambda_1 of the same probe batch (the Lanczos error),
  and against the tight lambda_1 of the whole training set (Lanczos plus
  sampling error). Tight estimates are computed outside the timed region.

Run: ``python -m analyses.dcao_overhead`` (80 epochs, 3 seeds; tens of minutes
on 2 cores) or ``--quick`` (20 epochs, 1 seed); writes
``analyses/results/dcao_overhead.md``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import spectra
from optim.dcao import DCAO

RESULTS = Path(__file__).parent / "results" / "dcao_overhead.md"


def data(seed: int = 0):
    d = load_digits()
    X = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    return X[perm[:1437]], y[perm[:1437]], X[perm[1437:]], y[perm[1437:]]


def tight_lambda1(model, loss_fn, batch) -> float:
    op = spectra.HessianOperator(model, loss_fn, batch, dtype=torch.float64, eval_mode=True)
    return float(spectra.eigsh(op, k=1, tol=1e-8, generator=torch.Generator().manual_seed(1)).eigenvalues[0])


class _Checked(DCAO):
    """DCAO that, after each probe, computes tight lambda_1 values (not part of its timing)."""

    full_data: tuple

    def probe_now(self):
        rec = super().probe_now()
        if rec["ok"]:
            rec["tight_probe"] = tight_lambda1(self.model, self.loss_fn, self.probe_data)
            rec["tight_full"] = tight_lambda1(self.model, self.loss_fn, self.full_data)
        return rec


MODELS = {
    "digits MLP 64-128-10": (128,),
    "MLP 64-1024-1024-10": (1024, 1024),
}


def _mlp(widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip((64, *widths), widths, strict=False):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], 10))


def _train(setting: dict, *, epochs: int, seed: int, cls: type = DCAO, widths=(128,)):
    """Train an MLP once with a DCAO setting: (optimizer, training seconds, test acc)."""
    Xtr, ytr, Xte, yte = data(seed)
    torch.manual_seed(seed)
    model = _mlp(widths)
    loss_fn = nn.CrossEntropyLoss()
    kwargs = {k: v for k, v in setting.items() if k != "name"}
    opt = cls(model.parameters(), lr=0.05, model=model, loss_fn=loss_fn, probe_data=(Xtr, ytr), **kwargs)
    opt.full_data = (Xtr, ytr)
    gen = torch.Generator().manual_seed(seed)
    train_s = 0.0
    for _ in range(epochs):
        perm = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(ytr), 64):
            idx = perm[i : i + 64]
            t = time.perf_counter()
            opt.zero_grad()
            loss_fn(model(Xtr[idx]), ytr[idx]).backward()
            opt.step()
            train_s += time.perf_counter() - t
    with torch.no_grad():
        acc = float((model(Xte).argmax(1) == yte).float().mean())
    return opt, train_s, acc


def run(setting: dict, *, epochs: int, seed: int, widths=(128,)) -> dict:
    """Timings of one training run: probe seconds apart from training seconds.

    ``steady_s`` leaves out the first probe (a cold start from a random vector,
    paid once per run); the others start from the previous probe's Ritz vectors.
    """
    opt, train_s, acc = _train(setting, epochs=epochs, seed=seed, widths=widths)
    probe_s = sum(r["seconds"] for r in opt.history)
    adapted = [r for r in opt.history if r["ok"] and not r["warmup"]]
    return {"train_s": train_s - probe_s, "probe_s": probe_s, "probes": len(opt.history),
            "steady_s": sum(r["seconds"] for r in opt.history[1:]),
            "num_matvecs": sum(r["num_matvecs"] for r in opt.history), "acc": acc,
            "adapted": sum(1 for r in adapted if r["lr_mult"] != 1.0),
            "lr_mult": [r["lr_mult"] for r in adapted if r["lr_mult"] != 1.0]}


def accuracy_run(setting: dict, *, epochs: int, seeds: range, widths=(128,)) -> dict:
    """lambda_1 errors of every successful probe against tight estimates, over ``seeds``."""
    lz: list[float] = []
    sm: list[float] = []
    failed = 0
    for seed in seeds:
        opt, _, _ = _train(setting, epochs=epochs, seed=seed, cls=_Checked, widths=widths)
        recs = [r for r in opt.history if r["ok"]]
        lz += [abs(r["lambda1"] - r["tight_probe"]) / r["tight_probe"] for r in recs]
        sm += [abs(r["lambda1"] - r["tight_full"]) / r["tight_full"] for r in recs]
        failed += len(opt.history) - len(recs)
    return {"lanczos_err": lz, "sample_err": sm, "failed": failed}


SETTINGS = [
    {"name": "one probe at step 0, then none", "period": 10**9,
     "probe_batch_size": 64, "lanczos_steps": 2},
    {"name": "paper: m=20, every 100, full batch", "period": 100, "lanczos_steps": 20,
     "cold_lanczos_steps": 20, "probe_batch_size": None, "probe_tol": 1e-12},
    {"name": "paper's m=20, every 100, batch 128", "period": 100, "lanczos_steps": 20,
     "cold_lanczos_steps": 20, "probe_tol": 1e-12},
    {"name": "batch 128, m<=6 to 3% residual, every 100", "period": 100},
    {"name": "defaults: batch 128, m<=6 to 3% residual, overhead budget 5%"},
]


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m analyses.dcao_overhead",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="20 epochs, 1 seed")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: minibatch-64 steps are latency-bound)")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.repeats = 20, 1
    torch.set_num_threads(args.threads)
    lines = [
        "# DCAO probe overhead and lambda_1 accuracy, controller active",
        "",
        (f"`python -m analyses.dcao_overhead{' --quick' if args.quick else ''}`: digits, "
         f"minibatch 64, {args.epochs} epochs ({args.epochs * 23} steps), lr 0.05, momentum 0.9, "
         f"DCAO's controller defaults (it adapts from its second probe on); median of "
         f"{args.repeats} seed(s); torch threads {args.threads}. Overhead = probe seconds / "
         "training seconds without probes (same run), median over seeds (range in brackets); "
         "*steady* leaves out the run's first probe, a cold start paid once per run. *adapted*: "
         "probes whose learning-rate multiplier is not 1, and that multiplier's range. "
         "lambda_1 error: median / max over every probe of every seed, against a tight float64 "
         "lambda_1 of the probe batch (Lanczos error) and of the whole training set (plus "
         "sampling error). Failed probes (kept out of the errors; DCAO keeps its previous "
         "multipliers) are counted. The machine's load changes the seconds, not the ratios much."),
        "",
    ]
    for model_name, widths in MODELS.items():
        lines += [f"## {model_name}", "",
                  ("| setting | probes | adapted (lr mult range) | HVPs | overhead | steady overhead "
                   "| test acc | failed probes | lambda_1 err (probe batch) | lambda_1 err (full train set) |"),
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for s in SETTINGS:
            runs = [run(s, epochs=args.epochs, seed=r, widths=widths) for r in range(args.repeats)]
            train_s = statistics.median(r["train_s"] for r in runs)
            probe_s = statistics.median(r["probe_s"] for r in runs)
            steady = [r["steady_s"] / r["train_s"] for r in runs]
            tot = [r["probe_s"] / r["train_s"] for r in runs]
            probing = s.get("period", 100) < 10**9
            acc = (accuracy_run(s, epochs=args.epochs, seeds=range(args.repeats), widths=widths)
                   if probing else None)
            lz = f"{np.median(acc['lanczos_err']):.2%} / {np.max(acc['lanczos_err']):.2%}" if acc else "-"
            sm = f"{np.median(acc['sample_err']):.2%} / {np.max(acc['sample_err']):.2%}" if acc else "-"
            mults = runs[0]["lr_mult"]
            adapted = (f"{runs[0]['adapted']} ({min(mults):.2f}–{max(mults):.2f})" if mults else "0")
            print(f"{model_name} | {s['name']:40s} probes {runs[0]['probes']:3d} adapted {adapted} "
                  f"hvps {runs[0]['num_matvecs']:5d} probe/train {probe_s / train_s:7.2%} "
                  f"steady {statistics.median(steady):7.2%} "
                  f"acc {np.median([r['acc'] for r in runs]):.3f}  lanczos err {lz}  vs full {sm}",
                  flush=True)
            lines.append(
                f"| {s['name']} | {runs[0]['probes']} | {adapted} | {runs[0]['num_matvecs']} | "
                f"{statistics.median(tot):.1%} [{min(tot):.1%}–{max(tot):.1%}] | "
                f"{statistics.median(steady):.1%} [{min(steady):.1%}–{max(steady):.1%}] | "
                f"{np.median([r['acc'] for r in runs]):.3f} | {acc['failed'] if acc else '-'} | "
                f"{lz} | {sm} |"
            )
        lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
