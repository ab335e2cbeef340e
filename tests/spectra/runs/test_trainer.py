
import numpy as np
import pytest
import torch
from torch import nn

from optim.dcao import DCAO
from spectra.runs.checkpoints import CheckpointError, load_checkpoint, run_file, save_checkpoint
from spectra.runs.monitor import SpectralMonitor
from spectra.runs.store import METRIC_COLUMNS, PROBE_COLUMNS, RunStore, read_run
from spectra.runs.trainer import CheckpointPolicy, TrainingDiverged, train


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 6, generator=g)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long() + (X[:, 2] > 1).long()
    return X, y


def _setup(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))
    loss_fn = nn.CrossEntropyLoss()
    X, y = _data()
    opt = DCAO(model.parameters(), lr=0.1, model=model, loss_fn=loss_fn, probe_data=(X[:32], y[:32]),
               period=4, warmup_probes=2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.9)
    return model, loss_fn, opt, sched, (X[:80], y[:80]), (X[80:], y[80:])


def _run(tmp_path, name, epochs, *, resume=None, store_path, ckpt_dir):
    model, loss_fn, opt, sched, tr, te = _setup()
    with RunStore(store_path) as store:
        run = store.open_run(name) if name in store else store.create_run(name, config={"x": 1})
        mon = SpectralMonitor(model, loss_fn, tr, run, every=1, top_k=2, density=(2, 10), trace=8)
        train(model, opt, tr, loss_fn=loss_fn, epochs=epochs, batch_size=16, test_data=te,
              step_schedulers=[sched], monitor=mon, store=run, checkpoint=CheckpointPolicy(ckpt_dir),
              seed=3, resume=resume)
    return model


def _rows(path, name):
    run = read_run(path, name)
    out = {}
    for table in ("metrics", "probes"):
        t = getattr(run, table)
        cols = (METRIC_COLUMNS if table == "metrics" else PROBE_COLUMNS) + tuple(t.extra)
        for col in cols:
            if col == "seconds" or t[col] is None:
                continue
            out[f"{table}.{col}"] = np.asarray(t[col])
    return out


def test_resume_is_bit_identical(tmp_path):
    a = _run(tmp_path, "full", 4, store_path=tmp_path / "a.h5", ckpt_dir=tmp_path / "ca")
    _run(tmp_path, "split", 2, store_path=tmp_path / "b.h5", ckpt_dir=tmp_path / "cb")
    b = _run(tmp_path, "split", 4, resume=tmp_path / "cb" / "checkpoint-epoch0002.pt",
             store_path=tmp_path / "b.h5", ckpt_dir=tmp_path / "cb")
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    ra, rb = _rows(tmp_path / "a.h5", "full"), _rows(tmp_path / "b.h5", "split")
    assert ra.keys() == rb.keys()
    for k in ra:
        assert np.array_equal(ra[k], rb[k], equal_nan=True), k
    assert len(ra["metrics.step"]) == 4 and len(ra["probes.step"]) == 5  # epoch 0..4
    assert len(read_run(tmp_path / "b.h5", "split").checkpoints) == 4


def test_resume_after_a_stop_past_the_checkpoint_rewrites_those_steps_once(tmp_path):
    """A run that went on past its last checkpoint (then stopped) and resumes from it
    ends with the same rows as an uninterrupted run: no step recorded twice."""
    a = _run(tmp_path, "full", 4, store_path=tmp_path / "a.h5", ckpt_dir=tmp_path / "ca")
    _run(tmp_path, "split", 3, store_path=tmp_path / "b.h5", ckpt_dir=tmp_path / "cb")
    # resume from epoch 2 although epoch 3 was written: as if it stopped before its checkpoint
    b = _run(tmp_path, "split", 4, resume=tmp_path / "cb" / "checkpoint-epoch0002.pt",
             store_path=tmp_path / "b.h5", ckpt_dir=tmp_path / "cb")
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    ra, rb = _rows(tmp_path / "a.h5", "full"), _rows(tmp_path / "b.h5", "split")
    for k in ra:
        assert np.array_equal(ra[k], rb[k], equal_nan=True), k
    assert np.all(np.diff(rb["metrics.step"]) > 0) and np.all(np.diff(rb["probes.step"]) > 0)
    assert len(read_run(tmp_path / "b.h5", "split").checkpoints) == 4


