import math
import warnings

import numpy as np
import pytest
import torch

from spectra import DenseOperator, GGNOperator, HessianOperator, trace
from spectra.linalg.lanczos import random_vectors
from tests.spectra.cases import CASES
from tests.spectra.spectra_matrices import SPECTRA, with_spectrum

# positive semi-definite spectra for XNysTrace (the GGN's shape: outliers over a bulk near 0)
PSD = {
    "outliers": np.concatenate([[50.0, 30.0, 20.0, 12.0, 9.0], np.linspace(0.0, 2.0, 195)]),
    "power-law": 1.0 / np.arange(1, 201),
}


def _trials(A, method, num_matvecs, trials=200):
    """Errors and error estimates of ``trials`` seeded estimates of ``tr(A)``."""
    true = float(torch.trace(A))
    est = [trace(A, method=method, num_matvecs=num_matvecs, generator=torch.Generator().manual_seed(s))
           for s in range(trials)]
    return np.array([e.value - true for e in est]), np.array([e.stderr for e in est])


@pytest.mark.parametrize("method, spectrum", [
    ("hutch++", "outliers"), ("hutchinson", "outliers"), ("xtrace", "outliers"),
    ("xtrace", "linear"), ("xnystrace", "psd-outliers"), ("xnystrace", "psd-power-law"),
])
def test_error_estimate_is_honest_and_the_estimate_unbiased(method, spectrum):
    ev = PSD[spectrum[4:]] if spectrum.startswith("psd-") else SPECTRA[spectrum]
    err, se = _trials(with_spectrum(ev), method, 30)
    z = err / se
    # honest: the true error is within 3 error estimates in most trials (a Gaussian's
    # 99.7%; leave-one-out estimates run a little small), and the estimate is neither
    # far too small nor far too large on average (1 for an exact standard error)
    assert np.mean(np.abs(z) <= 3) >= 0.85, np.mean(np.abs(z) <= 3)
    assert 0.5 <= np.mean(z**2) <= 4.0, np.mean(z**2)
    # unbiased: the mean error is within 4 standard errors of the mean of 200 trials
    assert abs(err.mean()) <= 4 * err.std(ddof=1) / math.sqrt(len(err)), (err.mean(), err.std())


def test_num_matvecs_is_what_was_spent():
    A = with_spectrum(SPECTRA["outliers"])  # P = 200
    for method, budget, spent in [("xtrace", 31, 30), ("xtrace", 1000, 200), ("xnystrace", 31, 31),
                                  ("xnystrace", 1000, 200), ("hutch++", 31, 31), ("hutchinson", 31, 31)]:
        if method == "xnystrace":
            A = with_spectrum(PSD["outliers"])
        op = DenseOperator(A)
        est = trace(op, method=method, num_matvecs=budget)
        assert est.num_matvecs == spent == op.num_matvecs, (method, est.num_matvecs, op.num_matvecs)
        assert est.method == method


@pytest.mark.parametrize("spectrum", ["outliers", "negative", "clusters"])
def test_xtrace_is_exact_with_a_full_budget(spectrum):
    ev = SPECTRA[spectrum]
    est = trace(with_spectrum(ev), method="xtrace", num_matvecs=2 * len(ev))
    assert math.isclose(est.value, ev.sum(), rel_tol=1e-9, abs_tol=1e-9 * np.abs(ev).sum())
    assert est.stderr <= 1e-9 * np.abs(ev).sum()


@pytest.mark.parametrize("spectrum", ["outliers", "power-law"])
def test_xnystrace_is_exact_with_a_full_budget(spectrum):
    ev = PSD[spectrum]
    est = trace(with_spectrum(ev), method="xnystrace", num_matvecs=len(ev))
    assert math.isclose(est.value, ev.sum(), rel_tol=1e-8), (est.value, ev.sum())


