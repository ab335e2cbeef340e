"""Checkpoints end to end: loading one never runs code it names, and a resume
continues its own run and history or changes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from spectra.runs.checkpoints import load_checkpoint, save_checkpoint
from tests.cli.conftest import TINY, assert_same_rows, invoke, rows_of

FAST = ("--probe-every", "0", *TINY)


def _fails(*args, match: str) -> str:
    r = invoke(*args, ok=False)
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert match in r.stderr, r.stderr
    return r.stderr


# --------------------------------------------------------------------------- security


@pytest.fixture
def hostile(trained, tmp_path) -> tuple[Path, Path]:
    """A copy of the trained run whose last checkpoint names ``os:system`` as its
    model factory, with a command that would create a file."""
    d = tmp_path / "run"
    shutil.copytree(trained["dir"], d)
    ckpt = d / "demo_ckpt" / "dcao" / "checkpoint-epoch0002.pt"
    marker = tmp_path / "pwned"
    c = load_checkpoint(ckpt)
    spec = {**c["model_spec"], "name": "os:system", "kwargs": {"command": f"touch {marker}"}}
    c["model_spec"] = spec
    c["config"] = {**c["config"], "model": spec}
    save_checkpoint(ckpt, {k: v for k, v in c.items() if k not in ("format", "format_version")})
    assert load_checkpoint(ckpt)["model_spec"]["name"] == "os:system"  # weights_only reads it
    return ckpt, marker


@pytest.mark.parametrize("command", [
    ("probe", "--checkpoint"),
    ("landscape", "--json", "--checkpoint"),
    ("train", "--epochs", "3", "--resume"),
])
def test_a_checkpoint_that_names_code_is_refused(hostile, command):
    ckpt, marker = hostile
    before = rows_of(ckpt.parent.parent.parent / "demo.h5")
    err = _fails(*command, ckpt, match="never imports or calls code it names")
    assert "--model os:system" in err  # how to allow it explicitly
    assert not marker.exists()
    assert_same_rows(before, rows_of(ckpt.parent.parent.parent / "demo.h5"))


# --------------------------------------------------------------------------- resume identity


def test_resume_refuses_a_run_of_another_model(tmp_path):
    out = tmp_path / "two.h5"
    invoke("train", "--optimizer", "sgd", "--epochs", "2", "-o", out, *FAST)
    invoke("train", "--optimizer", "sgd", "--run", "other", "--epochs", "2", "-o", out,
           *FAST, "--model-arg", "widths=8,8")
    before = rows_of(out)
    ckpt = tmp_path / "two_ckpt" / "sgd" / "checkpoint-epoch0001.pt"
    _fails("train", "--resume", ckpt, "--run", "other", "--epochs", "3",
           match="is another run (the checkpoint belongs to run 'sgd')")
    assert_same_rows(before, rows_of(out))


def test_resume_refuses_a_checkpoint_of_the_replaced_run(tmp_path):
    out = tmp_path / "o.h5"
    invoke("train", "--optimizer", "sgd", "--epochs", "2", "-o", out, *FAST)
    ckpt = tmp_path / "o_ckpt" / "sgd" / "checkpoint-epoch0002.pt"
    old = load_checkpoint(ckpt)
    # the replacement runs one epoch: the old epoch-2 checkpoint stays on disk
    invoke("train", "--optimizer", "sgd", "--epochs", "1", "-o", out, "--overwrite",
           "--opt-arg", "lr=0.05", *FAST)
    assert load_checkpoint(ckpt)["run"]["id"] == old["run"]["id"]
    before = rows_of(out)
    _fails("train", "--resume", ckpt, "--epochs", "3", match="was replaced (--overwrite)")
    assert_same_rows(before, rows_of(out))


def test_resume_of_a_copied_run_directory_writes_the_copy(tmp_path):
    a = tmp_path / "a"
    invoke("train", "--optimizer", "sgd", "--epochs", "2", "-o", a / "r.h5", *FAST)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    original = rows_of(a / "r.h5")
    r = invoke("train", "--resume", b / "r_ckpt" / "sgd" / "checkpoint-epoch0002.pt",
               "--epochs", "3")
    assert str(b / "r.h5") in r.stdout
    assert_same_rows(original, rows_of(a / "r.h5"))  # the original is untouched
    assert len(rows_of(b / "r.h5")["sgd"]["metrics.step"]) == 3