def test_checkpoints_load_with_weights_only_and_refuse_others(tmp_path):
    model, loss_fn, opt, _sched, tr, _te = _setup()
    res = train(model, opt, tr, loss_fn=loss_fn, epochs=2, checkpoint=CheckpointPolicy(tmp_path, every=2),
                checkpoint_extra={"model_spec": {"name": "mlp", "kwargs": {}}})
    assert [p.name for p in res.checkpoints] == ["checkpoint-epoch0002.pt"]
    ck = load_checkpoint(res.checkpoints[0])
    assert ck["epoch"] == 2 and ck["model_spec"]["name"] == "mlp"
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="not a spectra checkpoint"):
        load_checkpoint(tmp_path / "bare.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a spectra checkpoint") as err:
        load_checkpoint(tmp_path / "junk.pt")
    # torch's advice to retry with weights_only=False is the unsafe path: never shown
    assert "weights_only=False will likely succeed" not in str(err.value)
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(CheckpointError, match="not a spectra checkpoint") as err:
        load_checkpoint(tmp_path / "random.pt")
    assert "likely succeed" not in str(err.value)
    # a cut-short copy, an empty file, a text file: each says which
    good = res.checkpoints[0].read_bytes()
    (tmp_path / "cut.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="zip archive cannot be read: the file is truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"not a spectra checkpoint: the file is empty \(0 bytes\)"):
        load_checkpoint(tmp_path / "empty.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a file torch.save writes .* this one with b'hell'"):
        load_checkpoint(tmp_path / "text.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    import pickle

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"format": "spectra-checkpoint", "x": Evil()}))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_checkpoint_that_does_not_fit_on_disk_leaves_the_old_one(tmp_path, monkeypatch):
    import errno
    import io
    import os

    import spectra.runs.checkpoints as C

    model, loss_fn, opt, _sched, tr, _te = _setup()
    res = train(model, opt, tr, loss_fn=loss_fn, epochs=1, checkpoint=CheckpointPolicy(tmp_path))
    before = res.checkpoints[0].read_bytes()
    assert res.checkpoints[0].stat().st_mode & 0o777 == 0o666 & ~_umask()

    class Full(io.RawIOBase):
        def __init__(self, fd, mode):
            os.close(fd)

        def writable(self):
            return True

        def write(self, b):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(C.os, "fdopen", Full)
    with pytest.raises(CheckpointError, match="no space left on the device"):
        train(model, opt, tr, loss_fn=loss_fn, epochs=2, checkpoint=CheckpointPolicy(tmp_path),
              resume=res.checkpoints[0])
    assert res.checkpoints[0].read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-epoch0001.pt"]


def test_a_checkpoint_reaches_the_disk_before_its_rename_is_made_durable(tmp_path, monkeypatch):
    """save_checkpoint syncs the file's bytes before the rename and the folder after it, so
    that a power loss (not only a killed process) leaves this checkpoint or the previous."""
    import os

    import spectra.runs.checkpoints as C

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.isdir(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd")
                       else None))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", None))
        real_replace(src, dst)

    monkeypatch.setattr(C.os, "fsync", fsync)
    monkeypatch.setattr(C.os, "replace", replace)
    model, loss_fn, opt, _sched, tr, _te = _setup()
    res = train(model, opt, tr, loss_fn=loss_fn, epochs=1, checkpoint=CheckpointPolicy(tmp_path))
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    if events[0][1] is not None:  # /proc tells a folder from a file
        assert events[0][1] is False and events[2][1] is True
    assert load_checkpoint(res.checkpoints[0])["epoch"] == 1


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_checkpoints_record_their_run_relative_to_their_folder(tmp_path):
    _run(tmp_path, "r", 1, store_path=tmp_path / "runs" / "a.h5", ckpt_dir=tmp_path / "ck" / "r")
    ck = load_checkpoint(tmp_path / "ck" / "r" / "checkpoint-epoch0001.pt")
    run = read_run(tmp_path / "runs" / "a.h5", "r")
    assert ck["run"]["id"] == run.run_id and len(run.run_id) == 32
    assert ck["run"]["file"] == "../../runs/a.h5" and ck["run"]["name"] == "r"
    assert ck["run"]["row"] == {"step": int(run.metrics.step[0]), "epoch": 1.0,
                                "train_loss": float(run.metrics.train_loss[0])}
    assert run_file(ck, tmp_path / "ck" / "r" / "checkpoint-epoch0001.pt") == tmp_path / "runs" / "a.h5"


