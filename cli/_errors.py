"""Errors of the command line: one clear line on stderr and exit code 2."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(click.ClickException):
    """A user-facing error: printed as one line, exit code 2."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class UsageLine(click.UsageError):
    """click's own usage error (an unknown option, a bad choice, a missing file) as one
    line on stderr, exit code 2, as a :class:`CLIError`: click prints three (Usage,
    Try '... --help', Error). The command's --help is named at the end of the line."""

    def show(self, file: Any = None) -> None:
        hint = f" (see {self.ctx.command_path} --help)" if self.ctx is not None else ""
        click.echo(f"error: {self.format_message()}{hint}", err=True)


@contextmanager
def usage_errors_as_lines() -> Iterator[None]:
    """Re-raise the block's :class:`click.UsageError` as a :class:`UsageLine` (the help
    that ``spectra`` alone prints, click's ``NoArgsIsHelpError``, is left as it is)."""
    try:
        yield
    except (UsageLine, click.exceptions.NoArgsIsHelpError):
        raise
    except click.UsageError as exc:
        raise UsageLine(exc.format_message(), exc.ctx) from exc


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, with what the run file kept and how to go on (``hint``,
    one line, printed after ``interrupted:``)."""

    def __init__(self, hint: str) -> None:
        super().__init__(hint)
        self.hint = hint


# Library keyword -> the option that sets it when a command is the caller: messages of
# the library name its arguments (``num_vectors=4``), the user typed options.
CLI_NAMES: dict[str, str] = {
    "top_k": "--top-k",
    "num_vectors": "--density-vectors",
    "num_steps": "--density-steps",
    "trace_matvecs": "--trace-matvecs",
    "num_matvecs": "--trace-matvecs",
    "name": "--run",
    "overwrite": "--overwrite",
    "data_dir": "--data-dir",
    "span": "--span",
    "probe": "--probe",
}
# names too common to replace unless written as an argument (``name=``, ``overwrite=True``)
_ONLY_AS_ARGUMENT = frozenset({"name", "overwrite", "data_dir", "span", "probe"})
_ARGUMENT = re.compile(r"\b(" + "|".join(CLI_NAMES) + r")=([^\s,;)]*)")
_BARE = re.compile(r"(?<![-\w])(" + "|".join(set(CLI_NAMES) - _ONLY_AS_ARGUMENT) + r")\b(?!=)")
# the library's calls its messages suggest, as the command line's options
_CALLS = {"load_dataset('digits', image=True)": "--data-arg image=true"}


def speak_cli(text: str) -> str:
    """``text`` with the library's argument names as the command line's options:
    ``"slq with num_vectors=4; lower num_vectors"`` -> ``"slq with --density-vectors 4;
    lower --density-vectors"``, ``"pass name= to pick one"`` -> ``"pass --run NAME to
    pick one"``, ``"pass overwrite=True"`` -> ``"pass --overwrite"`` (:data:`CLI_NAMES`)."""

    def argument(m: re.Match) -> str:
        option, value = CLI_NAMES[m.group(1)], m.group(2)
        if value in ("True", "False"):
            return option
        return f"{option} {value or m.group(1).upper()}"

    for call, option in _CALLS.items():
        text = text.replace(call, option)
    return _BARE.sub(lambda m: CLI_NAMES[m.group(1)], _ARGUMENT.sub(argument, text))


def option_error(option: str, exc: BaseException) -> CLIError:
    """A library's error on the values of ``option`` as a :class:`CLIError` that starts
    with the option: ``--opt-arg: optimizer 'adam': option betas=0.9 is not 2 values``."""
    return CLIError(f"{option}: {speak_cli(first_line(exc))}")


@contextmanager
def option_errors(option: str) -> Iterator[None]:
    """:func:`option_error` for the ValueErrors and TypeErrors of the block (a missing
    file, a FileNotFoundError, passes through)."""
    try:
        yield
    except FileNotFoundError:
        raise
    except (ValueError, TypeError) as exc:
        raise option_error(option, exc) from exc


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
        except KeyboardInterrupt as exc:
            hint = getattr(exc, "hint", None)
            click.echo(f"interrupted: {hint}" if hint else "interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:
            if debug:
                raise
            raise CLIError(f"{speak_cli(first_line(exc))} ({type(exc).__name__}; rerun with "
                           "--debug for the traceback)") from exc

    return wrapper
