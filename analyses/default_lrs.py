"""The registry's default learning rates, tuned for a default ``spectra compare`` run.

A default ``spectra compare`` trains every optimizer for 5 epochs on scikit-learn's
digits with the default MLP (batch 64, seed 0). A fair comparison gives each one an
lr that suits that task, so each registry name's default lr is the best of a short
sweep, chosen on held-out data and not on the test set:

* data: digits' training split (1,438 samples, seed 0), of which a stratified 20%
  (287) is held out for validation and 1,151 are trained on (18 steps per epoch);
* model: the registry ``mlp`` with its default widths (64-64-64-10, 8,970 parameters on
  digits: :func:`model_description`), initialized with the run's seed;
* each name of ``NAMES`` at each lr of ``LRS`` (other hyperparameters at the
  registry's defaults), for ``EPOCHS`` epochs of batch 64, with seeds ``SEEDS``
  (initialization and batch order); a run whose loss becomes non-finite scores 0;
* chosen: by the validation accuracy after the last epoch, averaged over the seeds,
  the lr whose neighbourhood (it and its grid neighbours) learns best (:func:`choose`).
  The test accuracy of the chosen lr (the digits test split, never used to choose)
  is reported beside it.

    python -m analyses.default_lrs [--out analyses/results/default_lrs.md]

``optim/registry.py`` sets the chosen lrs (``tests/optim/test_registry.py`` checks
that they match the committed table).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import optim
from spectra.registries.data import load_dataset
from spectra.registries.models import build_model
from spectra.runs.trainer import TrainingDiverged, train

RESULTS = Path(__file__).parent / "results" / "default_lrs.md"
NAMES = ("sgd", "sgdm", "adam", "adamw", "nadam", "rmsprop", "radam", "lion", "calr",
         "calr-clip", "calr-cosine", "calr-clip-cosine", "smaran", "lpsgd", "lpsgdm", "dcao")
LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)
SEEDS = (0, 1)
EPOCHS = 5
BATCH = 64
VAL_FRACTION = 0.2
PROBE_SAMPLES = 512  # DCAO's probe set, as the CLI's default --probe-samples


@dataclass(frozen=True)
class Score:
    """Validation accuracy (fraction) and loss after the last epoch; NaN when diverged."""

    acc: float
    loss: float
    test_acc: float


def split(seed: int = 0) -> tuple[tuple, tuple, tuple]:
    """``(fit, validation, test)`` ``(X, y)`` pairs of digits: the training split cut
    into a stratified 80/20 (fixed rng ``seed``): 1,151 and 287 samples, and the test split untouched."""
    ds = load_dataset("digits", seed=0)
    y = ds.train_y.numpy()
    rng = np.random.default_rng(seed)
    val = np.sort(np.concatenate([
        rng.permutation(np.flatnonzero(y == c))[:round(VAL_FRACTION * int((y == c).sum()))]
        for c in np.unique(y)]))
    fit = np.setdiff1d(np.arange(len(y)), val)
    fit_t, val_t = torch.from_numpy(fit), torch.from_numpy(val)
    return ((ds.train_x[fit_t], ds.train_y[fit_t]), (ds.train_x[val_t], ds.train_y[val_t]),
            (ds.test_x, ds.test_y))


def _evaluate(model: nn.Module, loss_fn, data) -> tuple[float, float]:
    X, y = data
    model.eval()
    with torch.no_grad():
        out = model(X)
        return float((out.argmax(1) == y).float().mean()), float(loss_fn(out, y))


def model_description(features: int = 64, classes: int = 10) -> str:
    """The layer widths and parameter count of the model the runs train, read from the
    registry's model itself (e.g. ``"64-64-64-10, 8,970 parameters"``)."""
    model = build_model("mlp", input_shape=(features,), num_classes=classes, seed=0)
    widths = [features] + [m.out_features for m in model.modules()
                           if isinstance(m, torch.nn.Linear)]
    return f"{'-'.join(map(str, widths))}, {sum(p.numel() for p in model.parameters()):,} parameters"


