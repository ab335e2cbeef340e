"""Algorithms on any symmetric ``(P, P)`` operator: Lanczos with full
reorthogonalization (:mod:`~spectra.linalg.lanczos`), the eigensolver
(:mod:`~spectra.linalg.eigsh`), stochastic Lanczos quadrature and spectral
densities (:mod:`~spectra.linalg.density`), the eigenvalue scales densities are
smoothed and drawn on (:mod:`~spectra.linalg.scales`), trace estimators
(:mod:`~spectra.linalg.trace`), diagonal estimators (:mod:`~spectra.linalg.diagonal`),
and dense matrices as operators (:mod:`~spectra.linalg.dense`).

Nothing here knows about models, losses or files: an operator is anything with
``shape``, ``dtype``, ``device`` and ``matmat``.
"""

from spectra.linalg.dense import DenseOperator, as_operator
from spectra.linalg.density import SpectralMeasure, slq
from spectra.linalg.diagonal import DiagonalEstimate, diagonal
from spectra.linalg.eigsh import EigenResult, eigsh, power_iteration
from spectra.linalg.trace import TraceEstimate, trace

__all__ = [
    "DenseOperator",
    "DiagonalEstimate",
    "EigenResult",
    "SpectralMeasure",
    "TraceEstimate",
    "as_operator",
    "diagonal",
    "eigsh",
    "power_iteration",
    "slq",
    "trace",
]
