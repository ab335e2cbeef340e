"""analyses.torchrun_exit: the counting loop (no launch); the launches themselves are
tests/cli/test_torchrun.py's command."""

from __future__ import annotations

import pytest

from analyses import torchrun_exit


@pytest.mark.parametrize("extra", [[], ["--plain-exit"]])
def test_no_runs_report_none_failed(extra, capsys):
    with pytest.raises(SystemExit) as exc:
        torchrun_exit.main(["--runs", "0", "--jobs", "2", *extra])
    assert exc.value.code == 0
    how = "the interpreter's normal exit" if extra else "cli.main.run"
    assert capsys.readouterr().out.strip() == f"0 of 0 runs failed ({how}, 2 at a time)"


def test_it_counts_the_probe_of_the_torchrun_test():
    from tests.cli import test_torchrun

    assert torchrun_exit.ARGS == test_torchrun.ARGS
