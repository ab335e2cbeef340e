"""``spectra landscape --checkpoint``."""

from __future__ import annotations

import numpy as np

from spectra.runs.store import read_run
from tests.cli.conftest import invoke, invoke_json


def test_landscape_top_1d(trained, tmp_path):
    fig = tmp_path / "l.png"
    out = invoke_json("landscape", "--checkpoint", trained["checkpoints"][-1], "--points", "9",
                      "--span", "0.5", "-o", fig, "--json")
    assert out["kind"] == "top" and out["dims"] == 1 and len(out["losses"]) == 9
    assert out["losses"][4] == out["center_loss"]
    np.testing.assert_allclose(out["alphas"], np.linspace(-0.5, 0.5, 9))
    lam_monitor = read_run(trained["h5"], "dcao").probes.top_eigenvalues[-1, 0]
    assert abs(out["eigenvalues"][0] - lam_monitor) <= 1e-2 * lam_monitor
    assert out["num_samples"] == 128  # the run's probe set
    assert fig.read_bytes().startswith(b"\x89PNG")


def test_landscape_extremes_plane_and_bottom_line(trained, tmp_path):
    """--directions extremes: the plane of the top and the most negative eigenvector
    (the run's probes recorded both); bottom: the line along the most negative one."""
    ckpt = trained["checkpoints"][-1]
    r = invoke("landscape", "--checkpoint", ckpt, "--directions", "extremes", "--dims", "2",
               "--points", "5", "-o", tmp_path / "s.png")
    assert "2-D, Hessian eigenvectors (the top and the most negative)" in r.stdout
    assert "eigenvalues: λ1 = " in r.stdout and ", λmin = " in r.stdout
    out = invoke_json("landscape", "--checkpoint", ckpt, "--directions", "extremes", "--dims",
                      "2", "--points", "5", "--json")
    lam1, lam_min = out["eigenvalues"]
    probes = read_run(trained["h5"], "dcao").probes
    assert abs(lam1 - probes.top_eigenvalues[-1, 0]) <= 1e-2 * abs(lam1)
    assert lam_min < lam1 and abs(lam_min - probes.bottom_eigenvalue[-1]) <= 1e-2 * abs(lam1)
    bottom = invoke_json("landscape", "--checkpoint", ckpt, "--directions", "bottom",
                         "--points", "5", "--json")
    assert bottom["kind"] == "bottom"
    assert abs(bottom["eigenvalues"][0] - lam_min) <= 1e-2 * abs(lam1)
    r = invoke("landscape", "--checkpoint", ckpt, "--directions", "extremes", "--json", ok=False)
    assert r.exit_code != 0 and "--directions extremes" in r.stderr and "--dims 2" in r.stderr


def test_landscape_random_2d(trained, tmp_path):
    fig = tmp_path / "l2.svg"
    r = invoke("landscape", "--checkpoint", trained["checkpoints"][-1], "--directions", "random",
               "--dims", "2", "--points", "5", "-o", fig)
    assert "2-D, random filter-normalized directions" in r.stdout
    assert fig.stat().st_size > 1000
    out = invoke_json("landscape", "--checkpoint", trained["checkpoints"][-1], "--directions",
                      "random", "--dims", "2", "--points", "5", "--json")
    assert np.asarray(out["losses"]).shape == (5, 5) and out["eigenvalues"] is None
    assert out["losses"][2][2] == out["center_loss"]


def test_landscape_names_nonfinite_points_and_a_nonfinite_span(trained, tmp_path):
    ckpt = trained["checkpoints"][-1]
    r = invoke("landscape", "--checkpoint", ckpt, "--span", "1e36", "--points", "3",
               "-o", tmp_path / "far.png")
    assert "NaN or Inf at 2 of 3 points" in r.stdout
    assert "from nan" not in r.stdout and "to inf" not in r.stdout
    for bad in ("nan", "inf"):
        r = invoke("landscape", "--checkpoint", ckpt, "--span", bad, "--json", ok=False)
        assert r.exit_code != 0 and "'--span'" in r.stderr and "is not a finite number" in r.stderr
    r = invoke("landscape", "--checkpoint", ckpt, "--span", "1e308", "--json", ok=False)
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    assert "error: --span 1e+308 is too large for the torch.float32 parameters" in r.stderr
