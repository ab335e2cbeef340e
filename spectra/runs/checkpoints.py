"""Training checkpoints: plain tensors and containers that ``torch.load(weights_only=True)`` reads.

A checkpoint is a dict::

    format            "spectra-checkpoint"
    format_version    1
    model_spec        {"name": ..., "kwargs": {...}}       how to rebuild the model
    data_spec         {"name": ..., ...}                   how to reload the data
    optimizer_spec    {"name": ..., "hyperparameters": {...}}
    model_state       model.state_dict()
    optimizer_state   optimizer.state_dict()
    schedulers        [scheduler.state_dict(), ...]
    monitor           the monitor's counters, or None
    rng               {"torch": ByteTensor, "shuffle": ByteTensor, "cuda": [...]}
    step, epoch       ints: optimizer steps and completed epochs
    run               the HDF5 run it belongs to, or None:
                      {"id": run id, "name": run name,
                       "file": the run file relative to the checkpoint's folder,
                       "row": {"step", "epoch", "train_loss"} of the run's metrics
                              row written just before the checkpoint}
    extra             anything JSON-like the caller adds

Loading anything else (a pickle that needs code execution, a bare
``state_dict``, a file of another format) is refused with :class:`CheckpointError`.
Loading never imports or calls anything a checkpoint names: a model spec that
names a ``package.module:factory`` comes back untrusted
(:class:`spectra.registries.models.ModelSpec`).

Resume identity. A checkpoint continues its own run only: :func:`check_resume`
refuses a run whose id differs (another run, or the run replaced by
``overwrite``) or whose metrics lack the checkpoint's row bit for bit (a row
rewound by an earlier resume from an older checkpoint), so rows of two runs or
two histories are never mixed. :func:`later_checkpoints` finds the files of a run
taken after a checkpoint (those a resume from it leaves to a dropped history).
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

FORMAT = "spectra-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("model_spec", "model_state", "optimizer_state", "step", "epoch")


class CheckpointError(ValueError):
    """A file that is not a loadable spectra checkpoint, with the reason."""


def save_checkpoint(path: str | os.PathLike[str], checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` atomically (temporary file + rename) and return the path.

    The file's bytes reach the disk (``fsync``) before the rename, and the rename before
    this returns (``fsync`` of the folder, where the file system allows it): after a
    power loss the path holds this checkpoint or the one before, never a torn file.

    Raises:
        CheckpointError: the file could not be written (no space left on the
            device, an I/O error); an older file at ``path`` is left as it was.
    """
    path = Path(path)
    ckpt = {"format": FORMAT, "format_version": FORMAT_VERSION, **checkpoint}
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint is missing {', '.join(missing)}")
    buffer = io.BytesIO()  # serialized first, so that a write error is a plain OSError
    torch.save(ckpt, buffer)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(buffer.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is not a checkpoint's mode
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except OSError as exc:
        reason = "no space left on the device" if exc.errno == errno.ENOSPC else (
            exc.strerror or str(exc))
        raise CheckpointError(
            f"cannot write checkpoint {path}: {reason}; earlier checkpoints are intact") from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; a file system that cannot open or sync a
    folder (some network mounts, Windows) is left to its own guarantees."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's file (a zip archive)
_PICKLE_PROTO = b"\x80"  # torch.save's legacy format (a pickle stream)


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; refuse anything that is not one."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, expected a .pt file")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise CheckpointError(f"{path} is not a spectra checkpoint: the file is empty (0 bytes)")
    if head != _ZIP_MAGIC and head[:1] != _PICKLE_PROTO:
        raise CheckpointError(
            f"{path} is not a spectra checkpoint: it is not a file torch.save writes (those "
            f"start with a zip header, this one with {head!r})")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first.split(" Re-running `torch.load` with `weights_only` set to `False`")[0]
        if head == _ZIP_MAGIC and not zipfile.is_zipfile(path):  # a zip cut short
            first = "its zip archive cannot be read: the file is truncated or corrupted"
        raise CheckpointError(
            f"{path} is not a spectra checkpoint (torch.load with weights_only=True failed: "
            f"{first.rstrip('. ')}); only spectra checkpoints are read, never with weights_only=False"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a spectra checkpoint (no format={FORMAT!r} entry; "
            "it may be a bare state_dict or another tool's file)"
        )
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format_version {ckpt.get('format_version')!r}; "
            f"this spectra reads version {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is missing {', '.join(missing)}")
    return ckpt


