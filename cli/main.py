"""Entry point of the ``spectra`` command."""

from __future__ import annotations

import click

from spectra import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="spectra")
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


def _register() -> None:
    from cli.compare import compare
    from cli.info import info
    from cli.landscape import landscape
    from cli.plot import plot
    from cli.probe import probe
    from cli.train import train

    for command in (train, compare, probe, plot, landscape, info):
        main.add_command(command)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
