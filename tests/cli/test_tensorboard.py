"""``--tensorboard DIR`` on ``spectra train``, ``compare`` and ``export``: the run file's
rows, read back with TensorBoard's own reader."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from spectra.runs.store import read_run
from tests.cli.conftest import TINY, invoke


def _acc(folder):
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0})
    acc.Reload()
    return acc


def _scalars(acc, tag):
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_train_and_resume_log_the_run_files_rows(tmp_path):
    pytest.importorskip("tensorboard")
    out, tb = tmp_path / "t.h5", tmp_path / "tb"
    common = ("train", "--optimizer", "sgd", "-o", out, *TINY)
    invoke(*common, "--epochs", "2", "--tensorboard", tb)
    ckpt = tmp_path / "t_ckpt" / "sgd" / "checkpoint-epoch0001.pt"
    r = invoke("train", "--resume", ckpt, "--epochs", "2", "--tensorboard", tb, "--overwrite")
    assert "dropped 1 metric and 1 probe rows" in r.stdout
    run = read_run(out, "sgd")
    acc = _acc(tb / "sgd")
    loss = _scalars(acc, "metrics/test_loss")
    assert sorted(loss) == run.metrics.step.tolist()  # the resumed steps once, not twice
    np.testing.assert_allclose([loss[s] for s in sorted(loss)], run.metrics.test_loss, rtol=1e-6)
    top = _scalars(acc, "probes/top_eigenvalues_1")
    np.testing.assert_allclose([top[s] for s in run.probes.step.tolist()],
                               run.probes.top_eigenvalues[:, 0], rtol=1e-6)
    hist = {e.step: e.histogram_value for e in acc.Histograms("density")}
    assert sorted(hist) == run.probes.step.tolist()
    assert all(abs(sum(h.bucket) - 1.0) < 1e-9 for h in hist.values())


def test_compare_logs_one_tensorboard_run_per_optimizer(tmp_path):
    pytest.importorskip("tensorboard")
    tb = tmp_path / "tb"
    invoke("compare", "--optimizers", "sgd,adam", "--epochs", "1", "-o", tmp_path / "c.h5",
           "--checkpoint-every", "0", "--no-density", "--tensorboard", tb, *TINY)
    assert sorted(p.name for p in tb.iterdir()) == ["adam", "sgd"]
    for name in ("adam", "sgd"):
        acc = _acc(tb / name)
        assert "metrics/train_loss" in acc.Tags()["scalars"]
        assert acc.Tags()["histograms"] == []  # --no-density


def test_export_tensorboard_replays_a_file(trained, tmp_path):
    pytest.importorskip("tensorboard")
    tb = tmp_path / "tb"
    r = invoke("export", trained["h5"], "--tensorboard", tb)
    assert "view: tensorboard --logdir" in r.stdout
    run = read_run(trained["h5"], "dcao")
    acc = _acc(tb / "dcao")
    assert sorted(_scalars(acc, "probes/trace")) == run.probes.step.tolist()
    again = invoke("export", trained["h5"], "--tensorboard", tb, ok=False)
    assert again.exit_code == 2 and "already holds TensorBoard events" in again.stderr
    invoke("export", trained["h5"], "--tensorboard", tb, "--overwrite")
    assert sorted(_scalars(_acc(tb / "dcao"), "probes/trace")) == run.probes.step.tolist()


def test_without_tensorboard_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    out = tmp_path / "t.h5"
    r = invoke("train", "--optimizer", "sgd", "--epochs", "1", "-o", out, "--tensorboard",
               tmp_path / "tb", *TINY, ok=False)
    assert r.exit_code == 2 and "pip install tensorboard" in r.stderr
    assert not out.exists() and not (tmp_path / "tb").exists()
    r = invoke("export", out, "--csv", tmp_path, ok=False)  # (no file: click's own check)
    assert r.exit_code == 2
    assert "nothing to write" in invoke("export", __file__, ok=False).stderr
