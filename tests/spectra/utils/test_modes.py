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
