import numpy as np
import pytest
import torch
from torch import nn

from spectra import HessianOperator, eigsh
from spectra.runs.monitor import SpectralMonitor
from spectra.runs.store import RunStore, read_run


def _problem():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Dropout(0.2), nn.Linear(6, 3)).double()
    return model, nn.CrossEntropyLoss(), X, y


def test_schedule_by_epoch_and_step():
    model, loss_fn, X, y = _problem()
    mon = SpectralMonitor(model, loss_fn, (X, y), every=2, unit="epoch", density=None, trace=False, top_k=1)
    assert mon.due(step=0, epoch=0) and not mon.due(step=5, epoch=1) and mon.due(step=9, epoch=2)
    assert not mon.due(step=9, epoch=2.5)
    mon.maybe_probe(step=9, epoch=2)
    assert not mon.due(step=9, epoch=2)  # not twice at the same epoch
    mon_s = SpectralMonitor(model, loss_fn, (X, y), every=3, unit="step", density=None, trace=False, top_k=1)
    assert [s for s in range(10) if mon_s.due(step=s)] == [0, 3, 6, 9]


def test_records_rows_and_restores_model_state(tmp_path):
    model, loss_fn, X, y = _problem()
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    with RunStore(tmp_path / "m.h5") as store:
        run = store.create_run("r")
        mon = SpectralMonitor(model, loss_fn, (X, y), run, top_k=3, density=(3, 12), trace=12)
        res = mon.probe(step=7, epoch=1)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
    # the recorded top eigenvalues are those of the eval-mode Hessian
    ref = eigsh(HessianOperator(model, loss_fn, (X, y), eval_mode=True), k=3, tol=1e-10)
    assert np.allclose(res.top_eigenvalues, ref.eigenvalues.numpy(), rtol=2e-3)
    probes = read_run(tmp_path / "m.h5", "r").probes
    assert np.asarray(probes["top_eigenvalues"]).shape == (1, 3)
    assert np.asarray(probes["ritz_nodes"]).shape == (1, 3, 12)
    assert np.allclose(np.asarray(probes["ritz_weights"]).sum(axis=-1), 1.0)
    assert int(np.asarray(probes["step"])[0]) == 7
    assert mon.num_matvecs == res.num_matvecs > 0 and mon.seconds > 0


def test_probes_repeat_exactly_for_the_same_step():
    model, loss_fn, X, y = _problem()
    a = SpectralMonitor(model, loss_fn, (X, y), top_k=2, density=(2, 8), trace=8).probe(step=4, epoch=None)
    b = SpectralMonitor(model, loss_fn, (X, y), top_k=2, density=(2, 8), trace=8).probe(step=4, epoch=None)
    assert np.array_equal(a.top_eigenvalues, b.top_eigenvalues)
    assert np.array_equal(a.measure.nodes, b.measure.nodes) and a.trace == b.trace


def test_bad_settings():
    model, loss_fn, X, y = _problem()
    with pytest.raises(ValueError, match="unit"):
        SpectralMonitor(model, loss_fn, (X, y), unit="batch")
    with pytest.raises(ValueError, match="every"):
        SpectralMonitor(model, loss_fn, (X, y), every=0)
    with pytest.raises(ValueError, match="top_k"):
        SpectralMonitor(model, loss_fn, (X, y), top_k=-1)


def test_monitor_fixes_the_reduction_once_and_states_it():
    import torch.nn.functional as F

    model, _, X, y = _problem()
    data = [(X[:15], y[:15]), (X[15:], y[15:])]
    mon = SpectralMonitor(model, lambda o, t: F.cross_entropy(o, t, reduction="sum"), data,
                          top_k=1, density=None, trace=False)
    assert mon.reduction == "sum"
    assert mon.probe(step=0, epoch=None).reduction == "sum"
    # a loss that is no per-sample mean or sum fails here, before any training step
    with pytest.raises(ValueError, match="reduction="):
        SpectralMonitor(model, lambda o, t: F.cross_entropy(o, t) ** 2, data)
    told = SpectralMonitor(model, lambda o, t: F.cross_entropy(o, t) ** 2, data, reduction="mean",
                           top_k=1, density=None, trace=False)
    assert told.probe(step=0, epoch=None).reduction == "mean"


