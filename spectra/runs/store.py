"""The HDF5 run format: an append-only, crash-safe writer and a read-only reader.

This module gathers the public names; the parts live beside it:

* :mod:`spectra.runs.format`: the file layout (tables, columns, committed rows,
  missing values), ``FORMAT`` and ``FORMAT_VERSION``, the errors;
* :mod:`spectra.runs.writer`: :class:`RunStore` (a file open for writing, locked)
  and :class:`RunWriter` (appends the rows of one run);
* :mod:`spectra.runs.reader`: :func:`read_run`, :func:`read_runs`, :func:`list_runs`
  and what they return (:class:`RunData`, :class:`Metrics`, :class:`Probes`);
  they take no lock and work while a run is being written;
* :mod:`spectra.runs.journal`: crash safety, an undo journal that makes HDF5's
  structural changes all-or-nothing, so SIGKILL at any moment loses no
  committed row.

These modules import h5py and numpy, never torch (a tensor given as a value is
converted through its own ``detach``/``numpy`` methods), and nothing else of
spectra but its version.

Example::

    with RunStore("runs/compare.h5") as store:
        run = store.create_run("sgd", config={"optimizer": "sgd", "lr": 0.1})
        run.append_metrics(step=0, epoch=0.0, train_loss=2.3, lr=0.1)
        run.append_probe(step=0, top_eigenvalues=[12.0, 7.5], trace=80.0)
    data = read_run("runs/compare.h5", "sgd")
    data.metrics.train_loss            # array([2.3])
"""

from spectra.runs.format import (
    FORMAT,
    FORMAT_VERSION,
    METRIC_COLUMNS,
    PROBE_COLUMNS,
    StoreError,
    StoreLockedError,
    StoreWriteError,
    check_run_name,
)
from spectra.runs.reader import Metrics, Probes, RunData, list_runs, read_run, read_runs
from spectra.runs.writer import RunStore, RunWriter

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "METRIC_COLUMNS",
    "PROBE_COLUMNS",
    "Metrics",
    "Probes",
    "RunData",
    "RunStore",
    "RunWriter",
    "StoreError",
    "StoreLockedError",
    "StoreWriteError",
    "check_run_name",
    "list_runs",
    "read_run",
    "read_runs",
]
