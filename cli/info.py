"""``spectra info``: versions, threads, devices, and what is available."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import platform
import sys

import click

from cli._errors import handle_errors
from cli._output import echo_json
from cli._run_file import describe_run_file

_ANCHORS = {
    "pyhessian": "pyhessian",
    "curvlinops": "curvlinops-for-pytorch",
    "hessian_eigenthings": "hessian-eigenthings",
}


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def environment() -> dict:
    """Versions, threads, devices, registries and optional anchors, as a dict."""
    import torch

    import spectra

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    anchors = {}
    for mod, dist in _ANCHORS.items():
        v = _version(dist)
        if v is None:
            try:
                importlib.import_module(mod)
                v = "importable"
            except Exception:  # noqa: BLE001
                v = None
        anchors[mod] = v
    out = {
        "spectra": spectra.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "h5py": _version("h5py"),
        "matplotlib": _version("matplotlib"),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "devices": devices,
        "distributed": torch.distributed.is_available(),
        "anchors": anchors,
    }
    out.update(_registries())
    return out


def _registries() -> dict:
    reg: dict = {}
    try:
        from spectra.registries.models import available_models

        reg["models"] = sorted(available_models())
    except Exception as exc:  # noqa: BLE001 - info must report, not crash
        reg["models"] = f"unavailable ({type(exc).__name__}: {exc})"
    try:
        from spectra.registries.data import available_datasets

        reg["datasets"] = sorted(available_datasets())
    except Exception as exc:  # noqa: BLE001 - info must report, not crash
        reg["datasets"] = f"unavailable ({type(exc).__name__}: {exc})"
    try:
        import optim

        reg["optimizers"] = sorted(optim.available())
    except Exception as exc:  # noqa: BLE001 - info must report, not crash
        reg["optimizers"] = f"unavailable ({type(exc).__name__}: {exc})"
    return reg


@click.command()
@click.argument("run_file", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def info(run_file: str | None, as_json: bool) -> None:
    """Show versions, threads, devices and registries (or, with RUN_FILE, a run file's contents)."""
    if run_file is not None:
        describe_run_file(run_file, as_json)
        return
    env = environment()
    if as_json:
        echo_json(env)
        return
    for key, val in env.items():
        if isinstance(val, dict):
            val = ", ".join(f"{k} {v or '(not installed)'}" for k, v in val.items())
        elif isinstance(val, list):
            val = ", ".join(map(str, val))
        click.echo(f"{key:>14}: {val}")