def run_record(writer: Any, checkpoint_dir: str | os.PathLike[str],
               row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``run`` entry of a checkpoint written beside ``writer``'s run.

    Args:
        writer: a :class:`spectra.runs.store.RunWriter` (anything with ``run_id``,
            ``name`` and ``path``); other writers give None.
        checkpoint_dir: the folder the checkpoint is written to.
        row: the metrics row the run got just before the checkpoint.
    """
    run_id, name, path = (getattr(writer, a, None) for a in ("run_id", "name", "path"))
    if run_id is None or name is None or path is None:
        return None
    file = os.path.relpath(os.path.abspath(path), os.path.abspath(checkpoint_dir))
    rec: dict[str, Any] = {"id": str(run_id), "name": str(name), "file": file}
    if row is not None:
        rec["row"] = {"step": int(row["step"]), "epoch": float(row["epoch"]),
                      "train_loss": float(row["train_loss"])}
    return rec


def run_file(ckpt: Mapping[str, Any], path: str | os.PathLike[str]) -> Path | None:
    """The run file a checkpoint at ``path`` belongs to (its ``run.file``, relative
    to the checkpoint's folder, so a copied run directory resumes the copy)."""
    file = (ckpt.get("run") or {}).get("file")
    if not isinstance(file, str) or not file:
        return None
    if os.path.isabs(file):
        return Path(file)
    return Path(os.path.normpath(Path(path).parent / file))


def check_resume(ckpt: Mapping[str, Any], run: Any, *, where: str = "the checkpoint") -> None:
    """Refuse to continue ``run`` from ``ckpt`` unless it is the same run and history.

    Args:
        ckpt: a loaded checkpoint.
        run: the target run: a :class:`spectra.runs.store.RunData` (``name``, ``path``,
            ``run_id``, ``config``, ``metrics``).
        where: how to name the checkpoint in messages (its path).

    Raises:
        CheckpointError: the checkpoint records no run while the run has rows; the
            run ids differ; the configs differ; or the run has no metrics row equal
            to the one written just before the checkpoint. Nothing is written.
    """
    target = f"run {run.name!r} of {run.path}"
    rec = ckpt.get("run") or {}
    if not rec.get("id"):
        _check_run_is_empty(run, where, target)
        return
    _check_same_id(rec, run, where, target)
    _check_same_config(ckpt.get("config"), run, where, target)
    if rec.get("row") is not None:
        _check_row_in_history(rec["row"], run, where, target)


def _check_run_is_empty(run: Any, where: str, target: str) -> None:
    """A checkpoint without a run identity may only start a run without rows."""
    if len(run.metrics) or len(run.probes):
        raise CheckpointError(
            f"{where} records no run identity (written without a run file, or by an older "
            f"spectra), so it cannot prove it continues {target}, which has rows; resume "
            "it into a new run")


def _check_same_id(rec: Mapping[str, Any], run: Any, where: str, target: str) -> None:
    if run.run_id != rec["id"]:
        why = ("was replaced (--overwrite) after this checkpoint was written"
               if run.name == rec.get("name") else
               f"is another run (the checkpoint belongs to run {rec.get('name')!r})")
        raise CheckpointError(
            f"{where} belongs to run id {rec['id']}, but {target} has id {run.run_id}: the run "
            f"{why}. Nothing was changed")


def _check_same_config(config: Mapping[str, Any] | None, run: Any, where: str, target: str) -> None:
    if config is not None and run.config and _json(config) != _json(run.config):
        keys = sorted(k for k in set(config) | set(run.config)
                      if _json(config.get(k)) != _json(run.config.get(k)))
        raise CheckpointError(
            f"{where} and {target} have the same id but different configs ({', '.join(keys)}); "
            "nothing was changed")


def _check_row_in_history(row: Mapping[str, Any], run: Any, where: str, target: str) -> None:
    """The run still has the metrics row written just before the checkpoint, bit for bit."""
    m = run.metrics
    same = [i for i in range(len(m)) if int(m.step[i]) == row["step"]
            and float(m.epoch[i]) == row["epoch"]
            and _same_float(float(m.train_loss[i]), row["train_loss"])]
    if not same:
        raise CheckpointError(
            f"{where} was taken at step {row['step']} (epoch {row['epoch']:g}, train loss "
            f"{row['train_loss']:.9g}), but {target} has no such metrics row: its rows past an "
            "earlier checkpoint were rewound and rewritten by another resume, so this checkpoint "
            "belongs to a history the run no longer has. Resume from a checkpoint of the "
            "current history (the run's last); nothing was changed")


CHECKPOINT_PREFIX = "checkpoint"
CHECKPOINT_GLOB = f"{CHECKPOINT_PREFIX}-epoch*.pt"  # the files checkpoint_file_name names


def checkpoint_file_name(epoch: int, prefix: str = CHECKPOINT_PREFIX) -> str:
    """The file name of epoch ``epoch``'s checkpoint, ``{prefix}-epoch{E:04d}.pt`` (what
    :class:`spectra.runs.trainer.CheckpointPolicy` writes, :func:`checkpoint_epoch`
    reads and :data:`CHECKPOINT_GLOB` matches for the default prefix)."""
    return f"{prefix}-epoch{int(epoch):04d}.pt"


_EPOCH_NAME = re.compile(r"-epoch(\d+)\.pt$")  # checkpoint_file_name's names, any prefix


def checkpoint_epoch(path: str | os.PathLike[str]) -> int | None:
    """The epoch a checkpoint's file name gives (:func:`checkpoint_file_name`'s
    ``{prefix}-epoch{E:04d}.pt``), without reading the file; ``None`` for any other
    name."""
    match = _EPOCH_NAME.search(Path(path).name)
    return int(match.group(1)) if match else None


# the entries of a checkpoint that hold states (tensors); what is left is its header
_STATES = ("model_state", "optimizer_state", "schedulers", "monitor", "rng")


def later_checkpoint_headers(ckpt: Mapping[str, Any],
                             candidates: Iterable[str | os.PathLike[str]], *,
                             exclude: str | os.PathLike[str] | None = None
                             ) -> list[tuple[Path, dict[str, Any]]]:
    """The files among ``candidates`` that are checkpoints of ``ckpt``'s run (the same
    run id) taken after it (a greater ``step``), in step order, each with its header:
    the loaded checkpoint without its states (model, optimizer, schedulers, monitor,
    RNG), so that each file is read once and the memory held does not grow with the
    model. A header has what :func:`check_resume` and :func:`run_file` read.

    Files whose name gives an epoch (:func:`checkpoint_epoch`) not after ``ckpt``'s
    are passed over unread (a run's steps per epoch are fixed by its config); the
    others are loaded. Files that are missing, not spectra checkpoints, of another
    run or of no run, and ``exclude`` (``ckpt``'s own path) never count. ``ckpt``
    without a run id has no later checkpoints.

    Args:
        ckpt: a loaded checkpoint.
        candidates: paths of ``.pt`` files (a checkpoint folder's, a run's records);
            duplicates count once.
        exclude: a path that never counts.
    """
    run_id = (ckpt.get("run") or {}).get("id")
    if not run_id:
        return []
    step, epoch = int(ckpt["step"]), int(ckpt["epoch"])
    seen = {Path(exclude).resolve()} if exclude is not None else set()
    found: list[tuple[int, Path, dict[str, Any]]] = []
    for candidate in map(Path, candidates):
        key = candidate.resolve()
        named = checkpoint_epoch(candidate)
        if key in seen or not candidate.is_file() or (named is not None and named <= epoch):
            continue
        seen.add(key)
        try:
            other = load_checkpoint(candidate)
            same, later = (other.get("run") or {}).get("id") == run_id, int(other["step"]) > step
        except (CheckpointError, OSError, KeyError, TypeError, ValueError):
            continue  # unreadable, or not a checkpoint this run can own
        if same and later:
            header = {k: v for k, v in other.items() if k not in _STATES}
            found.append((int(other["step"]), candidate, header))
    found.sort(key=lambda item: item[0])
    return [(p, header) for _, p, header in found]


def later_checkpoints(ckpt: Mapping[str, Any], candidates: Iterable[str | os.PathLike[str]],
                      *, exclude: str | os.PathLike[str] | None = None) -> list[Path]:
    """The paths of :func:`later_checkpoint_headers`: the checkpoints of ``ckpt``'s run
    among ``candidates`` taken after it, in step order."""
    return [p for p, _ in later_checkpoint_headers(ckpt, candidates, exclude=exclude)]


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=repr)


def _same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointError", "check_resume", "checkpoint_epoch",
           "later_checkpoint_headers", "later_checkpoints", "load_checkpoint", "run_file",
           "run_record", "save_checkpoint"]
