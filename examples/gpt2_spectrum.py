"""Top-k, λmin, density and per-block spectra of a Hugging Face GPT-2, through the library.

A randomly initialized GPT-2 from ``transformers.GPT2Config`` (no weights are
downloaded; default: issue 17's 2-layer, 109,312-parameter model), 24 token
sequences of 16 tokens with right padding as ``{"input_ids", "attention_mask"}``
batches of uneven sizes, and the next-token loss that leaves the padding out
(:class:`examples.gpt2_factory.NextTokenLoss`). Prints the Hessian's top-3 and
most negative eigenvalues, the GGN's top-3, an SLQ density summary, and the top
eigenvalue of the Hessian of each block (embeddings, each transformer layer, the
final layer norm) via ``params=``.

Run from the repository root: ``python -m examples.gpt2_spectrum`` (``--tiny``: the
1-layer, 16-dimensional model of the tests, in float64, a few seconds).
Needs ``pip install -e ".[transformers]"``.
"""

from __future__ import annotations

import argparse

import torch

from examples.gpt2_factory import (
    NextTokenLoss,
    num_predicted_tokens,
    tiny_gpt2,
    token_batches,
    transformer_blocks,
)
from spectra import GGNOperator, HessianOperator, block_spectra, eigsh, slq

ISSUE_CONFIG = {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 128, "n_positions": 16}
TINY_CONFIG = {"n_layer": 1, "n_embd": 16, "n_head": 2, "vocab_size": 7, "n_positions": 6}


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the example; returns what it printed as numbers (for the test)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="the tests' 1-layer model, float64")
    args = ap.parse_args(argv)
    config = TINY_CONFIG if args.tiny else ISSUE_CONFIG
    dtype = torch.float64 if args.tiny else torch.float32
    seq_len = config["n_positions"]

    model = tiny_gpt2(**config, dtype=dtype)  # a KeywordInputs(GPT2LMHeadModel) in eval mode
    # 24 sequences in batches of 10, 10 and 4, each 8..16 real tokens then padding
    data = token_batches([10, 10, 4], seq_len, config["vocab_size"], min_len=seq_len // 2)
    loss = NextTokenLoss(num_predicted_tokens(data))  # mean over every real predicted token

    H = HessianOperator(model, loss, data)  # the loss receives the model's ModelOutput
    G = GGNOperator(model, loss, data)  # linearizes its `logits`; the loss receives them
    print(f"GPT-2 {config}: P = {H.shape[0]:,} parameters, {H.num_data} sequences")

    top = eigsh(H, k=3, tol=1e-3)
    lam1 = float(top.eigenvalues[0])
    bottom = eigsh(H, k=1, which="SA", tol=1e-3, atol=1e-3 * abs(lam1))
    ggn_top = eigsh(G, k=3, tol=1e-3)
    density = slq(H, num_vectors=4, num_steps=min(40, H.shape[0]))
    lo, hi = density.support()
    print(f"Hessian top-3  {_fmt(top.eigenvalues)}  ({top.num_matvecs} products)")
    print(f"Hessian λmin   {float(bottom.eigenvalues[0]):.4g}  ({bottom.num_matvecs} products)")
    print(f"GGN top-3      {_fmt(ggn_top.eigenvalues)}  ({ggn_top.num_matvecs} products)")
    print(f"density        support [{lo:.4g}, {hi:.4g}], SLQ 4 x {density.num_steps}")

    # one HessianOperator(params=names) per block: embeddings, each layer, ln_f
    per_block = block_spectra(model, loss, data, blocks=transformer_blocks(model),
                              trace_matvecs=0)
    blocks = {}
    for b in per_block.blocks:
        blocks[b.name] = b.top_eigenvalue
        print(f"block {b.name:<11} λ1 = {b.top_eigenvalue:.4g}  ({b.size:,} parameters)")
    return {"top": top.eigenvalues.tolist(), "bottom": float(bottom.eigenvalues[0]),
            "ggn_top": ggn_top.eigenvalues.tolist(), "support": (lo, hi), "blocks": blocks,
            "P": H.shape[0]}


def _fmt(values: torch.Tensor) -> str:
    return ", ".join(f"{float(v):.4g}" for v in values)


if __name__ == "__main__":
    main()
