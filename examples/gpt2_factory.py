"""A Hugging Face GPT-2 built from a config (no weights downloaded), ready for spectra.

What a user of ``transformers`` needs, in one place:

* :class:`spectra.KeywordInputs` (re-exported here): the operators call
  ``model(inputs)`` with the batch's inputs as one argument; a Hugging Face model takes
  ``input_ids=``, ``attention_mask=`` as keywords, so this wrapper calls
  ``model(**batch)``. Its return value (a
  ``CausalLMOutputWithCrossAttentions``) goes to the loss unchanged; the GGN
  linearizes its ``logits`` by default.
* :func:`tiny_gpt2`: a randomly initialized ``GPT2LMHeadModel`` in eval mode
  (dropout would make every product random), any attention implementation.
* :func:`token_batches`: synthetic token sequences with right padding, as
  ``({"input_ids", "attention_mask"}, labels)`` batches, labels ``-100`` on padding.
* :class:`NextTokenLoss`: the next-token cross-entropy averaged over every real
  (non-padding) predicted token of the *whole data set*. Padding is excluded by the
  labels ``-100`` (``ignore_index``). A per-batch token mean would weight a batch by
  its number of sequences, not of tokens; this loss sums over the batch's tokens and
  divides by the data set's token count, so it declares ``reduction = "sum"`` and the
  operators add the batches' curvatures unweighted, for any split into batches.
* :func:`transformer_blocks`: the parameter names of each block (embeddings, each
  transformer layer, the final layer norm), for per-block spectra via ``params=``.
* :func:`build`: the CLI's model factory (``spectra probe --model
  examples.gpt2_factory:build``): the CLI's data sets are tensors of features and class
  labels with a cross-entropy loss, so this factory reads digits' 64 pixels (0..16,
  scaled to [0, 1]) as a sequence of 64 tokens of a 17-token vocabulary and classifies
  the sequence from the last position's hidden state.

Needs ``pip install -e ".[transformers]"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spectra.utils.modules import KeywordInputs


def tiny_gpt2(
    *,
    n_layer: int = 1,
    n_embd: int = 16,
    n_head: int = 2,
    vocab_size: int = 11,
    n_positions: int = 8,
    attn_implementation: str = "sdpa",
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> KeywordInputs:
    """A randomly initialized ``GPT2LMHeadModel`` (tied input/output embeddings),
    dropout off, in eval mode, wrapped in :class:`KeywordInputs`.

    ``{"input_ids": (n, T) int64, "attention_mask": (n, T)} -> ModelOutput`` with
    ``logits`` of shape ``(n, T, vocab_size)``; ``T <= n_positions``.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
        n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        attn_implementation=attn_implementation, use_cache=False,
        bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    return KeywordInputs(model.to(dtype).eval())


def token_batches(
    sizes: Sequence[int],
    seq_len: int,
    vocab_size: int,
    *,
    seed: int = 0,
    min_len: int | None = None,
) -> list[tuple[dict[str, Tensor], Tensor]]:
    """Batches of ``sizes[b]`` random token sequences of length ``seq_len``.

    Each sequence has a random length in ``[min_len, seq_len]`` (default ``seq_len``:
    no padding), the rest right padding: ``attention_mask`` 0 and label ``-100``
    there. Labels are the input ids (the model shifts nothing; :class:`NextTokenLoss`
    predicts position ``t + 1`` from the positions up to ``t``).

    Returns:
        ``[({"input_ids": (n_b, T), "attention_mask": (n_b, T)}, labels (n_b, T)), ...]``.
    """
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    ids = torch.randint(0, vocab_size, (n, seq_len), generator=g)
    lo = seq_len if min_len is None else min_len
    lengths = torch.randint(lo, seq_len + 1, (n,), generator=g)
    mask = (torch.arange(seq_len)[None, :] < lengths[:, None]).long()
    labels = ids.masked_fill(mask == 0, -100)
    out, i = [], 0
    for s in sizes:
        out.append(({"input_ids": ids[i:i + s], "attention_mask": mask[i:i + s]}, labels[i:i + s]))
        i += s
    return out


