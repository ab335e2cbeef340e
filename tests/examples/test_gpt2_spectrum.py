"""``python -m examples.gpt2_spectrum --tiny`` runs end to end, and its numbers are
those of the dense float64 Hessian of the same model and data.

Marked slow (hundreds of products on the tiny model); skipped without ``transformers``.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")


@pytest.mark.slow
def test_the_example_agrees_with_the_dense_hessian(capsys):
    from examples import gpt2_spectrum
    from examples.gpt2_factory import NextTokenLoss, num_predicted_tokens, tiny_gpt2, token_batches
    from spectra import HessianOperator

    out = gpt2_spectrum.main(["--tiny"])
    printed = capsys.readouterr().out
    assert "Hessian top-3" in printed and "block h.0" in printed
    cfg = gpt2_spectrum.TINY_CONFIG
    model = tiny_gpt2(**cfg, dtype=torch.float64)
    data = token_batches([10, 10, 4], cfg["n_positions"], cfg["vocab_size"],
                         min_len=cfg["n_positions"] // 2)
    H = HessianOperator(model, NextTokenLoss(num_predicted_tokens(data)), data)
    dense = H.matmat(torch.eye(H.shape[0], dtype=torch.float64))  # exact: test_transformers
    exact = torch.linalg.eigvalsh((dense + dense.T) / 2)
    scale = float(exact.abs().max())
    # eigsh's tol 1e-3: each value within 1e-3 |lambda| of an eigenvalue
    for got, want in zip(out["top"], exact.flip(0)[:3].tolist()):
        assert abs(got - want) <= 2e-3 * scale
    assert abs(out["bottom"] - float(exact[0])) <= 2e-3 * scale
