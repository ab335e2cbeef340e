"""spectra: the Hessian spectrum of neural networks during training.

The root exports the math, grouped by topic:

* operators: :class:`HessianOperator`, :class:`GGNOperator`, :class:`FisherOperator`
  (batched curvature products over a model, a loss and a data set),
  :class:`PreconditionedOperator`
  (any of them through a diagonal preconditioner), :class:`DenseOperator`;
* eigensolvers: :func:`eigsh` (thick-restart Lanczos with full
  reorthogonalization) returning :class:`EigenResult`; :func:`power_iteration`
  (a baseline);
* densities: :func:`slq` returning a :class:`SpectralMeasure`;
* traces: :func:`trace` (XTrace, XNysTrace, Hutch++ or Hutchinson) returning a
  :class:`TraceEstimate`; diagonals: :func:`diagonal` (Hutchinson or XDiag) returning a
  :class:`DiagonalEstimate`;
* one probe of a model, all of the above: :func:`probe` with :class:`ProbeSettings`;
* curvature quantities: :func:`stability_threshold` returning a :class:`StabilityThreshold`;
  :func:`gradient_alignment` (an :class:`Alignment`), :func:`block_spectra` (per-layer
  spectra, a :class:`BlockSpectra`);
  :func:`preconditioner`, an adaptive optimizer's diagonal preconditioner.

Runs (:mod:`spectra.runs`: :class:`SpectralMonitor`, :func:`train`,
:class:`CheckpointPolicy`, :class:`RunStore`, :func:`read_run`, :func:`list_runs`),
registries (:mod:`spectra.registries`: :func:`build_model`, :func:`load_dataset`)
and plots (:mod:`spectra.plots`) are subpackages; their names are also reachable
here, imported on first use, so ``import spectra`` loads neither h5py nor matplotlib.
"""

from spectra._version import __version__

# curvature quantities
from spectra.curvature.alignment import Alignment, gradient_alignment
from spectra.curvature.blocks import BlockSpectra, block_spectra
from spectra.curvature.preconditioner import preconditioner
from spectra.curvature.stability import StabilityThreshold, stability_threshold

# linear operators
from spectra.linalg.dense import DenseOperator

# spectra of an operator
from spectra.linalg.density import SpectralMeasure, slq
from spectra.linalg.diagonal import DiagonalEstimate, diagonal
from spectra.linalg.eigsh import EigenResult, eigsh, power_iteration
from spectra.linalg.trace import TraceEstimate, trace

# curvature operators of a model
from spectra.operators import (
    CurvatureOperator,
    FisherOperator,
    GGNOperator,
    HessianOperator,
    PreconditionedOperator,
)
from spectra.operators.sampling import SubsampleSpread, subsample, top_eigenvalue_spread

# one probe of a model
from spectra.probe import ProbeResult, ProbeSettings, probe
from spectra.utils.lazy import lazy_attributes
from spectra.utils.modules import KeywordInputs

# runs and registries, imported on first use
_LAZY = {
    **dict.fromkeys(("RunStore", "list_runs", "read_run"), "spectra.runs.store"),
    "SpectralMonitor": "spectra.runs.monitor",
    **dict.fromkeys(("CheckpointPolicy", "train"), "spectra.runs.trainer"),
    "build_model": "spectra.registries.models",
    "load_dataset": "spectra.registries.data",
}
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = [
    "Alignment",
    "BlockSpectra",
    "CheckpointPolicy",
    "CurvatureOperator",
    "DenseOperator",
    "DiagonalEstimate",
    "EigenResult",
    "FisherOperator",
    "GGNOperator",
    "HessianOperator",
    "KeywordInputs",
    "PreconditionedOperator",
    "ProbeResult",
    "ProbeSettings",
    "RunStore",
    "SpectralMeasure",
    "SpectralMonitor",
    "StabilityThreshold",
    "SubsampleSpread",
    "TraceEstimate",
    "__version__",
    "block_spectra",
    "build_model",
    "diagonal",
    "eigsh",
    "gradient_alignment",
    "list_runs",
    "load_dataset",
    "power_iteration",
    "preconditioner",
    "probe",
    "read_run",
    "slq",
    "stability_threshold",
    "subsample",
    "top_eigenvalue_spread",
    "trace",
    "train",
]
