"""Adapters that let the operators call models the way their authors call them.

The operators, the monitor and the trainer call ``model(inputs)`` with each
batch's inputs, whatever they are (a tensor, a tuple, a dict). Models that take
keyword arguments instead, as Hugging Face ``transformers`` models do
(``model(input_ids=..., attention_mask=...)``), are wrapped once in
:class:`KeywordInputs`, which unpacks the dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn


class KeywordInputs(nn.Module):
    """``forward(batch) = model(**batch)``: a keyword-argument model fed one dict per batch.

    The wrapped model's parameters keep their names under the prefix ``model.``
    (``params=["model.transformer.h.0.attn.c_attn.weight"]`` selects one), and its
    train/eval mode, dtype and device are the wrapper's.

    Example:
        >>> import torch
        >>> class Affine(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.w = nn.Parameter(torch.tensor(2.0))
        ...     def forward(self, x, shift):
        ...         return self.w * x + shift
        >>> model = KeywordInputs(Affine())
        >>> model({"x": torch.tensor([1.0, 2.0]), "shift": torch.tensor(1.0)})
        tensor([3., 5.], grad_fn=<AddBackward0>)
        >>> [name for name, _ in model.named_parameters()]
        ['model.w']
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        super().__init__()
        self.model = model

    def forward(self, batch: Mapping[str, Tensor]) -> Any:
        if not isinstance(batch, Mapping):
            raise TypeError(
                f"KeywordInputs takes each batch's inputs as a dict of keyword arguments "
                f"(e.g. input_ids, attention_mask), got {type(batch).__name__}"
            )
        return self.model(**batch)


__all__ = ["KeywordInputs"]
