"""Study 2 of issue #12: the edge of stability (Cohen et al. 2021), full-batch GD on digits.

Claim (Cohen, Kaur, Li, Kolter & Talwalkar 2021, "Gradient descent on neural networks
typically occurs at the edge of stability", Fig. 1 and Sec. 3): with full-batch gradient
descent at step size eta, the sharpness lambda_1 of the training loss's Hessian rises
(progressive sharpening) until it reaches 2/eta and then hovers just above it while the
loss keeps falling non-monotonically; with heavy-ball momentum beta the level is
(2 + 2 beta)/eta (their Appendix, the threshold of the DCAO proposal's motivation).

What runs: ``spectra.runs.trainer.train`` with ``batch_size`` = the training set (one
step per "epoch"), an MLP of the model registry, the optimizer from ``optim.registry``
(``sgd`` / ``sgdm`` with ``momentum=0.9``) and a ``SpectralMonitor(unit="step",
top_k=1, density=None, trace=0)`` whose probes are on the whole training set; the
threshold is the one the monitor records (``spectra.stability_threshold``).

With ``--data-dir DIR`` holding MNIST, CIFAR-10 or CIFAR-100 files (the data registry's
standard formats), the same runs are repeated on a seeded subset of ``n_train`` of their
training images (flattened, pixels in [0, 1]) with every lr scaled by the ratio of the
initial sharpness on digits to that on the data set (:func:`simulate_extra`); their runs,
figure and table carry the data set's name (``edge_of_stability_mnist.json``, ``.png``, a
section of the report).

    python -m analyses.edge_of_stability [--quick] [--data-dir DIR] [--out-dir DIR] [--replot]
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

import optim
from analyses import _study
from spectra.registries.data import load_dataset
from spectra.registries.models import build_model
from spectra.runs.monitor import SpectralMonitor
from spectra.runs.trainer import TrainingDiverged, train

NAME = "edge_of_stability"
TITLE = "Edge of stability: full-batch GD and heavy-ball momentum on digits"


class HalfSquaredError(nn.Module):
    """Cohen et al.'s MSE: ``0.5 * ||f(x) - onehot(y)||^2`` averaged over the batch.

    ``outputs`` (B, C) float, ``labels`` (B,) int64 -> scalar. ``reduction = "mean"``
    tells spectra's Hessian operator how the batch is reduced.
    """

    reduction = "mean"

    def forward(self, outputs: Tensor, labels: Tensor) -> Tensor:
        target = nn.functional.one_hot(labels, outputs.shape[1]).to(outputs.dtype)
        return 0.5 * ((outputs - target) ** 2).sum(dim=1).mean()


@dataclass(frozen=True)
class Setting:
    """One study configuration (the full one, or ``--quick``'s)."""

    n_train: int
    widths: tuple[int, ...]
    activation: str
    gd_lrs: tuple[float, ...]
    momentum_lrs: tuple[float, ...]
    beta: float
    steps: int  # per run; a run stops early only if it diverges
    every: int  # probe every this-many steps
    seeds: tuple[int, ...]


FULL = Setting(n_train=1000, widths=(64, 64), activation="tanh",
               gd_lrs=(0.1, 0.15, 0.25), momentum_lrs=(0.05, 0.1, 0.2), beta=0.9,
               steps=2000, every=10, seeds=(0, 1, 2))
QUICK = Setting(n_train=300, widths=(32, 32), activation="tanh",
                gd_lrs=(0.25,), momentum_lrs=(0.2,), beta=0.9,
                steps=250, every=10, seeds=(0, 1, 2))


@dataclass
class Run:
    """One run's probes (sharpness, threshold at each probed step) and losses per step."""

    optimizer: str
    lr: float
    seed: int
    probe_steps: list[int] = field(default_factory=list)
    sharpness: list[float] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)
    threshold_kind: str = ""
    losses: list[float] = field(default_factory=list)
    diverged_at: int | None = None
    seconds: float = 0.0


