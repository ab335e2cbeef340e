"""Bad input found by a bug bash of the command line: each case gets one clear error
that names what is wrong, and nothing already on disk is lost."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from spectra.runs.store import read_run
from tests.cli.conftest import DATA, TINY, invoke


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_resume_from_an_older_checkpoint_keeps_the_later_epochs(tmp_path):
    """A run that went on to epoch 3 (checkpoints 1, 2, 3) resumed from its epoch-1
    checkpoint would drop epochs 2 and 3: refused, the file untouched, the last
    checkpoint named; --overwrite allows it; the last checkpoint resumes as before."""
    out = tmp_path / "r.h5"
    invoke("train", "--optimizer", "sgd", "--epochs", "3", "-o", out, *TINY)
    ckpts = tmp_path / "r_ckpt" / "sgd"
    before = _digest(out)
    r = invoke("train", "--resume", ckpts / "checkpoint-epoch0001.pt", "--epochs", "2", ok=False)
    assert r.exit_code == 2
    assert "Traceback" not in r.output
    assert "is not the last checkpoint of run 'sgd'" in r.stderr
    assert "checkpoint-epoch0003.pt (epoch 3)" in r.stderr
    assert "would drop the 2 metric and 2 probe rows" in r.stderr
    assert "--overwrite" in r.stderr
    assert _digest(out) == before
    assert len(read_run(out, "sgd").metrics) == 3

    invoke("train", "--resume", ckpts / "checkpoint-epoch0003.pt", "--epochs", "4")
    assert len(read_run(out, "sgd").metrics) == 4

    invoke("train", "--resume", ckpts / "checkpoint-epoch0001.pt", "--epochs", "2",
           "--overwrite")
    assert len(read_run(out, "sgd").metrics) == 2
    # checkpoints 3 and 4 now belong to a dropped history: resuming from 2 is the last
    invoke("train", "--resume", ckpts / "checkpoint-epoch0002.pt", "--epochs", "3")
    assert len(read_run(out, "sgd").metrics) == 3


def test_a_new_run_does_not_write_over_checkpoints_in_its_folder(tmp_path):
    """`train` into a checkpoint folder that holds another run's checkpoints (or those
    of a run whose file was deleted) is refused and leaves them byte-identical;
    --overwrite allows it. `compare` likewise, before any run is trained."""
    first = tmp_path / "a.h5"
    invoke("train", "--optimizer", "sgd", "--epochs", "1", "-o", first, *TINY)
    ckpt = tmp_path / "a_ckpt" / "sgd" / "checkpoint-epoch0001.pt"
    before = _digest(ckpt)
    cases = [
        ("train", "--optimizer", "adam", "-o", first, "--checkpoint-dir", ckpt.parent),
        ("train", "--optimizer", "sgd", "-o", tmp_path / "b.h5", "--checkpoint-dir", ckpt.parent),
        ("compare", "--optimizers", "adam,sgd", "-o", tmp_path / "c.h5",
         "--checkpoint-dir", ckpt.parent.parent),
    ]
    for args in cases:
        r = invoke(*args, "--epochs", "1", *TINY, ok=False)
        assert r.exit_code == 2, args
        assert "Traceback" not in r.output
        assert f"the checkpoint folder {ckpt.parent} already holds 1 checkpoint" in r.stderr
        assert "--overwrite" in r.stderr
        assert _digest(ckpt) == before
    assert list(read_run(first, "sgd").checkpoints) == [ckpt]
    assert not (tmp_path / "b.h5").exists() and not (tmp_path / "c.h5").exists()
    # the run file deleted: its checkpoints are all that is left of it
    first.unlink()
    r = invoke("train", "--optimizer", "sgd", "-o", first, "--epochs", "1", *TINY, ok=False)
    assert "already holds 1 checkpoint" in r.stderr and _digest(ckpt) == before
    invoke("train", "--optimizer", "sgd", "-o", first, "--epochs", "1", "--overwrite", *TINY)
    assert len(read_run(first, "sgd").metrics) == 1


def test_a_bad_model_name_is_blamed_on_model_not_model_arg(tmp_path, trained):
    """An unknown --model, or a package.module:factory that cannot be imported, was
    reported as "--model-arg: unknown model ..." (no --model-arg given); now the error
    names --model, in train, compare, probe and landscape, and an option the model
    does not take still names --model-arg. Nothing is written."""
    out = tmp_path / "n.h5"
    cases = [
        (("train", "--model", "mlpp", "-o", out, "--epochs", "1"),
         "error: --model: unknown model 'mlpp'"),
        (("compare", "--optimizers", "sgd,adam", "--model", "mlpp", "-o", out, "--epochs", "1"),
         "error: --model: unknown model 'mlpp'"),
        (("probe", "--model", "mlpp"), "error: --model: unknown model 'mlpp'"),
        (("train", "--model", "no_such_pkg.mod:f", "-o", out),
         "error: --model: custom model 'no_such_pkg.mod:f': cannot import module 'no_such_pkg.mod'"),
        (("train", "--model", "os:no_such_factory", "-o", out),
         ("error: --model: custom model 'os:no_such_factory': module 'os' has no attribute "
          "'no_such_factory'")),
        (("train", "--model-arg", "foo=1", "-o", out), "error: --model-arg: model 'mlp'"),
        (("probe", "--model-arg", "foo=1"), "error: --model-arg: model 'mlp'"),
        (("landscape", "--checkpoint", trained["checkpoints"][-1], "--model", "mlpp", "--json"),
         "error: --model: unknown model 'mlpp'"),
    ]
    for args, message in cases:
        r = invoke(*args, *(DATA if args[0] != "landscape" else ()), ok=False)
        assert r.exit_code == 2, args
        assert "Traceback" not in r.output
        assert r.stderr.startswith(message), (args, r.stderr)
    assert not out.exists()


def test_nan_option_values_are_refused_before_anything_is_written(tmp_path):
    """--opt-arg lr=nan was accepted: the run was created, diverged at step 2, and its
    name then blocked the corrected command. Now NaN in any KEY=VALUE option is refused
    up front, naming the option and the key."""
    out = tmp_path / "n.h5"
    for args in (("--opt-arg", "lr=nan"), ("--opt-arg", "betas=0.9,NaN"),
                 ("--model-arg", "widths=nan")):
        r = invoke("train", "--optimizer", "adam", *args, "--epochs", "1", "-o", out, *TINY,
                   ok=False)
        assert r.exit_code == 2 and "Traceback" not in r.output
        assert r.stderr.startswith(f"error: {args[0]} '{args[1]}': NaN is not a value "
                                   f"{args[1].split('=')[0]} can take"), r.stderr
        assert not out.exists()
    invoke("train", "--optimizer", "adam", "--opt-arg", "lr=0.01", "--epochs", "1", "-o", out,
           *TINY)


def test_resume_into_a_missing_out_file_names_the_option(tmp_path):
    """`--resume CKPT --out other.h5` with no other.h5 said "the run file other.h5 of
    this checkpoint does not exist; pass --out" although --out was passed."""
    out = tmp_path / "r.h5"
    invoke("train", "--optimizer", "sgd", "--epochs", "1", "-o", out, *TINY)
    ckpt = tmp_path / "r_ckpt" / "sgd" / "checkpoint-epoch0001.pt"
    other = tmp_path / "other.h5"
    r = invoke("train", "--resume", ckpt, "--epochs", "2", "--out", other, ok=False)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.stderr.startswith(f"error: --out {other}: no such run file"), r.stderr
    assert f"this checkpoint's is {out}" in r.stderr
    assert not other.exists()


