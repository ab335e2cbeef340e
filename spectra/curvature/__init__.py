"""Curvature quantities built on the operators and solvers: stability thresholds of
optimizers (:mod:`~spectra.curvature.stability`), the optimizer's diagonal
preconditioner (:mod:`~spectra.curvature.preconditioner`), gradient alignment with the
top eigenspace and per-block spectra."""

from spectra.curvature.preconditioner import preconditioner
from spectra.curvature.stability import KINDS, StabilityThreshold, stability_threshold

__all__ = ["KINDS", "StabilityThreshold", "preconditioner", "stability_threshold"]