def run_one(data: tuple[Tensor, Tensor], setting: Setting, optimizer: str, lr: float,
            seed: int, num_classes: int = 10) -> Run:
    """Full-batch training with the trainer and a step-wise monitor (see the module doc).

    ``data``: ``(X, y)``, X ``(N, D)`` float inputs, y ``(N,)`` int64 labels in
    ``0..num_classes - 1``."""
    X, y = data
    model = build_model("mlp", input_shape=tuple(X.shape[1:]), num_classes=num_classes, seed=seed,
                        widths=setting.widths, activation=setting.activation)
    loss_fn = HalfSquaredError()
    overrides = {"lr": lr} | ({"momentum": setting.beta} if optimizer == "sgdm" else {})
    bundle = optim.create_bundle(optimizer, model.parameters(), total_steps=setting.steps,
                                 total_epochs=setting.steps, **overrides)
    out = Run(optimizer, lr, seed)

    def record(result, step, epoch) -> None:
        out.probe_steps.append(int(step))
        out.sharpness.append(float(result.top_eigenvalues[0]))
        thr = result.threshold
        out.threshold.append(float(thr.value) if thr is not None else math.nan)
        out.threshold_kind = thr.kind if thr is not None else ""

    monitor = SpectralMonitor(model, loss_fn, (X, y), every=setting.every, unit="step",
                              top_k=1, bottom=False, density=None, trace=0, seed=seed,
                              on_probe=record)
    started = time.perf_counter()
    try:
        result = train(model, bundle.optimizer, (X, y), loss_fn=loss_fn, epochs=setting.steps,
                       batch_size=len(y), step_schedulers=bundle.step_schedulers,
                       epoch_schedulers=bundle.epoch_schedulers, monitor=monitor, seed=seed)
        out.losses = [row["train_loss"] for row in result.history]
    except (TrainingDiverged, FloatingPointError) as exc:  # the trainer's, or a probe's inf loss
        out.diverged_at = len(out.probe_steps) * setting.every
        print(f"  {optimizer} lr={lr} seed={seed}: {exc}", file=sys.stderr)
    out.seconds = time.perf_counter() - started
    return out


def edge_ratio(run: Run) -> tuple[float, int | None]:
    """Median of sharpness / threshold over the probes from the first one at or above the
    threshold on (NaN if none reaches it), and that probe's step (None)."""
    s, t = np.asarray(run.sharpness), np.asarray(run.threshold)
    reached = np.flatnonzero(s >= t)
    if reached.size == 0:
        return math.nan, None
    first = int(reached[0])
    return float(np.median(s[first:] / t[first:])), run.probe_steps[first]


def peak_ratio(run: Run) -> float:
    """The largest sharpness / threshold of the run's probes."""
    if not run.sharpness:
        return math.nan
    return float(np.max(np.asarray(run.sharpness) / np.asarray(run.threshold)))


def initial_sharpness(run: Run) -> float:
    return run.sharpness[0] if run.sharpness else math.nan


