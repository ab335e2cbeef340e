"""The reference trainer: minibatch training with metrics, spectral probes and checkpoints.

:func:`train` takes an optimizer *instance* (never a name: names belong to the
``optim`` registry and the CLI), the data as tensors, and optional schedulers,
a :class:`~spectra.runs.monitor.SpectralMonitor`, a run writer of
:mod:`spectra.runs.store` and a :class:`CheckpointPolicy`. Every epoch it appends
one metrics row (train loss and accuracy averaged over the epoch's batches,
test loss and accuracy, the optimizer's lr, momentum and weight decay as the epoch
leaves them (after its schedulers' steps: what the next epoch starts with),
training seconds without the probes' and step log rows' time) and lets the monitor probe. With
``eval_train`` it also evaluates the whole training set in eval mode at the end of
each epoch (``train_eval_loss``, ``train_eval_acc``) and, before the first step of a
fresh run, writes an epoch-0 row of those and the test metrics.

Determinism and resume. Batches are shuffled by a dedicated generator whose
state, with the global RNG, the model, optimizer, schedulers and monitor, goes
into every checkpoint. Resuming from the checkpoint of epoch ``e`` continues
bit-identically on the CPU: the parameters and the HDF5 rows (all but the
wall-clock ``seconds`` columns) equal those of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from spectra.operators.base import batch_to
from spectra.runs.checkpoints import (
    CHECKPOINT_PREFIX,
    check_resume,
    checkpoint_file_name,
    load_checkpoint,
    run_record,
    save_checkpoint,
)
from spectra.utils import checks
from spectra.utils.modes import eval_mode
from spectra.utils.params import model_device


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or Inf; everything written before stays readable.

    Attributes:
        step: the optimizer step whose loss was not finite (1 for the first step).
        epoch: the epoch it belongs to (1 for the first epoch).
        loss: that loss (NaN, +Inf or -Inf).
    """

    def __init__(self, message: str, *, step: int = 0, epoch: int = 0,
                 loss: float = math.nan) -> None:
        super().__init__(message)
        self.step, self.epoch, self.loss = int(step), int(epoch), float(loss)


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where and when to write checkpoints.

    Attributes:
        directory: folder of the ``.pt`` files (created if needed).
        every: write after every this-many epochs (and after the last one).
        prefix: file name prefix; files are ``{prefix}-epoch{E:04d}.pt``.
    """

    directory: str | Path
    every: int = 1
    prefix: str = CHECKPOINT_PREFIX

    def __post_init__(self) -> None:
        checks.integer("checkpoint every", self.every, 1)

    def path(self, epoch: int) -> Path:
        return Path(self.directory) / checkpoint_file_name(epoch, self.prefix)


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        epochs: completed epochs (including those before a resume).
        steps: optimizer steps.
        train_seconds: training time (probe time excluded).
        probe_seconds: time spent in the monitor's probes.
        checkpoints: paths written in this call.
        history: the metrics rows appended in this call.
    """

    epochs: int
    steps: int
    train_seconds: float
    probe_seconds: float
    checkpoints: list[Path] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)


