"""Every registered optimizer against the ``torch.optim`` contract, driven by one table.

`TABLE` holds one `OptimizerCase` per name of ``optim.available()``, as torch's
``OptimizerInfo`` / ``ErrorOptimizerInput`` do (torch/testing/_internal/common_optimizers.py):
the class ``optim.create`` returns for the name, valid constructor inputs (`Input`: keyword
arguments, optionally a second param group with its own overrides), bad inputs with the
error and message each must raise (`ErrorInput`), the setting under which the optimizer
must lower a least-squares loss, and the checks it is known to fail, each with its reason.
A known failure is a strict ``xfail``: ``pytest -ra`` lists it, and it turns into a failure
once fixed, until its entry is removed.

The checks, each run over every row that applies:

- the table covers every registered name, and ``optim.create`` returns the row's class;
- bad hyperparameters raise, with a message naming them, from the constructor (the exact
  message) and through ``optim.create``, and in a param group (given to the constructor
  or added later, which then is not added); numpy numbers are taken as numbers and stored
  as Python ones;
- ``state_dict()`` saved and loaded into a fresh optimizer continues bit-identically;
- the closure runs under ``enable_grad`` and its loss is returned, the update under
  ``no_grad``, also when ``step`` is called under ``no_grad``; parameters without a
  gradient are skipped;
- sparse gradients are refused with a message saying so (used, where the optimizer
  supports them);
- an LR scheduler that sets lr to 0 freezes the parameters; a param group's own
  hyperparameters apply to it only;
- float32 parameters and their state stay float32; float16 parameters stay finite where
  gradient entries are exactly zero; the loss of a small least-squares problem falls.

An optimizer's own test file holds only its math: hand computations, independent
references and the behaviour its paper describes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

import optim
from optim import CALR, DCAO, LPSGD, LPSGDM, SMARAN, Lion
from optim.calr import DEFAULT_CLIP

from .problems import DEVICES, LeastSquares

# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Input:
    """A valid configuration: keyword arguments for the constructor and, with ``group``,
    a second param group (holding the last parameter) that overrides these keys."""

    kwargs: Mapping[str, Any] = field(default_factory=dict)
    group: Mapping[str, Any] | None = None

    @property
    def id(self) -> str:
        text = ",".join(f"{k}={v}" for k, v in self.kwargs.items()) or "defaults"
        if self.group is not None:
            text += "+group(" + ",".join(f"{k}={v}" for k, v in self.group.items()) + ")"
        return text


@dataclass(frozen=True)
class ErrorInput:
    """Bad constructor keywords, the error they raise and its message (a regex).

    Attributes:
        names: a regex that a message raised through ``optim.create`` must contain
            (case-insensitive); by default the keyword itself (``SPOKEN`` for ``lr``).
        accepted: why the optimizer accepts the value (a known failure of both error
            checks), or None.
        misnamed: why the message does not name the keyword the user passed (a known
            failure of the check through ``optim.create``), or None.
    """

    kwargs: Mapping[str, Any]
    message: str
    error: type[Exception] = ValueError
    names: str | None = None
    accepted: str | None = None
    misnamed: str | None = None

    @property
    def id(self) -> str:
        return ",".join(f"{k}={v!r}" for k, v in self.kwargs.items())


@dataclass(frozen=True)
class OptimizerCase:
    """One registry name and what conformance means for it.

    Attributes:
        name: the name in ``optim.available()``.
        cls: the class ``optim.create(name, ...)`` returns.
        inputs: valid configurations; the state_dict round trip runs for each.
        errors: bad keywords and the error each raises.
        bad_group: a keyword and a bad value for it, given in a param group.
        lowers_loss: keywords, and the factor by which 200 steps must lower the loss.
        sparse: "refused" or "supported" (sparse gradients).
        known_failures: check name -> why this optimizer fails it (a strict xfail).
        required: ``required(params) -> dict`` of the constructor's arguments besides
            ``params`` that have no default (DCAO's model, loss and probe data).
    """

    name: str
    cls: type[Optimizer]
    inputs: tuple[Input, ...]
    errors: tuple[ErrorInput, ...]
    bad_group: tuple[str, Any]
    lowers_loss: tuple[Mapping[str, Any], float]
    sparse: str = "refused"
    known_failures: Mapping[str, str] = field(default_factory=dict)
    required: Callable[[Sequence[Any]], dict[str, Any]] | None = None

    def extra(self, params: Sequence[Any]) -> dict[str, Any]:
        return self.required(params) if self.required is not None else {}

    def make(self, params: Sequence[Any], **kwargs: Any) -> Optimizer:
        """``optim.create(name, params, **kwargs)`` (with the required arguments)."""
        return optim.create(self.name, params, **{**self.extra(params), **kwargs})

    def build(self, params: Sequence[Tensor], inp: Input) -> Optimizer:
        """The optimizer of configuration `inp` over `params`."""
        if inp.group is None:
            return self.make(params, **inp.kwargs)
        groups = [{"params": list(params[:-1])}, {"params": list(params[-1:]), **inp.group}]
        return self.make(groups, **inp.kwargs)


class FlatLinear(nn.Module):
    """``X @ theta``, with theta the given parameters flattened in order: the model DCAO
    probes here, so that its probes see the parameters it optimizes (its Hessian under
    a mean squared error is the fixed positive-definite ``2 X^T X / N``)."""

    def __init__(self, params: Sequence[Tensor]) -> None:
        super().__init__()
        self.weights = nn.ParameterList(params)

    def forward(self, X: Tensor) -> Tensor:
        return X @ torch.cat([p.reshape(-1) for p in self.weights])


def _tensors(params: Sequence[Any]) -> list[Tensor]:
    out: list[Tensor] = []
    for p in params:
        out.extend(p["params"] if isinstance(p, dict) else [p])
    return out


def _dcao_probe(params: Sequence[Any]) -> dict[str, Any]:
    tensors = _tensors(params)
    P = sum(t.numel() for t in tensors)
    like = {"dtype": tensors[0].dtype, "device": tensors[0].device}
    X = torch.randn(2 * P, P, generator=torch.Generator().manual_seed(0), dtype=like["dtype"])
    return {"model": FlatLinear(tensors), "loss_fn": nn.MSELoss(),
            "probe_data": (X.to(like["device"]), torch.zeros(2 * P, **like))}


def _lr_errors() -> tuple[ErrorInput, ...]:
    return (ErrorInput({"lr": -1.0}, "Invalid learning rate: -1.0"),
            ErrorInput({"lr": float("nan")}, "Invalid learning rate: nan"))


def _torch_errors(*more: ErrorInput) -> tuple[ErrorInput, ...]:
    return (*_lr_errors(), ErrorInput({"weight_decay": -1.0}, "Invalid weight_decay value: -1.0"),
            *more)


def _adam_errors(*more: ErrorInput) -> tuple[ErrorInput, ...]:
    return _torch_errors(
        ErrorInput({"eps": -1.0}, "Invalid epsilon value: -1.0"),
        ErrorInput({"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0",
                   names="beta parameter"),
        *more,
    )


CALR_ERRORS = (
    *_lr_errors(),
    ErrorInput({"lr": float("inf")}, "Invalid learning rate: inf"),
    ErrorInput({"alpha": -0.1}, "Invalid alpha value: -0.1"),
    ErrorInput({"betas": (1.0, 0.999)}, r"Invalid betas\[0\] value: 1.0"),
    ErrorInput({"betas": (0.9, -0.1)}, r"Invalid betas\[1\] value: -0.1"),
    ErrorInput({"betas": (0.9,)}, r"Invalid betas value: \(0.9,\)"),
    ErrorInput({"delta": -1e-8}, "Invalid delta value: -1e-08"),
    ErrorInput({"eps": -1.0}, "Invalid eps value: -1.0"),
    ErrorInput({"clip": 0.0}, "Invalid clip value: 0.0"),
    ErrorInput({"clip": -0.1}, "Invalid clip value: -0.1"),
)

LPSGD_ERRORS = (
    ErrorInput({"lr": -1.0}, "Invalid learning rate: -1.0"),
    ErrorInput({"lr": float("nan")}, "Invalid learning rate: nan"),
    ErrorInput({"p": 1.5}, "Invalid p value: 1.5"),
    ErrorInput({"p": float("nan")}, "Invalid p value: nan"),
    ErrorInput({"beta": 1.0}, "Invalid beta value: 1.0"),
    ErrorInput({"weight_decay": -0.1}, "Invalid weight_decay value: -0.1"),
    ErrorInput({"eps": 0.0}, "Invalid eps value: 0.0"),
    ErrorInput({"momentum_form": "nesterov"}, "Invalid momentum_form value: 'nesterov'"),
)

# torch.optim's adaptive methods add eps in the parameters' dtype.
TORCH_FLOAT16 = {"float16": "the update adds eps=1e-8 in float16, where it rounds to 0: a zero "
                 "gradient entry divides 0 by 0 (NaN)"}

# torch.optim's own classes check only the constructor's defaults.
TORCH_GROUPS = {"param_group_validation":
                "torch.optim validates the constructor's defaults, not the values of a "
                "param group (given to the constructor or added later)"}


def _calr(name: str) -> OptimizerCase:
    clip = (Input({"lr": 0.05, "clip": DEFAULT_CLIP}),) if name == "calr" else ()
    return OptimizerCase(
        name, CALR,
        inputs=(Input({"lr": 0.05}), *clip, Input({"lr": 0.05}, group={"lr": 0.01, "clip": 0.01})),
        errors=CALR_ERRORS, bad_group=("alpha", -1.0), lowers_loss=({"lr": 0.05}, 0.1),
    )


def _lpsgd(name: str, cls: type[Optimizer]) -> OptimizerCase:
    return OptimizerCase(
        name, cls,
        inputs=(Input({"lr": 0.02, "p": 4.0}),
                Input({"lr": 0.02, "p": 4.0, "beta": 0.5, "momentum_form": "heavy-ball"}),
                Input({"lr": 0.02, "p": 4.0}, group={"p": 3.0})),
        errors=LPSGD_ERRORS, bad_group=("p", 1.0), lowers_loss=({"lr": 0.01, "p": 4.0}, 0.2),
    )


def _baseline(name: str, cls: type[Optimizer], errors: tuple[ErrorInput, ...],
              *inputs: Input, sparse: str = "refused",
              known_failures: Mapping[str, str] | None = None) -> OptimizerCase:
    return OptimizerCase(
        name, cls, inputs=(Input({"lr": 0.05}), *inputs, Input({"lr": 0.05}, group={"lr": 0.01})),
        errors=errors, bad_group=("lr", -1.0), lowers_loss=({"lr": 0.05}, 0.2), sparse=sparse,
        known_failures={**TORCH_GROUPS, **(known_failures or {})},
    )


SGD_ERRORS = (
    ErrorInput({"lr": -1.0}, "Invalid learning rate: -1.0"),
    ErrorInput({"lr": float("nan")}, "Invalid learning rate: nan",
               accepted="torch.optim.SGD checks only lr < 0.0, which nan is not"),
    ErrorInput({"weight_decay": -1.0}, "Invalid weight_decay value: -1.0"),
    ErrorInput({"momentum": -1.0}, "Invalid momentum value: -1.0"),
    ErrorInput({"nesterov": True, "momentum": 0.0},
               "Nesterov momentum requires a momentum and zero dampening"),
)

TABLE: tuple[OptimizerCase, ...] = (
    _calr("calr"),
    _calr("calr-clip"),
    _calr("calr-cosine"),
    _calr("calr-clip-cosine"),
    OptimizerCase(
        "smaran", SMARAN,
        inputs=(Input({"lr": 0.05, "norm": "tensor"}), Input({"lr": 0.05, "norm": "global"}),
                Input({"lr": 0.05}, group={"gamma": 0.5})),
        errors=(
            ErrorInput({"lr": -0.1}, "Invalid learning rate: -0.1"),
            ErrorInput({"lr": float("nan")}, "Invalid learning rate: nan"),
            ErrorInput({"gamma": 1.0}, "Invalid gamma value: 1.0"),
            ErrorInput({"gamma": -0.5}, "Invalid gamma value: -0.5"),
            ErrorInput({"weight_decay": -0.01}, "Invalid weight_decay value: -0.01"),
            ErrorInput({"eps": 0.0}, "Invalid eps value: 0.0"),
            ErrorInput({"f_min": float("nan")}, "Invalid f_min value: nan"),
            ErrorInput({"norm": "layer"}, "Invalid norm value: 'layer'"),
        ),
        bad_group=("gamma", 1.5), lowers_loss=({"lr": 0.05}, 0.2),
    ),
    _lpsgd("lpsgd", LPSGD),
    _lpsgd("lpsgdm", LPSGDM),
    OptimizerCase(
        "dcao", DCAO,
        inputs=(Input({"lr": 0.05, "period": 3, "warmup_probes": 2}),
                Input({"lr": 0.05, "period": 3, "warmup_probes": 2}, group={"momentum": 0.5})),
        errors=(
            *_lr_errors(),
            ErrorInput({"momentum": 1.0}, "Invalid momentum value: 1.0"),
            ErrorInput({"weight_decay": -1.0}, "Invalid weight_decay value: -1.0"),
            ErrorInput({"period": 0}, "Invalid period value: 0"),
            ErrorInput({"lanczos_steps": 1}, "Invalid lanczos_steps value: 1"),
            ErrorInput({"probe_tol": 0.0}, "Invalid probe_tol value: 0.0"),
            ErrorInput({"cold_lanczos_steps": 1}, "Invalid cold_lanczos_steps value: 1"),
            ErrorInput({"probe_batch_size": 0}, "Invalid probe_batch_size value: 0"),
            ErrorInput({"probe_batch_size": True}, "Invalid probe_batch_size value: True"),
            ErrorInput({"probe_tol": "0.1"}, r"Invalid probe_tol value: 0.1 \(expected a "
                       r"finite number > 0, not a str\)"),
            ErrorInput({"max_residual": None}, "Invalid max_residual value: None"),
            ErrorInput({"warmup_probes": 0}, "Invalid warmup_probes value: 0"),
            ErrorInput({"overhead": 1.0}, "Invalid overhead value: 1.0"),
            ErrorInput({"rho_ref": "median"}, "Invalid rho_ref value: 'median'"),
            ErrorInput({"gamma_ref": -1.0}, "Invalid gamma_ref value: -1.0"),
            ErrorInput({"alpha": 0.0}, "Invalid alpha value: 0.0"),
            ErrorInput({"beta1": -2.0}, "Invalid beta1 value: -2.0"),
            ErrorInput({"lambda1": -0.5}, "Invalid lambda1 value: -0.5"),
            ErrorInput({"mapping": "cubic"}, "Invalid mapping value: 'cubic'"),
            ErrorInput({"adapt_lr": "yes"}, "Invalid adapt_lr value: 'yes'"),
            ErrorInput({"adapt_momentum": 1}, "Invalid adapt_momentum value: 1"),
            ErrorInput({"adapt_weight_decay": None}, "Invalid adapt_weight_decay value: None"),
            ErrorInput({"ema": 1.0}, "Invalid ema value: 1.0"),
            ErrorInput({"max_momentum": 1.0}, "Invalid max_momentum value: 1.0"),
            ErrorInput({"max_residual": -1.0}, "Invalid max_residual value: -1.0"),
            ErrorInput({"model": "m"}, "Invalid model value: str"),
            ErrorInput({"loss_fn": 3}, "Invalid loss_fn value: 3"),
            ErrorInput({"probe_data": 5}, "Invalid probe_data value: int"),
        ),
        bad_group=("momentum", 1.0),
        lowers_loss=({"lr": 0.05, "period": 5, "warmup_probes": 2}, 0.2),
        required=_dcao_probe,
    ),
    OptimizerCase(
        "lion", Lion,
        inputs=(Input({"lr": 0.01, "weight_decay": 0.1}),
                Input({"lr": 0.01}, group={"betas": (0.8, 0.9)})),
        errors=(
            *_lr_errors(),
            ErrorInput({"lr": -1e-4}, "Invalid learning rate: -0.0001"),
            ErrorInput({"betas": (1.5, 0.99)}, r"Invalid betas\[0\] value: 1.5"),
            ErrorInput({"betas": (0.9, 1.0)}, r"Invalid betas\[1\] value: 1.0"),
            ErrorInput({"betas": 0.9}, "Invalid betas value: 0.9"),
            ErrorInput({"weight_decay": -1.0}, "Invalid weight_decay value: -1.0"),
        ),
        bad_group=("betas", (0.9, 2.0)), lowers_loss=({"lr": 0.01}, 0.2),
    ),
    _baseline("sgd", torch.optim.SGD, SGD_ERRORS, Input({"lr": 0.05, "momentum": 0.5}),
              sparse="supported"),
    _baseline("sgdm", torch.optim.SGD, SGD_ERRORS, Input({"lr": 0.05, "nesterov": True}),
              sparse="supported"),
    _baseline("adam", torch.optim.Adam, _adam_errors(), Input({"lr": 0.05, "amsgrad": True}),
              known_failures=TORCH_FLOAT16),
    _baseline("adamw", torch.optim.AdamW, _adam_errors(), known_failures=TORCH_FLOAT16),
    _baseline("nadam", torch.optim.NAdam, _adam_errors(
        ErrorInput({"momentum_decay": -1.0}, "Invalid momentum_decay value: -1.0")),
        known_failures={"lockstep": "torch.optim.NAdam keeps its scalar state mu_product in "
                        "float32, but load_state_dict casts it to the parameters' dtype "
                        "(float64 here): the reloaded optimizer drifts by about 1e-11",
                        **TORCH_FLOAT16}),
    _baseline("rmsprop", torch.optim.RMSprop, _torch_errors(
        ErrorInput({"eps": -1.0}, "Invalid epsilon value: -1.0"),
        ErrorInput({"alpha": -1.0}, "Invalid alpha value: -1.0"),
        ErrorInput({"momentum": -1.0}, "Invalid momentum value: -1.0"),
    ), Input({"lr": 0.01, "momentum": 0.5, "centered": True}), known_failures=TORCH_FLOAT16),
    _baseline("radam", torch.optim.RAdam, _adam_errors()),
)


# --------------------------------------------------------------------------- parametrization


def _xfail(reason: str | None) -> list[pytest.MarkDecorator]:
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


def cases(check: str, where: Callable[[OptimizerCase], bool] = lambda case: True) -> list:
    """One parameter per row (that `where` selects), a strict xfail where the row names
    `check` among its known failures."""
    return [pytest.param(case, id=case.name, marks=_xfail(case.known_failures.get(check)))
            for case in TABLE if where(case)]


def input_cases(check: str) -> list:
    """(row, input, device) triples, a strict xfail where the row names `check`."""
    return [pytest.param(case, inp, device, id=f"{case.name}-{inp.id}-{device}",
                         marks=_xfail(case.known_failures.get(check)))
            for case in TABLE for inp in case.inputs for device in DEVICES]


def error_cases(*, through_create: bool) -> list:
    """(row, bad input) pairs. The constructor is checked once per class (the CALR
    variants share it); ``optim.create`` once per name, with the name's defaults."""
    out, seen = [], set()
    for case in TABLE:
        for bad in case.errors:
            key = (case.cls, bad.id)
            if not through_create and key in seen:
                continue
            seen.add(key)
            reason = bad.accepted or (bad.misnamed if through_create else None)
            out.append(pytest.param(case, bad, id=f"{case.name}-{bad.id}", marks=_xfail(reason)))
    return out


# how messages name a keyword, where not by the keyword itself (torch's convention)
SPOKEN = {"lr": "learning rate"}


def _ones(n: int = 2, dtype: torch.dtype = torch.float32) -> nn.Parameter:
    return nn.Parameter(torch.ones(n, dtype=dtype))


# --------------------------------------------------------------------------- the checks


def test_the_table_covers_every_registered_optimizer():
    registered, listed = list(optim.available()), [case.name for case in TABLE]
    missing = [name for name in registered if name not in listed]
    assert not missing, f"add a row to TABLE for {missing}"
    assert listed == registered


@pytest.mark.parametrize("case", cases("create"))
def test_create_returns_the_class(case):
    assert type(case.make([_ones()])) is case.cls


@pytest.mark.parametrize(("case", "bad"), error_cases(through_create=False))
def test_bad_hyperparameters_raise(case, bad):
    params = [_ones(1)]
    with pytest.raises(bad.error, match=bad.message):
        case.cls(params, **{**case.extra(params), **bad.kwargs})


@pytest.mark.parametrize(("case", "bad"), error_cases(through_create=True))
def test_bad_hyperparameters_are_named_through_create(case, bad):
    names = bad.names or "|".join(SPOKEN.get(key, re.escape(key)) for key in bad.kwargs)
    with pytest.raises(bad.error, match=re.compile(names, re.IGNORECASE)):
        case.make([_ones(1)], **bad.kwargs)


@pytest.mark.parametrize("case", cases("param_group_validation"))
def test_bad_hyperparameter_in_a_param_group_raises(case):
    key, bad = case.bad_group
    good, other = _ones(), _ones()
    with pytest.raises(ValueError, match=key.split("[")[0]):
        case.make([{"params": [good]}, {"params": [other], key: bad}])
    opt = case.make([good])
    with pytest.raises(ValueError, match=key.split("[")[0]):
        opt.add_param_group({"params": [other], key: bad})
    # a refused group is not kept: the next step would run with its bad value
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["params"] == [good]


@pytest.mark.parametrize("case", cases("numpy", lambda case: case.cls.__module__.startswith("optim")))
def test_numpy_hyperparameters_are_numbers_and_are_stored_as_python_numbers(case):
    """``lr=np.float32(0.05)`` (a value read from a numpy config) is the number it is; the
    groups, hence every state_dict, hold Python numbers (``torch.load(weights_only=True)``
    refuses numpy objects)."""
    import numpy as np

    inp = case.inputs[0]
    # float32 scalars: np.float64 subclasses float and would pass any check unconverted
    as_numpy = {k: (np.float32(v) if isinstance(v, float) else v) for k, v in inp.kwargs.items()}
    p, q = _ones(), _ones()
    opt = case.make([p], **{**as_numpy, "lr": np.float32(0.05)})
    opt.add_param_group({"params": [q], "lr": np.float64(0.01)})
    for group in opt.param_groups:
        for key, value in group.items():
            if key != "params":
                values = value if isinstance(value, (tuple, list)) else (value,)
                assert not any(isinstance(v, np.generic) for v in values), (key, value)
    assert opt.param_groups[0]["lr"] == float(np.float32(0.05))
    assert opt.param_groups[1]["lr"] == 0.01
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)