def test_probe_append_refuses_another_runs_checkpoint(trained, tmp_path):
    """`probe --checkpoint CKPT --append FILE --run NAME` with the checkpoint of another
    run appended its spectrum to NAME's probe rows as if NAME had been there. Now it is
    refused before probing, naming both runs, and FILE is left byte-identical (that a
    run takes its own checkpoints' rows: tests/cli/test_probe.py)."""
    h5 = tmp_path / "a.h5"
    shutil.copy(trained["h5"], h5)
    other = tmp_path / "o.h5"
    invoke("train", "--optimizer", "sgd", "--epochs", "1", "-o", other, *TINY)
    before = _digest(h5)
    ckpt = tmp_path / "o_ckpt" / "sgd" / "checkpoint-epoch0001.pt"
    r = invoke("probe", "--checkpoint", ckpt, "--append", h5, "--run", "dcao", ok=False)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"checkpoint {ckpt} belongs to run 'sgd' of {other}" in r.stderr, r.stderr
    assert "not to run 'dcao'" in r.stderr
    assert _digest(h5) == before


def test_a_missing_data_set_names_the_data_dir_option(tmp_path):
    """A file-based data set that is not there said "... or pass data_dir=" (the
    library's keyword); the command line's option is --data-dir."""
    r = invoke("train", "--data", "mnist", "--data-dir", tmp_path / "none", "--epochs", "1",
               "-o", tmp_path / "m.h5", ok=False)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "or pass --data-dir DATA_DIR" in r.stderr and "data_dir=" not in r.stderr, r.stderr
    assert not (tmp_path / "m.h5").exists()


