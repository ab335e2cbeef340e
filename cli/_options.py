"""The options commands share, and what their values parse into.

* option bundles: :func:`model_data_options`, :func:`training_options`,
  :func:`schedule_options`, :func:`probe_options` (``train`` and ``compare`` take
  all four);
* :func:`parse_schedule`: ``--schedule``, ``--warmup`` and ``--schedule-arg`` as an
  :class:`optim.schedules.LRSchedule`, checked;
* the value types of ``--seed`` and ``--tol``;
* ``KEY=VALUE`` parsing (:func:`parse_kv`), and ``[NAME.]KEY=VALUE`` for options that
  go to one of several optimizers (:func:`split_opt_args`);
* :class:`ProbePlan`, the monitor's schedule and settings as given;
* :func:`given_options`, which options the user gave rather than left at their default;
* :func:`device_option`: ``--device`` of the commands that compute, resolved and
  checked by :func:`resolve_device`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from cli._errors import CLIError


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf``: a NaN fails none of
    its comparisons, and an unbounded side lets ``inf`` through."""

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{rv} is not a finite number.", param, ctx)
        return rv


# --seed: torch.manual_seed takes a 64-bit integer.
SEED = click.IntRange(0, 2**63 - 1)
# --tol: a relative residual, so 0 < tol < 1 (nan refused too).
TOL = FiniteFloatRange(0, 1, min_open=True, max_open=True)
# a width or a span: positive and finite (--sigma, --span)
POSITIVE = FiniteFloatRange(min=0, min_open=True)
LOSSES = ("auto", "cross-entropy", "mse")


# --------------------------------------------------------------------------- KEY=VALUE


def parse_kv(pairs: tuple[str, ...], what: str) -> dict:
    """``("a=1", "b=relu", "w=32,32")`` -> ``{"a": 1, "b": "relu", "w": (32, 32)}``.

    ``what`` names the option in errors (``"--model-arg"``); dashes in keys become
    underscores.
    """
    out: dict = {}
    for item in pairs:
        if "=" not in item:
            raise CLIError(f"{what} {item!r} is not key=value")
        key, raw = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key:
            raise CLIError(f"{what} {item!r} has an empty key")
        value = parse_value(raw.strip())
        floats = [v for v in (value if isinstance(value, tuple) else (value,)) if isinstance(v, float)]
        if any(math.isnan(v) for v in floats):
            raise CLIError(f"{what} {item!r}: NaN is not a value {key} can take; give a number")
        if any(math.isinf(v) for v in floats):  # lr=inf, lr=1e400: a run that diverges at once
            raise CLIError(f"{what} {item!r}: {key} must be a finite number")
        out[key] = value
    return out


def parse_value(raw: str):
    """``"1,2"`` -> ``(1, 2)``; ``"true"`` -> True; ``"none"`` -> None; numbers; else the text."""
    if "," in raw:
        return tuple(parse_value(x) for x in raw.split(",") if x)
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def split_opt_args(pairs: tuple[str, ...], keys: list[str]) -> dict[str, dict]:
    """``--opt-arg`` of several optimizers: ``lr=0.1`` for all, ``sgd.lr=0.1`` for one.

    Returns one dict of hyperparameters per registry key in ``keys``.
    """
    out: dict[str, dict] = {k: {} for k in keys}
    for key, value in parse_kv(pairs, "--opt-arg").items():
        if "." in key:
            name, _, hp = key.partition(".")
            name = name.lower().replace("_", "-")
            if name not in out:
                raise CLIError(f"--opt-arg {key}=...: {name!r} is not one of --optimizers "
                               f"({', '.join(keys)})")
            out[name][hp] = value
        else:
            for k in keys:
                out[k][key] = value
    return out


def option_flag(name: str) -> str:
    """The command-line option of a keyword name: ``"data_name"`` -> ``"--data"``,
    ``"sample_seed"`` -> ``"--sample-seed"``."""
    return "--" + name.replace("_name", "").replace("_", "-")


