"""``spectra probe --model examples.gpt2_factory:build``: a Hugging Face GPT-2 built by
a user's factory, probed through the CLI, agrees with the library on the same model.

Skipped when ``transformers`` is not installed (``pip install -e ".[transformers]"``).
"""

from __future__ import annotations

import pytest
import torch

from tests.cli.conftest import invoke_json

pytest.importorskip("transformers")

FACTORY = "examples.gpt2_factory:build"


def test_probe_a_gpt2_from_a_factory_matches_the_library():
    from spectra import HessianOperator, eigsh
    from spectra.registries.data import load_dataset
    from spectra.registries.models import build_model

    out = invoke_json("probe", "--model", FACTORY, "--samples", "8", "--fit-steps", "0",
                      "--top-k", "1", "--no-bottom", "--trace-matvecs", "0", "--tol", "1e-6",
                      "--float64", "--json")
    # the CLI's model: seeded with --seed (0), digits' 64 pixels as 64 tokens, 10 classes
    torch.manual_seed(0)
    ds = load_dataset("digits", seed=0)
    model = build_model(FACTORY, input_shape=ds.input_shape, num_classes=ds.num_classes)
    assert out["num_params"] == sum(p.numel() for p in model.parameters())
    assert type(model.body).__name__ == "GPT2Model"
    H = HessianOperator(model, torch.nn.CrossEntropyLoss(), (ds.train_x[:8], ds.train_y[:8]),
                        dtype=torch.float64)
    lib = eigsh(H, k=1, tol=1e-6)
    assert out["converged"] and bool(lib.converged.all())
    # each is within 1e-6 |lambda| of an eigenvalue of the same matrix
    top = float(lib.eigenvalues[0])
    assert abs(out["top_eigenvalues"][0] - top) <= 1e-5 * abs(top)


def test_factory_options_reach_the_config():
    out = invoke_json("probe", "--model", FACTORY, "--model-arg", "n_embd=8",
                      "--model-arg", "n_head=1", "--samples", "4", "--fit-steps", "1",
                      "--top-k", "1", "--no-bottom", "--trace-matvecs", "0", "--json")
    # 17 x 8 tokens, 64 x 8 positions, one block 12 * 8^2 + 13 * 8, ln_f 16, head 8 * 10 + 10
    assert out["num_params"] == 17 * 8 + 64 * 8 + 12 * 64 + 13 * 8 + 16 + 90