def current_hparams(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The first group's effective lr, momentum (or beta1) and weight decay."""
    if hasattr(optimizer, "current_hparams"):
        return dict(optimizer.current_hparams())
    g = optimizer.param_groups[0]
    momentum = g.get("momentum", None)
    if momentum is None and "betas" in g:
        momentum = g["betas"][0]
    return {
        "lr": float(g.get("lr", math.nan)),
        "momentum": float(momentum) if momentum is not None else math.nan,
        "weight_decay": float(g.get("weight_decay", math.nan)),
    }


def evaluate(model: nn.Module, loss_fn: Callable, X: Tensor, y: Tensor, batch_size: int = 1024) -> tuple[float, float]:
    """Mean loss and accuracy (NaN for regression targets) in eval mode, restoring the mode.
    Each batch is moved to the model's device (:func:`model_device`)."""
    total, correct, n = 0.0, 0, 0
    classify = not y.is_floating_point()
    device = model_device(model)
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(y), batch_size):
            xb, yb = batch_to(X[i : i + batch_size], device), batch_to(y[i : i + batch_size], device)
            out = model(xb)
            total += float(loss_fn(out, yb)) * len(yb)
            if classify:
                correct += int((out.argmax(dim=1) == yb).sum())
            n += len(yb)
    return total / n, (correct / n if classify else math.nan)


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_data: tuple[Tensor, Tensor],
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    epochs: int,
    batch_size: int = 64,
    test_data: tuple[Tensor, Tensor] | None = None,
    step_schedulers: Sequence[Any] = (),
    epoch_schedulers: Sequence[Any] = (),
    monitor: Any = None,
    store: Any = None,
    checkpoint: CheckpointPolicy | None = None,
    checkpoint_extra: dict[str, Any] | None = None,
    log_every_steps: int | None = None,
    seed: int = 0,
    resume: str | Path | dict[str, Any] | None = None,
    progress: bool = False,
    eval_train: bool = False,
) -> TrainResult:
    """Train ``model`` for ``epochs`` epochs (in total, counting those before a resume).

    Args:
        model: the network, in train mode during steps.
        optimizer: any ``torch.optim.Optimizer``; ``step(closure)`` is called with
            a closure that zeroes the gradients, computes the batch loss,
            back-propagates and returns it (so loss-driven optimizers work).
        train_data: ``(X, y)`` tensors, on any device: each minibatch is moved to the
            model's (its first parameter's), so CPU data can train a GPU model.
        loss_fn: mean-reduced loss.
        epochs: total epochs, ``>= 0``.
        batch_size: minibatch size (the last batch of an epoch may be smaller).
        test_data: ``(X, y)`` evaluated after each epoch.
        step_schedulers / epoch_schedulers: objects with ``step()``,
            ``state_dict()`` and ``load_state_dict()`` (lr schedulers, a
            ``PNormScheduler``), stepped after each optimizer step / epoch.
        monitor: a :class:`~spectra.runs.monitor.SpectralMonitor`, called after each
            epoch (and at epoch 0 before training, when its schedule says so); a
            monitor with ``unit="step"`` is also called after every optimizer step.
            Each call passes ``optimizer`` (the monitor records its stability
            threshold, and reads it for its preconditioned sharpness) and the last
            training minibatch (``batch=``, for the monitor's gradient alignment).
        store: a run writer (``append_metrics``, ``add_checkpoint``) or ``None``.
        checkpoint: a :class:`CheckpointPolicy`, or ``None`` for no checkpoints.
        checkpoint_extra: ``model_spec``, ``data_spec``, ``optimizer_spec`` and
            other JSON-like entries written into every checkpoint. The ``run``
            entry (identity of ``store``'s run) is written by ``train`` itself.
        log_every_steps: also log a metrics row every this-many steps (train loss
            of the batch; test columns NaN).
        seed: seed of the shuffling generator (fresh runs).
        resume: a checkpoint (path or loaded dict) to continue from. It must
            belong to ``store``'s run and history
            (:func:`spectra.runs.checkpoints.check_resume`, checked before anything is
            written). Rows that ``store`` (and the monitor's store) hold past the
            checkpoint's step, left by the run that was stopped, are then dropped
            (``rewind``): training writes its own rows for those steps again.
        progress: a progress bar over epochs.
        eval_train: also evaluate the training set in eval mode (no dropout, batch
            norm on running statistics, fixed weights) at the end of each epoch, as
            ``train_eval_loss`` and ``train_eval_acc``, and write an epoch-0 row (step
            0: those and the test metrics before training) in a fresh run. Costs one
            forward pass over the training set per epoch.

    Raises:
        TrainingDiverged: the loss became non-finite (the message names the step).
        CheckpointError: ``resume`` belongs to another run or history.
    """
    _check_arguments(train_data, epochs=epochs, batch_size=batch_size,
                     log_every_steps=log_every_steps, optimizer=optimizer, loss_fn=loss_fn,
                     test_data=test_data, step_schedulers=step_schedulers,
                     epoch_schedulers=epoch_schedulers, monitor=monitor, checkpoint=checkpoint)
    run = _Training(
        model, optimizer, loss_fn, train_data, test_data=test_data, batch_size=batch_size,
        epochs=epochs, step_schedulers=step_schedulers, epoch_schedulers=epoch_schedulers,
        monitor=monitor, store=store, checkpoint=checkpoint, checkpoint_extra=checkpoint_extra,
        log_every_steps=log_every_steps, seed=seed, eval_train=eval_train,
    )
    if resume is not None:
        run.resume(resume)
    result = TrainResult(epochs=run.epoch, steps=run.step, train_seconds=0.0, probe_seconds=0.0)
    probe_before = run.probe_seconds()
    if eval_train and resume is None and store is not None:  # epoch 0: before any step
        store.append_metrics(run.initial_row())
    if monitor is not None and resume is None:  # epoch 0: before any step
        monitor.maybe_probe(step=run.step, epoch=0, optimizer=optimizer)
    bar = _progress_bar(epochs, run.epoch) if progress else None
    try:
        while run.epoch < epochs:
            row = run.train_epoch()
            result.train_seconds += row["seconds"]
            result.history.append(row)
            with run.outside_steps():
                path = run.record_epoch(row)
            if path is not None:
                result.checkpoints.append(path)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{row['train_loss']:.4g}")
    finally:
        if bar is not None:
            bar.close()
    result.epochs, result.steps = run.epoch, run.step
    result.probe_seconds = run.probe_seconds() - probe_before
    return result


