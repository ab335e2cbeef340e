"""Curvature operators: the Hessian, the generalized Gauss-Newton and the Fisher
matrix of a model's loss over a data set, and any operator through a diagonal preconditioner.
The only home of Hessian-vector product code."""

from spectra.operators.base import CurvatureOperator
from spectra.operators.fisher import FisherOperator
from spectra.operators.ggn import GGNOperator
from spectra.operators.hessian import HessianOperator
from spectra.operators.preconditioned import PreconditionedOperator

__all__ = ["CurvatureOperator", "FisherOperator", "GGNOperator", "HessianOperator", "PreconditionedOperator"]