def run(name: str, lr: float, seed: int, fit, val, test) -> Score:
    """One training run of ``name`` at ``lr``; its final validation and test scores."""
    X, y = fit
    model = build_model("mlp", input_shape=tuple(X.shape[1:]), num_classes=10, seed=seed)
    loss_fn = nn.CrossEntropyLoss()
    extra = {}
    if "model" in optim.available()[name].requires:
        extra = {"model": model, "loss_fn": loss_fn,
                 "probe_data": (X[:PROBE_SAMPLES], y[:PROBE_SAMPLES])}
    steps = EPOCHS * math.ceil(len(y) / BATCH)
    bundle = optim.create_bundle(name, model.parameters(), total_steps=steps,
                                 total_epochs=EPOCHS, lr=lr, **extra)
    torch.manual_seed(seed)
    try:
        train(model, bundle.optimizer, fit, loss_fn=loss_fn, epochs=EPOCHS, batch_size=BATCH,
              step_schedulers=bundle.step_schedulers, epoch_schedulers=bundle.epoch_schedulers,
              seed=seed)
    except TrainingDiverged:
        return Score(0.0, math.nan, 0.0)
    acc, loss = _evaluate(model, loss_fn, val)
    if not math.isfinite(loss):
        return Score(0.0, math.nan, 0.0)
    return Score(acc, loss, _evaluate(model, loss_fn, test)[0])


def choose(scores: dict[float, list[Score]]) -> float:
    """The lr whose neighbourhood learns best: the highest mean validation accuracy
    over the lr and its grid neighbours (a factor of about 3 either side; one at the
    grid's ends), ties to the higher accuracy of the lr itself. An lr next to a cliff
    (a neighbour that diverges) loses to one with a margin: a default must survive
    another data size, seed or probe timing (DCAO's probes follow a time budget)."""
    lrs = sorted(scores)
    acc = [statistics.fmean(s.acc for s in scores[lr]) for lr in lrs]
    near = [statistics.fmean(acc[max(i - 1, 0):i + 2]) for i in range(len(lrs))]
    return lrs[max(range(len(lrs)), key=lambda i: (near[i], acc[i]))]


def table(names=NAMES, lrs=LRS, seeds=SEEDS) -> str:
    fit, val, test = split()
    rows = []
    for name in names:
        started = time.perf_counter()
        scores = {lr: [run(name, lr, s, fit, val, test) for s in seeds] for lr in lrs}
        best = choose(scores)
        cells = [f"{100 * statistics.fmean(s.acc for s in scores[lr]):.1f}" for lr in lrs]
        cells[lrs.index(best)] = f"**{cells[lrs.index(best)]}**"
        test_acc = 100 * statistics.fmean(s.test_acc for s in scores[best])
        rows.append(f"| {name} | {' | '.join(cells)} | {best:g} | {test_acc:.1f} |")
        print(f"{name}: {best:g} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    head = " | ".join(f"{lr:g}" for lr in lrs)
    return "\n".join([
        "Generated by `python -m analyses.default_lrs --out analyses/results/default_lrs.md`.",
        "",
        (f"Digits, registry `mlp` ({model_description(fit[0].shape[1])}), {EPOCHS} epochs "
         f"of batch {BATCH} on "
         f"{len(fit[1])} training samples (a stratified {VAL_FRACTION:.0%} of digits' "
         f"training split, {len(val[1])} samples, held out for validation), seeds "
         f"{', '.join(map(str, seeds))}. Cells: validation accuracy (%) after the last "
         "epoch, mean over the seeds (0 for a run that diverged). Chosen (**bold**): the "
         "highest mean over the lr and its grid neighbours (an lr next to a cliff loses "
         "to one with a margin), ties to the lr's own accuracy. "
         "Test accuracy: the digits test split at the chosen lr (never used to choose). "
         "Other hyperparameters at the registry's defaults; `dcao` probes with its "
         f"defaults on the first {PROBE_SAMPLES} training samples."),
        "",
        f"| optimizer | {head} | chosen lr | test acc (%) |",
        "|---|" + "---|" * (len(lrs) + 2),
        *rows,
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m analyses.default_lrs",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--names", help="comma-separated registry names (default: all swept)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a small MLP: threads only add overhead on a shared machine
    names = tuple(args.names.split(",")) if args.names else NAMES
    started = time.perf_counter()
    text = f"# Default learning rates for a default `spectra compare` run\n\n{table(names)}"
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