def given_options(names: tuple[str, ...]) -> list[str]:
    """The ``names`` among the current command's options that the user gave (not
    defaults), in the order of ``names``."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return []
    return [n for n in names
            if ctx.get_parameter_source(n) not in (None, ParameterSource.DEFAULT)]


# --------------------------------------------------------------------------- --device


def resolve_device(value: str) -> str:
    """The device ``--device VALUE`` names: ``auto`` is ``cuda`` when
    ``torch.cuda.is_available()`` and ``cpu`` otherwise; ``cpu``, ``cuda`` and ``cuda:N``
    are kept (lower-cased).

    Raises:
        ValueError: ``value`` is none of those, CUDA is asked for where
            ``torch.cuda.is_available()`` is False, or ``cuda:N`` names a device this
            machine does not have; the message says what is available.
    """
    import torch

    text = str(value).strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return "cpu"
    kind, colon, index = text.partition(":")
    if kind != "cuda" or (colon and not index.isdigit()):
        raise ValueError(f"{value!r} is not a device: expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        why = (f"this torch ({torch.__version__}) is a CPU-only build" if torch.version.cuda is None
               else "no CUDA device is visible (driver, CUDA_VISIBLE_DEVICES)")
        raise ValueError(f"{text} was asked for, but torch.cuda.is_available() is False: {why}. "
                         "Available: cpu; use --device cpu (or auto, the default, which picks "
                         "cuda only where it is available)")
    count = torch.cuda.device_count()
    if colon and int(index) >= count:
        raise ValueError(f"{text} does not exist: this machine has {count} CUDA "
                         f"device{'s' if count != 1 else ''}, cuda:0 .. cuda:{count - 1}")
    return text


def _device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--device``, resolved and refused before anything runs (:func:`resolve_device`)."""
    try:
        return resolve_device(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def device_option(fn: Callable) -> Callable:
    """--device: where the model, the data, the optimizer, the operators and the
    monitor live; the command receives the resolved name (``cpu``, ``cuda``, ``cuda:N``)."""
    return click.option(
        "--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
        callback=_device,
        help="Where the model, the data and every Hessian product live: auto (cuda when "
             "torch.cuda.is_available(), else cpu), cpu, cuda or cuda:N (under torchrun, "
             "cuda is each process's cuda:LOCAL_RANK).")(fn)


# --------------------------------------------------------------------------- bundles


def _apply(options: list[Callable]) -> Callable:
    def deco(fn: Callable) -> Callable:
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return deco


def model_data_options(fn: Callable) -> Callable:
    """--model, --model-arg, --data, --data-arg, --data-dir, --seed, --loss."""
    return _apply([
        click.option("--model", "model_name", default="mlp", show_default=True,
                     help="Model registry name (mlp, logistic, cnn, resnet20, resnet18) or "
                          "package.module:factory."),
        click.option("--model-arg", multiple=True, metavar="KEY=VALUE",
                     help="Model option, e.g. widths=64,64 or activation=tanh (repeatable)."),
        click.option("--data", "data_name", default="digits", show_default=True,
                     help="Data set registry name (digits, mnist, fashion-mnist, cifar10, "
                          "cifar100, synthetic)."),
        click.option("--data-arg", multiple=True, metavar="KEY=VALUE",
                     help="Data set option, e.g. n_train=500 or image=true (repeatable)."),
        click.option("--data-dir", type=click.Path(file_okay=False),
                     help="Folder of a file-based data set (default $SPECTRA_DATA_DIR or ./data)."),
        click.option("--seed", default=0, show_default=True, type=SEED,
                     help="Seeds the data split, the model's initialization, the batch order "
                          "and the probes."),
        click.option("--loss", "loss_name", type=click.Choice(LOSSES), default="auto",
                     show_default=True,
                     help="auto: cross-entropy for classification, MSE for regression."),
    ])(fn)


def _tensorboard_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--tensorboard DIR``, refused before anything runs when tensorboard is missing."""
    if value is not None:
        from spectra.runs.tensorboard import check_tensorboard

        try:
            check_tensorboard()
        except ImportError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return value


def training_options(fn: Callable) -> Callable:
    """--epochs, --batch-size, --log-every, --checkpoint-every, --overwrite, --tensorboard."""
    return _apply([
        click.option("--epochs", type=click.IntRange(min=0),
                     help="Total number of epochs  [default: 5; with `train --resume`: the run's]."),
        click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1),
                     help="Minibatch size (the last batch of an epoch may be smaller)."),
        click.option("--log-every", "log_every", type=click.IntRange(min=1), metavar="STEPS",
                     help="Also log the batch loss every STEPS optimizer steps."),
        click.option("--checkpoint-every", default=1, show_default=True,
                     type=click.IntRange(min=0), metavar="EPOCHS",
                     help="Write a checkpoint every EPOCHS epochs and after the last (0: none)."),
        click.option("--overwrite", is_flag=True,
                     help="Replace a run of the same name in the output file (otherwise an "
                          "existing name is an error and the file is left as it is), and write "
                          "over checkpoints already in the run's checkpoint folder. With "
                          "`train --resume`: allow resuming from a checkpoint older than the "
                          "run's last one, dropping the epochs recorded after it."),
        click.option("--tensorboard", type=click.Path(file_okay=False), metavar="DIR",
                     callback=_tensorboard_dir,
                     help="Also log the metrics, the probe scalars and each probe's density "
                          "(a histogram) to TensorBoard, in DIR/RUN (view: tensorboard "
                          "--logdir DIR; needs pip install tensorboard)."),
    ])(fn)


def eval_train_option(fn: Callable) -> Callable:
    """--eval-train: the training set in eval mode at the end of each epoch (and epoch 0),
    ``train(eval_train=True)``; the command stores it in the run's config as ``eval_train``."""
    return click.option(
        "--eval-train", is_flag=True,
        help="Also evaluate the training set in eval mode at the end of each epoch and "
             "before training (epoch 0): train_eval_loss/acc, drawn by `spectra plot "
             "curves` instead of the running averages.")(fn)


def schedule_options(fn: Callable) -> Callable:
    """--schedule, --warmup, --schedule-arg: an lr schedule for any optimizer."""
    return _apply([
        click.option("--schedule", "schedule", default="none", show_default=True,
                     metavar="NAME",
                     help="Learning-rate schedule: none, constant, cosine, warmup-cosine, "
                          "linear, step (stepped per optimizer step unless "
                          "--schedule-arg interval=epoch). It sets the base lr; DCAO's "
                          "multiplier applies on top."),
        click.option("--warmup", type=click.IntRange(min=0), metavar="N",
                     help="Linear warm-up over the first N epochs (N steps with "
                          "--schedule-arg unit=step)."),
        click.option("--schedule-arg", multiple=True, metavar="KEY=VALUE",
                     help="Schedule option (repeatable): interval=step|epoch, "
                          "unit=epoch|step, start_factor, min_lr (cosine), end_factor "
                          "(linear), step_size, milestones=30,60, gamma (step)."),
    ])(fn)


def parse_schedule(kw: dict[str, Any]):
    """The :class:`optim.schedules.LRSchedule` of ``--schedule``, ``--warmup`` and
    ``--schedule-arg``; a one-line ``CLIError`` naming the bad option."""
    from optim.schedules import LRSchedule, ScheduleError

    options = parse_kv(kw.get("schedule_arg") or (), "--schedule-arg")
    if kw.get("warmup") is not None:
        if "warmup" in options:
            raise CLIError("--warmup and --schedule-arg warmup=... both set the warm-up; "
                           "give one")
        options["warmup"] = kw["warmup"]
    if isinstance(options.get("milestones"), (int, float)):
        options["milestones"] = (options["milestones"],)
    try:
        return LRSchedule.from_options(kw.get("schedule") or "none", options)
    except ScheduleError as exc:
        raise CLIError(f"--schedule {kw.get('schedule')}: {exc}") from None


def probe_options(fn: Callable) -> Callable:
    """The monitor's schedule and settings."""
    return _apply([
        click.option("--probe-every", default=1, show_default=True, type=click.IntRange(min=0),
                     metavar="N", help="Probe the spectrum every N units (0: never)."),
        click.option("--probe-unit", type=click.Choice(("epoch", "step")), default="epoch",
                     show_default=True, help="What --probe-every counts."),
        click.option("--probe-samples", default=512, show_default=True,
                     type=click.IntRange(min=1), metavar="N",
                     help="The probe set: the first N training samples."),
        click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=0),
                     help="Largest eigenvalues per probe (at most the model's number of "
                          "parameters)."),
        click.option("--bottom/--no-bottom", default=True, show_default=True,
                     help="Also the most negative eigenvalue."),
        click.option("--tol", default=1e-3, show_default=True, type=TOL,
                     help="Relative residual tolerance of the eigenvalues."),
        click.option("--trace-matvecs", default=60, show_default=True,
                     type=click.IntRange(min=0), help="Hutch++ trace budget (0: no trace)."),
        click.option("--density/--no-density", default=True, show_default=True,
                     help="Record the SLQ spectral density (needed by `spectra plot evolution`)."),
        click.option("--density-vectors", default=4, show_default=True,
                     type=click.IntRange(min=1), help="SLQ random vectors per probe."),
        click.option("--density-steps", default=80, show_default=True,
                     type=click.IntRange(min=1),
                     help="Lanczos steps per SLQ vector (at most the model's number of "
                          "parameters; the default is lowered to it for a tiny model)."),
        *_curvature_option_list(),
    ])(fn)