def figure(runs: list[Run], setting: Setting, path: Path, data: str = "digits") -> None:
    """Cohen Fig. 1 style: sharpness over steps with the threshold lines (dashed, same
    colour) above, the training loss beneath; GD on the left, momentum on the right;
    seed 0's runs, one colour per lr."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from spectra.plots.style import style

    seed0 = [r for r in runs if r.seed == setting.seeds[0]]
    columns = [("sgd", "full-batch GD: sharpness vs 2/η"),
               ("sgdm", f"heavy ball β={setting.beta:g}: sharpness vs (2+2β)/η")]
    with style():
        fig, axes = plt.subplots(2, 2, figsize=(11.5, 7.0), sharex=True,
                                 gridspec_kw={"height_ratios": [3, 2]}, layout="constrained")
        for col, (name, title) in enumerate(columns):
            group = [r for r in seed0 if r.optimizer == name]
            colours = plt.cm.viridis(np.linspace(0.0, 0.85, max(len(group), 1)))
            top, bottom = axes[0, col], axes[1, col]
            ymax = 0.0
            for r, c in zip(group, colours, strict=True):
                top.plot(r.probe_steps, r.sharpness, color=c, lw=1.4, label=f"η = {r.lr:g}")
                if not r.threshold:
                    continue
                thr = r.threshold[0]
                top.axhline(thr, color=c, ls="--", lw=1.0)
                ymax = max(ymax, 1.25 * thr, *r.sharpness)
                if r.losses:
                    bottom.plot(np.arange(1, len(r.losses) + 1), r.losses, color=c, lw=1.0)
            top.set_ylim(0, ymax)
            top.set_title(title)
            top.set_ylabel("sharpness λ₁")
            top.legend(title="dashed: threshold", loc="lower right" if col == 0 else "upper left",
                       fontsize=8)
            bottom.set_yscale("log")
            bottom.set_ylabel("train loss (½‖f−y‖²)")
            bottom.set_xlabel("step")
        fig.suptitle(f"Full-batch training of an MLP {list(setting.widths)} ({setting.activation}) "
                     f"on {setting.n_train} {data}, MSE loss (seed {setting.seeds[0]})")
        fig.savefig(path, dpi=120)
        plt.close(fig)


def table(runs: list[Run], setting: Setting) -> str:
    """Per (optimizer, lr): over the seeds, the threshold, the initial and peak
    sharpness, the first step at the threshold and the median ratio after it."""
    lines = [
        ("| optimizer | η | threshold | λ₁ at step 0 | reached at step | median λ₁ / threshold "
        "after reaching it | peak λ₁ / threshold | final loss | seeds reaching |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r.optimizer, r.lr) for r in runs}, key=lambda k: (k[0], k[1]))
    for name, lr in keys:
        group = [r for r in runs if (r.optimizer, r.lr) == (name, lr)]
        ratios = [edge_ratio(r) for r in group]
        reached = [s for _, s in ratios if s is not None]
        label = "GD" if name == "sgd" else f"heavy ball β={setting.beta:g}"
        div = [r for r in group if r.diverged_at is not None]
        final = [r.losses[-1] if r.losses else math.nan for r in group]
        lines.append(
            f"| {label} | {lr:g} | {_threshold(group)} "
            f"| {_study.fmt_mean_std(initial_sharpness(r) for r in group)} "
            f"| {_study.fmt_mean_std(reached, digits=0, fixed=True) if reached else 'never'} "
            f"| {_study.fmt_mean_std(x for x, _ in ratios)} "
            f"| {_study.fmt_mean_std(peak_ratio(r) for r in group)} "
            f"| {_study.fmt_mean_std(final)} "
            f"| {len(reached)} of {len(group)}{f', {len(div)} diverged' if div else ''} |")
    return "\n".join(lines)


def _threshold(group: list[Run]) -> str:
    """The threshold of a (optimizer, lr) group with its kind, from its first probed run."""
    r = next((r for r in group if r.threshold), None)
    return "n/a (no probe)" if r is None else f"{r.threshold[0]:.4g} ({r.threshold_kind})"


# the band of median ratios (lambda_1 over the threshold, after reaching it) read as "at
# the edge": the verdict and the counts of the report use this one band
EDGE = (0.9, 1.2)


def _word(ratios: list[float]) -> str:
    """``reproduced`` when every run reaches its threshold and its median ratio after
    reaching it is within :data:`EDGE` ([0.9, 1.2]); ``partly reproduced`` when some do;
    else ``not``."""
    at_edge = [math.isfinite(x) and EDGE[0] <= x <= EDGE[1] for x in ratios]
    if at_edge and all(at_edge):
        return "reproduced"
    return "partly reproduced" if any(at_edge) else "not reproduced"


def edge_counts(ratios: list[float]) -> str:
    """How many of the runs (their median ratios, :func:`edge_ratio`) reached the
    threshold, how many are at the edge (median within :data:`EDGE`) and how many stay above
    it (median >= 1, what "hovers just above" says), e.g. ``"of 9 runs, 6 reached it, 4
    are at the edge, 0 stay above it"``."""
    x = np.asarray(ratios, dtype=float)
    fin = x[np.isfinite(x)]
    return (f"of {x.size} runs, {fin.size} reached it, "
            f"{int(((fin >= EDGE[0]) & (fin <= EDGE[1])).sum())} are at the edge, "
            f"{int((fin >= 1).sum())} stay above it")


