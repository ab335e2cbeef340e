"""``spectra plot KIND``: every kind writes a non-empty image of the format its suffix names."""

from __future__ import annotations

import pytest

from tests.cli.conftest import DATA, MODEL, invoke

SIGNATURES = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}


def _check(path, suffix):
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(SIGNATURES[suffix])


@pytest.mark.parametrize("kind, suffix", [
    ("evolution", ".png"), ("sharpness", ".pdf"), ("curves", ".svg"), ("hparams", ".png"),
    ("density", ".png"),
])
def test_run_file_plots(trained, tmp_path, kind, suffix):
    fig = tmp_path / f"sub/{kind}{suffix}"
    r = invoke("plot", kind, trained["h5"], "-o", fig)
    _check(fig, suffix)
    assert f"wrote {fig}" in r.stdout


def test_evolution_heatmap_variant_and_run_selection(trained, tmp_path):
    fig = tmp_path / "e.png"
    invoke("plot", "evolution", trained["h5"], "--run", "dcao", "--style", "heatmap", "-o", fig)
    _check(fig, ".png")
    invoke("plot", "evolution", trained["h5"], "--epochs", "0,1", "-o", fig)
    _check(fig, ".png")


def test_several_files_on_one_axis(trained, tmp_path):
    """Two files holding runs of the same name: told apart by the file's stem."""
    import shutil
    from pathlib import Path

    from cli.plot import _load_runs

    other = tmp_path / "other.h5"
    shutil.copy(trained["h5"], other)
    fig = tmp_path / "d.png"
    r = invoke("plot", "density", trained["h5"], other, "--run", "dcao", "-o", fig)
    _check(fig, ".png")
    assert "wrote" in r.stdout
    names = [run.name for run in _load_runs((str(trained["h5"]), str(other)), ("dcao",))]
    assert names == [f"{Path(trained['h5']).stem}/dcao", "other/dcao"]


def test_unknown_run_speaks_cli(trained, tmp_path):
    r = invoke("plot", "evolution", trained["h5"], "--run", "dcoa", "-o", tmp_path / "e.png",
               ok=False)
    assert r.exit_code == 2
    assert "--run dcoa" in r.output and "Did you mean 'dcao'?" in r.output


def test_trajectories(tmp_path):
    fig = tmp_path / "t.png"
    r = invoke("plot", "trajectories", "rosenbrock", "-o", fig, "--optimizers", "sgd,adam,calr",
               "--steps", "50", "--opt-arg", "sgd.lr=1e-3")
    _check(fig, ".png")
    assert "sgd" in r.stdout and "final f" in r.stdout and "lr 0.001, 50 steps" in r.stdout


def test_trajectories_say_diverged(tmp_path):
    fig = tmp_path / "t.png"
    r = invoke("plot", "trajectories", "rosenbrock", "-o", fig, "--optimizers", "sgd",
               "--steps", "30", "--opt-arg", "lr=1.0")
    assert "diverged at step" in r.stdout and "distance" not in r.stdout


def test_hparams_draws_dcaos_clamp():
    from cli.plot import _dcao_clamp
    from optim.dcao_controller import DCAOController

    assert _dcao_clamp({"optimizer": {"name": "dcao", "hyperparameters": {}}}) == \
        DCAOController().clip
    assert _dcao_clamp({"optimizer": {"name": "sgd"}}) is None


def test_eval_train_run_draws_eval_mode_curves_from_epoch_0(tmp_path):
    from spectra.plots import plot_curves
    from spectra.runs import read_run
    from tests.cli.conftest import TINY

    out = tmp_path / "ev.h5"
    invoke("train", "--optimizer", "sgd", "--epochs", "2", "--eval-train", "--no-density",
           "--checkpoint-every", "0", "-o", out, *TINY)
    run = read_run(out, "sgd")
    assert list(run.metrics.epoch) == [0.0, 1.0, 2.0]
    assert run.config["eval_train"] is True
    fig = plot_curves(run)
    assert fig.axes[0].get_title() == "train loss (eval mode, end of epoch)"
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [0.0, 1.0, 2.0]


