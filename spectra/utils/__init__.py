"""Small helpers shared by every layer of spectra (and by optim and cli): model modes
and random state (:mod:`~spectra.utils.modes`), trainable parameters
(:mod:`~spectra.utils.params`), tensor layout
(:mod:`~spectra.utils.tensors`), and argument checks (:mod:`~spectra.utils.checks`)."""

from spectra.utils.modes import eval_mode, ieee_float32, math_attention, preserved_rng
from spectra.utils.params import num_parameters, trainable_parameters
from spectra.utils.tensors import standard_strides

__all__ = ["eval_mode", "ieee_float32", "math_attention", "num_parameters", "preserved_rng",
           "standard_strides", "trainable_parameters"]
