"""spectra.probe: the reduction of the loss is stated and never guessed; the settings are
checked against the model's size and memory; long probes show progress."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spectra import HessianOperator
from spectra.probe import ProbeSettings, probe
from tests.spectra.cases import REDUCTION_CASES

EXACT = ProbeSettings(top_k=2, bottom=False, tol=1e-10, trace_matvecs=0, density=None)


@pytest.mark.parametrize("name", ["seq-ce-sum", "seq-ce-token-mean", "lambda-mse-sum"])
def test_probe_of_a_custom_loss_matches_the_dense_spectrum(name):
    case = next(c for c in REDUCTION_CASES if c.name == name)
    dense = torch.linalg.eigvalsh(case.concatenated().dense_hessian())
    res = probe(case.model, case.loss_fn, case.batches, EXACT)
    assert res.reduction == case.reduction
    assert res.to_dict()["reduction"] == case.reduction
    top = torch.as_tensor(res.top_eigenvalues)
    assert torch.allclose(top, dense.flip(0)[:2], rtol=1e-8, atol=0), (top, dense[-2:])


def test_probe_refuses_a_loss_it_cannot_read_and_takes_reduction():
    case = REDUCTION_CASES[0]

    def squared_mean(o, t):
        return F.cross_entropy(o, t) ** 2

    with pytest.raises(ValueError, match="reduction='mean' or reduction='sum'"):
        probe(case.model, squared_mean, case.batches, EXACT)
    res = probe(case.model, squared_mean, case.batches, EXACT, reduction="sum")
    assert res.reduction == "sum"


# ----------------------------------------------------------------- settings
def _small_problem():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(30, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()  # P = 43
    return model, nn.CrossEntropyLoss(), X, y


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"top_k": True}, r"top_k must be an integer >= 0, got True \(a bool\)"),
        ({"top_k": 2.0}, r"top_k must be an integer >= 0, got 2.0"),
        ({"top_k": -1}, r"top_k must be an integer >= 0, got -1"),
        ({"trace_matvecs": True}, r"trace_matvecs must be an integer >= 0, got True"),
        ({"trace_matvecs": 3}, r"trace_matvecs must be 0 or >= 4, got 3"),
        ({"density": (True, 80)}, r"density num_vectors must be an integer >= 1, got True"),
        ({"density": (4, 80.0)}, r"density num_steps must be an integer >= 1, got 80.0"),
        ({"density": (4,)}, r"density must be None or a pair \(num_vectors, num_steps\)"),
        ({"tol": float("nan")}, r"tol must be a positive number, got nan"),
        ({"tol": "1e-3"}, r"tol must be a positive number, got '1e-3'"),
        ({"seed": 1.5}, r"seed must be an integer in \[.*\], got 1.5"),
        ({"seed": "a"}, r"seed must be an integer in \[.*\], got 'a'"),
    ],
)
def test_settings_refuse_bools_and_non_integers(kw, match):
    with pytest.raises(ValueError, match=match):
        ProbeSettings(**kw)


@pytest.mark.parametrize("name", ["bottom", "eval_mode", "preconditioned", "alignment"])
def test_settings_switches_refuse_truthy_non_bools(name):
    # "no" is truthy: it used to switch the part on
    with pytest.raises(TypeError, match=f"{name} must be True or False, got 'no'"):
        ProbeSettings(**{name: "no"})


def test_probe_refuses_settings_given_as_a_dict():
    with pytest.raises(TypeError, match=r"settings must be a ProbeSettings .* got dict: use "
                                        r"ProbeSettings\(\*\*settings\)"):
        probe(nn.Linear(2, 1), nn.MSELoss(), (torch.randn(4, 2), torch.randn(4, 1)), {"top_k": 1})


def test_density_list_becomes_a_pair():
    assert ProbeSettings(density=[2, 8]).density == (2, 8)


def test_top_k_beyond_the_parameters_is_refused():
    model, loss_fn, X, y = _small_problem()
    settings = ProbeSettings(top_k=44, density=None, trace_matvecs=0)
    with pytest.raises(ValueError, match=r"top_k=44 exceeds the number of parameters P=43.* top_k <= 43"):
        probe(model, loss_fn, (X, y), settings)
    # all of them is allowed
    res = probe(model, loss_fn, (X, y), ProbeSettings(top_k=43, bottom=False, density=None,
                                                       trace_matvecs=0, tol=1e-6))
    assert res.top_eigenvalues.shape == (43,)


def test_steps_beyond_the_parameters_warn_and_are_capped():
    model, loss_fn, X, y = _small_problem()
    with pytest.warns(UserWarning, match=r"density num_steps=100 exceeds the number of parameters "
                                         r"P=43: SLQ runs 43 Lanczos steps"):
        res = probe(model, loss_fn, (X, y), ProbeSettings(top_k=0, bottom=False, trace_matvecs=0,
                                                           density=(2, 100)))
    assert res.measure.nodes.shape == (2, 43)


def test_check_refuses_bases_beyond_the_memory():
    for what, settings in (
        (r"eigsh with k=5 \(", ProbeSettings()),
        (r"slq with num_vectors=4, num_steps=80 \(", ProbeSettings(top_k=0)),
        (r"trace with num_matvecs=60 \(", ProbeSettings(top_k=0, density=None)),
    ):
        with pytest.raises(ValueError, match=what + r".* needs [\d,.]+ GiB but the cpu memory is"):
            settings.check(10**12, torch.float32, torch.device("cpu"))
    ProbeSettings().check(10**6, torch.float32, torch.device("cpu"))  # 1M parameters fit


def test_progress_covers_every_part(capsys):
    model, loss_fn, X, y = _small_problem()
    probe(model, loss_fn, (X, y), ProbeSettings(top_k=2, density=(2, 10), trace_matvecs=8),
          progress=True)
    err = capsys.readouterr().err
    for part in ("eigsh:", "trace:", "slq:"):
        assert part in err, (part, err)


def test_operator_size_is_what_the_check_sees():
    model, loss_fn, X, y = _small_problem()
    assert HessianOperator(model, loss_fn, (X, y)).shape == (43, 43)


def test_density_mode_is_checked_and_recorded():
    with pytest.raises(ValueError, match="density_mode"):
        ProbeSettings(density_mode="half")
    s = ProbeSettings(density=(2, 6), density_mode="bounded", max_memory="1MB")
    assert s.to_dict()["density_mode"] == "bounded" and s.to_dict()["max_memory"] == 10**6


@pytest.mark.filterwarnings("ignore:the model is in train mode")
def test_probe_in_train_mode_leaves_the_global_random_state_as_it_was():
    """With eval_mode=False dropout draws from the global generator in every forward
    pass of the probe: a training loop that probed took other dropout masks after it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.3), nn.Tanh(), nn.Linear(16, 3)).train()
    X, y = torch.randn(20, 6), torch.randint(0, 3, (20,))
    before = torch.get_rng_state()
    probe(model, F.cross_entropy, (X, y),
          ProbeSettings(top_k=1, bottom=False, trace_matvecs=4, density=None, eval_mode=False))
    assert torch.equal(torch.get_rng_state(), before)


def test_probe_results_compare_by_identity_not_by_arrays():
    """The generated == compared the arrays and raised ValueError ('truth value of an
    array ... is ambiguous') for top_k >= 2."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    X, y = torch.randn(20, 6), torch.randint(0, 3, (20,))
    s = ProbeSettings(top_k=2, bottom=False, trace_matvecs=0, density=None)
    a, b = probe(model, F.cross_entropy, (X, y), s), probe(model, F.cross_entropy, (X, y), s)
    assert a == a  # noqa: PLR0124 (the comparison itself raised)
    assert a != b and len({a, b}) == 2