def _check_arguments(train_data: Any, *, epochs: Any, batch_size: Any, log_every_steps: Any,
                     optimizer: Any = None, loss_fn: Any = None, test_data: Any = None,
                     step_schedulers: Any = (), epoch_schedulers: Any = (), monitor: Any = None,
                     checkpoint: Any = None) -> None:
    """Refuse bad arguments of :func:`train` by name, before anything is touched (a bad
    checkpoint policy or test set used to fail after a whole epoch of training)."""
    checks.integer("epochs", epochs, 0)
    checks.integer("batch_size", batch_size, 1)
    if log_every_steps is not None:
        checks.integer("log_every_steps", log_every_steps, 1)
    if optimizer is not None and not (callable(getattr(optimizer, "step", None))
                                      and hasattr(optimizer, "param_groups")):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer (step() and param_groups), "
                        f"got {type(optimizer).__name__}")
    reduction = getattr(loss_fn, "reduction", "mean")
    if reduction not in ("mean", "batchmean"):
        raise ValueError(f"loss_fn.reduction is {reduction!r}: train() records per-sample mean "
                         "losses and averages them over batches, so it needs a mean-reduced "
                         "loss (reduction='mean')")
    for name, pair in (("train_data", train_data), ("test_data", test_data)):
        if pair is None and name == "test_data":
            continue
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2
                and all(isinstance(t, Tensor) for t in pair)):
            raise TypeError(f"{name} must be a pair (X, y) of tensors, got "
                            f"{type(pair).__name__}" + (f" of {len(pair)}" if isinstance(
                                pair, (tuple, list)) else ""))
        X, y = pair
        if len(X) != len(y) or len(y) == 0:
            raise ValueError(f"{name} must be non-empty (X, y) of equal length, got {len(X)} "
                             f"and {len(y)}")
    for name, schedulers in (("step_schedulers", step_schedulers),
                             ("epoch_schedulers", epoch_schedulers)):
        if isinstance(schedulers, (str, bytes)) or not isinstance(schedulers, Sequence):
            raise TypeError(f"{name} must be a list of schedulers, got {type(schedulers).__name__}")
        for i, sched in enumerate(schedulers):
            if not callable(getattr(sched, "step", None)):
                raise TypeError(f"{name}[{i}] must have a step() method (an lr scheduler), got "
                                f"{type(sched).__name__}")
    if monitor is not None and not callable(getattr(monitor, "maybe_probe", None)):
        raise TypeError(f"monitor must be a SpectralMonitor (maybe_probe()), got "
                        f"{type(monitor).__name__}")
    if checkpoint is not None and not isinstance(checkpoint, CheckpointPolicy):
        raise TypeError(f"checkpoint must be a CheckpointPolicy or None, got "
                        f"{type(checkpoint).__name__}" + (": use CheckpointPolicy(directory)"
                                                         if isinstance(checkpoint, (str, Path))
                                                         else ""))


