"""cli.main: a light start-up (no torch for --version and --help), commands imported on
first use, and a help listing that matches the commands' own short help."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import COMMANDS, package_version, short_help
from tests.cli.conftest import invoke

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "numpy", "h5py", "matplotlib", "spectra", "optim")


def _loaded_after(*args: str) -> list[str]:
    """Which of ``HEAVY`` and the command modules a fresh interpreter has imported after
    ``spectra ARGS``."""
    watch = HEAVY + tuple(module for module, _, _ in COMMANDS.values())
    code = ("import sys\nfrom cli.main import main\n"
            f"try:\n    main({list(args)!r})\nexcept SystemExit:\n    pass\n"
            f"print('loaded:' + ','.join(m for m in {watch!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    return [m for m in out[-1].removeprefix("loaded:").split(",") if m]


@pytest.mark.parametrize("arg", ["--version", "--help"])
def test_version_and_help_import_neither_torch_nor_a_command(arg):
    assert _loaded_after(arg) == []


def test_a_command_imports_only_its_own_module():
    loaded = _loaded_after("probe", "--help")
    assert "cli.probe" in loaded
    assert not {"cli.train", "cli.compare", "cli.plot", "cli.landscape", "h5py",
                "matplotlib"} & set(loaded)


def test_version_is_the_package_version():
    from spectra import __version__

    assert package_version() == __version__
    assert invoke("--version").stdout.strip() == f"spectra, version {__version__}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_static_short_help_is_the_commands_own(name):
    module, attr, short = COMMANDS[name]
    command = getattr(importlib.import_module(module), attr)
    assert command.name == name
    assert short_help(short, 1000) == command.get_short_help_str(1000)


def test_help_lists_every_command_and_unknown_ones_are_refused():
    text = invoke("--help").stdout
    for name in COMMANDS:
        assert f"\n  {name} " in text
    result = invoke("trian", ok=False)
    assert result.exit_code == 2 and "No such command 'trian'" in result.stderr


def _run_in_fresh_process(args: list[str], world_size: str | None, tmp_path: Path):
    """``cli.main.run(args)`` in a fresh interpreter (``WORLD_SIZE`` set or not) that has
    registered an exit handler (it writes a file) and holds an object whose ``__del__``
    says so when the interpreter's teardown collects it."""
    import os

    marker = tmp_path / "handler-ran"
    code = ("import atexit, sys\n"
            f"atexit.register(lambda: open({str(marker)!r}, 'w').write('ran'))\n"
            "class Torn:\n"
            "    def __del__(self):\n"
            "        sys.stderr.write('torn down\\n')\n"
            "held = Torn()\n"
            "from cli.main import run\n"
            f"run({args!r})\n")
    env = {k: v for k, v in os.environ.items() if k != "WORLD_SIZE"}
    if world_size is not None:
        env["WORLD_SIZE"] = world_size
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, check=False, timeout=120)
    return p, marker.exists()


@pytest.mark.parametrize("world_size", [None, "1", "2"])
def test_run_keeps_exit_status_output_and_exit_handlers(world_size, tmp_path):
    ok, ran = _run_in_fresh_process(["--version"], world_size, tmp_path)
    assert (ok.returncode, ran) == (0, True)
    assert ok.stdout.startswith("spectra, version ")
    (tmp_path / "handler-ran").unlink()
    bad, ran = _run_in_fresh_process(["--no-such-option"], world_size, tmp_path)
    assert (bad.returncode, ran) == (2, True)
    assert "No such option '--no-such-option'" in bad.stderr
    # one of several torchrun processes skips the interpreter's teardown, where gloo's
    # threads can abort it; a lone process exits as Python does
    torn = "torn down" in ok.stderr
    assert torn == (world_size != "2")


@pytest.mark.parametrize("args, line", [
    (["export", "nonexist.h5", "--csv", "x"],
     ("error: Invalid value for 'RUN_FILE': File 'nonexist.h5' does not exist. "
      "(see main export --help)")),
    (["train", "--device", "tpu"],
     ("error: Invalid value for '--device': 'tpu' is not a device: expected auto, cpu, "
      "cuda or cuda:N (see main train --help)")),
    (["info", "--jsn"],
     "error: No such option '--jsn'. Did you mean '--json'? (see main info --help)"),
    (["plot", "curvs"],
     "error: No such command 'curvs'. Did you mean 'curves'? (see main plot --help)"),
    (["--bogus"], "error: No such option '--bogus'. (see main --help)"),
])
def test_click_usage_errors_are_one_line(args, line):
    """The README says errors print one line: click's own usage errors printed three
    (Usage: ..., Try '... --help' for help., Error: ...)."""
    r = invoke(*args, ok=False)
    assert r.exit_code == 2
    assert r.stderr.strip() == line and r.stdout == ""


def test_a_group_without_a_command_still_prints_its_help():
    for args in ([], ["plot"]):
        r = invoke(*args, ok=False)
        assert r.exit_code == 2 and "Usage:" in r.stderr and "Commands:" in r.stderr
