"""``spectra plot KIND``: every kind writes a non-empty image of the format its suffix names."""

from __future__ import annotations

import pytest

from tests.cli.conftest import invoke

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


def test_evolution_curves_variant_and_run_selection(trained, tmp_path):
    fig = tmp_path / "e.png"
    invoke("plot", "evolution", trained["h5"], "--run", "dcao", "--kind", "curves", "-o", fig)
    _check(fig, ".png")


def test_trajectories(tmp_path):
    fig = tmp_path / "t.png"
    r = invoke("plot", "trajectories", "rosenbrock", "-o", fig, "--optimizers", "sgd,adam,calr",
               "--steps", "50", "--opt-arg", "sgd.lr=1e-3")
    _check(fig, ".png")
    assert "sgd" in r.stdout and "final f" in r.stdout
