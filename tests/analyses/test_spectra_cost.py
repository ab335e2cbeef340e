"""analyses.spectra_cost: its plan, its log-log slope, scale_bench's registry models, and
(slow) the quick mode end to end through fresh worker processes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyses import scale_bench, spectra_cost


def test_slope_recovers_a_power_law() -> None:
    x = [10.0, 100.0, 1000.0]
    assert spectra_cost.slope(x, [3 * v**1.5 for v in x]) == pytest.approx(1.5, abs=1e-9)
    assert spectra_cost.slope(x, [7.0, 7.0, 7.0]) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(spectra_cost.slope([10.0], [1.0]))


def test_plan_measures_every_model_twice_and_each_sweep() -> None:
    s = spectra_cost.FULL
    jobs = spectra_cost.plan(s)
    params = [j for j in jobs if j["study"] == "params"]
    assert len(params) == 2 * len(s.models)
    assert {j["task"] for j in params} == {"epoch", "probe"}
    assert sorted(j["m"] for j in jobs if j["study"] == "steps") == sorted(
        list(s.steps) * len(s.steps_models))
    assert [j["spec"]["n"] for j in jobs if j["study"] == "sizes"] == list(s.sizes)
    assert all(j["threads"] == 1 for j in jobs)


def test_build_registry_gives_the_registry_model_on_the_first_samples() -> None:
    model, (X, y) = scale_bench.build_registry({"model": "cnn", "kwargs": {}, "n": 32})
    assert X.shape == (32, 1, 8, 8) and y.shape == (32,)
    assert sum(p.numel() for p in model.parameters()) == 13_706
    model, (X, _) = scale_bench.build_registry({"model": "mlp", "kwargs": {"widths": [24]},
                                                "n": None})
    assert X.shape[1:] == (64,) and X.shape[0] > 1000
    assert sum(p.numel() for p in model.parameters()) == 64 * 24 + 24 + 24 * 10 + 10
    assert np.isfinite(model(X[:4]).detach().numpy()).all()


@pytest.mark.slow
def test_quick_mode_writes_the_results_and_figure(tmp_path) -> None:
    spectra_cost.main(["--quick", "--out-dir", str(tmp_path)])
    text = (tmp_path / "spectra_cost.md").read_text()
    assert "quick mode" in text and "FAILED" not in text
    assert "Probe CPU time grows as P^" in text
    assert (tmp_path / "spectra_cost.png").stat().st_size > 10_000


def test_measure_runs_a_repeated_measurement_once(monkeypatch) -> None:
    """The quick mode's CNN probe on 64 samples is a point of two sweeps (against P, and
    against the probe-set size): one process measures it for both."""
    calls = []

    def fake(job, log):
        calls.append(job)
        return {"cpu_seconds": float(len(calls))}

    monkeypatch.setattr(scale_bench, "run_job", fake)
    jobs = spectra_cost.plan(spectra_cost.QUICK)
    rows = spectra_cost.measure(jobs, workers=1)
    assert [j for j, _ in rows] == jobs
    assert len(calls) == len(jobs) - 1
    same = [r for j, r in rows if j["task"] == "probe" and j["model"] == "CNN"
            and j["spec"]["n"] == spectra_cost.QUICK.probe_samples]
    assert len(same) == 2 and same[0] is same[1]
    assert len({id(r) for _, r in rows}) == len(calls)


def test_findings_compare_the_monitor_per_product(monkeypatch, tmp_path) -> None:
    """The monitor's ratio is set against the measured one per product: (probe / products)
    / epoch, the monitor's the median over its runs."""
    runs = [("a", 20.0, 1.0, 20.0, 200.0), ("b", 30.0, 2.0, 15.0, 100.0)]  # 0.1, 0.15
    monkeypatch.setattr(spectra_cost, "monitor_ratios", lambda _: runs)
    monkeypatch.setattr(spectra_cost, "_probe_samples", lambda _: "128")
    rows = [({"study": "params", "task": "probe", "model": "CNN"},
             {"cpu_seconds": 4.0, "probe_matvecs": 200}),
            ({"study": "params", "task": "epoch", "model": "CNN"}, {"cpu_seconds": 0.1})]
    text = spectra_cost.findings(rows, tmp_path)
    assert "probe 25 ± 7.07 s with 150 ± 70.7 products" in text
    assert "Against the CPU-time ratio above (40)" in text
    assert "the untrained one measured here (200)" in text
    assert "0.125 in the monitor (median over runs) against 0.200 here" in text