def test_resume_into_another_run_or_history_changes_nothing(tmp_path):
    """A checkpoint continues its own run and history only; refused before any row
    is dropped or written."""
    h5, ck = tmp_path / "a.h5", tmp_path / "ck"
    _run(tmp_path, "r", 3, store_path=h5, ckpt_dir=ck)
    stale = tmp_path / "stale.pt"
    stale.write_bytes((ck / "checkpoint-epoch0003.pt").read_bytes())
    # another run of the same file
    _run(tmp_path, "other", 1, store_path=h5, ckpt_dir=tmp_path / "ck2")
    before = _rows(h5, "other")
    with pytest.raises(CheckpointError, match="is another run"):
        _run(tmp_path, "other", 4, resume=stale, store_path=h5, ckpt_dir=tmp_path / "ck2")
    after = _rows(h5, "other")
    assert all(np.array_equal(before[k], after[k], equal_nan=True) for k in before)
    # another history: resumed from epoch 2 on other data, then the epoch-3
    # checkpoint of the first history is stale
    model, loss_fn, opt, sched, tr, te = _setup()
    tr = (tr[0] * 1.5, tr[1])
    with RunStore(h5) as store:
        run = store.open_run("r")
        train(model, opt, tr, loss_fn=loss_fn, epochs=3, batch_size=16, test_data=te,
              step_schedulers=[sched], store=run, checkpoint=CheckpointPolicy(tmp_path / "ck3"),
              seed=3, resume=ck / "checkpoint-epoch0002.pt")
    before = _rows(h5, "r")
    model, loss_fn, opt, sched, tr, te = _setup()
    with RunStore(h5) as store, pytest.raises(CheckpointError, match="history the run no longer has"):
        train(model, opt, tr, loss_fn=loss_fn, epochs=4, batch_size=16, test_data=te,
              step_schedulers=[sched], store=store.open_run("r"), seed=3, resume=stale)
    after = _rows(h5, "r")
    assert all(np.array_equal(before[k], after[k], equal_nan=True) for k in before)


def test_a_checkpoint_without_a_run_never_rewinds_a_run_with_rows(tmp_path):
    model, loss_fn, opt, _sched, tr, _te = _setup()
    res = train(model, opt, tr, loss_fn=loss_fn, epochs=1, checkpoint=CheckpointPolicy(tmp_path))
    _run(tmp_path, "r", 2, store_path=tmp_path / "a.h5", ckpt_dir=tmp_path / "ck")
    model, loss_fn, opt, _sched, tr, _te = _setup()
    with RunStore(tmp_path / "a.h5") as store, pytest.raises(CheckpointError, match="no run identity"):
        train(model, opt, tr, loss_fn=loss_fn, epochs=2, store=store.open_run("r"),
              resume=res.checkpoints[0])
    assert len(read_run(tmp_path / "a.h5", "r").metrics) == 2


def test_resume_into_another_architecture_is_refused(tmp_path):
    model, loss_fn, opt, _sched, tr, _te = _setup()
    res = train(model, opt, tr, loss_fn=loss_fn, epochs=1, checkpoint=CheckpointPolicy(tmp_path))
    other = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    with pytest.raises(ValueError, match="does not fit this model"):
        train(other, torch.optim.SGD(other.parameters(), lr=0.1), tr, loss_fn=loss_fn, epochs=2,
              resume=res.checkpoints[0])


def test_nonfinite_loss_stops_cleanly_and_keeps_rows(tmp_path):
    model, loss_fn, _, _, tr, _te = _setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    X, y = tr
    X = X.clone()
    X[50] = float("nan")  # a corrupt sample: the loss of its batch is NaN
    with RunStore(tmp_path / "r.h5") as store:
        run = store.create_run("nan")
        with pytest.raises(TrainingDiverged, match="at step"):
            train(model, opt, (X, y), loss_fn=loss_fn, epochs=3, store=run)
    assert read_run(tmp_path / "r.h5", "nan") is not None


