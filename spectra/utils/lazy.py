"""Package attributes imported on first use (PEP 562), so that importing a package
does not import its heavy parts (h5py, matplotlib) until they are asked for."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any],
                                                                     Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` that import ``names[attr]`` (a module
    path) when ``attr`` is first read and return its attribute of that name.

    Example::

        __getattr__, __dir__ = lazy_attributes(__name__, {"RunStore": "spectra.runs.store"})
    """

    def __getattr__(attr: str) -> Any:
        module = names.get(attr)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        value = getattr(importlib.import_module(module), attr)
        setattr(importlib.import_module(package), attr, value)  # later reads skip this
        return value

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(names))

    return __getattr__, __dir__
