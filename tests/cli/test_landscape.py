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
