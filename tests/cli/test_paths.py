"""cli._paths: output paths checked before anything is written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cli._errors import CLIError
from cli._paths import (
    check_checkpoint_dir,
    check_figure_output,
    check_run_file,
    default_checkpoint_dir,
    nearest_existing,
    relative_to_file,
)
from tests.cli.conftest import TINY, invoke


def test_nearest_existing(tmp_path):
    assert nearest_existing(tmp_path / "a" / "b") == tmp_path


def test_check_run_file_accepts_a_new_file_in_a_new_folder(tmp_path):
    assert check_run_file(tmp_path / "new" / "run.hdf5") == tmp_path / "new" / "run.hdf5"


@pytest.mark.parametrize(("name", "message"), [
    ("run.txt", "must end in .h5 or .hdf5"),
    ("file.h5/run.h5", "is a file, not a directory"),
])
def test_check_run_file_refuses(tmp_path, name, message):
    (tmp_path / "file.h5").write_text("")
    with pytest.raises(CLIError, match=message):
        check_run_file(tmp_path / name)


def test_check_run_file_refuses_a_directory(tmp_path):
    (tmp_path / "d.h5").mkdir()
    with pytest.raises(CLIError, match="is a directory"):
        check_run_file(tmp_path / "d.h5")


@pytest.mark.parametrize(("name", "message"), [
    ("fig", "no suffix; expected .png, .pdf or .svg"),
    ("fig.bmp", "suffix '.bmp'"),
    ("f/fig.png", "is a file, not a directory"),
])
def test_check_figure_output_refuses(tmp_path, name, message):
    (tmp_path / "f").write_text("")
    with pytest.raises(CLIError, match=message):
        check_figure_output(str(tmp_path / name))


def test_check_figure_output_accepts_a_new_folder_and_any_case(tmp_path):
    assert check_figure_output(str(tmp_path / "new" / "fig.PDF")) == tmp_path / "new" / "fig.PDF"


def test_check_checkpoint_dir(tmp_path):
    check_checkpoint_dir(tmp_path / "a" / "b")
    (tmp_path / "f").write_text("")
    with pytest.raises(CLIError, match="cannot write checkpoints"):
        check_checkpoint_dir(tmp_path / "f" / "b")


def test_checkpoint_dir_beside_the_run_file_and_stored_relative_to_it(tmp_path):
    out = tmp_path / "runs" / "demo.h5"
    ckpt = default_checkpoint_dir(out, "dcao")
    assert ckpt == tmp_path / "runs" / "demo_ckpt" / "dcao"
    assert relative_to_file(ckpt, out) == str(Path("demo_ckpt") / "dcao")
    assert relative_to_file(Path("/elsewhere"), out) == "/elsewhere"


def test_check_run_file_refuses_a_name_without_room_for_its_journal(tmp_path):
    """A name of 248-255 bytes passed, and `spectra train` built its model before the
    run file failed with "[Errno 36] File name too long" naming a temporary file. The
    journal beside the file (<name>-journal) must fit the folder's limit too."""
    import os

    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    fits = tmp_path / ("r" * (limit - len("-journal") - 3) + ".h5")
    assert check_run_file(fits) == fits
    long = tmp_path / ("r" * (limit - len("-journal") - 2) + ".h5")
    with pytest.raises(CLIError, match=re.escape(
            f"cannot write {long}: its file name is {limit - 7} bytes long, and the name of its "
            f"journal beside it would be {limit + 1}; names in {tmp_path} have at most {limit} "
            f"bytes. Use a file name of at most {limit - 8} bytes")):
        check_run_file(long)


def test_train_refuses_a_run_file_name_without_room_for_its_journal(tmp_path):
    """Through the command: one line naming the file, before anything is written."""
    long = tmp_path / ("r" * (os.pathconf(tmp_path, "PC_NAME_MAX") - 3) + ".h5")
    r = invoke("train", "--epochs", "1", "-o", long, *TINY, ok=False)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.stderr.startswith(f"error: cannot write {long}: its file name is "), r.stderr
    assert os.listdir(tmp_path) == []