def _interrupt_at_epoch(monkeypatch, epoch: int) -> None:
    """Ctrl-C when the metrics row of ``epoch`` is written (after the checkpoints of
    the epochs before it)."""
    from cli._run import EpochReport

    real = EpochReport.append_metrics

    def append_metrics(self, row=None, /, **values):
        if int((row or values).get("epoch", -1)) == epoch:
            raise KeyboardInterrupt
        return real(self, row, **values)

    monkeypatch.setattr(EpochReport, "append_metrics", append_metrics)


def test_an_interrupted_compare_overwrite_leaves_no_run_of_the_comparison_it_replaces(
        tmp_path, monkeypatch):
    """`compare --overwrite` replaced its runs one at a time: a Ctrl-C in the first left the
    previous comparison's second run beside it, read by plot and info as one comparison."""
    out = tmp_path / "c.h5"
    invoke("compare", "--optimizers", "sgd,adam", "--epochs", "1", "-o", out, *TINY)
    old_adam = read_run(out, "adam")
    _interrupt_at_epoch(monkeypatch, 2)
    r = invoke("compare", "--optimizers", "sgd,adam", "--epochs", "3", "--overwrite",
               "--opt-arg", "adam.lr=0.02", "-o", out, *TINY, ok=False)
    assert r.exit_code == 130 and "Traceback" not in r.output
    assert f"'adam' did not start (empty run in {out})" in r.stderr, r.stderr
    adam = read_run(out, "adam")
    assert adam.run_id != old_adam.run_id and len(adam.metrics) == 0
    assert adam.config["epochs"] == 3 and len(read_run(out, "sgd").metrics) == 1


def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path, monkeypatch):
    """Ctrl-C during `train` printed only "interrupted"; it now names the run and file
    and the `train --resume` of the last checkpoint, which continues the run (or, with
    no checkpoint yet, says to start again with --overwrite)."""
    out = tmp_path / "i.h5"
    _interrupt_at_epoch(monkeypatch, 3)
    r = invoke("train", "--optimizer", "sgd", "--epochs", "4", "-o", out, *TINY, ok=False)
    assert r.exit_code == 130 and "Traceback" not in r.output
    ckpt = tmp_path / "i_ckpt" / "sgd" / "checkpoint-epoch0002.pt"
    assert r.stderr.strip() == (f"interrupted: run 'sgd' of {out} keeps the rows written so "
                                f"far; continue it with `spectra train --resume {ckpt}`")
    assert len(read_run(out, "sgd").metrics) == 2
    r = invoke("train", "--run", "b", "--checkpoint-every", "0", "--epochs", "4", "-o", out,
               *TINY, ok=False)
    assert r.exit_code == 130
    assert "no checkpoint was written yet; start it again with --overwrite" in r.stderr
    monkeypatch.undo()
    invoke("train", "--resume", ckpt, "--epochs", "4")
    assert len(read_run(out, "sgd").metrics) == 4


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_folder_where_no_file_can_be_made_is_named(tmp_path, trained):
    """/proc passes os.access(W_OK) for root, and the run file's writer failed with
    "[Errno 2] Unable to synchronously create file (... name = '/proc/.x.h5.<pid>.tmp'
    ...)"; the check now tries to create a file there first and names the folder."""
    r = invoke("train", "--epochs", "1", "-o", "/proc/spectra-x.h5", *TINY, ok=False)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.stderr.startswith("error: cannot write /proc/spectra-x.h5: no file can be created "
                               "in /proc"), r.stderr
    r = invoke("plot", "evolution", trained["h5"], "-o", "/proc/spectra-x.png", ok=False)
    assert r.exit_code == 2
    assert r.stderr.startswith("error: cannot write /proc/spectra-x.png: no file can be created "
                               "in /proc"), r.stderr


def test_a_new_run_does_not_mix_its_tensorboard_events_into_another_runs(tmp_path):
    """`train --tensorboard DIR` of a new run whose DIR/RUN already held events (a run
    of the same name from another file, or an earlier attempt) added a second event
    file there, and TensorBoard showed the two runs as one. Now it is refused before
    anything is written, as `export --tensorboard` does; --overwrite purges them."""
    pytest.importorskip("tensorboard")
    tb = tmp_path / "tb"
    invoke("train", "--optimizer", "sgd", "--epochs", "1", "-o", tmp_path / "a.h5",
           "--tensorboard", tb, *TINY)
    events = sorted((tb / "sgd").iterdir())
    for args in (("train", "--optimizer", "sgd"), ("compare", "--optimizers", "adam,sgd")):
        out = tmp_path / "b.h5"
        r = invoke(*args, "--epochs", "1", "-o", out, "--tensorboard", tb, *TINY, ok=False)
        assert r.exit_code == 2 and "Traceback" not in r.output
        assert f"--tensorboard: {tb / 'sgd'} already holds TensorBoard events" in r.stderr
        assert not out.exists() and sorted((tb / "sgd").iterdir()) == events
    invoke("train", "--optimizer", "sgd", "--epochs", "1", "-o", tmp_path / "c.h5",
           "--tensorboard", tb, "--overwrite", *TINY)
    assert len(list((tb / "sgd").iterdir())) == len(events) + 1


