"""train(eval_train=True): the training set in eval mode at the end of each epoch, and
an epoch-0 row before the first step."""

from __future__ import annotations

import math

import torch
from torch import nn

from spectra.runs.trainer import evaluate, train


class _Rows:
    """A store that keeps the metrics rows it is given."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def append_metrics(self, row=None, /, **values) -> None:
        self.rows.append({**(row or {}), **values})


def _setup(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(96, 5, generator=g)
    y = (X[:, 0] > 0).long()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, opt, X, y


def test_eval_train_rows_match_an_independent_evaluation() -> None:
    model, opt, X, y = _setup()
    loss_fn = nn.CrossEntropyLoss()
    before = evaluate(model, loss_fn, X, y)
    store = _Rows()
    train(model, opt, (X, y), loss_fn=loss_fn, epochs=2, batch_size=32, test_data=(X, y),
          store=store, eval_train=True)
    first, *epochs = store.rows
    assert first["step"] == 0 and first["epoch"] == 0.0 and "seconds" not in first
    assert first["train_eval_loss"] == before[0] and first["train_eval_acc"] == before[1]
    assert first["test_loss"] == before[0]  # the same set here
    assert [r["epoch"] for r in epochs] == [1.0, 2.0]
    after = evaluate(model, loss_fn, X, y)  # the weights of the last row
    assert epochs[-1]["train_eval_loss"] == after[0]
    # eval mode: dropout off, so it differs from the running average taken in train mode
    assert all(math.isfinite(r["train_loss"]) for r in epochs)
    assert epochs[-1]["train_eval_loss"] != epochs[-1]["train_loss"]
    assert model.training  # the mode is restored


def test_without_eval_train_nothing_changes() -> None:
    model, opt, X, y = _setup()
    store = _Rows()
    train(model, opt, (X, y), loss_fn=nn.CrossEntropyLoss(), epochs=2, batch_size=32,
          store=store)
    assert [r["epoch"] for r in store.rows] == [1.0, 2.0]
    assert not any("train_eval_loss" in r for r in store.rows)
