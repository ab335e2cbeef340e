"""spectra.utils.modes: eval mode and random state are given back as they were."""

import pytest
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


def _precisions() -> dict[str, str]:
    from spectra.utils import modes

    out = {}
    for outer, inner in modes._FP32_SWITCHES:
        ns = getattr(getattr(torch.backends, outer, None), inner, None)
        if ns is not None and hasattr(ns, "fp32_precision"):
            out[f"{outer}.{inner}"] = ns.fp32_precision
    return out


@pytest.fixture
def float32_settings():
    """Give back the float32 precision switches as they were before the test."""
    from spectra.utils import modes

    legacy = torch.get_float32_matmul_precision()
    switches = [getattr(getattr(torch.backends, outer), inner)
                for outer, inner in modes._FP32_SWITCHES]
    switches = [(ns, ns.fp32_precision) for ns in switches if hasattr(ns, "fp32_precision")]
    yield
    torch.set_float32_matmul_precision(legacy)
    for ns, value in switches:
        ns.fp32_precision = value


def test_ieee_float32_sets_every_switch_and_gives_back_the_users_own(float32_settings):
    from spectra.utils.modes import ieee_float32

    before = _precisions()
    if not before:  # torch < 2.9: the legacy path, tested below
        return
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"  # a user's choice
    chosen = _precisions()
    with pytest.raises(KeyError), ieee_float32():
        assert set(_precisions().values()) == {"ieee"}
        raise KeyError("leaving on an error")
    assert _precisions() == chosen


def test_ieee_float32_undoes_a_lower_matmul_precision(float32_settings):
    # "medium" may let oneDNN round float32 matmuls through bfloat16 (it does on a CPU
    # with bfloat16 instructions; elsewhere nothing changes): inside the block the
    # product is the full-precision one, bit for bit
    from spectra.utils.modes import ieee_float32

    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(256, 256, generator=g), torch.randn(256, 256, generator=g)
    exact = A @ B
    torch.set_float32_matmul_precision("medium")
    with ieee_float32():
        inside = A @ B
    assert torch.equal(inside, exact)


def test_ieee_float32_on_older_torch_uses_the_legacy_switches(monkeypatch, float32_settings):
    from spectra.utils import modes

    torch.set_float32_matmul_precision("high")
    monkeypatch.setattr(modes, "_FP32_SWITCHES", ())
    with modes.ieee_float32():
        assert torch.get_float32_matmul_precision() == "highest"
        assert not torch.backends.cudnn.allow_tf32
        assert not torch.backends.cuda.matmul.allow_tf32
    assert torch.get_float32_matmul_precision() == "high"
