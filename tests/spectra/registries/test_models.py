"""Tests of spectra.registries.models: every name builds, shapes, specs, custom factories, errors."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from spectra.registries.models import ACTIVATIONS, ModelSpec, available_models, build_model


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny models: one intra-op thread is faster than two spinning ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CASES = [  # name, input_shape, kwargs, expected number of parameters
    ("logistic", (64,), {}, 64 * 10 + 10),
    ("logistic", (1, 8, 8), {"bias": False}, 64 * 10),
    ("mlp", (64,), {}, (64 * 64 + 64) + (64 * 64 + 64) + (64 * 10 + 10)),
    ("mlp", (1, 8, 8), {"widths": [5], "activation": "tanh"}, (64 * 5 + 5) + (5 * 10 + 10)),
    ("mlp", (7,), {"widths": ()}, 7 * 10 + 10),
    # conv 1->16: 160, conv 16->32: 4640, 8x8 -> 4x4 -> 2x2: 128*64+64, 64*10+10
    ("cnn", (1, 8, 8), {}, 160 + 4640 + (32 * 2 * 2 * 64 + 64) + 650),
    ("cnn", (1, 28, 28), {}, 160 + 4640 + (32 * 7 * 7 * 64 + 64) + 650),
    ("cnn", (3, 32, 32), {"channels": [4], "hidden": 8}, (3 * 9 * 4 + 4) + (4 * 16 * 16 * 8 + 8) + 90),
    ("resnet20", (1, 8, 8), {"width": 4}, None),
    ("resnet18", (1, 8, 8), {"width": 4}, None),
]


@pytest.mark.parametrize("name, shape, kwargs, params", CASES)
def test_models_build_and_map_batches_to_logits(name, shape, kwargs, params) -> None:
    model = build_model(name, input_shape=shape, num_classes=10, **kwargs)
    assert isinstance(model, nn.Module) and model.training
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 10) and out.dtype == torch.float32
    if params is not None:
        assert sum(p.numel() for p in model.parameters()) == params
    out.sum().backward()  # differentiable end to end
    assert all(p.grad is not None for p in model.parameters())


def test_cnn_batchnorm_normalizes_each_hidden_layer() -> None:
    plain = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=0)
    bn = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=0, batchnorm=True)
    norms = [m for m in bn.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert [type(m) for m in norms] == [nn.BatchNorm2d, nn.BatchNorm2d, nn.BatchNorm1d]
    assert [m.num_features for m in norms] == [16, 32, 64]
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(bn) == count(plain) + 2 * (16 + 32 + 64)  # a scale and a shift per feature
    # in train mode each normalized pre-activation has batch mean 0 and variance 1
    seen = []
    norms[2].register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
    bn(torch.randn(32, 1, 8, 8) * 5 + 3)
    assert seen[0].mean(0).abs().max() < 1e-4
    assert (seen[0].var(0, unbiased=False) - 1).abs().max() < 1e-2
    with pytest.raises(ValueError, match="batchnorm='yes' is not true or false"):
        build_model("cnn", input_shape=(1, 8, 8), num_classes=10, batchnorm="yes")


def test_resnet18_is_the_cifar_variant() -> None:
    model = build_model("resnet18", input_shape=(3, 32, 32), num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # kuangliu/pytorch-cifar
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 20
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].kernel_size == (3, 3) and convs[0].stride == (1, 1)


def test_resnet20_has_parameter_free_shortcuts_and_batchnorm() -> None:
    model = build_model("resnet20", input_shape=(3, 32, 32), num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 269_722  # He et al. 2016: 0.27 M
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 and all(c.kernel_size == (3, 3) for c in convs)  # + fc = 20 layers
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_activations(activation: str) -> None:
    model = build_model("mlp", input_shape=(4,), num_classes=2, widths=[3], activation=activation)
    assert isinstance(model[2], ACTIVATIONS[activation])


def test_a_seeded_build_gives_back_the_cuda_generators_too(monkeypatch) -> None:
    # torch.manual_seed seeds every CUDA generator as well; without a GPU here, fake
    # CUDA's state functions and check that the build puts back what it found
    calls: dict[str, list] = {"set": []}
    saved = [torch.tensor([1, 2, 3], dtype=torch.uint8)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: calls["set"].append(s))
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: None)
    build_model("mlp", input_shape=(8,), num_classes=3, seed=7)
    assert calls["set"] == [saved]


def test_seed_repeats_initialization_without_touching_global_rng() -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = build_model("mlp", input_shape=(8,), num_classes=3, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    b = build_model("mlp", input_shape=(8,), num_classes=3, seed=7)
    c = build_model("mlp", input_shape=(8,), num_classes=3, seed=8)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_model_spec_round_trips_through_json() -> None:
    spec = ModelSpec("mlp", input_shape=[1, 8, 8], num_classes=10,
                     kwargs={"widths": (16, 8), "activation": "gelu"}, seed=3)
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again.input_shape == (1, 8, 8) and again.kwargs["widths"] == [16, 8]
    m1, m2 = spec.build(), again.build()
    m2.load_state_dict(m1.state_dict())  # same architecture
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(m1(x), m2(x))
    assert torch.equal(next(m1.parameters()), next(m2.parameters()))  # same seed
    with pytest.raises(TypeError, match="JSON-able"):
        ModelSpec("mlp", input_shape=(4,), num_classes=2, kwargs={"act": nn.ReLU})
    with pytest.raises(ValueError, match="num_classes"):
        ModelSpec.from_dict({"name": "mlp", "input_shape": [4]})


def test_unknown_name_lists_names_and_suggests_the_closest() -> None:
    with pytest.raises(ValueError) as err:
        build_model("resnet19", input_shape=(3, 32, 32), num_classes=10)
    msg = str(err.value)
    assert "'resnet19'" in msg and "Did you mean 'resnet18'?" in msg
    assert all(name in msg for name in available_models())
    assert "package.module:factory" in msg
    assert available_models() == ["cnn", "logistic", "mlp", "resnet18", "resnet20"]


def test_bad_options_and_shapes_are_clear_errors() -> None:
    with pytest.raises(TypeError, match=r"'mlp'.*'width'.*accepts \['widths', 'activation'"):
        build_model("mlp", input_shape=(4,), num_classes=2, width=3)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        build_model("mlp", input_shape=(4,), num_classes=2, activation="swish")
    with pytest.raises(ValueError, match=r"cnn needs image inputs of shape \(C, H, W\)"):
        build_model("cnn", input_shape=(64,), num_classes=10)
    with pytest.raises(ValueError, match="at least 4x4"):
        build_model("cnn", input_shape=(1, 3, 3), num_classes=10)
    with pytest.raises(ValueError, match="input_shape"):
        build_model("mlp", input_shape=(0,), num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("mlp", input_shape=(4,), num_classes=0)


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_models.py").write_text(textwrap.dedent("""
        from torch import nn

        def tiny(input_shape, num_classes, hidden=4):
            return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1], hidden),
                                 nn.Linear(hidden, num_classes))

        def no_shapes(width=2):
            return nn.Linear(3, width)

        def not_a_model():
            return 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_models"
    sys.modules.pop("my_models", None)


