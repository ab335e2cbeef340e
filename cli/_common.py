"""Shared CLI plumbing: clean one-line errors with exit code 2, output helpers."""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from typing import Any

import click

EXIT_USAGE = 2

# --seed: torch.manual_seed takes a 64-bit integer.
SEED = click.IntRange(0, 2**63 - 1)
# --tol: a relative residual, so 0 < tol < 1 (inf and nan are refused too).
TOL = click.FloatRange(0, 1, min_open=True, max_open=True)


class CLIError(click.ClickException):
    """A user-facing error: printed as one line, exit code 2."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn any exception into one clear line on stderr and exit code 2.

    With ``--debug`` on the group, the traceback is shown instead.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool((ctx.find_root().obj or {}).get("debug"))
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if debug:
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CLIError(f"{msg} ({type(exc).__name__}; rerun with --debug for the traceback)") from exc

    return wrapper


def quiet(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context()
    return bool((ctx.find_root().obj or {}).get("quiet"))


def show_progress(as_json: bool = False) -> bool:
    """Progress bars only for a person at a terminal: not with --quiet, --json, or a pipe."""
    return not (quiet() or as_json) and sys.stderr.isatty()


def echo_json(obj: Any) -> None:
    """Print strict JSON (NaN/Inf become null)."""
    click.echo(json.dumps(_clean(obj), indent=2))


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def fmt(x: float, width: int = 10) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-".rjust(width)
    return f"{x:{width}.4g}"
