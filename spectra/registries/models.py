"""Model registry: small networks by name, rebuildable from a JSON-able spec.

Built-in names (``available_models()``):

``logistic``
    One linear layer on the flattened input (multinomial logistic regression
    with cross-entropy; linear regression with MSE).
``mlp``
    Flatten, then ``widths`` hidden linear layers each followed by
    ``activation``, then a linear output layer.
``cnn``
    LeNet-style: for each of ``channels`` (default (16, 32)) a 3x3 convolution
    (padding 1), ``activation`` and 2x2 max pooling; then a ``hidden``-unit
    (default 64) linear layer, ``activation``, and the output layer. Needs
    image input ``(C, H, W)`` with H, W >= 4 (8x8 digits, 28x28, 32x32).
    ``batchnorm=True`` puts batch normalization (``BatchNorm2d`` /
    ``BatchNorm1d``) between each convolution and the hidden linear layer and
    their activation (default False).
``resnet20``
    CIFAR ResNet-20 (He et al. 2016, section 4.2): 3x3 conv, three stages of
    three basic blocks (``width``, 2x, 4x channels; default 16), parameter-free
    shortcuts (option A: stride-2 subsampling and zero channels), BatchNorm,
    global average pooling. 0.27 M parameters at width 16.
``resnet18``
    CIFAR-style ResNet-18: 3x3 stem conv without max pooling, four stages of
    two basic blocks (``width``, 2x, 4x, 8x channels; default 64) with 1x1
    projection shortcuts, BatchNorm, global average pooling. 11.2 M parameters
    at width 64.
``package.module:factory``
    A user's model: ``factory`` is imported from ``package.module`` and called
    with the keyword arguments, plus ``input_shape`` and ``num_classes`` when
    its signature accepts them. It must return an ``nn.Module``.

All models map a batch ``(B, *input_shape)`` float tensor to ``(B, num_classes)``
outputs (logits, or predictions for regression). Initialization is PyTorch's
default, except the ResNets' convolutions: He-normal (``kaiming_normal_``, fan-out,
as in He et al. 2016); pass ``seed`` for an initialization that repeats and leaves
the global RNG untouched.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from spectra.utils.checks import did_you_mean, integer, options
from spectra.utils.modes import preserved_rng

__all__ = ["ACTIVATIONS", "ModelSpec", "UntrustedModelError", "available_models", "build_model",
           "model_options"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "identity": nn.Identity,
}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        ) from None


def _features(input_shape: Sequence[int]) -> int:
    return math.prod(input_shape)


# --------------------------------------------------------------------------- MLPs


def _mlp(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    widths: Sequence[int] = (64, 64),
    activation: str = "relu",
    bias: bool = True,
) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = _features(input_shape)
    for w in widths:
        if int(w) < 1:
            raise ValueError(f"mlp widths must be positive integers, got {list(widths)}")
        layers += [nn.Linear(width, int(w), bias=bias), _activation(activation)]
        width = int(w)
    layers.append(nn.Linear(width, num_classes, bias=bias))
    return nn.Sequential(*layers)


def _logistic(*, input_shape: tuple[int, ...], num_classes: int, bias: bool = True) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(_features(input_shape), num_classes, bias=bias))


# --------------------------------------------------------------------------- CNN


def _image_shape(name: str, input_shape: tuple[int, ...], min_side: int) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(
            f"{name} needs image inputs of shape (C, H, W), got input_shape={input_shape}; "
            "load the data as images (e.g. load_dataset('digits', image=True))"
        )
    c, h, w = input_shape
    if h < min_side or w < min_side:
        raise ValueError(f"{name} needs images of at least {min_side}x{min_side}, got {h}x{w}")
    return c, h, w


def _cnn(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    channels: Sequence[int] = (16, 32),
    hidden: int = 64,
    activation: str = "relu",
    batchnorm: bool = False,
) -> nn.Module:
    if not channels or any(int(ch) < 1 for ch in channels) or int(hidden) < 1:
        raise ValueError(f"cnn channels and hidden must be positive integers (at least one "
                         f"channel count), got channels={list(channels)}, hidden={hidden}")
    c, h, w = _image_shape("cnn", input_shape, 2 ** len(channels))
    layers: list[nn.Module] = []
    for out in channels:
        layers.append(nn.Conv2d(c, int(out), 3, padding=1))
        if batchnorm:
            layers.append(nn.BatchNorm2d(int(out)))
        layers += [_activation(activation), nn.MaxPool2d(2)]
        c, h, w = int(out), h // 2, w // 2
    layers += [nn.Flatten(), nn.Linear(c * h * w, hidden)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [_activation(activation), nn.Linear(hidden, num_classes)]
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- ResNets


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection.

    ``shortcut="A"``: identity, or stride-2 subsampling padded with zero
    channels when the shape changes (CIFAR ResNet-20). ``"B"``: identity, or a
    1x1 conv + BN projection (ResNet-18).
    """

    def __init__(self, cin: int, cout: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin
        self.project: nn.Module | None = None
        if (stride != 1 or cin != cout) and shortcut == "B":
            self.project = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.project is not None:
            skip = self.project(x)
        elif self.stride != 1 or self.pad:
            skip = x[:, :, :: self.stride, :: self.stride]
            skip = nn.functional.pad(skip, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        else:
            skip = x
        return torch.relu(out + skip)


class _ResNet(nn.Module):
    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int],
        blocks: int,
        shortcut: str,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        stages, cin = [], widths[0]
        for i, cout in enumerate(widths):
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                stages.append(_BasicBlock(cin, cout, stride, shortcut))
                cin = cout
        self.blocks = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def _check_width(name: str, width: int) -> None:
    if int(width) < 1:
        raise ValueError(f"{name} width must be a positive integer, got {width}")


def _resnet20(*, input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> nn.Module:
    _check_width("resnet20", width)
    c, _, _ = _image_shape("resnet20", input_shape, 4)
    return _ResNet(c, num_classes, (width, 2 * width, 4 * width), blocks=3, shortcut="A")


def _resnet18(*, input_shape: tuple[int, ...], num_classes: int, width: int = 64) -> nn.Module:
    _check_width("resnet18", width)
    c, _, _ = _image_shape("resnet18", input_shape, 8)
    widths = (width, 2 * width, 4 * width, 8 * width)
    return _ResNet(c, num_classes, widths, blocks=2, shortcut="B")


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "logistic": _logistic,
    "mlp": _mlp,
    "cnn": _cnn,
    "resnet20": _resnet20,
    "resnet18": _resnet18,
}


def available_models() -> list[str]:
    """Names accepted by :func:`build_model` (besides ``package.module:factory``)."""
    return sorted(_REGISTRY)


def model_options(name: str) -> dict[str, Any]:
    """The options of registry model ``name`` with their defaults (``{}`` for a
    ``package.module:factory`` or an unknown name: nothing is imported)."""
    factory = _REGISTRY.get(name)
    if factory is None:
        return {}
    return {k: p.default for k, p in inspect.signature(factory).parameters.items()
            if p.default is not inspect.Parameter.empty}


# --------------------------------------------------------------------------- building


def import_factory(name: str) -> Callable[..., Any]:
    """The callable a custom model name ``package.module:factory`` names, imported but
    not called.

    Raises:
        ValueError: not of that form, a module that cannot be imported, no such attribute.
        TypeError: the attribute is not callable.
    """
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ValueError(f"custom model {name!r}: expected 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"custom model {name!r}: cannot import module {module_name!r} ({exc}); "
            "is it on sys.path / installed?"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(
                f"custom model {name!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not callable(obj):
        raise TypeError(f"custom model {name!r}: {attr!r} is not callable")
    return obj


def _call_checked(name: str, factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    sig = inspect.signature(factory)
    options(f"model {name!r}", factory, dict(kwargs))
    try:
        sig.bind(**kwargs)
    except TypeError as exc:
        accepted = [
            p for p in sig.parameters
            if p not in ("input_shape", "num_classes")
            and sig.parameters[p].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                               inspect.Parameter.VAR_KEYWORD)
        ]
        raise TypeError(f"model {name!r}: {exc}; it accepts {accepted}") from None
    return factory(**kwargs)


def build_model(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    seed: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a model by registry name or ``package.module:factory``.

    Args:
        name: one of :func:`available_models`, or ``package.module:factory``.
        input_shape: shape of one example without the batch dimension, e.g.
            ``(64,)`` or ``(1, 8, 8)``.
        num_classes: number of outputs: classes, or targets for regression.
        seed: if given, parameters are initialized from ``torch.manual_seed(seed)``
            inside a forked RNG (the global RNG state is left as it was).
        **kwargs: model options (``widths``, ``activation``, ``channels``,
            ``hidden``, ``width``, ...; see the module docstring).

    Returns:
        An ``nn.Module`` mapping ``(B, *input_shape)`` to ``(B, num_classes)``,
        on the CPU, in float32, in training mode.

    Raises:
        ValueError: unknown name (the message lists the names and suggests the
            closest), bad input shape, or a custom factory that cannot be imported.
        TypeError: an option the model does not take, or a custom factory that
            does not return an ``nn.Module``.
    """
    given = tuple(input_shape)
    if not given or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
                            and s >= 1 for s in given):  # 2.5 is not cut to 2
        raise ValueError(f"input_shape must be positive integers, got {given}")
    shape = tuple(int(s) for s in given)
    num_classes = integer("num_classes", num_classes, 1)
    if ":" in name:
        factory = import_factory(name)
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # builtins without a signature
            params = {}
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        extra = {
            k: v for k, v in (("input_shape", shape), ("num_classes", int(num_classes)))
            if takes_all or k in params
        }
        call = lambda: _call_checked(name, factory, {**extra, **kwargs})
    else:
        factory = _REGISTRY.get(name)  # type: ignore[assignment]
        if factory is None:
            hint = did_you_mean(name.lower(), _REGISTRY, cutoff=0.6)
            raise ValueError(
                f"unknown model {name!r}.{hint} Available: {', '.join(available_models())}; "
                "or 'package.module:factory' for your own"
            )
        all_kwargs = {"input_shape": shape, "num_classes": int(num_classes), **kwargs}
        call = lambda: _call_checked(name, factory, all_kwargs)
    if seed is None:
        model = call()
    else:
        # manual_seed seeds the CUDA generators too: all of them are given back
        with preserved_rng():
            torch.manual_seed(seed)
            model = call()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {name!r}: the factory returned {type(model).__name__}, not an nn.Module")
    return model


class UntrustedModelError(ValueError):
    """A spec read from a file names a ``package.module:factory`` model.

    Rebuilding it would import and call code that the file chose; the user must
    name the factory themselves (``spectra ... --model package.module:factory``,
    or ``ModelSpec.from_dict(d).trusted()`` in Python) to allow it.
    """


def is_custom(name: str) -> bool:
    """Whether ``name`` is a ``package.module:factory`` model (imports code)."""
    return ":" in name


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model, as JSON: name, shapes, options.

    Store ``spec.to_dict()`` in a checkpoint or run config; rebuild with
    ``ModelSpec.from_dict(d).build()`` and load the state dict into it.

    A spec read from a file (:meth:`from_dict`) is *untrusted*: :meth:`build`
    refuses a ``package.module:factory`` name, since a checkpoint or run file
    must never choose code to import and call. A spec made in code is trusted;
    :meth:`trusted` marks a read one as trusted once the user has named its
    factory.

    Attributes:
        name: registry name or ``package.module:factory``.
        input_shape: shape of one example, without the batch dimension.
        num_classes: number of outputs.
        kwargs: model options (JSON-able: numbers, strings, lists, dicts).
        seed: initialization seed, or None.
        allow_import: whether :meth:`build` may import a custom factory (not
            stored by :meth:`to_dict`).
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None
    allow_import: bool = field(default=True, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "num_classes", int(self.num_classes))
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        try:
            json.dumps(self.to_dict())
        except TypeError as exc:
            raise TypeError(f"ModelSpec({self.name!r}): options must be JSON-able: {exc}") from None

    def trusted(self) -> ModelSpec:
        """This spec, allowed to import its ``package.module:factory``."""
        return replace(self, allow_import=True)

    def build(self) -> nn.Module:
        """``build_model`` with these settings.

        Raises:
            UntrustedModelError: the spec was read from a file and names a
                ``package.module:factory`` (see the class docstring).
        """
        if is_custom(self.name) and not self.allow_import:
            raise UntrustedModelError(
                f"the spec names the custom model {self.name!r}; loading a file never imports "
                "or calls code it names. If you trust it, name it yourself: "
                f"--model {self.name} on the command line, or ModelSpec.trusted() in Python"
            )
        return build_model(
            self.name, input_shape=self.input_shape, num_classes=self.num_classes,
            seed=self.seed, **self.kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "kwargs": dict(self.kwargs),
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        missing = {"name", "input_shape", "num_classes"} - set(data)
        if missing:
            raise ValueError(f"a model spec needs {sorted(missing)}; got keys {sorted(data)}")
        unknown = set(data) - {"name", "input_shape", "num_classes", "kwargs", "seed"}
        if unknown:
            raise ValueError(f"unknown keys in model spec: {sorted(unknown)}")
        if not isinstance(data["name"], str):
            raise TypeError(f"a model spec's name must be a string, got {data['name']!r}")
        return cls(
            name=data["name"], input_shape=tuple(data["input_shape"]),
            num_classes=data["num_classes"], kwargs=dict(data.get("kwargs") or {}),
            seed=data.get("seed"), allow_import=False,
        )
