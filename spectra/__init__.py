"""spectra: the Hessian spectrum of neural networks during training.

Public API:

* operators: :class:`HessianOperator`, :class:`GGNOperator` (batched curvature
  products over a model, a loss and a data set), :class:`DenseOperator`;
* eigensolvers: :func:`eigsh` (thick-restart Lanczos with full
  reorthogonalization) returning :class:`EigenResult`; :func:`power_iteration`
  (a baseline);
* densities: :func:`slq` returning a :class:`SpectralMeasure`;
* traces: :func:`trace` (Hutch++ or Hutchinson) returning a :class:`TraceEstimate`.
"""

from spectra._version import __version__
from spectra.density import SpectralMeasure, slq
from spectra.eigsh import EigenResult, eigsh, power_iteration
from spectra.operators import CurvatureOperator, DenseOperator, GGNOperator, HessianOperator
from spectra.trace import TraceEstimate, trace

__all__ = [
    "__version__",
    "CurvatureOperator",
    "HessianOperator",
    "GGNOperator",
    "DenseOperator",
    "eigsh",
    "EigenResult",
    "power_iteration",
    "slq",
    "SpectralMeasure",
    "trace",
    "TraceEstimate",
]