@pytest.mark.parametrize("method", ["xtrace", "xnystrace", "hutch++", "hutchinson"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_budget_that_covers_every_direction_gives_the_exact_trace(method, dtype):
    """Singular and PSD spectra with exact zeros, float32 too: at ``k = P`` XTrace's
    leave-one-out sketch of a singular operator and XNysTrace's Nyström step are rounding
    noise (0.55 off a trace of 165 and 341 times the trace before); a budget of ``P`` or
    more gives every method the unit vectors' exact trace, ``P`` products, no error bar."""
    spectra_ = [np.concatenate([[100.0, 50.0], np.linspace(0.0, 1.0, 28)]),
                np.concatenate([[1e3, 10.0, 1.0], np.zeros(117)])]
    for ev in spectra_:
        A = with_spectrum(ev).to(dtype)
        P = len(ev)
        for seed in range(3):
            est = trace(A, method=method, num_matvecs=P + 3 * seed,
                        generator=torch.Generator().manual_seed(seed))
            tol = (1e-4 if dtype == torch.float32 else 1e-10) * np.abs(ev).sum()
            assert abs(est.value - ev.sum()) <= tol, (P, seed, est)
            assert est.stderr == 0.0 and est.num_matvecs == P


@pytest.mark.parametrize("method", ["xtrace", "xnystrace"])
def test_exact_on_low_rank_once_every_leave_one_out_sketch_holds_the_range(method):
    u = torch.randn(40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    A = u @ u.T  # rank 3: any 3 of the 4 sketch vectors span its range (a singular R)
    for budget in (8, 18, 80):
        est = trace(A, method=method, num_matvecs=budget)
        assert math.isclose(est.value, float(torch.trace(A)), rel_tol=1e-9), (budget, est)


def _naive_xtrace(A, W):
    """XTrace's leave-one-out samples straight from their definition, one QR per sample."""
    P, k = W.shape
    out = []
    for i in range(k):
        Qi, _ = torch.linalg.qr(A @ torch.cat([W[:, :i], W[:, i + 1:]], dim=1))
        u = W[:, i] - Qi @ (Qi.T @ W[:, i])
        out.append(float(torch.trace(Qi.T @ A @ Qi) + (P - k + 1) * (u @ A @ u) / (u @ u)))
    return np.array(out)


def _naive_xnystrace(A, W):
    """XNysTrace's leave-one-out samples from their definition (an explicit inverse)."""
    P, k = W.shape
    out = []
    for i in range(k):
        Wi = torch.cat([W[:, :i], W[:, i + 1:]], dim=1)
        Yi = A @ Wi
        Ai = Yi @ torch.linalg.inv(Wi.T @ Yi) @ Yi.T
        Qi, _ = torch.linalg.qr(Wi)
        d = W[:, i] - Qi @ (Qi.T @ W[:, i])
        w = W[:, i]
        out.append(float(torch.trace(Ai) + (P - k + 1) * (w @ (A - Ai) @ w) / (d @ d)))
    return np.array(out)


@pytest.mark.parametrize("method, naive", [("xtrace", _naive_xtrace), ("xnystrace", _naive_xnystrace)])
def test_leave_one_out_formulas_match_their_definition(method, naive):
    A = with_spectrum(PSD["outliers"][:60])
    k = 12
    W = random_vectors(60, k, generator=torch.Generator().manual_seed(3), dtype=torch.float64,
                       device=torch.device("cpu"), distribution="gaussian")
    t = naive(A, W)
    budget = 2 * k if method == "xtrace" else k
    est = trace(A, method=method, num_matvecs=budget, generator=torch.Generator().manual_seed(3))
    assert math.isclose(est.value, t.mean(), rel_tol=1e-9), (est.value, t.mean())
    assert math.isclose(est.stderr, t.std(ddof=1) / math.sqrt(k), rel_tol=1e-6), (est.stderr, t.std(ddof=1))


@pytest.mark.parametrize("spectrum", ["negative", "repeated"])
def test_xnystrace_refuses_an_indefinite_operator(spectrum):
    with pytest.raises(ValueError, match=r"xnystrace needs a positive semi-definite operator.*"
                                         r"not positive definite.*method='xtrace'"):
        trace(with_spectrum(SPECTRA[spectrum]), method="xnystrace", num_matvecs=40)


def test_xnystrace_refuses_a_model_hessian_and_takes_its_ggn():
    case = CASES[0]  # a cross-entropy MLP: indefinite Hessian, PSD (and singular) GGN
    H = HessianOperator(case.model, case.loss_fn, case.batches)
    with pytest.warns(UserWarning, match="a Hessian generally is not"), \
            pytest.raises(ValueError, match="indefinite"):
        trace(H, method="xnystrace", num_matvecs=30)
    G = GGNOperator(case.model, case.loss_fn, case.batches)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no warning for a GGN
        est = trace(G, method="xnystrace", num_matvecs=39)  # a budget of P: the exact trace
        # and for the Hessian too: no sketch, so no warning that a sketch may be off
        exact = trace(H, method="xnystrace", num_matvecs=39)
    assert math.isclose(est.value, float(torch.trace(case.dense_ggn())), rel_tol=1e-8)
    assert math.isclose(exact.value, float(torch.trace(case.dense_hessian())), rel_tol=1e-8)


def test_xtrace_beats_hutchpp_on_a_decaying_psd_spectrum():
    A = with_spectrum(1.0 / np.arange(1, 201) ** 2)
    rmse = {m: float(np.sqrt(np.mean(_trials(A, m, 40, trials=50)[0] ** 2)))
            for m in ("xtrace", "xnystrace", "hutch++")}
    assert rmse["xtrace"] < rmse["hutch++"] and rmse["xnystrace"] < rmse["hutch++"], rmse


def test_hutchpp_beats_hutchinson_on_outlier_spectra():
    A = with_spectrum(SPECTRA["outliers"])
    true = SPECTRA["outliers"].sum()
    err = {}
    for method in ("hutch++", "hutchinson"):
        vals = [trace(A, method=method, num_matvecs=30, generator=torch.Generator().manual_seed(s)).value
                for s in range(50)]
        err[method] = np.sqrt(np.mean((np.array(vals) - true) ** 2))
    assert err["hutch++"] < 0.5 * err["hutchinson"], err


def test_hutchpp_test_vectors_are_not_its_sketch_vectors(monkeypatch):
    """Without a generator the call draws from one seed-0 stream: Hutch++'s test vectors
    follow its sketch instead of repeating it (a fresh seed-0 draw each made the first
    test vectors equal to the sketch, and so lie in the range already counted)."""
    import importlib

    trace_module = importlib.import_module("spectra.linalg.trace")  # the module, not the function
    drawn = []
    real = trace_module.random_vectors

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        drawn.append(out.clone())
        return out

    monkeypatch.setattr(trace_module, "random_vectors", spy)
    trace(with_spectrum(SPECTRA["outliers"]), method="hutch++", num_matvecs=30)
    S, G = drawn
    assert not torch.equal(S, G[:, : S.shape[1]])
    first = trace(with_spectrum(SPECTRA["outliers"]), method="hutch++", num_matvecs=30)
    again = trace(with_spectrum(SPECTRA["outliers"]), method="hutch++", num_matvecs=30)
    assert first == again  # still seeded: the same call gives the same estimate


def test_exact_when_the_sketch_captures_the_range():
    u = torch.randn(40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    A = u @ u.T  # rank 3: the sketch of 6 vectors holds its range
    est = trace(A, num_matvecs=18)
    assert np.isclose(est.value, float(torch.trace(A)), rtol=1e-9)


@pytest.mark.parametrize("method, budget", [("hutch++", 39 * 3), ("xtrace", 39 * 2)])
def test_model_hessian(method, budget):
    case = CASES[0]
    H = HessianOperator(case.model, case.loss_fn, case.batches)
    true = float(torch.trace(case.dense_hessian()))
    est = trace(H, method=method, num_matvecs=budget)  # a budget of P or more: exact
    assert np.isclose(est.value, true, rtol=1e-8)


@pytest.mark.parametrize("kw, match", [
    ({"method": "x"}, r"method must be one of xtrace, xnystrace, hutch\+\+, hutchinson, got 'x'$"),
    ({"method": "xtrce"}, r"got 'xtrce'. Did you mean 'xtrace'\?"),
    ({"method": None}, r"method must be one of .*, got None"),
    ({"num_matvecs": 1}, r"num_matvecs must be an integer >= 4, got 1"),
    ({"num_matvecs": 3}, r"num_matvecs must be an integer >= 4, got 3"),
    ({"method": "xtrace", "num_matvecs": 3}, r"num_matvecs must be an integer >= 4, got 3"),
    ({"method": "xnystrace", "num_matvecs": 1}, r"num_matvecs must be an integer >= 2, got 1"),
    ({"method": "hutchinson", "num_matvecs": 1}, r"num_matvecs must be an integer >= 2, got 1"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
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


@pytest.mark.parametrize("method, budget, spent", [("hutch++", 30, 30), ("xtrace", 31, 30)])
def test_progress_bar_over_the_products(capsys, method, budget, spent):
    trace(with_spectrum(SPECTRA["outliers"]), method=method, num_matvecs=budget, progress=True)
    err = capsys.readouterr().err
    assert "trace:" in err and f"/{spent} " in err


@pytest.mark.parametrize("method", ["xtrace", "xnystrace", "hutch++", "hutchinson"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_matrix_is_estimated_as_its_float32_copy(method, dtype):
    """torch has no half-precision QR or Cholesky on the CPU: XTrace, Hutch++ and XNysTrace
    raised NotImplementedError. The sketches are float32; only the products are in half."""
    A = with_spectrum(np.abs(SPECTRA["outliers"])).to(dtype)
    half = trace(A, method, 20, generator=torch.Generator().manual_seed(1))
    single = trace(A.float(), method, 20, generator=torch.Generator().manual_seed(1))
    # the products differ by their rounding in half: a few units of it in the trace
    assert abs(half.value - single.value) <= 4 * torch.finfo(dtype).eps * abs(single.value)