def test_skipped_rows_are_one_warning_line(tmp_path):
    """A figure function's warning (probe rows skipped) is a `warning:` line on stderr,
    not Python's 'file.py:123: UserWarning' with a line of source code."""
    import numpy as np

    from tests.spectra.plots.conftest import run_with_nodes

    good = (np.array([[-0.5, 0.0, 1.0]]), np.array([[0.2, 0.6, 0.2]]))
    bad = (np.array([[np.nan, 0.0, 1.0]]), np.array([[0.2, 0.6, 0.2]]))
    path = run_with_nodes(tmp_path / "nan.h5", [good, bad])
    r = invoke("plot", "density", path, "--probe", "0", "-o", tmp_path / "d.png")
    assert "warning: run 'r': the stored Ritz nodes or weights of probe rows [1]" in r.stderr
    assert "UserWarning" not in r.stderr and ".py:" not in r.stderr
    # out of range: the option named as typed, not the library's probe=
    r = invoke("plot", "density", path, "--probe", "7", "-o", tmp_path / "d.png", ok=False)
    assert "error: --probe 7 is out of range: run 'r' has 1 probe with a density" in r.stderr


def test_a_file_without_runs_is_one_line(tmp_path):
    from spectra.runs import RunStore

    path = tmp_path / "none.h5"
    with RunStore(path):
        pass
    r = invoke("plot", "curves", path, "-o", tmp_path / "c.png", ok=False)
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: {path} holds no runs; nothing to plot"


def test_a_run_without_eigenvalues_or_densities_is_told_how_to_record_them(tmp_path):
    """A run probed for its trace only: train suggests the curves (not a figure the file
    cannot draw), and density and sharpness name the train options that record them,
    not the library's keyword arguments."""
    out = tmp_path / "t.h5"
    r = invoke("train", "--optimizer", "sgd", "--epochs", "1", "--no-density", "--top-k", "0",
               "--no-bottom", "--checkpoint-every", "0", "-o", out, *DATA, *MODEL)
    assert f"next:        spectra plot curves {out}" in r.stdout
    d = invoke("plot", "density", out, "-o", tmp_path / "d.png", ok=False)
    assert "record them with `spectra train --density`" in d.stderr
    s = invoke("plot", "sharpness", out, "-o", tmp_path / "s.png", ok=False)
    assert "record them with `spectra train --top-k K` (and --bottom)" in s.stderr
    assert "=True" not in d.stderr + s.stderr and "(n_v, m)" not in d.stderr


def test_file_labels_tell_files_of_one_stem_apart_by_their_folders():
    """runs/seed0/cmp.h5 and runs/seed1/cmp.h5 were both 'cmp': their runs of one name got
    one label, one colour and one legend entry."""
    from pathlib import Path

    from cli.plot import file_labels

    paths = [Path("/r/seed0/cmp.h5"), Path("/r/seed1/cmp.h5"), Path("/r/other.h5")]
    assert file_labels(paths) == ["seed0/cmp", "seed1/cmp", "other"]
    assert file_labels([Path("/a/x/run.h5"), Path("/b/x/run.h5")]) == ["a/x/run", "b/x/run"]
    assert file_labels([Path("/a/run.h5"), Path("/b/a/run.h5")]) == ["a/run", "b/a/run"]
    assert file_labels([Path("/a/x/cmp.h5"), Path("/a/x/cmp.hdf5")]) == ["cmp.h5", "cmp.hdf5"]


def test_a_dollar_in_a_run_name_or_title_is_drawn_as_it_is(tmp_path):
    """A run name or --title with two '$' was read as mathtext: every plot failed with
    "error: \\frac{x (ValueError ...)", naming neither the option nor the run."""
    from spectra.runs import RunStore

    path = tmp_path / "mt.h5"
    name = r"$\frac{x$"
    with RunStore(path) as st:
        w = st.create_run(name, config={})
        for j in range(3):
            w.append_metrics(step=10 * j, epoch=float(j), train_loss=1.0 / (j + 1),
                             test_loss=1.5 / (j + 1), train_acc=0.5, test_acc=0.4)
            w.append_probe(step=10 * j, epoch=float(j), top_eigenvalues=[3.0 + j, 1.0])
    for kind in ("curves", "sharpness"):
        r = invoke("plot", kind, path, "--run", name, "-o", tmp_path / f"{kind}.png")
        assert r.stderr == "" and (tmp_path / f"{kind}.png").exists()
    r = invoke("plot", "curves", path, "--title", r"cost in $\frac{", "-o", tmp_path / "t.png")
    assert r.stderr == "" and (tmp_path / "t.png").exists()
    r = invoke("plot", "trajectories", "rosenbrock", "--optimizers", "sgd", "--steps", "5",
               "--title", "$a_{$ b", "-o", tmp_path / "traj.png")
    assert (tmp_path / "traj.png").exists()
