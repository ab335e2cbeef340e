import numpy as np
import pytest
import torch

from spectra import HessianOperator, trace
from tests.spectra.cases import CASES
from tests.spectra.spectra_matrices import SPECTRA, with_spectrum


@pytest.mark.parametrize("method", ["hutch++", "hutchinson"])
def test_stderr_is_honest(method):
    ev = SPECTRA["outliers"]
    A = with_spectrum(ev)
    true = ev.sum()
    hits = 0
    trials = 200
    for s in range(trials):
        est = trace(A, method=method, num_matvecs=30, generator=torch.Generator().manual_seed(s))
        hits += abs(est.value - true) <= 3 * est.stderr
        assert est.num_matvecs == 30
    assert hits >= 0.95 * trials, hits


def test_hutchpp_beats_hutchinson_on_outlier_spectra():
    A = with_spectrum(SPECTRA["outliers"])
    true = SPECTRA["outliers"].sum()
    err = {}
    for method in ("hutch++", "hutchinson"):
        vals = [trace(A, method=method, num_matvecs=30, generator=torch.Generator().manual_seed(s)).value
                for s in range(50)]
        err[method] = np.sqrt(np.mean((np.array(vals) - true) ** 2))
    assert err["hutch++"] < 0.5 * err["hutchinson"], err


def test_exact_when_the_sketch_captures_the_range():
    u = torch.randn(40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    A = u @ u.T  # rank 3: the sketch of 6 vectors holds its range
    est = trace(A, num_matvecs=18)
    assert np.isclose(est.value, float(torch.trace(A)), rtol=1e-9)


def test_model_hessian():
    case = CASES[0]
    H = HessianOperator(case.model, case.loss_fn, case.batches)
    true = float(torch.trace(case.dense_hessian()))
    est = trace(H, num_matvecs=39 * 3)  # sketch of full rank: exact
    assert np.isclose(est.value, true, rtol=1e-8)


@pytest.mark.parametrize("kw", [{"method": "x"}, {"num_matvecs": 1}, {"num_matvecs": 3}])
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        trace(with_spectrum([1.0, 2.0, 3.0]), **kw)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"num_matvecs": True}, r"num_matvecs must be an integer >= 4, got True \(a bool\)"),
        ({"num_matvecs": 30.0}, r"num_matvecs must be an integer >= 4, got 30.0"),
        ({"chunk_size": 0}, r"chunk_size must be an integer >= 1, got 0"),
        ({"chunk_size": True}, r"chunk_size must be an integer >= 1, got True"),
    ],
)
def test_integer_arguments_refuse_bools_and_non_integers(kw, match):
    with pytest.raises(ValueError, match=match):
        trace(with_spectrum([1.0, 2.0, 3.0]), **kw)


def test_empty_operator_is_refused():
    with pytest.raises(ValueError, match="0 x 0"):
        trace(torch.zeros(0, 0))


def test_progress_bar_over_the_products(capsys):
    trace(with_spectrum(SPECTRA["outliers"]), num_matvecs=30, progress=True)
    err = capsys.readouterr().err
    assert "trace:" in err and "/30 " in err
