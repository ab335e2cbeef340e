"""What a command prints besides its text: strict JSON, and whether to chatter."""

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
