"""spectra: the Hessian spectrum of neural networks during training.

Public API:

* operators: :class:`HessianOperator`, :class:`GGNOperator` (batched curvature
  products over a model, a loss and a data set), :class:`DenseOperator`;
* eigensolvers: :func:`eigsh` (thick-restart Lanczos with full
  reorthogonalization) returning :class:`EigenResult`; :func:`power_iteration`
  (a baseline);
* densities: :func:`slq` returning a :class:`SpectralMeasure`;
* traces: :func:`trace` (Hutch++ or Hutchinson) returning a :class:`TraceEstimate`;
* one probe of all of the above: :func:`probe` with :class:`ProbeSettings`;
* runs: :class:`SpectralMonitor` (probes from any training loop), :func:`train`
  (the reference trainer) with :class:`CheckpointPolicy`, the HDF5 store
  (:class:`RunStore`, :func:`read_run`, :func:`list_runs`);
* registries: :func:`build_model`, :func:`load_dataset`.

Plots live in :mod:`spectra.plots` (imported on demand: matplotlib is heavy).
"""

from spectra._version import __version__
from spectra.data import load_dataset
from spectra.density import SpectralMeasure, slq
from spectra.eigsh import EigenResult, eigsh, power_iteration
from spectra.models import build_model
from spectra.monitor import SpectralMonitor
from spectra.operators import CurvatureOperator, DenseOperator, GGNOperator, HessianOperator
from spectra.probe import ProbeResult, ProbeSettings, probe
from spectra.store import RunStore, list_runs, read_run
from spectra.trace import TraceEstimate, trace
from spectra.train import CheckpointPolicy, train

__all__ = [
    "CheckpointPolicy",
    "CurvatureOperator",
    "DenseOperator",
    "EigenResult",
    "GGNOperator",
    "HessianOperator",
    "ProbeResult",
    "ProbeSettings",
    "RunStore",
    "SpectralMeasure",
    "SpectralMonitor",
    "TraceEstimate",
    "__version__",
    "build_model",
    "eigsh",
    "list_runs",
    "load_dataset",
    "power_iteration",
    "probe",
    "read_run",
    "slq",
    "trace",
    "train",
]
