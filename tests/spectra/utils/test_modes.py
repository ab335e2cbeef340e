"""spectra.utils.modes: eval mode and random state are given back as they were."""

import torch
from torch import nn

from spectra.utils.modes import eval_mode, preserved_rng


def test_eval_mode_restores_each_modules_own_flag():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model[1].eval()  # a mix of modes
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == [True, True, False]
    with eval_mode(model, enabled=False):
        assert model.training


def test_preserved_rng_gives_back_the_stream_even_on_error():
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    try:
        with preserved_rng():
            torch.rand(100)
            raise RuntimeError("a failed probe")
    except RuntimeError:
        pass
    assert torch.equal(torch.rand(3), expected)


def _double_backward_of_attention() -> None:
    from tests.spectra.cases import CASES

    case = next(c for c in CASES if c.name == "attention-lm")
    (X, y), = case.batches[:1]
    params = list(case.model.parameters())
    loss = case.loss_fn(case.model(X), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    torch.autograd.grad(grads, params, [torch.ones_like(g) for g in grads])


def test_math_attention_makes_a_fused_attention_kernel_twice_differentiable():
    import pytest

    from spectra.utils.modes import math_attention

    with pytest.raises(RuntimeError, match="derivative for .* is not implemented"):
        _double_backward_of_attention()  # the case needs the context: the CPU picks a fused kernel
    with math_attention():
        _double_backward_of_attention()


def test_math_attention_without_torch_nn_attention_sets_and_restores_the_switches(monkeypatch):
    import sys

    from spectra.utils.modes import math_attention

    monkeypatch.setitem(sys.modules, "torch.nn.attention", None)  # torch < 2.3: import fails
    cuda = torch.backends.cuda
    before = (cuda.flash_sdp_enabled(), cuda.mem_efficient_sdp_enabled(), cuda.math_sdp_enabled())
    with math_attention():
        assert (cuda.flash_sdp_enabled(), cuda.mem_efficient_sdp_enabled()) == (False, False)
        _double_backward_of_attention()
    assert (cuda.flash_sdp_enabled(), cuda.mem_efficient_sdp_enabled(), cuda.math_sdp_enabled()) == before
