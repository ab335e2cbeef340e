"""Curvature quantities built on the operators and solvers: stability thresholds of
optimizers (:mod:`~spectra.curvature.stability`), the optimizer's diagonal
preconditioner (:mod:`~spectra.curvature.preconditioner`), gradient alignment with the
top eigenspace (:mod:`~spectra.curvature.alignment`) and per-block spectra
(:mod:`~spectra.curvature.blocks`)."""

from spectra.curvature.alignment import Alignment, gradient_alignment
from spectra.curvature.blocks import BlockSpectra, BlockSpectrum, block_spectra, parameter_blocks
from spectra.curvature.preconditioner import preconditioner
from spectra.curvature.stability import KINDS, StabilityThreshold, stability_threshold

__all__ = [
    "KINDS",
    "Alignment",
    "BlockSpectra",
    "BlockSpectrum",
    "StabilityThreshold",
    "block_spectra",
    "gradient_alignment",
    "parameter_blocks",
    "preconditioner",
    "stability_threshold",
]
