"""spectra.runs.tensorboard: rows mirrored to TensorBoard event files, read back with
TensorBoard's own reader."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from spectra.runs.store import RunStore, read_run
from spectra.runs.tensorboard import (
    TensorBoardLogger,
    TensorBoardWriter,
    density_histogram,
    log_run,
)


def _events(folder: Path):
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0})
    acc.Reload()
    return acc


def _scalars(acc, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_density_histogram_is_the_averaged_measure() -> None:
    nodes = np.array([[0.0, 1.0, 4.0], [1.0, 2.0, np.nan]])
    weights = np.array([[0.5, 0.25, 0.25], [0.5, 0.5, np.nan]])  # each vector sums to 1
    h = density_histogram(nodes, weights, buckets=4)  # buckets of width 1 on [0, 4]
    assert h["min"] == 0.0 and h["max"] == 4.0 and h["num"] == pytest.approx(1.0, abs=1e-15)
    assert h["bucket_limits"] == [1.0, 2.0, 3.0, 4.0]
    # [0,1): 0.5/2; [1,2): (0.25+0.5)/2; [2,3): 0.5/2; [3,4]: 0.25/2
    np.testing.assert_allclose(h["bucket_counts"], [0.25, 0.375, 0.25, 0.125], rtol=0, atol=1e-15)
    mean = (0.5 * 0 + 0.25 * 1 + 0.25 * 4 + 0.5 * 1 + 0.5 * 2) / 2
    assert h["sum"] == pytest.approx(mean, rel=1e-15)
    assert h["sum_squares"] == pytest.approx((0.25 + 4.0 + 0.5 + 2.0) / 2, rel=1e-15)
    assert density_histogram(np.full((2, 3), np.nan), np.ones((2, 3))) is None
    with pytest.raises(ValueError, match=r"\(n_v, m\)"):
        density_histogram(np.ones(3), np.ones(3))


def test_a_probe_of_fewer_vectors_than_its_row_still_has_mass_one(tmp_path: Path) -> None:
    """A row stored 4 vectors wide for a probe of 2 (NaN-padded, as the writer pads a
    later, smaller density) was divided by 4: buckets summing to 0.5."""
    nodes = np.full((4, 2), np.nan)
    weights = np.full((4, 2), np.nan)
    nodes[:2], weights[:2] = [[1.0, 2.0], [3.0, 4.0]], 0.5
    h = density_histogram(nodes, weights)
    assert h["num"] == pytest.approx(1.0, abs=1e-15)
    assert sum(h["bucket_counts"]) == pytest.approx(1.0, abs=1e-15)
    path = tmp_path / "r.h5"
    with RunStore(path) as store:
        run = store.create_run("a")
        run.append_probe(step=0, epoch=0.0, ritz_nodes=np.ones((4, 2)), ritz_weights=np.full((4, 2), 0.5))
        run.append_probe(step=1, epoch=1.0, ritz_nodes=nodes[:2], ritz_weights=weights[:2])
    p = read_run(path, "a").probes
    stored = density_histogram(p.ritz_nodes[1], p.ritz_weights[1])
    assert p.ritz_nodes.shape == (2, 4, 2) and stored["num"] == pytest.approx(1.0, abs=1e-15)


def test_rows_reach_the_run_file_and_tensorboard(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    rng = np.random.default_rng(0)
    path, logs = tmp_path / "r.h5", tmp_path / "tb"
    losses = rng.random(4)
    nodes, weights = rng.random((3, 2, 5)), np.full((3, 2, 5), 0.2)
    with RunStore(path) as store, TensorBoardWriter(store.create_run("sgd"), logs) as w:
        for i in range(4):
            w.append_metrics(step=10 * i, epoch=float(i), train_loss=losses[i], lr=0.1,
                             test_loss=np.nan)
            if i < 3:
                w.append_probe(step=10 * i, top_eigenvalues=[3.0 + i, 1.0 + i],
                               ritz_nodes=nodes[i], ritz_weights=weights[i])
        assert w.num_metrics == 4 and w.name == "sgd"  # the run writer's, passed through
    run = read_run(path, "sgd")
    np.testing.assert_array_equal(run.metrics.train_loss, losses)
    acc = _events(logs / "sgd")
    tags = acc.Tags()
    assert "metrics/test_loss" not in tags["scalars"]  # NaN is not logged
    train = _scalars(acc, "metrics/train_loss")
    assert sorted(train) == [0, 10, 20, 30]
    np.testing.assert_allclose([train[s] for s in sorted(train)], losses, rtol=1e-7)  # float32
    assert _scalars(acc, "probes/top_eigenvalues_1") == {0: 3.0, 10: 4.0, 20: 5.0}
    assert _scalars(acc, "probes/top_eigenvalues_2") == {0: 1.0, 10: 2.0, 20: 3.0}
    hist = {e.step: e.histogram_value for e in acc.Histograms("density")}
    assert sorted(hist) == [0, 10, 20]
    for i, step in enumerate(sorted(hist)):
        h = hist[step]
        assert sum(h.bucket) == pytest.approx(1.0, rel=1e-12)
        assert h.min == nodes[i].min() and h.max == nodes[i].max()
        assert h.sum == pytest.approx((nodes[i] * weights[i]).sum() / 2, rel=1e-12)


def test_rewind_drops_the_events_past_the_step(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    path, logs = tmp_path / "r.h5", tmp_path / "tb"
    with RunStore(path) as store:
        w = TensorBoardWriter(store.create_run("a"), logs)
        for s in range(5):
            w.append_metrics(step=s, train_loss=float(s))
        w.close()
    with RunStore(path) as store:  # resumed from the checkpoint at step 2
        w = TensorBoardWriter(store.open_run("a"), logs)
        assert w.rewind(2) == {"metrics": 2, "probes": 0}
        for s in (3, 4):
            w.append_metrics(step=s, train_loss=10.0 * s)
        w.close()
    assert read_run(path, "a").metrics.train_loss.tolist() == [0.0, 1.0, 2.0, 30.0, 40.0]
    assert _scalars(_events(logs / "a"), "metrics/train_loss") == {
        0: 0.0, 1: 1.0, 2: 2.0, 3: 30.0, 4: 40.0}
    # the resumed writer's events start with TensorBoard's purge of the steps >= 3
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    purges = [e.step for f in (logs / "a").iterdir() for e in EventFileLoader(str(f)).Load()
              if e.HasField("session_log") and e.session_log.status == e.session_log.START]
    assert purges == [3]


def test_log_run_replays_a_file(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    path = tmp_path / "r.h5"
    with RunStore(path) as store:
        w = store.create_run("b")
        for s in range(3):
            w.append_metrics(step=s, train_loss=0.5 * s, grad_norm=float(s))
            w.append_probe(step=s, trace=2.0 * s, ritz_nodes=[[0.0, s + 1.0]],
                           ritz_weights=[[0.5, 0.5]])
    folder = log_run(read_run(path, "b"), tmp_path / "tb")
    assert folder == tmp_path / "tb" / "b"
    acc = _events(folder)
    assert _scalars(acc, "metrics/grad_norm") == {0: 0.0, 1: 1.0, 2: 2.0}
    assert _scalars(acc, "probes/trace") == {0: 0.0, 1: 2.0, 2: 4.0}
    assert [e.step for e in acc.Histograms("density")] == [0, 1, 2]
    log_run(read_run(path, "b"), tmp_path / "tb")  # again: replaces, no duplicates
    assert _scalars(_events(folder), "probes/trace") == {0: 0.0, 1: 2.0, 2: 4.0}


def test_without_tensorboard_the_error_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match=r"needs the tensorboard package.*pip install tensorboard"):
        TensorBoardLogger(tmp_path, "a")


def test_a_new_event_file_sorts_after_the_folders_others(tmp_path: Path) -> None:
    """Within one second TensorBoard's file names are ordered by pid and a counter
    compared as text (writer 10 before writer 9), and a resumed run's purge then comes
    before the events it should drop: a new file waits for the next second."""
    import time

    from spectra.runs.tensorboard import EVENT_FILE_PREFIX, _after_existing_events

    now = int(time.time())
    (tmp_path / f"{EVENT_FILE_PREFIX}{now:010d}.host.123.9").write_bytes(b"")
    _after_existing_events(tmp_path)
    assert int(time.time()) > now
    # a file stamped far ahead (a skewed clock) is not waited for
    (tmp_path / f"{EVENT_FILE_PREFIX}{now + 3600:010d}.host.123.10").write_bytes(b"")
    t = time.time()
    _after_existing_events(tmp_path)
    assert time.time() - t < 1.0
    _after_existing_events(tmp_path / "missing")  # no folder yet: nothing to wait for