def verdict(runs: list[Run]) -> tuple[str, dict[str, list[float]]]:
    """The overall verdict (:func:`_word` over all runs) and the per-run median ratios
    by optimizer."""
    by_opt: dict[str, list[float]] = {}
    for r in runs:
        by_opt.setdefault(r.optimizer, []).append(edge_ratio(r)[0])
    return _word([x for xs in by_opt.values() for x in xs]), by_opt


def load(setting: Setting, dataset: str = "digits", data_dir: Path | None = None):
    """``setting.n_train`` training examples of ``dataset`` (digits, or a registry data set
    read from ``data_dir``: a seeded subset, flattened, pixels in [0, 1])."""
    if dataset == "digits":
        return load_dataset("digits", seed=0, n_train=setting.n_train)
    ds = _study.load_subset(dataset, data_dir, setting.n_train, 1, image=False)
    print(f"{dataset}: {len(ds.train_y)} training examples of {ds.input_shape}", file=sys.stderr)
    return ds


def sharpness_at_init(ds, setting: Setting) -> float:
    """λ₁ of the training loss's Hessian at seed 0's initialization (Lanczos, tol 1e-3)."""
    from spectra import HessianOperator, eigsh

    model = build_model("mlp", input_shape=tuple(ds.train_x.shape[1:]),
                        num_classes=ds.num_classes, seed=0, widths=setting.widths,
                        activation=setting.activation)
    op = HessianOperator(model, HalfSquaredError(), (ds.train_x, ds.train_y))
    return float(eigsh(op, k=1, generator=torch.Generator().manual_seed(0)).eigenvalues[0])


def simulate(setting: Setting, ds=None) -> list[Run]:
    """Every (optimizer, lr, seed) run of ``setting`` on ``ds`` (a registry ``Dataset``;
    default :func:`load` of digits)."""
    ds = load(setting) if ds is None else ds
    data = (ds.train_x, ds.train_y)
    runs: list[Run] = []
    plan = [("sgd", lr) for lr in setting.gd_lrs] + [("sgdm", lr) for lr in setting.momentum_lrs]
    for name, lr in plan:
        for seed in setting.seeds:
            r = run_one(data, setting, name, lr, seed, ds.num_classes)
            runs.append(r)
            if not r.sharpness:
                print(f"{ds.name} {name} lr={lr:g} seed={seed}: diverged before its first probe",
                      file=sys.stderr)
                continue
            print(f"{ds.name} {name} lr={lr:g} seed={seed}: lambda1 {r.sharpness[0]:.3g} -> "
                  f"max {max(r.sharpness):.3g}, threshold {r.threshold[0]:.3g}, "
                  f"edge ratio {edge_ratio(r)[0]:.3f} ({r.seconds:.0f} s)", file=sys.stderr)
    return runs