def test_probe_append_refuses_a_model_fitted_here(trained, tmp_path):
    """`probe --append FILE --run NAME` without --checkpoint fitted a registry model (of any
    size) and appended its spectrum to NAME's rows, where `info` then called it the run's
    last probe. Now it is refused before fitting, and FILE is left byte-identical."""
    h5 = tmp_path / "a.h5"
    shutil.copy(trained["h5"], h5)
    before = _digest(h5)
    for run in (("--run", "dcao"), ()):
        r = invoke("probe", "--fit-steps", "1", "--samples", "64", "--model-arg", "widths=4",
                   "--top-k", "2", "--trace-matvecs", "0", "--append", h5, *run, ok=False)
        assert r.exit_code == 2 and "Traceback" not in r.output
        assert r.stderr.startswith(f"error: --append {h5}: a model fitted here (--fit-steps) "
                                   "belongs to no run's history"), r.stderr
    assert _digest(h5) == before


def test_infinite_option_values_are_refused_before_anything_is_written(tmp_path):
    """--opt-arg lr=inf (or 1e400) created the run and diverged at step 2 (with
    --overwrite, after the old run was gone). Now refused up front, naming option and key."""
    out = tmp_path / "i.h5"
    for args in (("--opt-arg", "lr=inf"), ("--opt-arg", "lr=1e400"), ("--opt-arg", "betas=0.9,-inf")):
        r = invoke("train", "--optimizer", "adam", *args, "--epochs", "1", "-o", out, *TINY, ok=False)
        assert r.exit_code == 2 and "Traceback" not in r.output
        assert r.stderr.startswith(f"error: {args[0]} '{args[1]}': {args[1].split('=')[0]} must be "
                                   "a finite number"), r.stderr
        assert not out.exists()


def test_an_unwritable_tensorboard_folder_is_refused_before_the_run_file_is_touched(tmp_path):
    """A --tensorboard path under a file was found only at the first row: after the run
    file was created (with --overwrite: after the old run was replaced), and on resume after
    the rewind and the removal of later checkpoints; the error named no option."""
    pytest.importorskip("tensorboard")  # without it --tensorboard is refused before this check
    out = tmp_path / "t.h5"
    invoke("train", "--optimizer", "sgd", "--epochs", "2", "-o", out, *TINY)
    before = _digest(out)
    blocker = tmp_path / "file.pt"
    blocker.write_text("not a folder")
    bad = blocker / "tb"
    r = invoke("train", "--optimizer", "sgd", "--epochs", "1", "-o", out, "--overwrite",
               "--tensorboard", bad, *TINY, ok=False)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.stderr.startswith(f"error: --tensorboard: cannot write to {bad / 'sgd'}: {blocker} is a "
                               "file, not a directory"), r.stderr
    assert _digest(out) == before
    ckpts = sorted((tmp_path / "t_ckpt" / "sgd").glob("*.pt"))
    r = invoke("train", "--resume", ckpts[0], "--epochs", "2", "--overwrite", "--tensorboard", bad,
               ok=False)
    assert r.exit_code == 2 and "cannot write to" in r.stderr, r.stderr
    assert _digest(out) == before and sorted((tmp_path / "t_ckpt" / "sgd").glob("*.pt")) == ckpts


def test_compare_checks_its_checkpoint_folder_before_training(tmp_path):
    """compare never checked --checkpoint-dir: the first optimizer trained into the file and
    the second failed at its first checkpoint. Now refused before anything is written."""
    blocker = tmp_path / "file.pt"
    blocker.write_text("not a folder")
    out = tmp_path / "c.h5"
    r = invoke("compare", "--optimizers", "sgd,adam", "--epochs", "1", "-o", out,
               "--checkpoint-dir", blocker / "x", *TINY, ok=False)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "cannot write checkpoints to" in r.stderr and "is a file, not a directory" in r.stderr, r.stderr
    assert not out.exists()