def test_settings_the_model_rules_out_fail_when_the_monitor_is_built(tmp_path):
    model, loss_fn, X, y = _problem()  # 69 parameters
    with RunStore(tmp_path / "m.h5") as store:
        writer = store.create_run("r")
        with pytest.raises(ValueError, match=r"top_k=70 exceeds the number of parameters P=69"):
            SpectralMonitor(model, loss_fn, (X, y), writer, top_k=70)
        # a density whose bases exceed the memory is planned in the bounded mode, at once
        SpectralMonitor(model, loss_fn, (X, y), writer, top_k=1, density=(10**9, 60))
        assert writer.num_probes == 0
    assert SpectralMonitor(model, loss_fn, (X, y), top_k=69, density=(2, 8)).settings.top_k == 69


def test_a_progress_factory_gets_every_part_of_a_probe_and_is_closed_after_each_probe():
    model, loss_fn, X, y = _problem()
    events = []

    class Part:
        def update(self, n):
            events.append(("update", n))

        def close(self):
            events.append(("part closed",))

    class Line:
        def __call__(self, *, total, desc, unit="Hv"):
            events.append(("part", desc, total))
            return Part()

        def close(self):
            events.append(("line closed",))

    mon = SpectralMonitor(model, loss_fn, (X, y), top_k=2, density=(2, 8), trace=8,
                          progress=Line())
    mon.probe(step=0, epoch=0)
    parts = [e for e in events if e[0] == "part"]
    assert len(parts) >= 4  # top-k, smallest, trace, density
    done = sum(e[1] for e in events if e[0] == "update")
    assert done == mon.num_matvecs
    assert events.count(("part closed",)) == len(parts)
    assert events.count(("line closed",)) == 1 and events[-1] == ("line closed",)
    mon.probe(step=1, epoch=1)
    assert events.count(("line closed",)) == 2


def test_an_epoch_monitor_asked_without_the_epoch_refuses_instead_of_never_probing():
    model, loss_fn, X, y = _problem()
    mon = SpectralMonitor(model, loss_fn, (X, y), density=None, trace=False, top_k=1)
    # due(step=...) alone was False at every step: the monitor silently never probed
    with pytest.raises(ValueError, match=r"unit='epoch'\) needs the epoch .* pass epoch="):
        mon.due(step=10)
    with pytest.raises(ValueError, match="unit='epoch'"):
        mon.maybe_probe(step=10)
    with pytest.raises(ValueError, match="epoch must be a finite number >= 0, got nan"):
        mon.due(step=10, epoch=float("nan"))
    mon_s = SpectralMonitor(model, loss_fn, (X, y), unit="step", density=None, trace=False, top_k=1)
    with pytest.raises(ValueError, match="step must be an integer >= 0, got 3.0"):
        mon_s.due(step=3.0)
    with pytest.raises(ValueError, match="step must be an integer >= 0, got None"):
        mon_s.probe(step=None)


@pytest.mark.parametrize("kw, error, match", [
    ({"every": True}, ValueError, r"every must be an integer >= 1, got True \(a bool\)"),
    ({"trace": "yes"}, ValueError, r"trace must be an integer >= 0, got 'yes'"),
    ({"trace": 60.5}, ValueError, r"trace must be an integer >= 0, got 60.5"),
    ({"density": 5}, ValueError, r"density must be None or a pair"),
    ({"on_probe": 3}, TypeError, r"on_probe must be callable or None, got int"),
    # named trace_matvecs, ProbeSettings' name, not the monitor's
    ({"trace": 2}, ValueError, r"trace must be 0, a bool or >= 4 \(Hutch\+\+'s products\), got 2"),
    ({"layers": {"a": 5}}, TypeError, r"layers: group 'a' must be a parameter name or a list"),
    ({"seed": 2**64}, ValueError,
     r"seed must be an integer in \[-9223372036854775808, 18446744073709551615\]"),
])
def test_bad_settings_are_refused_by_name(kw, error, match):
    model, loss_fn, X, y = _problem()
    with pytest.raises(error, match=match):
        SpectralMonitor(model, loss_fn, (X, y), **kw)


def test_load_state_dict_names_what_a_foreign_state_lacks():
    model, loss_fn, X, y = _problem()
    mon = SpectralMonitor(model, loss_fn, (X, y), density=None, trace=False, top_k=1)
    with pytest.raises(ValueError, match="not a SpectralMonitor state: missing seconds, "
                                         "num_matvecs, num_probes, last_key"):
        mon.load_state_dict({})  # was a KeyError
    mon.load_state_dict(mon.state_dict())