def test_custom_factory(user_module: str) -> None:
    model = build_model(f"{user_module}:tiny", input_shape=(5,), num_classes=3, hidden=6)
    assert model(torch.randn(2, 5)).shape == (2, 3) and model[1].out_features == 6
    # a factory that takes no shapes gets only its own options
    assert build_model(f"{user_module}:no_shapes", input_shape=(3,), num_classes=9,
                       width=4).out_features == 4
    spec = ModelSpec(f"{user_module}:tiny", input_shape=(5,), num_classes=3, kwargs={"hidden": 2})
    assert spec.build()[1].out_features == 2
    with pytest.raises(TypeError, match="not an nn.Module"):
        build_model(f"{user_module}:not_a_model", input_shape=(3,), num_classes=2)
    with pytest.raises(TypeError, match="accepts"):
        build_model(f"{user_module}:tiny", input_shape=(3,), num_classes=2, depth=3)
    with pytest.raises(ValueError, match="has no attribute 'missing'"):
        build_model(f"{user_module}:missing", input_shape=(3,), num_classes=2)
    with pytest.raises(ValueError, match="cannot import module 'no_such_pkg.mod'"):
        build_model("no_such_pkg.mod:f", input_shape=(3,), num_classes=2)


def test_model_options_lists_a_registry_models_defaults_and_imports_nothing():
    from spectra.registries.models import model_options

    opts = model_options("mlp")
    assert opts["widths"] == (64, 64) and opts["activation"] == "relu"
    assert model_options("os:system") == {} and model_options("nope") == {}


@pytest.mark.parametrize("name, kwargs, match", [
    ("cnn", {"hidden": 0}, r"cnn channels and hidden must be positive integers"),
    ("cnn", {"channels": (0,)}, r"got channels=\[0\], hidden=64"),
    ("resnet20", {"width": 0}, r"resnet20 width must be a positive integer, got 0"),
    ("resnet18", {"width": -1}, r"resnet18 width must be a positive integer, got -1"),
])
def test_sizes_of_zero_or_less_are_refused(name, kwargs, match):
    """cnn hidden=0 built a model whose outputs are all zeros, resnet20 width=0 one of 3
    parameters; width=-1 failed deep inside torch."""
    with pytest.raises(ValueError, match=match):
        build_model(name, input_shape=(1, 8, 8), num_classes=10, **kwargs)


@pytest.mark.parametrize("bad", [{"num_classes": 2.7}, {"num_classes": True},
                                 {"input_shape": (2.5, 3)}, {"input_shape": (True, 3)}])
def test_sizes_that_are_not_integers_are_refused_not_truncated(bad):
    """num_classes=2.7 built a model of 2 outputs, input_shape=(2.5, 3) one of (2, 3)."""
    kwargs = {"input_shape": (6,), "num_classes": 3, **bad}
    with pytest.raises(ValueError, match="must be (positive integers|an integer)"):
        build_model("mlp", **kwargs)