def test_metrics_rows_and_hparams(tmp_path):
    model, loss_fn, opt, _sched, tr, te = _setup()
    with RunStore(tmp_path / "m.h5") as store:
        run = store.create_run("m")
        res = train(model, opt, tr, loss_fn=loss_fn, epochs=3, test_data=te, store=run, log_every_steps=2)
    m = read_run(tmp_path / "m.h5", "m").metrics
    per_epoch = ~np.isnan(np.asarray(m["test_loss"]))
    assert per_epoch.sum() == 3 and len(res.history) == 3
    assert np.all(np.asarray(m["lr"]) > 0) and np.all(np.asarray(m["momentum"]) > 0)
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"] * 1.5
    assert 0 <= res.history[-1]["test_acc"] <= 1


def test_bad_arguments():
    model, loss_fn, opt, _sched, tr, _te = _setup()
    with pytest.raises(ValueError, match="epochs"):
        train(model, opt, tr, loss_fn=loss_fn, epochs=-1)
    with pytest.raises(ValueError, match="batch_size"):
        train(model, opt, tr, loss_fn=loss_fn, epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="every"):
        CheckpointPolicy("x", every=0)
    with pytest.raises(ValueError):
        save_checkpoint("/tmp/x.pt", {"step": 1})


@pytest.mark.parametrize("change, error, match", [
    ({"checkpoint": "ckpts"}, TypeError,
     "checkpoint must be a CheckpointPolicy or None, got str: use CheckpointPolicy"),
    ({"test_data": "X"}, TypeError, "test_data must be a pair"),
    ({"step_schedulers": object()}, TypeError, "step_schedulers must be a list of schedulers"),
    ({"epoch_schedulers": [None]}, TypeError, r"epoch_schedulers\[0\] must have a step\(\)"),
    ({"train_data": "X"}, TypeError, "train_data must be a pair"),
    ({"optimizer": "sgd"}, TypeError, "optimizer must be a torch.optim.Optimizer"),
    ({"epochs": True}, ValueError, "epochs must be an integer"),
    ({"loss_fn": nn.CrossEntropyLoss(reduction="sum")}, ValueError,
     "loss_fn.reduction is 'sum': train.. records per-sample mean losses"),
    ({"monitor": object()}, TypeError, "monitor must be a SpectralMonitor"),
])
def test_bad_arguments_are_refused_by_name_before_any_step(change, error, match):
    """A bad checkpoint policy, test set or scheduler failed after a whole epoch of
    training (and a metrics row written), others with raw errors; a summed loss was
    recorded batch-size times too large."""
    model, loss_fn, opt, _sched, tr, te = _setup()
    before = [p.detach().clone() for p in model.parameters()]
    kw = {"optimizer": opt, "train_data": tr, "loss_fn": loss_fn, "epochs": 1, "test_data": te,
          **change}
    with pytest.raises(error, match=match):
        train(model, kw.pop("optimizer"), kw.pop("train_data"), **kw)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="every"):
        CheckpointPolicy("x", every=True)


def test_resume_restores_the_cuda_states_of_the_devices_it_sees(tmp_path, monkeypatch):
    """A checkpoint saved where more GPUs were visible resumes where fewer are: each visible
    device gets its saved state; the states of devices it does not see are not set (an
    IndexError in torch.cuda.set_rng_state_all)."""
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    X, y = _data(32)
    train(model, opt, (X, y), loss_fn=nn.CrossEntropyLoss(), epochs=1, batch_size=16,
          checkpoint=CheckpointPolicy(tmp_path))
    ckpt = load_checkpoint(tmp_path / "checkpoint-epoch0001.pt")
    saved = [torch.full((16,), i, dtype=torch.uint8) for i in range(2)]  # two devices then
    ckpt["rng"]["cuda"] = saved
    restored = []
    record = lambda state, device="cuda": restored.append((int(state[0]), device))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # one device now
    monkeypatch.setattr(torch.cuda, "set_rng_state", record)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", record)
    res = train(model, opt, (X, y), loss_fn=nn.CrossEntropyLoss(), epochs=1, batch_size=16,
                resume=ckpt)
    assert res.epochs == 1 and restored == [(0, 0)]


class _SeenDevice(Exception):
    pass


def _stop_at_first_forward(model):
    """A forward pre-hook that raises with the device of the input it is given."""
    def hook(module, args):
        raise _SeenDevice(args[0].device)
    model.register_forward_pre_hook(hook)


