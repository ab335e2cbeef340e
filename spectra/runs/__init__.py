"""Runs: recording spectra during training.

The HDF5 run format (:mod:`~spectra.runs.store` gathers its public names:
:class:`RunStore`, :func:`read_run`, ...; the parts are :mod:`~spectra.runs.format`,
:mod:`~spectra.runs.writer`, :mod:`~spectra.runs.reader` and
:mod:`~spectra.runs.journal`), checkpoints (:mod:`~spectra.runs.checkpoints`), the
spectral monitor that probes from any training loop (:mod:`~spectra.runs.monitor`)
and the reference trainer (:mod:`~spectra.runs.trainer`). Names are imported on
first use.
"""

from spectra.utils.lazy import lazy_attributes

_NAMES = {
    **dict.fromkeys(("StoreError", "StoreLockedError", "StoreWriteError", "check_run_name"),
                    "spectra.runs.format"),
    **dict.fromkeys(("RunStore", "RunWriter"), "spectra.runs.writer"),
    **dict.fromkeys(("RunData", "Metrics", "Probes", "list_runs", "read_run", "read_runs"),
                    "spectra.runs.reader"),
    **dict.fromkeys(("CheckpointError", "check_resume", "load_checkpoint", "run_file",
                     "run_record", "save_checkpoint"), "spectra.runs.checkpoints"),
    "SpectralMonitor": "spectra.runs.monitor",
    **dict.fromkeys(("CheckpointPolicy", "TrainResult", "TrainingDiverged", "current_hparams",
                     "evaluate", "train"), "spectra.runs.trainer"),
}
__all__ = [
    "CheckpointError",
    "CheckpointPolicy",
    "Metrics",
    "Probes",
    "RunData",
    "RunStore",
    "RunWriter",
    "SpectralMonitor",
    "StoreError",
    "StoreLockedError",
    "StoreWriteError",
    "TrainResult",
    "TrainingDiverged",
    "check_resume",
    "check_run_name",
    "current_hparams",
    "evaluate",
    "list_runs",
    "load_checkpoint",
    "read_run",
    "read_runs",
    "run_file",
    "run_record",
    "save_checkpoint",
    "train",
]
__getattr__, __dir__ = lazy_attributes(__name__, _NAMES)
