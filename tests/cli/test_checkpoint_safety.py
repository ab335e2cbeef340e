"""Checkpoints end to end: loading one never runs code it names, and a resume
continues its own run and history or changes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli._paths import shown_path
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
    written = tmp_path / "o_ckpt" / "sgd" / "checkpoint-epoch0002.pt"
    old = load_checkpoint(written)
    # a copy kept beside the others (--overwrite removes the replaced run's own files)
    ckpt = written.with_name("kept-epoch0002.pt")
    shutil.copy(written, ckpt)
    invoke("train", "--optimizer", "sgd", "--epochs", "1", "-o", out, "--overwrite",
           "--opt-arg", "lr=0.05", *FAST)
    assert not written.exists() and load_checkpoint(ckpt)["run"]["id"] == old["run"]["id"]
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


# --------------------------------------------------------------------------- dropped epochs


@pytest.fixture
def went_on(tmp_path) -> dict:
    """Run 'sgd' of r.h5 trained 3 epochs (checkpoints 1-3 in r_ckpt/sgd/), beside, in
    that folder, run 'other''s epoch-4 checkpoint, a file named like a checkpoint that
    is none, and a note."""
    out, folder = tmp_path / "r.h5", tmp_path / "r_ckpt" / "sgd"
    invoke("train", "--optimizer", "sgd", "--epochs", "3", "-o", out, *FAST)
    invoke("train", "--optimizer", "sgd", "--run", "other", "--epochs", "4", "-o", out,
           "--checkpoint-dir", tmp_path / "oc", *FAST)
    shutil.copy(tmp_path / "oc" / "checkpoint-epoch0004.pt", folder / "checkpoint-epoch0004.pt")
    (folder / "checkpoint-epoch0009.pt").write_bytes(b"not a checkpoint")
    (folder / "notes.txt").write_text("mine")
    return {"out": out, "folder": folder, "other": sorted((tmp_path / "oc").iterdir()),
            "epoch3": (folder / "checkpoint-epoch0003.pt").read_bytes()}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_resume_from_an_older_checkpoint_is_refused_and_removes_nothing(went_on):
    before, files = rows_of(went_on["out"]), _files(went_on["folder"])
    _fails("train", "--resume", went_on["folder"] / "checkpoint-epoch0001.pt", "--epochs", "2",
           match="is not the last checkpoint of run 'sgd'")
    assert_same_rows(before, rows_of(went_on["out"]))
    assert _files(went_on["folder"]) == files


def test_resume_overwrite_removes_the_runs_later_checkpoints_only(went_on):
    """--overwrite from epoch 1 to 2 epochs (fewer than the 3 the run reached): the
    run's epoch-2 and epoch-3 checkpoints are removed once the run file is rewound
    (epoch 2 is written again), nothing else is touched."""
    folder = went_on["folder"]
    files = _files(folder)
    other = {p: p.read_bytes() for p in went_on["other"]}
    r = invoke("train", "--resume", folder / "checkpoint-epoch0001.pt", "--epochs", "2",
               "--overwrite")
    assert ("removed 2 checkpoints of the dropped epochs past epoch 1 "
            f"({shown_path(folder / 'checkpoint-epoch0002.pt')}, checkpoint-epoch0003.pt)"
            ) in r.stderr  # on stderr: also seen with --json and --quiet
    after = _files(folder)
    assert sorted(after) == ["checkpoint-epoch0001.pt", "checkpoint-epoch0002.pt",
                             "checkpoint-epoch0004.pt", "checkpoint-epoch0009.pt", "notes.txt"]
    for name in ("checkpoint-epoch0001.pt", "checkpoint-epoch0004.pt",
                 "checkpoint-epoch0009.pt", "notes.txt"):
        assert after[name] == files[name], name  # run 'other''s, unrelated files: untouched
    assert load_checkpoint(folder / "checkpoint-epoch0002.pt")["step"] == 8  # written again
    assert {p: p.read_bytes() for p in went_on["other"]} == other
    # the resumed history continues from its own last checkpoint
    invoke("train", "--resume", folder / "checkpoint-epoch0002.pt", "--epochs", "3")
    assert (folder / "checkpoint-epoch0003.pt").is_file()


def test_resume_refuses_to_drop_a_later_checkpoint_the_run_did_not_record(went_on):
    """A run that stopped between writing its epoch-3 checkpoint and recording it in the
    run file: resuming from epoch 2, its last recorded one, would drop epoch 3 (and
    remove its file), so without --overwrite it is refused as for a recorded one, and
    the file is kept."""
    import h5py

    with h5py.File(went_on["out"], "r+") as f:
        assert f["sgd/checkpoints"].attrs["n_rows"] == 3
        f["sgd/checkpoints"].attrs["n_rows"] = 2  # epoch 3's file written, its record not
    files = _files(went_on["folder"])
    _fails("train", "--resume", went_on["folder"] / "checkpoint-epoch0002.pt", "--epochs", "2",
           match=f"went on to {shown_path(went_on['folder'] / 'checkpoint-epoch0003.pt')} "
                 "(epoch 3)")
    assert _files(went_on["folder"]) == files


def test_resume_without_overwrite_leaves_a_dropped_historys_files(went_on):
    """Files of the run past the resumed checkpoint that belong to no history now (left
    by an earlier --overwrite resume, e.g. by an older spectra) are not the resume's to
    delete without --overwrite: they are left (info marks such records stale)."""
    folder = went_on["folder"]
    invoke("train", "--resume", folder / "checkpoint-epoch0001.pt", "--epochs", "2",
           "--overwrite")
    (folder / "checkpoint-epoch0003.pt").write_bytes(went_on["epoch3"])  # put back
    r = invoke("train", "--resume", folder / "checkpoint-epoch0002.pt", "--epochs", "2")
    assert "removed" not in r.stdout + r.stderr
    assert (folder / "checkpoint-epoch0003.pt").read_bytes() == went_on["epoch3"]


def test_resume_overwrite_reports_removed_files_with_json(went_on):
    folder = went_on["folder"]
    r = invoke("train", "--resume", folder / "checkpoint-epoch0001.pt", "--epochs", "1",
               "--overwrite", "--json")
    assert "removed 2 checkpoints of the dropped epochs past epoch 1" in r.stderr
    assert not (folder / "checkpoint-epoch0002.pt").exists()


@pytest.mark.parametrize("start, epochs, overwrite", [(1, 2, True), (3, 4, False)])
def test_resume_of_a_copy_beside_its_original_leaves_the_originals_checkpoints(
        went_on, start, epochs, overwrite):
    """A run file copied beside the original shares its checkpoint folder. Resuming the
    copy from epoch 1 with --overwrite would remove the original's epoch-2 and epoch-3
    checkpoints; resuming it from epoch 3 would write its epoch 4 where the original's
    own epoch 4 would go (here: after the original went on to epoch 4 first). Both are
    refused, and no file changes."""
    out, folder = went_on["out"], went_on["folder"]
    copy = out.with_name("copy.h5")
    shutil.copy(out, copy)
    if start == 3:  # the original went on to epoch 4
        invoke("train", "--resume", folder / "checkpoint-epoch0003.pt", "--epochs", "4",
               "--overwrite")
        assert load_checkpoint(folder / "checkpoint-epoch0004.pt")["step"] == 16
    before, copied, files = rows_of(out), rows_of(copy), _files(folder)
    extra = ("--overwrite",) if overwrite else ()
    err = _fails("train", "--resume", folder / f"checkpoint-epoch000{start}.pt", "--out", copy,
                 "--epochs", str(epochs), *extra,
                 match=f"is a checkpoint of run 'sgd' of {shown_path(out)}, not of "
                       f"{shown_path(copy)}")
    assert "share the checkpoint folder" in err
    assert _files(folder) == files
    assert_same_rows(before, rows_of(out))
    assert_same_rows(copied, rows_of(copy))


@pytest.mark.parametrize("overwrite", [False, True])
def test_resume_reads_each_later_checkpoint_once(went_on, monkeypatch, overwrite):
    """The checks before a resume (another file's checkpoints, later epochs) and the
    removal after the rewind share one reading of the run's later checkpoints."""
    from spectra.runs import checkpoints

    loads: dict[str, int] = {}
    real = checkpoints.load_checkpoint

    def counting(path, *args, **kwargs):
        loads[Path(path).name] = loads.get(Path(path).name, 0) + 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "load_checkpoint", counting)
    folder = went_on["folder"]
    args = ("train", "--resume", folder / "checkpoint-epoch0001.pt", "--epochs", "1")
    if overwrite:
        invoke(*args, "--overwrite")
    else:
        _fails(*args, match="is not the last checkpoint")
    later = {name: n for name, n in loads.items() if name != "checkpoint-epoch0001.pt"}
    assert later == {"checkpoint-epoch0002.pt": 1, "checkpoint-epoch0003.pt": 1,
                     "checkpoint-epoch0004.pt": 1, "checkpoint-epoch0009.pt": 1}, loads


def test_later_checkpoint_headers_hold_no_states(went_on):
    from spectra.runs.checkpoints import later_checkpoint_headers, later_checkpoints

    folder = went_on["folder"]
    first = load_checkpoint(folder / "checkpoint-epoch0001.pt")
    files = sorted(folder.iterdir())
    found = later_checkpoint_headers(first, files, exclude=folder / "checkpoint-epoch0001.pt")
    assert [p.name for p, _ in found] == ["checkpoint-epoch0002.pt", "checkpoint-epoch0003.pt"]
    assert [p for p, _ in found] == later_checkpoints(first, files)
    for path, header in found:
        whole = load_checkpoint(path)
        assert "model_state" in whole and "optimizer_state" in whole
        assert not {"model_state", "optimizer_state", "rng", "monitor"} & set(header)
        assert header["step"] == whole["step"] and header["run"] == whole["run"]
