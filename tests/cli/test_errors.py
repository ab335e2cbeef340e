"""Bad input: one clear line on stderr, exit code 2, no traceback, no file corrupted."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch

from spectra.runs.store import RunStore
from tests.cli.conftest import DATA, MODEL, TINY, assert_same_rows, invoke, rows_of

FAST = ("--epochs", "1", "--probe-every", "0", "--checkpoint-every", "0", *TINY)


def _fails(*args, match: str):
    r = invoke(*args, ok=False)
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    err = r.stderr.strip()
    assert match in err, f"expected {match!r} in:\n{err}"
    # one line, click's own usage errors too (they printed Usage, Try, Error lines)
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def checked(run_copy):
    """The copy of the trained run file; after the test it must hold the same rows."""
    before = rows_of(run_copy)
    yield run_copy
    with h5py.File(run_copy, "r"):
        pass
    assert_same_rows(before, rows_of(run_copy))


# --------------------------------------------------------------------------- train


def test_unknown_optimizer(tmp_path):
    _fails("train", "--optimizer", "adamm", "-o", tmp_path / "x.h5", *FAST,
           match="unknown optimizer 'adamm'. Did you mean 'adam'?")
    assert not (tmp_path / "x.h5").exists()


def test_unknown_model(tmp_path):
    _fails("train", "--model", "transformer", "-o", tmp_path / "x.h5", *FAST,
           match="unknown model 'transformer'")
    assert not (tmp_path / "x.h5").exists()


def test_unknown_data_set(tmp_path):
    _fails("train", "--data", "imagenet", "-o", tmp_path / "x.h5", "--epochs", "1",
           match="unknown data set 'imagenet'")
    assert not (tmp_path / "x.h5").exists()


def test_missing_data_directory(tmp_path):
    _fails("train", "--data", "mnist", "--data-dir", tmp_path / "nowhere", "-o", tmp_path / "x.h5",
           "--epochs", "1", match="expected the IDX files train-images-idx3-ubyte")
    assert not (tmp_path / "x.h5").exists()


def test_malformed_idx_file(tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (d / name).write_bytes(b"this is not an IDX file")
    _fails("train", "--data", "mnist", "--data-dir", d, "-o", tmp_path / "x.h5", "--epochs", "1",
           match="not an IDX file")


def test_opt_arg_without_equals(tmp_path):
    _fails("train", "--optimizer", "sgd", "--opt-arg", "lr", "-o", tmp_path / "x.h5", *FAST,
           match="--opt-arg 'lr' is not key=value")


def test_opt_arg_unknown_hyperparameter(tmp_path):
    _fails("train", "--optimizer", "sgd", "--opt-arg", "lrr=0.1", "-o", tmp_path / "x.h5", *FAST,
           match="Unknown hyperparameter 'lrr' for optimizer 'sgd'. Did you mean 'lr'?")
    assert not (tmp_path / "x.h5").exists()


def test_opt_arg_invalid_value(tmp_path):
    _fails("train", "--optimizer", "adam", "--opt-arg", "lr=-1", "-o", tmp_path / "x.h5", *FAST,
           match="Invalid learning rate: -1")


@pytest.mark.parametrize("args, match", [
    (("--optimizer", "adam", "--opt-arg", "lr=abc"),
     "optimizer 'adam': option lr='abc' is not a number"),
    (("--optimizer", "adam", "--opt-arg", "betas=0.9"),
     "optimizer 'adam': option betas=0.9 is not 2 values (a number, a number)"),
    (("--optimizer", "adam", "--opt-arg", "betas=0.9,0.99,0.5"),
     "optimizer 'adam': option betas=(0.9, 0.99, 0.5) is not 2 values"),
    (("--optimizer", "dcao", "--opt-arg", "period=ten"), "optimizer 'dcao': option period='ten'"),
    (("--optimizer", "sgd", "--model-arg", "widths=abc"),
     "model 'mlp': option widths=['abc'] is not a comma-separated list of integers"),
    (("--optimizer", "sgd", "--model-arg", "activation=3"),
     "model 'mlp': option activation=3 is not a string"),
    (("--optimizer", "sgd", "--data-arg", "n_train=abc"),
     "data set 'digits': option n_train='abc' is not an integer or none"),
    (("--optimizer", "sgd", "--run", "a/b"), "--run: invalid run name 'a/b'"),
    (("--optimizer", "sgd", "--tol", "inf"), "Invalid value for '--tol': inf is not in the range"),
    (("--optimizer", "sgd", "--seed", str(2**70)), "Invalid value for '--seed'"),
    (("--optimizer", "sgd", "--model", "tests.cli.test_errors:frozen_model"),
     "has no trainable parameters"),
])
def test_bad_settings_are_refused_before_the_file_is_touched(tmp_path, args, match):
    """Refused with one line naming the option; no file is created, so the corrected
    command runs as if the bad one never did."""
    out = tmp_path / "x.h5"
    _fails("train", "-o", out, *FAST, *args, match=match)
    assert list(tmp_path.iterdir()) == []


def frozen_model(input_shape, num_classes, widths=None):
    """A model whose parameters are all frozen (no trainable parameter)."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, num_classes))
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def test_negative_epochs(tmp_path):
    _fails("train", "--epochs", "-1", "-o", tmp_path / "x.h5",
           match="Invalid value for '--epochs': -1 is not in the range x>=0")


