"""One adapter per library under test, behind the small interface of `base.Adapter`:
spectra itself, curvlinops (+ scipy), PyHessian (three ways) and hessian-eigenthings.

`ADAPTERS` lists them in the order of the report's rows. Each library is imported only
when its adapter is set up, so this package imports without any of them installed.
"""

from .base import Adapter, Run
from .curvlinops import CurvlinopsAdapter
from .eigenthings import ANCHOR_TREE, EigenthingsAdapter, import_eigenthings
from .pyhessian import PyHessianAdapter, PyHessianLoaderAdapter, PyHessianShimAdapter
from .spectra import SpectraAdapter

ADAPTERS: list[type[Adapter]] = [
    SpectraAdapter,
    CurvlinopsAdapter,
    PyHessianAdapter,
    PyHessianShimAdapter,
    PyHessianLoaderAdapter,
    EigenthingsAdapter,
]

__all__ = [
    "ADAPTERS",
    "ANCHOR_TREE",
    "Adapter",
    "CurvlinopsAdapter",
    "EigenthingsAdapter",
    "PyHessianAdapter",
    "PyHessianLoaderAdapter",
    "PyHessianShimAdapter",
    "Run",
    "SpectraAdapter",
    "import_eigenthings",
]
