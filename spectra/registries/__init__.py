"""Models and data sets by name: :func:`build_model` / :class:`ModelSpec`
(:mod:`~spectra.registries.models`) and :func:`load_dataset` / :class:`DataSpec`
(:mod:`~spectra.registries.data`)."""

from spectra.registries.data import DataError, Dataset, DataSpec, available_datasets, load_dataset
from spectra.registries.models import ModelSpec, UntrustedModelError, available_models, build_model

__all__ = [
    "DataError",
    "DataSpec",
    "Dataset",
    "ModelSpec",
    "UntrustedModelError",
    "available_datasets",
    "available_models",
    "build_model",
    "load_dataset",
]