def test_bad_probe_unit(tmp_path):
    _fails("train", "--probe-unit", "batch", "-o", tmp_path / "x.h5",
           match="Invalid value for '--probe-unit': 'batch' is not one of 'epoch', 'step'")


def test_nan_loss_stops_cleanly_and_keeps_the_rows(tmp_path):
    out = tmp_path / "nan.h5"
    err = _fails("train", "--optimizer", "sgd", "--opt-arg", "lr=1e12", "--epochs", "3", "-o", out,
                 *TINY, match="the training loss is")
    assert "at step" in err and "lower the learning rate" in err
    from spectra.runs.store import read_run

    run = read_run(out, "sgd")  # what was written before the divergence is readable
    assert len(run.probes) >= 1 and np.isfinite(run.probes.top_eigenvalues[0]).all()


def test_existing_run_name(checked):
    _fails("train", "--optimizer", "dcao", "-o", checked, *FAST,
           match="already has a run named 'dcao'; pick another --run, pass --overwrite")


def test_unwritable_output_path(tmp_path):
    (tmp_path / "afile").write_text("x")
    _fails("train", "-o", tmp_path / "afile" / "run.h5", *FAST,
           match="is a file, not a directory")


def test_output_that_is_not_a_run_file(tmp_path):
    bad = tmp_path / "notes.h5"
    bad.write_text("my notes")
    _fails("train", "--optimizer", "sgd", "-o", bad, *FAST, match="is not an HDF5 file")
    assert bad.read_text() == "my notes"


