"""Entry point of the ``spectra`` command.

Start-up is kept light: ``spectra --version`` and ``spectra --help`` import click and
nothing of torch. Each command's module is imported only when that command runs
(:class:`LazyGroup`); the help listing takes its one-line descriptions from
:data:`COMMANDS` (``tests/cli/test_main.py`` checks them against the commands' own).
The version is read from ``spectra/_version.py`` without running
``spectra/__init__.py``, which imports torch.
"""

from __future__ import annotations

import ast
import atexit
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import click

# name -> (module, attribute, the command's short help: its docstring's first sentence)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("cli.train", "train", "Train a model while recording its Hessian spectrum."),
    "compare": ("cli.compare", "compare",
                "Train several optimizers on the same model, data and seed; one file."),
    "probe": ("cli.probe", "probe", "Probe the Hessian spectrum of a model on a data set."),
    "plot": ("cli.plot", "plot", ("Figures of run files: density evolution, density, "
                                  "sharpness, curves, hyperparameters.")),
    "landscape": ("cli.landscape", "landscape",
                  ("The loss around a checkpoint's weights, along its Hessian eigenvectors "
                   "(the top, the most negative, or both as a plane) or random "
                   "filter-normalized directions, on a 1-D or 2-D grid.")),
    "info": ("cli.info", "info", ("Show versions, threads, devices and registries (or, with "
                                  "RUN_FILE, a run file's contents).")),
    "export": ("cli.export", "export",
               "Write a run file's metrics, probe scalars and densities as CSV files."),
}


def package_version() -> str:
    """``__version__`` of ``spectra/_version.py`` (its one home), read from the file:
    ``import spectra._version`` would run ``spectra/__init__.py`` and import torch."""
    spec = importlib.util.find_spec("spectra")  # a top-level name: finds, imports nothing
    if spec is None or not spec.submodule_search_locations:
        return "unknown"
    path = Path(next(iter(spec.submodule_search_locations))) / "_version.py"
    for node in ast.parse(path.read_text()).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], "id", None) == "__version__"):
            return str(ast.literal_eval(node.value))
    return "unknown"


def short_help(text: str, limit: int = 45) -> str:
    """``text`` cut to ``limit`` characters at a word, as click shortens a command's help."""
    return click.Command(None, help=text).get_short_help_str(limit)


class LazyGroup(click.Group):
    """A click group whose subcommands (:data:`COMMANDS`) are imported on first use,
    and whose usage errors, and its subcommands', are one line
    (:class:`cli._errors.UsageLine`)."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        from cli._errors import usage_errors_as_lines

        with usage_errors_as_lines():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        from cli._errors import usage_errors_as_lines

        with usage_errors_as_lines():
            return super().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attr, _ = COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from :data:`COMMANDS`, without importing a command."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            if name in COMMANDS:
                rows.append((name, short_help(COMMANDS[name][2], limit)))
            else:
                rows.append((name, self.commands[name].get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_version(), prog_name="spectra")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or chatter.")
@click.option("--threads", type=click.IntRange(min=1), default=None, metavar="N",
              help="Torch intra-op threads (default: torch's choice). 1 is often fastest "
                   "for small models and on a busy machine.")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool, threads: int | None) -> None:
    """Hessian spectra of neural networks during training.

    Probe a model's curvature, train while recording it, compare optimizers,
    and plot how the spectrum evolves.
    """
    ctx.obj = {"debug": debug, "quiet": quiet}
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def run(args: list[str] | None = None) -> None:
    """The ``spectra`` command (and ``python -m cli.main``): :func:`main`, then, in a
    process of a ``torchrun`` job (``WORLD_SIZE`` above 1), an exit that runs Python's
    exit handlers and flushes the output but skips the interpreter's C-level teardown.

    That teardown can abort a rank after the command has finished: a C++ object of the
    process group's (most likely a gloo thread still joinable) is destroyed at exit, and
    ``std::terminate`` ("terminate called without an active exception", SIGABRT, no
    Python frame on the aborting thread) turns a finished job into a failed one: 2 of 80
    runs of ``tests/cli/test_torchrun.py``'s probe, two at a time, with the normal exit,
    0 of 80 through this function (``python -m analyses.torchrun_exit [--plain-exit]``).
    By then the command has destroyed its process group
    (:func:`spectra.utils.distributed.processes_from_env`) and closed its files; the exit
    handlers run here anyway, so a file a handler would close is not lost."""
    try:
        main(args=args)
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    if not _in_torchrun():
        sys.exit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # what Python runs at a normal exit, before its teardown
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more to say
            pass
    os._exit(code)


def _in_torchrun() -> bool:
    """Whether this process is one of several of a ``torchrun`` job."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


if __name__ == "__main__":  # pragma: no cover
    run()
