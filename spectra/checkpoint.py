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
    run               {"file": ..., "name": ...} the HDF5 run it belongs to, or None
    extra             anything JSON-like the caller adds

Loading anything else (a pickle that needs code execution, a bare
``state_dict``, a file of another format) is refused with :class:`CheckpointError`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "spectra-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("model_spec", "model_state", "optimizer_state", "step", "epoch")


class CheckpointError(ValueError):
    """A file that is not a loadable spectra checkpoint, with the reason."""


def save_checkpoint(path: str | os.PathLike[str], checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` atomically (temporary file + rename) and return the path."""
    path = Path(path)
    ckpt = {"format": FORMAT, "format_version": FORMAT_VERSION, **checkpoint}
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint is missing {', '.join(missing)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; refuse anything that is not one."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, expected a .pt file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} is not a spectra checkpoint (torch.load with weights_only=True failed: {first})"
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


__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointError", "load_checkpoint", "save_checkpoint"]