def test_output_hdf5_of_another_tool(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    _fails("train", "--optimizer", "sgd", "-o", other, *FAST,
           match="is an HDF5 file but not a spectra-run file")
    with h5py.File(other, "r") as f:
        np.testing.assert_array_equal(f["x"][:], np.arange(3))


def test_run_file_locked_by_a_writer(checked):
    with RunStore(checked):
        _fails("train", "--optimizer", "sgd", "-o", checked, *FAST, match="already open for writing")


def test_resume_cannot_change_settings(trained):
    _fails("train", "--resume", trained["checkpoints"][0], "--optimizer", "adam",
           match="--optimizer cannot be changed")


def test_dcao_arguments_are_not_options(tmp_path):
    _fails("train", "--optimizer", "dcao", "--opt-arg", "model=mlp", "-o", tmp_path / "x.h5", *FAST,
           match="--opt-arg cannot set model")


# --------------------------------------------------------------------------- checkpoints


def test_probe_file_that_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "ckpt.pt"
    bad.write_text("hello")
    _fails("probe", "--checkpoint", bad, match="is not a spectra checkpoint")


def test_probe_bare_state_dict(tmp_path):
    sd = tmp_path / "sd.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), sd)
    _fails("probe", "--checkpoint", sd, match="it may be a bare state_dict")


def test_checkpoint_of_another_architecture(trained):
    _fails("probe", "--checkpoint", trained["checkpoints"][-1], "--model-arg", "widths=32",
           match="do not fit model mlp")


def test_landscape_checkpoint_of_another_architecture(trained, tmp_path):
    _fails("landscape", "--checkpoint", trained["checkpoints"][-1], "--model", "logistic",
           "-o", tmp_path / "l.png", match="do not fit model logistic")


def test_missing_checkpoint(tmp_path):
    _fails("probe", "--checkpoint", tmp_path / "none.pt", match="does not exist")


def test_probe_append_to_a_missing_run(checked, trained):
    _fails("probe", "--checkpoint", trained["checkpoints"][-1], "--append", checked,
           "--run", "nope", match="has no run 'nope'")


def test_probe_append_row_that_does_not_fit(checked, trained):
    _fails("probe", "--checkpoint", trained["checkpoints"][-1], "--append", checked,
           "--top-k", "4", match="--top-k 4 does not fit its rows")


def test_landscape_even_points(trained, tmp_path):
    _fails("landscape", "--checkpoint", trained["checkpoints"][-1], "--points", "10",
           "-o", tmp_path / "l.png", match="--points must be odd")


# --------------------------------------------------------------------------- plot / info


def test_info_on_a_non_h5_file(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_text("not hdf5")
    _fails("info", bad, match="is not an HDF5 file")


def test_plot_on_a_non_h5_file(tmp_path):
    bad = tmp_path / "x.txt"
    bad.write_text("not hdf5")
    _fails("plot", "curves", bad, "-o", tmp_path / "f.png", match="is not an HDF5 file")
    assert not (tmp_path / "f.png").exists()


def test_unknown_plot_kind(checked, tmp_path):
    _fails("plot", "histogram", checked, "-o", tmp_path / "f.png", match="No such command 'histogram'")


def test_plot_run_not_in_file(checked, tmp_path):
    _fails("plot", "curves", checked, "--run", "adam", "-o", tmp_path / "f.png",
           match="--run adam: no run of that name in")


def test_plot_bad_figure_suffix(checked, tmp_path):
    _fails("plot", "sharpness", checked, "-o", tmp_path / "f.jpg",
           match="expected .png, .pdf or .svg")


def test_plot_evolution_without_density(tmp_path):
    out = tmp_path / "nd.h5"
    invoke("train", "--optimizer", "sgd", "--epochs", "1", "-o", out, "--no-density",
           "--checkpoint-every", "0", *TINY)
    _fails("plot", "evolution", out, "-o", tmp_path / "f.png", match="density")


def test_plot_trajectories_unknown_function(tmp_path):
    _fails("plot", "trajectories", "runs.h5", "-o", tmp_path / "f.png",
           match="unknown test function 'runs.h5'")


def test_compare_unknown_optimizers_before_anything_is_written(tmp_path):
    out = tmp_path / "c.h5"
    _fails("compare", "--optimizers", "sgd,adam,dcoa,foo", "-o", out, *FAST,
           match="unknown optimizers 'dcoa' (did you mean 'dcao'?), 'foo'")
    assert not out.exists() and not (tmp_path / "c_ckpt").exists()


def test_compare_bad_opt_arg_before_anything_is_written(checked):
    _fails("compare", "--optimizers", "sgd,adam", "--opt-arg", "adam.momentum=0.9", "-o", checked,
           *FAST, match="--opt-arg: Unknown hyperparameter 'momentum' for optimizer 'adam'")


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_text("not hdf5")
    from click.testing import CliRunner

    from cli.main import main

    r = CliRunner().invoke(main, ["--debug", "info", str(bad)])
    assert r.exit_code != 0 and r.exception is not None
    assert type(r.exception).__name__ == "StoreError"


def test_corrupted_copy_is_untouched(checked, tmp_path):
    """A file that a failing command read is byte-identical afterwards."""
    before = checked.read_bytes()
    _fails("plot", "curves", checked, "--run", "missing", "-o", tmp_path / "f.png", match="no run")
    _fails("train", "--optimizer", "dcao", "-o", checked, *FAST, match="already has a run")
    assert checked.read_bytes() == before
    shutil.copy(checked, tmp_path / "again.h5")


@pytest.mark.parametrize("fail_at", [1, 12, 40])
def test_disk_full_mid_run_is_one_line_and_keeps_the_rows(tmp_path, monkeypatch, fail_at):
    """ENOSPC at the N-th write of the run file: exit 2, one line naming the file and
    "no space left"; the rows committed before read back."""
    import errno
    import os

    from spectra.runs import journal, store
    real, calls = journal.write_all, {"n": 0}

    def write_all(fd, data, offset=None):
        calls["n"] += 1
        if calls["n"] >= fail_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    out = tmp_path / "full.h5"
    invoke("train", "--optimizer", "sgd", "-o", out, "--epochs", "1", "--checkpoint-every", "0",
           *TINY)  # the file exists: the failures below hit rows and growth, not creation
    monkeypatch.setattr(journal, "write_all", write_all)
    err = _fails("train", "--optimizer", "sgd", "--run", "second", "-o", out, "--epochs", "4",
                 "--checkpoint-every", "0", *TINY, match="no space left on the device")
    assert str(out) in err
    monkeypatch.setattr(journal, "write_all", real)
    runs = store.read_runs(out)
    assert len(runs["sgd"].metrics) == 1  # the first run is untouched
    second = runs.get("second")
    if second is not None:  # whatever was committed reads back in order
        assert list(second.metrics.epoch) == list(range(1, len(second.metrics) + 1))


# --------------------------------------------------------------------------- probe sizes


SIZE = ("--epochs", "1", "--checkpoint-every", "0", *DATA, *MODEL)  # 1,210 parameters


@pytest.mark.parametrize("command", ["train", "compare"])
@pytest.mark.parametrize("option, value, match", [
    ("--top-k", "5000", ("--top-k 5000 exceeds the model's 1,210 parameters: its Hessian has "
                         "1,210 eigenvalues; use --top-k 1210 or less")),
    ("--density-steps", "100000", "--density-steps 100000 exceeds the model's 1,210 parameters"),
])
def test_probe_sizes_beyond_the_parameters_before_anything_is_written(tmp_path, command, option,
                                                                      value, match):
    out = tmp_path / "x.h5"
    which = ("--optimizer", "sgd") if command == "train" else ("--optimizers", "sgd,adam")
    _fails(command, *which, "-o", out, *SIZE, option, value, match=match)
    assert list(tmp_path.iterdir()) == []  # no run file, no checkpoint folder


@pytest.mark.parametrize("option, value, match", [
    ("--top-k", "5000", "--top-k 5000 exceeds the model's 1,210 parameters"),
    ("--density-steps", "100000", "use --density-steps 1210 or less"),
])
def test_probe_command_sizes_beyond_the_parameters(option, value, match):
    _fails("probe", *DATA, *MODEL, "--density", option, value, match=match)


def test_info_on_a_damaged_run_names_the_file_run_and_object(checked, tmp_path):
    bad = tmp_path / "damaged.h5"
    shutil.copy(checked, bad)
    with h5py.File(bad, "r+") as f:
        del f["dcao/probes"]
        f["dcao/probes"] = np.arange(3)
    _fails("info", bad, match="damaged.h5: run 'dcao', table 'probes' is a dataset of shape (3,)")
    with h5py.File(bad, "r+") as f:
        del f["dcao/probes"]
        f["dcao"].attrs["config"] = "[1, 2]"
    _fails("info", bad, match="damaged.h5: run 'dcao' has a config that is a JSON list")


def test_checkpoint_probed_on_data_of_another_shape(trained):
    _fails("probe", "--checkpoint", trained["checkpoints"][0], "--data", "synthetic",
           match="takes inputs of shape (64,), but data set 'synthetic' has inputs of shape (20,)")