@pytest.mark.parametrize(("case", "inp", "device"), input_cases("lockstep"))
def test_state_dict_round_trip_continues_in_lockstep(case, inp, device):
    """Save the state after 5 steps, load it into a fresh optimizer over a copy of the
    parameters, and check both run bit-identically for 20 more steps."""
    problem = LeastSquares(seed=1, device=device)
    params_a = problem.params()
    opt_a = case.build(params_a, inp)
    for _ in range(5):
        opt_a.step(problem.closure(params_a))

    buffer = io.BytesIO()
    torch.save(opt_a.state_dict(), buffer)
    buffer.seek(0)
    params_b = [nn.Parameter(p.detach().clone()) for p in params_a]
    opt_b = case.build(params_b, inp)
    opt_b.load_state_dict(torch.load(buffer))

    for _ in range(20):
        opt_a.step(problem.closure(params_a))
        opt_b.step(problem.closure(params_b))
        for pa, pb in zip(params_a, params_b, strict=True):
            assert torch.equal(pa, pb)
    _assert_states_equal(opt_a.state_dict()["state"], opt_b.state_dict()["state"])


def _assert_states_equal(a: object, b: object) -> None:
    if isinstance(a, Tensor):
        assert isinstance(b, Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            _assert_states_equal(a[key], b[key])
    else:
        assert a == b


@pytest.mark.parametrize("case", cases("closure"))
def test_closure_runs_with_grad_and_the_update_without(case):
    """The closure runs under enable_grad and its loss is returned; the update runs under
    no_grad (an in-place update of a leaf that requires grad would raise otherwise)."""
    p = _ones()
    opt = case.make([p])
    seen = []

    def closure() -> Tensor:
        seen.append(torch.is_grad_enabled())
        p.grad = None
        loss = (p**2).sum()
        loss.backward()
        return loss

    with torch.no_grad():
        returned = opt.step(closure)
    assert seen == [True]
    assert float(returned.detach()) == 2.0
    opt.step(closure)
    assert seen == [True, True]
    assert p.is_leaf and p.grad_fn is None and p.requires_grad


@pytest.mark.parametrize("case", cases("skips_params_without_grad"))
def test_parameters_without_a_gradient_are_skipped(case):
    used, unused = _ones(3, torch.float64), _ones(3, torch.float64)
    opt = case.make([used, unused])

    def closure() -> Tensor:
        used.grad = None
        loss = (used**2).sum()
        loss.backward()
        return loss

    returned = opt.step(closure)
    assert torch.equal(unused, torch.ones(3, dtype=torch.float64))
    assert not torch.equal(used, torch.ones(3, dtype=torch.float64))
    assert unused not in opt.state
    assert float(returned.detach()) == 3.0  # step returns the closure's loss


@pytest.mark.parametrize("case", cases("sparse", lambda case: case.sparse == "refused"))
def test_sparse_gradients_are_refused(case):
    p = _ones(4)
    opt = case.make([p])
    p.grad = torch.ones(4).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step(lambda: torch.tensor(1.0))


@pytest.mark.parametrize("case", cases("sparse", lambda case: case.sparse == "supported"))
def test_sparse_gradients_are_used(case):
    p = _ones(4)
    opt = case.make([p])
    p.grad = torch.ones(4).to_sparse()
    opt.step()
    assert torch.all(p < 1.0)


@pytest.mark.parametrize("case", cases("lr_scheduler"))
def test_an_lr_scheduler_that_sets_lr_to_zero_freezes_the_parameters(case):
    problem = LeastSquares(seed=3)
    params = problem.params()
    opt = case.make(params)
    opt.step(problem.closure(params))
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 1.0 if epoch == 0 else 0.0)
    before = [p.detach().clone() for p in params]
    opt.step(problem.closure(params))
    assert not all(torch.equal(a, p) for a, p in zip(before, params, strict=True))
    scheduler.step()
    assert opt.param_groups[0]["lr"] == 0.0
    before = [p.detach().clone() for p in params]
    opt.step(problem.closure(params))
    assert all(torch.equal(a, p) for a, p in zip(before, params, strict=True))


