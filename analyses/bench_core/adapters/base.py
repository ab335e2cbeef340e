"""The interface every library is measured through.

An adapter wraps one library's API for the five measurements of the benchmark: one
Hessian-vector product (`hvp`), the top-k eigenvalues and lambda_min as sweeps of
settings (`top_runs`, `lmin_runs`: one `Run` per setting, from the library's default to
tighter ones), an SLQ spectral density (`density`) and a trace estimate (`trace`). It
counts every product it spends in ``self.counter`` (a `Counter`, which also stops a run
at its budget). A measurement the library has no API for raises `Unsupported`, which
becomes an "n/a" cell; anything else an adapter raises becomes a "FAILED" cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..measurement import Counter, Ctx, Unsupported


@dataclass
class Run:
    """One call of an eigen-solver at one setting."""

    label: str
    fn: Callable[[], Any]


class Adapter:
    name = "?"
    hvp_note = ""
    phases: tuple[str, ...] = ("hvp", "top", "lmin", "density", "trace")
    density_how = ""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.model = ctx.model
        self.params = [p for p in ctx.model.parameters() if p.requires_grad]
        self.counter = Counter()

    # one-time construction of the operator
    def setup(self) -> None:
        pass

    def teardown(self) -> None:
        for p in self.params:
            p.grad = None

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        raise Unsupported("no HVP API")

    # each: {method_name: [Run(label, fn -> eigenvalues or float), ...]}
    def top_runs(self) -> dict[str, list[Run]]:
        raise Unsupported("no top-k API")

    def lmin_runs(self) -> dict[str, list[Run]]:
        raise Unsupported("no lambda_min API")

    def density(self) -> Any:
        raise Unsupported("no density API")

    def trace(self) -> float:
        raise Unsupported("no trace API")

    def skip_density(self, ctx: Ctx) -> str:
        return ""
