import math

import numpy as np
import pytest
import torch

from spectra import DenseOperator, DiagonalEstimate, HessianOperator, diagonal
from spectra.linalg.lanczos import random_vectors
from tests.spectra.cases import CASES
from tests.spectra.spectra_matrices import SPECTRA, with_spectrum


def _trials(A, method, num_matvecs, trials):
    est = [diagonal(A, method, num_matvecs=num_matvecs, generator=torch.Generator().manual_seed(s))
           for s in range(trials)]
    d = torch.diagonal(A)
    err = torch.stack([e.values - d for e in est])       # (trials, P)
    se = torch.stack([e.stderr for e in est])
    return err.numpy(), se.numpy()


@pytest.mark.parametrize("method", ["hutchinson", "xdiag"])
@pytest.mark.parametrize("spectrum", ["outliers", "linear"])
def test_error_estimate_is_honest_and_the_estimate_unbiased(method, spectrum):
    err, se = _trials(with_spectrum(SPECTRA[spectrum]), method, 40, trials=100)
    z = err / se
    # honest per entry: within 3 error estimates for most (entry, trial) pairs, and
    # neither far too small nor far too large on average (1 for an exact standard error)
    assert np.mean(np.abs(z) <= 3) >= 0.85, np.mean(np.abs(z) <= 3)
    assert 0.5 <= np.mean(z**2) <= 4.0, np.mean(z**2)
    # unbiased: every entry's mean error over 100 trials within 5 standard errors
    # (P <= 200 entries: a Gaussian exceeds 5 in 1 of ~10^4 such tables)
    zbar = err.mean(axis=0) / (err.std(axis=0, ddof=1) / math.sqrt(err.shape[0]))
    assert np.abs(zbar).max() <= 5, np.abs(zbar).max()


def test_xdiag_beats_hutchinson_on_outlier_spectra():
    A = with_spectrum(SPECTRA["outliers"])
    rel = {m: float(np.sqrt((_trials(A, m, 40, trials=20)[0] ** 2).mean())) for m in ("hutchinson", "xdiag")}
    assert rel["xdiag"] < 0.6 * rel["hutchinson"], rel


def _naive_xdiag(A, W):
    """XDiag's leave-one-out estimates straight from their definition, one QR per sample."""
    k = W.shape[1]
    out = []
    for i in range(k):
        Qi, _ = torch.linalg.qr(A @ torch.cat([W[:, :i], W[:, i + 1:]], dim=1))
        w = W[:, i]
        out.append(torch.diagonal(Qi @ Qi.T @ A) + w * (A @ w - Qi @ (Qi.T @ (A @ w))))
    return torch.stack(out, dim=1)


def test_xdiag_formulas_match_their_definition():
    A = with_spectrum(SPECTRA["outliers"][:60])
    k = 12
    W = random_vectors(60, k, generator=torch.Generator().manual_seed(5), dtype=torch.float64,
                       device=torch.device("cpu"), distribution="rademacher")
    d = _naive_xdiag(A, W)
    est = diagonal(A, "xdiag", num_matvecs=2 * k, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(est.values, d.mean(dim=1), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(est.stderr, d.std(dim=1) / math.sqrt(k), rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("method", ["hutchinson", "xdiag"])
def test_exact_from_unit_vectors_once_the_budget_reaches_p(method):
    A = with_spectrum(SPECTRA["negative"])  # P = 83
    op = DenseOperator(A)
    est = diagonal(op, method, num_matvecs=100, chunk_size=10)
    assert isinstance(est, DiagonalEstimate) and est.exact and est.method == method
    assert est.num_matvecs == 83 == op.num_matvecs
    torch.testing.assert_close(est.values, torch.diagonal(A), rtol=0, atol=1e-12)
    assert torch.equal(est.stderr, torch.zeros(83, dtype=torch.float64))


@pytest.mark.parametrize("method, budget, spent", [("hutchinson", 31, 31), ("xdiag", 31, 30)])
def test_num_matvecs_is_what_was_spent(method, budget, spent):
    op = DenseOperator(with_spectrum(SPECTRA["outliers"]))
    est = diagonal(op, method, num_matvecs=budget)
    assert est.num_matvecs == spent == op.num_matvecs and not est.exact
    assert est.values.shape == est.stderr.shape == (200,) and est.values.dtype == torch.float64


def test_model_hessian():
    case = CASES[0]
    H = HessianOperator(case.model, case.loss_fn, case.batches)
    dense = torch.diagonal(case.dense_hessian())
    torch.testing.assert_close(diagonal(H, "xdiag", num_matvecs=39).values, dense, rtol=1e-8, atol=1e-10)
    est = diagonal(H, "xdiag", num_matvecs=20, generator=torch.Generator().manual_seed(0))
    assert est.values.shape == (39,) and bool(torch.isfinite(est.stderr).all())


@pytest.mark.parametrize("kw, match", [
    ({"method": "x"}, r"method must be one of hutchinson, xdiag, got 'x'$"),
    ({"method": "xdaig"}, r"got 'xdaig'. Did you mean 'xdiag'\?"),
    ({"method": "xdiag", "num_matvecs": 3}, r"num_matvecs must be an integer >= 4, got 3"),
    ({"num_matvecs": 1}, r"num_matvecs must be an integer >= 2, got 1"),
    ({"num_matvecs": True}, r"num_matvecs must be an integer >= 2, got True \(a bool\)"),
    ({"num_matvecs": 30.0}, r"num_matvecs must be an integer >= 2, got 30.0"),
    ({"chunk_size": 0}, r"chunk_size must be an integer >= 1, got 0"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        diagonal(with_spectrum([1.0, 2.0, 3.0]), **kw)


def test_empty_and_non_operators_are_refused():
    with pytest.raises(ValueError, match="0 x 0"):
        diagonal(torch.zeros(0, 0))
    with pytest.raises(TypeError, match="expected a curvature operator"):
        diagonal([1.0, 2.0])
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None, got int; "
                                        r"for a seed use generator=torch.Generator\(\).manual_seed\(3\)"):
        diagonal(with_spectrum([1.0, 2.0, 3.0]), num_matvecs=2, generator=3)


def test_progress_bar_over_the_products(capsys):
    diagonal(with_spectrum(SPECTRA["outliers"]), "xdiag", num_matvecs=30, progress=True)
    err = capsys.readouterr().err
    assert "diagonal:" in err and "/30 " in err


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_xdiag_of_a_half_precision_matrix_is_that_of_its_float32_copy(dtype):
    """XDiag's QR raised NotImplementedError in half precision; the sketch is float32 now."""
    A = with_spectrum(SPECTRA["outliers"]).to(dtype)
    half = diagonal(A, "xdiag", 20, generator=torch.Generator().manual_seed(1))
    single = diagonal(A.float(), "xdiag", 20, generator=torch.Generator().manual_seed(1))
    assert half.values.dtype == torch.float32
    scale = float(single.values.abs().max())
    assert float((half.values - single.values).abs().max()) <= 8 * torch.finfo(dtype).eps * scale
