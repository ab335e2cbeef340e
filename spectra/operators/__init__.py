"""Curvature operators: the Hessian and the generalized Gauss-Newton matrix of a
model's loss over a data set, and adapters for dense matrices and callbacks."""

from spectra.operators.base import CurvatureOperator
from spectra.operators.dense import DenseOperator, as_operator
from spectra.operators.ggn import GGNOperator
from spectra.operators.hessian import HessianOperator

__all__ = ["CurvatureOperator", "DenseOperator", "GGNOperator", "HessianOperator", "as_operator"]