@pytest.mark.parametrize("case", cases("param_groups"))
def test_a_param_groups_own_hyperparameters_apply_to_it_only(case):
    """A group given lr 0 stays where it is while the other moves; both groups hold
    every hyperparameter (the defaults fill in what a group does not set)."""
    problem = LeastSquares(seed=3)
    W, b = params = problem.params()
    opt = case.make([{"params": [W]}, {"params": [b], "lr": 0.0}])
    assert opt.param_groups[1].keys() == opt.param_groups[0].keys()
    assert opt.param_groups[1]["lr"] == 0.0
    W0, b0 = W.detach().clone(), b.detach().clone()
    for _ in range(3):
        opt.step(problem.closure(params))
    assert not torch.equal(W, W0)
    assert torch.equal(b, b0)


@pytest.mark.parametrize("case", cases("dtype"))
def test_float32_parameters_and_their_state_stay_float32(case):
    p = nn.Parameter(torch.ones(3))
    opt = case.make([p])

    def closure() -> Tensor:
        p.grad = None
        loss = (p**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert p.dtype == torch.float32
    per_parameter = [v for v in opt.state[p].values()
                     if isinstance(v, Tensor) and v.shape == p.shape]
    assert all(v.dtype == torch.float32 for v in per_parameter)


@pytest.mark.parametrize("case", cases("float16"))
def test_float16_parameters_stay_finite_at_zero_gradient_entries(case):
    """Gradients with exact zeros (a dead unit, an unused tensor) in float16, where the
    usual eps = 1e-8 rounds to 0 (the smallest subnormal is 6e-8): a step keeps every
    parameter finite and the parameters in float16."""
    used, unused = nn.Parameter(torch.ones(4, dtype=torch.float16)), _ones(3, torch.float16)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float16)
    params = [used, unused]
    opt = case.make(params, **case.inputs[0].kwargs)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = (used * mask).float().square().sum() + 0.0 * unused.float().sum()
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    for p in params:
        assert p.dtype == torch.float16
        assert bool(torch.isfinite(p).all()), p


@pytest.mark.parametrize("case", cases("lowers_loss"))
def test_lowers_a_least_squares_loss(case):
    """After 200 steps the loss is below the row's factor times the initial one."""
    kwargs, factor = case.lowers_loss
    problem = LeastSquares(seed=2)
    params = problem.params()
    opt = case.make(params, **kwargs)
    initial = problem.loss(params).item()
    for _ in range(200):
        opt.step(problem.closure(params))
    final = problem.loss(params).item()
    assert final < factor * initial, (initial, final)
