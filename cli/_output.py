"""What a command prints besides its text: strict JSON, whether to chatter, and one
progress line for a probe."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import click


def quiet(ctx: click.Context | None = None) -> bool:
    """Whether ``spectra --quiet`` was given."""
    ctx = ctx or click.get_current_context()
    return bool((ctx.find_root().obj or {}).get("quiet"))


def show_progress(as_json: bool = False) -> bool:
    """Progress bars only for a person at a terminal: not with --quiet, --json, or a pipe."""
    return not (quiet() or as_json) and sys.stderr.isatty()


class ProbeLine:
    """One progress line for all the parts of a probe (eigensolves, trace, SLQ):
    Hessian-vector products done / budget, and the part running.

    Pass it as the ``progress`` of a probe (a bar factory, see
    :mod:`spectra.utils.progress`): each part adds its budget to the line's and, when it
    ends, gives back what it did not spend (an eigensolve that converged early), so the
    budget is that of the parts started so far. ``close()`` clears the line.
    ``bar``: a tqdm-like factory for the one line (tqdm on stderr by default).
    """

    def __init__(self, bar: Any = None) -> None:
        self._make = bar
        self.bar: Any = None

    def __call__(self, *, total: int, desc: str, unit: str = "Hv") -> _ProbePart:
        if self.bar is None:
            make = self._make
            kw: dict[str, Any] = {}
            if make is None:
                import shutil

                from tqdm.auto import tqdm as make

                # a terminal that reports no size (a pty without one) would get nothing
                # from tqdm: fall back to 80 x 24
                size = shutil.get_terminal_size((80, 24))
                kw.update(ncols=min(size.columns, 100), nrows=size.lines)
            self.bar = make(total=total, desc="probe", unit=unit, leave=False, **kw)
        else:
            self.bar.total += total
        self.bar.set_postfix_str(desc, refresh=False)
        self.bar.refresh()
        return _ProbePart(self.bar, total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _ProbePart:
    """One part's view of a :class:`ProbeLine`."""

    def __init__(self, bar: Any, total: int) -> None:
        self.bar, self.total, self.done = bar, total, 0

    def update(self, n: int) -> None:
        self.done += n
        self.bar.update(n)

    def close(self) -> None:  # the next part, or the line's close, redraws
        self.bar.total -= max(self.total - self.done, 0)


def echo_json(obj: Any) -> None:
    """Print strict JSON (NaN/Inf become null)."""
    click.echo(json.dumps(finite_json(obj), indent=2))


def finite_json(obj: Any) -> Any:
    """``obj`` with tuples as lists and non-finite floats as None (JSON's null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def jsonable(obj: Any) -> Any:
    """``obj`` through JSON and back: tuples become lists, other objects their repr."""
    return json.loads(json.dumps(obj, default=repr))