def num_predicted_tokens(batches: Sequence[tuple[Any, Tensor]]) -> int:
    """The real tokens that have a real predecessor: the terms of the next-token loss."""
    return int(sum(int((y[:, 1:] != -100).sum()) for _, y in batches))


class NextTokenLoss:
    """Next-token cross-entropy, summed over a batch's real tokens and divided by
    ``num_tokens``, the data set's count (:func:`num_predicted_tokens`): the mean over
    every predicted token of the data set, whatever the batches.

    Called with the model's output (an object or mapping with ``logits``, as the
    Hessian's loss receives it) or the ``(n, T, V)`` logits themselves (as the GGN's
    loss receives them), and labels ``(n, T)`` with ``-100`` on padding.
    """

    reduction = "sum"  # batches add: each holds its share of the fixed token count

    def __init__(self, num_tokens: int) -> None:
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
        self.num_tokens = int(num_tokens)

    def __call__(self, outputs: Any, labels: Tensor) -> Tensor:
        logits = outputs if isinstance(outputs, Tensor) else _logits(outputs)
        # position t predicts token t + 1
        pred, target = logits[:, :-1], labels[:, 1:]
        total = F.cross_entropy(pred.flatten(0, 1), target.flatten(), ignore_index=-100,
                                reduction="sum")
        return total / self.num_tokens


def _logits(outputs: Any) -> Tensor:
    return outputs["logits"] if isinstance(outputs, Mapping) else outputs.logits


def transformer_blocks(model: nn.Module) -> dict[str, list[str]]:
    """Parameter names of a (wrapped) GPT-2 per block: ``"embeddings"`` (token and
    position), ``"h.0"``, ``"h.1"``, ... (one per transformer layer), ``"ln_f"``; in
    the model's order, every trainable parameter in exactly one block."""
    blocks: dict[str, list[str]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        parts = name.split(".")
        if "h" in parts:
            i = parts.index("h")
            key = f"h.{parts[i + 1]}"
        elif "ln_f" in parts:
            key = "ln_f"
        elif "wte" in parts or "wpe" in parts:
            key = "embeddings"
        else:
            key = parts[-2] if len(parts) > 1 else name
        blocks.setdefault(key, []).append(name)
    return blocks


class DigitTokensGPT2(nn.Module):
    """A GPT-2 sequence classifier over features in [0, 1] read as tokens:
    ``(n, *input_shape)`` -> ``round(x * levels)`` token ids ``(n, L)`` -> GPT-2 ->
    the last position's hidden state -> ``(n, num_classes)`` logits."""

    def __init__(self, body: nn.Module, levels: int, n_embd: int, num_classes: int) -> None:
        super().__init__()
        self.levels = levels
        self.body = body
        self.head = nn.Linear(n_embd, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        ids = (x.flatten(1).clamp(0, 1) * self.levels).round().long()
        hidden = self.body(input_ids=ids).last_hidden_state  # (n, L, n_embd)
        return self.head(hidden[:, -1])


def build(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    n_layer: int = 1,
    n_embd: int = 16,
    n_head: int = 2,
    levels: int = 16,
    attn_implementation: str = "sdpa",
) -> nn.Module:
    """The CLI's factory: :class:`DigitTokensGPT2` for inputs of ``input_shape``
    (``prod(input_shape)`` tokens; digits: 64) and ``num_classes`` classes, in eval
    mode with dropout off. ``--model-arg n_layer=2`` etc. set the config."""
    from transformers import GPT2Config, GPT2Model

    length = 1
    for s in input_shape:
        length *= int(s)
    config = GPT2Config(
        vocab_size=levels + 1, n_positions=length, n_embd=n_embd, n_layer=n_layer,
        n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        attn_implementation=attn_implementation, use_cache=False,
        bos_token_id=levels, eos_token_id=levels,
    )
    return DigitTokensGPT2(GPT2Model(config), levels, n_embd, num_classes).eval()


__all__ = [
    "DigitTokensGPT2",
    "KeywordInputs",
    "NextTokenLoss",
    "build",
    "num_predicted_tokens",
    "tiny_gpt2",
    "token_batches",
    "transformer_blocks",
]