def curvature_options(fn: Callable) -> Callable:
    """The probe's optional curvature quantities (issue 13), shared by ``train``,
    ``compare`` (through :func:`probe_options`) and ``probe``; each costs what
    :class:`spectra.SpectralMonitor` states."""
    return _apply(_curvature_option_list())(fn)


def _max_memory(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """``--max-memory SIZE`` in bytes (``"2GB"``, ``"512MiB"``, ``"1e9"``), refused
    before anything runs when it is not a size."""
    if value is None:
        return None
    from spectra.linalg.memory import parse_memory

    try:
        return parse_memory(value, "--max-memory")
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _curvature_option_list() -> list[Callable]:
    return [
        click.option("--max-memory", type=str, metavar="SIZE", callback=_max_memory,
                     help="Memory the solvers' vectors may take, e.g. 2GB or 512MiB  [default: "
                          "half the memory available]: above it SLQ runs without a stored "
                          "basis and the eigensolver keeps its basis on the host or on disk "
                          "(`spectra probe` prints the mode that ran and why)."),
        click.option("--density-mode", type=click.Choice(("auto", "full", "bounded")),
                     default="auto", show_default=True,
                     help="SLQ: full (reorthogonalized bases, num-vectors x steps vectors), "
                          "bounded (no basis, about 4 vectors per SLQ vector), or auto (full "
                          "when it fits in --max-memory)."),
        click.option("--preconditioned", is_flag=True,
                     help="Also the preconditioned sharpness lambda_1(P^-1/2 H P^-1/2) of an "
                          "adaptive optimizer's diagonal preconditioner P (Adam, AdamW, RMSprop, "
                          "...), against its threshold (2+2b1)/((1-b1)lr) (one more Lanczos run "
                          "per probe)."),
        click.option("--alignment", is_flag=True,
                     help="Also the fraction of the full-batch and minibatch gradients in the "
                          "top-k eigenspace, and the loss change of one optimizer step split "
                          "onto that space and its complement (gradients and forward passes, "
                          "no Hessian products)."),
        click.option("--layers", type=click.Choice(("module", "tensor")), default=None,
                     help="Also lambda_1 and trace of each layer's diagonal Hessian block "
                          "(parameters grouped by module or by tensor; per block, a Lanczos run "
                          "and the trace budget)."),
        click.option("--layer-density", is_flag=True,
                     help="With --layers: each block's SLQ density (--density-vectors x "
                          "--density-steps products per block) and their heterogeneity "
                          "(mean Jensen-Shannon distance)."),
    ]


def curvature_settings(kw: dict[str, Any]) -> dict[str, Any]:
    """``preconditioned``, ``alignment``, ``layers``, ``layer_density``, ``max_memory``
    (bytes) and ``density_mode`` of the options;
    ``CLIError`` for a combination that cannot be run."""
    if kw.get("layer_density") and not kw.get("layers"):
        raise CLIError("--layer-density needs --layers module|tensor")
    if kw.get("alignment") and kw.get("top_k") == 0:
        raise CLIError("--alignment needs the top eigenvectors: --top-k 1 or more")
    layer_density = (kw["density_vectors"], kw["density_steps"]) if kw.get("layer_density") else None
    return {"preconditioned": bool(kw.get("preconditioned")), "alignment": bool(kw.get("alignment")),
            "layers": kw.get("layers"), "layer_density": layer_density,
            "max_memory": kw.get("max_memory"), "density_mode": kw.get("density_mode") or "auto"}


def check_trace_matvecs(n: int) -> None:
    """Hutch++ needs at least 4 products (0 turns the trace off)."""
    if n and n < 4:
        raise CLIError(f"--trace-matvecs must be 0 or at least 4, got {n}")


@dataclass(frozen=True)
class ProbePlan:
    """The monitor's schedule and settings as given on the command line."""

    every: int = 1
    unit: str = "epoch"
    samples: int = 512
    top_k: int = 5
    bottom: bool = True
    tol: float = 1e-3
    trace_matvecs: int = 60
    density: tuple[int, int] | None = (4, 80)
    preconditioned: bool = False
    alignment: bool = False
    layers: str | None = None
    layer_density: tuple[int, int] | None = None
    max_memory: int | None = None  # bytes (--max-memory)
    density_mode: str = "auto"
    # the size options given on the command line: above the model's number of
    # parameters these are refused, while a default is lowered to fit (see
    # cli._build.fit_probe_size)
    given: frozenset[str] = frozenset()

    @classmethod
    def from_options(cls, kw: dict[str, Any]) -> ProbePlan:
        density = (kw["density_vectors"], kw["density_steps"]) if kw["density"] else None
        check_trace_matvecs(kw["trace_matvecs"])
        return cls(every=kw["probe_every"], unit=kw["probe_unit"], samples=kw["probe_samples"],
                   top_k=kw["top_k"], bottom=kw["bottom"], tol=kw["tol"],
                   trace_matvecs=kw["trace_matvecs"], density=density, **curvature_settings(kw),
                   given=frozenset(given_options(("top_k", "density_steps"))))

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> ProbePlan | None:
        """The plan of a run's stored ``probe`` config (None: the run had no probes)."""
        if not cfg:
            return None
        d = cfg.get("density")
        return cls(every=int(cfg["every"]), unit=cfg["unit"], samples=int(cfg["samples"]),
                   top_k=int(cfg["top_k"]), bottom=bool(cfg["bottom"]), tol=float(cfg["tol"]),
                   trace_matvecs=int(cfg["trace_matvecs"]),
                   density=tuple(d) if d is not None else None,
                   preconditioned=bool(cfg.get("preconditioned", False)),
                   alignment=bool(cfg.get("alignment", False)), layers=cfg.get("layers"),
                   layer_density=tuple(cfg["layer_density"]) if cfg.get("layer_density") else None,
                   max_memory=cfg.get("max_memory"), density_mode=cfg.get("density_mode") or "auto")

    @property
    def enabled(self) -> bool:
        return self.every > 0