def _progress_bar(epochs: int, done: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=epochs, initial=done, desc="train", unit="epoch", leave=False)


class _Training:
    """One call of :func:`train`: what it trains with, and where it stands (``step``
    optimizer steps, ``epoch`` completed epochs).

    :meth:`resume` continues from a checkpoint, :meth:`train_epoch` runs one epoch
    of steps (:meth:`_step`) and returns its metrics row, :meth:`record_epoch`
    writes that row, lets the monitor probe and writes a checkpoint.
    """

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable,
        train_data: tuple[Tensor, Tensor], *, test_data: tuple[Tensor, Tensor] | None,
        batch_size: int, epochs: int, step_schedulers: Sequence[Any],
        epoch_schedulers: Sequence[Any], monitor: Any, store: Any,
        checkpoint: CheckpointPolicy | None, checkpoint_extra: dict[str, Any] | None,
        log_every_steps: int | None, seed: int, eval_train: bool = False,
    ) -> None:
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.X, self.y = train_data
        self.test_data = test_data
        self.batch_size, self.epochs = batch_size, epochs
        self.step_schedulers, self.epoch_schedulers = step_schedulers, epoch_schedulers
        self.monitor, self.store = monitor, store
        self.checkpoint, self.checkpoint_extra = checkpoint, checkpoint_extra
        self.log_every_steps = log_every_steps
        self.eval_train = bool(eval_train)
        self.shuffle = torch.Generator().manual_seed(seed)
        self.device = model_device(model)  # where each minibatch goes
        self.step, self.epoch = 0, 0
        self.last_batch: tuple[Tensor, Tensor] | None = None  # the monitor's alignment reads it
        self.after_step_seconds = 0.0  # the steps' after-work so far: log rows, step probes

    def probe_seconds(self) -> float:
        """The monitor's probe time so far (0 without a monitor)."""
        return self.monitor.seconds if self.monitor is not None else 0.0

    # -- resume
    def resume(self, resume: str | Path | dict[str, Any]) -> None:
        """Continue from a checkpoint: check that it belongs to the run of every
        writer (before anything changes), restore every state, and drop the rows a
        stopped run wrote past it (they would repeat the steps replayed now)."""
        ckpt = load_checkpoint(resume) if not isinstance(resume, dict) else resume
        writers = {id(w): w for w in (self.store, getattr(self.monitor, "store", None))
                   if w is not None}
        where = f"checkpoint {resume}" if not isinstance(resume, dict) else "the checkpoint"
        for writer in writers.values():  # the same run and history, before anything changes
            read = getattr(writer, "read", None)
            if callable(read):
                check_resume(ckpt, read(), where=where)
        self._restore(ckpt)
        for writer in writers.values():
            rewind = getattr(writer, "rewind", None)
            if callable(rewind):
                rewind(self.step)

    def _restore(self, ckpt: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(ckpt["model_state"])
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ValueError(f"the checkpoint does not fit this model (another architecture?): {first}") from exc
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        sched = ckpt.get("schedulers") or {"step": [], "epoch": []}
        for kind, objs in (("step", self.step_schedulers), ("epoch", self.epoch_schedulers)):
            states = sched.get(kind, [])
            if len(states) != len(objs):
                raise ValueError(f"the checkpoint has {len(states)} {kind} schedulers, this run has {len(objs)}")
            for s, st in zip(objs, states):
                s.load_state_dict(st)
        if self.monitor is not None and ckpt.get("monitor") is not None:
            self.monitor.load_state_dict(ckpt["monitor"])
        rng = ckpt.get("rng") or {}
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "shuffle" in rng:
            self.shuffle.set_state(rng["shuffle"])
        if rng.get("cuda") and torch.cuda.is_available():
            # one state per device visible when it was saved; a machine that sees fewer
            # (another node, CUDA_VISIBLE_DEVICES) restores those it has, not an IndexError
            for index, state in enumerate(rng["cuda"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(state, index)
        self.step, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])

    # -- one epoch
    def train_epoch(self) -> dict[str, float]:
        """One epoch of shuffled minibatch steps; its metrics row (``seconds``: the
        epoch's training time, without the work between its steps: the step-unit probes
        and the ``log_every_steps`` rows, with their writes to the store)."""
        model, X, y = self.model, self.X, self.y
        model.train()
        t0 = time.perf_counter()
        after0 = self.after_step_seconds  # step-unit probes and log rows
        n = len(y)
        perm = torch.randperm(n, generator=self.shuffle)
        sum_loss, sum_correct, seen = 0.0, 0, 0
        classify = not y.is_floating_point()
        for i in range(0, n, self.batch_size):
            idx = perm[i : i + self.batch_size]
            xb, yb = batch_to(X[idx], self.device), batch_to(y[idx], self.device)
            out, loss = self._step(xb, yb)
            bl = float(loss)
            sum_loss += bl * len(yb)
            if classify:
                sum_correct += int((out.argmax(dim=1) == yb).sum())
            seen += len(yb)
            self._after_step(bl, self.epoch + seen / n)
        for s in self.epoch_schedulers:
            s.step()
        self.epoch += 1
        train_seconds = time.perf_counter() - t0 - (self.after_step_seconds - after0)
        row = {
            "step": self.step,
            "epoch": float(self.epoch),
            "train_loss": sum_loss / seen,
            "train_acc": sum_correct / seen if classify else math.nan,
            **current_hparams(self.optimizer),
            "seconds": train_seconds,
        }
        with self.outside_steps():
            if self.test_data is not None:
                row["test_loss"], row["test_acc"] = evaluate(model, self.loss_fn, *self.test_data)
            if self.eval_train:
                row["train_eval_loss"], row["train_eval_acc"] = evaluate(model, self.loss_fn, X, y)
        return row

    def outside_steps(self) -> contextlib.AbstractContextManager[Any]:
        """A block that is not training for the optimizer's clock: its
        ``paused_clock()`` when it has one (:class:`optim.DCAO`, whose probe budget and
        share count the time between its steps), else nothing. The trainer's
        evaluations, monitor probes, logging and checkpoints run inside it."""
        pause = getattr(self.optimizer, "paused_clock", None)
        return pause() if callable(pause) else contextlib.nullcontext()

    def initial_row(self) -> dict[str, float]:
        """The epoch-0 metrics row of ``eval_train``: the model before any step, the
        training set in eval mode and the test set; no ``seconds`` (no training yet)."""
        row = {"step": self.step, "epoch": 0.0, **current_hparams(self.optimizer)}
        row["train_eval_loss"], row["train_eval_acc"] = evaluate(
            self.model, self.loss_fn, self.X, self.y)
        if self.test_data is not None:
            row["test_loss"], row["test_acc"] = evaluate(self.model, self.loss_fn, *self.test_data)
        return row

    def _step(self, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
        """One optimizer step on a batch, then the step schedulers; the batch's
        output and loss (detached)."""
        holder: dict[str, Tensor] = {}
        step, epoch = self.step, self.epoch

        def closure() -> Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            out = self.model(xb)
            loss = self.loss_fn(out, yb)
            holder["out"], holder["loss"] = out.detach(), loss.detach()
            if not bool(torch.isfinite(loss)):
                raise TrainingDiverged(
                    f"the training loss is {float(loss.detach())} at step {step + 1} (epoch {epoch + 1}); "
                    "lower the learning rate. Everything written so far is kept.",
                    step=step + 1, epoch=epoch + 1, loss=float(loss.detach()),
                )
            loss.backward()
            return loss

        try:
            self.optimizer.step(closure)
        except ValueError as exc:  # batch norm's refusal of a batch of one sample
            if len(yb) != 1 or "more than 1 value per channel" not in str(exc):
                raise
            n, other = len(self.y), self.batch_size + 1
            while n % other == 1:
                other += 1
            raise ValueError(
                f"the last batch of epoch {epoch + 1} holds 1 sample ({n} training samples in "
                f"batches of {self.batch_size}), and batch norm cannot normalize one sample in "
                f"training mode; choose a batch_size whose last batch is not 1 sample (e.g. "
                f"{other})") from exc
        self.step += 1
        self.last_batch = (xb, yb)
        for s in self.step_schedulers:
            s.step()
        return holder["out"], holder["loss"]

    def _after_step(self, batch_loss: float, epoch: float) -> None:
        """The step's metrics row (every ``log_every_steps``) and step-unit probe, outside
        the optimizer's clock (:meth:`outside_steps`); a step with neither costs nothing."""
        every, store, monitor = self.log_every_steps, self.store, self.monitor
        log = bool(every) and self.step % every == 0 and store is not None
        probe = monitor is not None and getattr(monitor, "unit", "epoch") == "step"
        if not (log or probe):
            return
        start = time.perf_counter()
        with self.outside_steps():
            if log:
                row = {"step": self.step, "epoch": epoch, "train_loss": batch_loss,
                       **current_hparams(self.optimizer)}
                store.append_metrics(row)
            if probe:
                monitor.maybe_probe(step=self.step, epoch=epoch, optimizer=self.optimizer,
                                    batch=self.last_batch)
        self.after_step_seconds += time.perf_counter() - start

    # -- the end of an epoch
    def record_epoch(self, row: dict[str, float]) -> Path | None:
        """Append the epoch's row, let the monitor probe, and write a checkpoint
        when the policy says so; the checkpoint's path, or None."""
        if self.store is not None:
            self.store.append_metrics(row)
        if self.monitor is not None:
            self.monitor.maybe_probe(step=self.step, epoch=self.epoch, optimizer=self.optimizer,
                                     batch=self.last_batch)
        policy = self.checkpoint
        if policy is None or not (self.epoch % policy.every == 0 or self.epoch == self.epochs):
            return None
        return self._write_checkpoint(policy, row)

    def _write_checkpoint(self, policy: CheckpointPolicy, row: dict[str, float]) -> Path:
        path = policy.path(self.epoch)
        extra = dict(self.checkpoint_extra or {})
        run = run_record(self.store, policy.directory, row) if self.store is not None else None
        if run is not None:
            extra["run"] = run
        save_checkpoint(path, self._snapshot(extra))
        if self.store is not None:
            self.store.add_checkpoint(path)
        return path

    def _snapshot(self, extra: dict[str, Any]) -> dict[str, Any]:
        monitor = self.monitor
        ckpt: dict[str, Any] = {
            "model_spec": None,
            "data_spec": None,
            "optimizer_spec": None,
            "run": None,
            **extra,
            "model_state": self.model.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "schedulers": {
                "step": [s.state_dict() for s in self.step_schedulers],
                "epoch": [s.state_dict() for s in self.epoch_schedulers],
            },
            "monitor": monitor.state_dict() if monitor is not None else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "shuffle": self.shuffle.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "step": int(self.step),
            "epoch": int(self.epoch),
        }
        return ckpt


__all__ = ["CheckpointPolicy", "TrainResult", "TrainingDiverged", "current_hparams", "evaluate", "train"]