def scaled(setting: Setting, scale: float) -> Setting:
    """``setting`` with every lr times ``scale`` (3 significant digits)."""
    def f(lrs: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(float(f"{lr * scale:.3g}") for lr in lrs)

    return dataclasses.replace(setting, gd_lrs=f(setting.gd_lrs), momentum_lrs=f(setting.momentum_lrs))


def simulate_extra(setting: Setting, dataset: str, data_dir: Path | None) -> dict:
    """The runs on an extra data set, with every lr scaled by λ₁(digits) / λ₁(dataset) at
    seed 0's initialization, so that each threshold sits at the same multiple of the
    initial sharpness as on digits (digits' lrs start far above the edge on MNIST or
    CIFAR, whose inputs have 12-48 times as many pixels)."""
    ds = load(setting, dataset, data_dir)
    lam = {"digits": sharpness_at_init(load(setting), setting),
           dataset: sharpness_at_init(ds, setting)}
    scale = lam["digits"] / lam[dataset]
    print(f"{dataset}: lambda1 at init {lam[dataset]:.4g} (digits {lam['digits']:.4g}): "
          f"lrs times {scale:.3g}", file=sys.stderr)
    runs = simulate(scaled(setting, scale), ds)
    return {"sharpness_at_init": lam, "lr_scale": scale, "n_train": len(ds.train_y),
            "runs": [dataclasses.asdict(r) for r in runs]}


def momentum_note(runs: list[Run]) -> str:
    """What the heavy-ball runs did after reaching the threshold, from their probes: the
    median λ₁/threshold over the last quarter of the probes."""
    mom = [r for r in runs if r.optimizer == "sgdm" and r.sharpness]
    if not mom:
        return ""
    parts = []
    for lr in sorted({r.lr for r in mom}):
        g = [r for r in mom if r.lr == lr]
        late = [float(np.median(np.asarray(r.sharpness[-len(r.sharpness) // 4:])
                                / np.asarray(r.threshold[-len(r.threshold) // 4:]))) for r in g]
        parts.append(f"η = {lr:g}: {_study.fmt_mean_std(late)}")
    stay = [n for r in mom if (n := probes_above(r)) is not None]
    held = (f"stays at or above the threshold for {min(stay)} to {max(stay)} probes (every "
            f"{mom[0].probe_steps[1] - mom[0].probe_steps[0]} steps) after first reaching it, "
            "then drops (with a spike in the loss)" if stay and len(mom[0].probe_steps) > 1
            else "drops after reaching it")
    return (f"Heavy-ball λ₁ {held}, and then creeps back from below rather than hovering above "
            "it. λ₁/threshold over the last quarter of each run (all seeds; an lr whose table "
            "row says \"never\" did not reach it within the run): " + "; ".join(parts) + ".")


def probes_above(run: Run) -> int | None:
    """The number of consecutive probes at or above the threshold from the first one that
    reaches it (None if none does)."""
    s, t = np.asarray(run.sharpness), np.asarray(run.threshold)
    above = s >= t
    reached = np.flatnonzero(above)
    if reached.size == 0:
        return None
    below = np.flatnonzero(~above[reached[0]:])
    return int(below[0]) if below.size else int(above.size - reached[0])


def extra_section(data: dict, setting: Setting, dataset: str, out: Path) -> str:
    """The report's section of one extra data set (:func:`simulate_extra`'s ``data``): its
    figure, table and verdicts."""
    label = _study.EXTRA_DATA[dataset]
    runs = [Run(**r) for r in data["runs"]]
    setting = scaled(setting, data["lr_scale"])
    fig_path = out / f"{NAME}_{dataset}.png"
    figure(runs, setting, fig_path, label)
    word, by_opt = verdict(runs)
    med = {k: _study.fmt_mean_std(v) for k, v in by_opt.items()}
    lam = data["sharpness_at_init"]
    return f"""
## {label} (from `--data-dir`): {word}

The same runs on {data['n_train']:,} {label} training images (a seeded subset), flattened,
pixels in [0, 1], with every lr scaled by λ₁(digits) / λ₁({label}) at seed 0's
initialization = {lam['digits']:.4g} / {lam[dataset]:.4g} = {data['lr_scale']:.3g}, so that
each threshold sits at the same multiple of the initial sharpness as on digits: GD at
η ∈ {list(setting.gd_lrs)}, heavy ball at η ∈ {list(setting.momentum_lrs)}. Runs saved in
`{NAME}_{dataset}.json`; training and probing took {sum(r.seconds for r in runs):.0f} s.

![sharpness and loss, {label}]({fig_path.name})

{table(runs, setting)}

- GD: **{_word(by_opt.get('sgd', []))}**; median λ₁/threshold after first reaching it:
  {med.get('sgd', 'n/a')}; {edge_counts(by_opt.get('sgd', []))}.
- Heavy ball: **{_word(by_opt.get('sgdm', []))}**; median λ₁/threshold after first reaching
  it: {med.get('sgdm', 'n/a')}; {edge_counts(by_opt.get('sgdm', []))}.
"""


def main(argv: list[str] | None = None) -> None:
    p = _study.parser(f"analyses.{NAME}", TITLE, replot="the figure and table")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    setting = QUICK if args.quick else FULL
    out = _study.out_dir(args)
    runs = [Run(**r) for r in _study.saved_or_run(
        out / f"{NAME}.json", args.replot,
        lambda: [dataclasses.asdict(r) for r in simulate(setting)])]
    extra = _study.extra_results(args, out, NAME,
                                 lambda name: simulate_extra(setting, name, args.data_dir))
    sections = [extra_section(data, setting, name, out) for name, data in extra.items()]
    fig_path = out / f"{NAME}.png"
    figure(runs, setting, fig_path)
    word, by_opt = verdict(runs)
    med = {k: _study.fmt_mean_std(v) for k, v in by_opt.items()}
    body = f"""The runs: `python -m analyses.{NAME}{" --quick" if args.quick else ""}`; training and
probing took {sum(r.seconds for r in runs):.0f} s over them (the header's command and wall time
are this report's; `--replot` redraws it from the runs saved in `{NAME}.json`).

{_study.data_note(args, list(extra))}

## Claim

Cohen et al. 2021 ("Gradient descent on neural networks typically occurs at the edge of
stability", ICLR 2021, Fig. 1, Sec. 3 and Appendix on momentum): under full-batch gradient
descent with step size η the sharpness λ₁ rises (progressive sharpening) until it reaches
2/η and then hovers just above 2/η; with heavy-ball momentum β the level is (2 + 2β)/η.

## What we measured

- Data: {setting.n_train} digits of scikit-learn's training split (`load_dataset("digits",
  n_train={setting.n_train})`), pixels in [0, 1]; one full batch per step.
- Model: the registry `mlp`, widths {list(setting.widths)}, {setting.activation}; loss:
  MSE ½‖f(x) − onehot(y)‖² averaged over samples (Cohen et al. used MSE and cross-entropy;
  we use MSE, where their progressive sharpening is strongest and the loss does not drive
  λ₁ down as CE does once the data are fit).
- Optimizers from `optim.registry`: `sgd` (GD) at η ∈ {list(setting.gd_lrs)} and `sgdm`
  (heavy ball, β = {setting.beta:g}, PyTorch's v ← βv + g, w ← w − ηv) at
  η ∈ {list(setting.momentum_lrs)}; {setting.steps} steps each, seeds {list(setting.seeds)}
  (initialization).
- Sharpness: λ₁ of the Hessian of the training loss on the whole training set, by
  `SpectralMonitor(unit="step", every={setting.every}, top_k=1, density=None, trace=0)`
  (Lanczos), every {setting.every} steps; the threshold is what the monitor records
  (`spectra.stability_threshold` of the live optimizer: 2/η, (2+2β)/η).
- Table: per η, over the {len(setting.seeds)} seeds (mean ± std), the first probed step
  with λ₁ ≥ threshold and the median of λ₁/threshold over the probes from then on.

![sharpness and loss]({fig_path.name})

## Results

{table(runs, setting)}

## Verdict: {word}

- GD: **{_word(by_opt.get('sgd', []))}**. Median λ₁/threshold after first reaching it,
  over all lrs and seeds: {med.get('sgd', 'n/a')}; {edge_counts(by_opt.get('sgd', []))}.
- Heavy ball: **{_word(by_opt.get('sgdm', []))}**. Median λ₁/(2+2β)/η after first
  reaching it: {med.get('sgdm', 'n/a')}; {edge_counts(by_opt.get('sgdm', []))}.

A run counts as at the edge when it reaches its threshold and the median of λ₁/threshold
from then on is within [0.9, 1.2]; the verdict is "reproduced" when every run is,
"partly" when some are. The band reaches below 1, so it also counts runs that settle just
below the threshold; Cohen et al. say λ₁ "hovers just above 2/η", which is the count of
runs above it (median ≥ 1). The table gives each lr's numbers. {momentum_note(runs)}
""" + "".join(sections)
    _study.write_results(out / f"{NAME}.md", TITLE, started, body, quick=args.quick)


if __name__ == "__main__":
    main()