def test_each_batch_goes_to_the_model_device():
    """CPU data and a model elsewhere (here the meta device, which no CPU op accepts
    next to a CPU tensor): the training step and the evaluation hand the model its
    batch on the model's device."""
    from spectra.runs.trainer import evaluate

    X, y = _data()
    model = nn.Sequential(nn.Linear(6, 3)).to("meta")
    _stop_at_first_forward(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(_SeenDevice) as seen:
        train(model, opt, (X, y), loss_fn=nn.CrossEntropyLoss(), epochs=1, batch_size=16)
    assert seen.value.args[0] == torch.device("meta")
    with pytest.raises(_SeenDevice) as seen:
        evaluate(model, nn.CrossEntropyLoss(), X, y)
    assert seen.value.args[0] == torch.device("meta")


def test_the_optimizers_clock_is_paused_outside_its_steps():
    """Evaluations, the monitor's probes and checkpoints run inside the optimizer's
    paused_clock() (DCAO's budget counts the time between its steps as training)."""
    import contextlib

    class Clocked(torch.optim.SGD):
        def __init__(self, params):
            super().__init__(params, lr=0.1)
            self.events: list[str] = []
            self.paused = 0

        @contextlib.contextmanager
        def paused_clock(self):
            self.paused += 1
            yield
            self.paused -= 1

        def step(self, closure=None):
            self.events.append("step" if self.paused == 0 else "step while paused")
            return super().step(closure)

    class Monitor:
        unit = "step"
        seconds = 0.0

        def __init__(self, opt):
            self.opt, self.calls = opt, []

        def maybe_probe(self, **kw):
            self.calls.append(self.opt.paused)

    torch.manual_seed(0)
    X, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    model = torch.nn.Linear(4, 2)
    opt = Clocked(model.parameters())
    monitor = Monitor(opt)
    train(model, opt, (X, y), loss_fn=torch.nn.functional.cross_entropy, epochs=2,
          batch_size=8, test_data=(X, y), monitor=monitor)
    assert opt.events == ["step"] * 8
    # the epoch-0 probe comes before the clock starts; every later one is paused
    assert monitor.calls[1:] and all(depth >= 1 for depth in monitor.calls[1:])


def test_an_epochs_seconds_leave_out_the_work_between_its_steps():
    """The row's seconds subtracted only the monitor's own probe time: its row write,
    on_probe and the log_every_steps rows were booked as training (3.7 times the
    training time in the audit's case)."""
    import time

    class SlowStore:  # a store whose every write takes 50 ms
        def __init__(self):
            self.metrics: list[dict] = []

        def append_metrics(self, row=None, /, **values):
            time.sleep(0.05)
            self.metrics.append(dict(row or values))

    class Monitor:  # a step-unit monitor whose probe takes no time but its write does
        unit, seconds = "step", 0.0

        def maybe_probe(self, **kw):
            time.sleep(0.05)

    torch.manual_seed(0)
    X, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    model = torch.nn.Linear(4, 2)
    store = SlowStore()
    result = train(model, torch.optim.SGD(model.parameters(), lr=0.1), (X, y),
                   loss_fn=torch.nn.functional.cross_entropy, epochs=1, batch_size=4,
                   monitor=Monitor(), store=store, log_every_steps=1)
    epoch_row = store.metrics[-1]
    assert len(store.metrics) == 9  # 8 step rows, then the epoch's
    # 8 steps of a 10-parameter model against 0.8 s of writes and probes between them
    assert epoch_row["seconds"] < 0.4, epoch_row["seconds"]
    assert result.train_seconds == epoch_row["seconds"]


def test_a_last_batch_of_one_sample_under_batch_norm_names_the_batch_size():
    """PyTorch's 'Expected more than 1 value per channel when training' named neither the
    batch nor batch_size."""
    torch.manual_seed(0)
    X, y = torch.randn(9, 4), torch.randint(0, 2, (9,))
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    with pytest.raises(ValueError, match=r"last batch of epoch 1 holds 1 sample \(9 training "
                                         r"samples in batches of 4\).*\(e\.g\. 5\)"):
        train(model, torch.optim.SGD(model.parameters(), lr=0.1), (X, y),
              loss_fn=torch.nn.functional.cross_entropy, epochs=1, batch_size=4)
    model2 = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    train(model2, torch.optim.SGD(model2.parameters(), lr=0.1), (X, y),  # 9 = 5 + 4
          loss_fn=torch.nn.functional.cross_entropy, epochs=1, batch_size=5)
