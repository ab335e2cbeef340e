"""README.md's ```python examples run as written.

Every ```python block of the README is classified below (a string only that block
contains); a new block fails ``test_every_block_is_classified`` until it is added
here, run or explicitly skipped with a reason. Each block is executed with
``exec`` under the file name ``README.md`` and its own line numbers, so a failing
example's traceback points at the README line.

Blocks use names an earlier block defines (the Library example's ``X, y``,
``model``, ``loss_fn``) or that the README says are the reader's own
(``X_train``, ``optimizer``, ``loader``, ...); the smallest preamble that supplies
them is written next to each test, with why. The only edits to a block's text are
listed in ``SHORTENED`` (fewer epochs, for time), each asserted to apply exactly once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# The python blocks README.md holds: a new one must be classified in MARKERS.
NUM_PYTHON_BLOCKS = 9

# kind -> a string that occurs in that block and in no other python block.
MARKERS = {
    "library": "spectra.HessianOperator(model, loss_fn, [(X[:256]",
    "subsample": "spectra.top_eigenvalue_spread(",
    "transformers": "from transformers import",
    "optim_create": 'optim.create("calr"',
    "lr_schedule": "optim.LRSchedule(",
    "dcao_loop": "from optim import DCAO",
    "recording": "SpectralMonitor(model",
    "h5py": "import h5py",
    "read_run": 'read_run("runs/demo.h5", ',
}

# Blocks the default run does not execute, and why.
SKIPPED = {
    "transformers": "needs the optional `transformers` package and takes ~15 s on 2 CPU "
                    "cores (2-layer GPT-2, eigsh, SLQ, block spectra): run by "
                    "test_transformers_block, marked slow (`pytest -m slow`)",
}

# kind -> (text in the block, what the test runs instead, why).
SHORTENED = {
    "recording": ("epochs=10", "epochs=2",
                  "10 epochs with a top-5 + SLQ probe each take ~20 s on 2 cores; 2 run the same code"),
}

_FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[tuple[int, str]]:
    """Each ```python block of README.md: (line number of its first code line, source)."""
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in _FENCE.finditer(text)]


def block(kind: str) -> tuple[int, str]:
    """The one block whose text contains ``MARKERS[kind]``, shortened per ``SHORTENED``."""
    found = [(line, src) for line, src in python_blocks() if MARKERS[kind] in src]
    assert len(found) == 1, f"{len(found)} README python blocks contain {MARKERS[kind]!r} (kind {kind!r})"
    line, src = found[0]
    if kind in SHORTENED:
        old, new, _why = SHORTENED[kind]
        assert src.count(old) == 1, f"README block {kind!r} (line {line}) no longer holds {old!r} once"
        src = src.replace(old, new)
    return line, src


def run_block(kind: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Execute README block ``kind`` in ``namespace`` (tracebacks give README.md lines)."""
    line, src = block(kind)
    code = compile("\n" * (line - 1) + src, str(README), "exec")
    exec(code, namespace)  # noqa: S102 - the README's own examples
    return namespace


def test_every_block_is_classified() -> None:
    blocks = python_blocks()
    assert len(blocks) == NUM_PYTHON_BLOCKS, (
        f"README.md has {len(blocks)} python blocks, this test knows {NUM_PYTHON_BLOCKS}: "
        "classify the new one in MARKERS (run it, or skip it in SKIPPED with a reason)")
    for line, src in blocks:
        kinds = [k for k, marker in MARKERS.items() if marker in src]
        assert len(kinds) == 1, f"README python block at line {line} matches kinds {kinds}: classify it"
    for kind in MARKERS:
        block(kind)  # exactly one block per kind, and its SHORTENED edit applies
    assert set(SKIPPED) <= set(MARKERS) and set(SHORTENED) <= set(MARKERS)


# --------------------------------------------------------------------- Library


@pytest.fixture(scope="module")
def library() -> dict[str, Any]:
    """The Library example's names (X, y, model, loss_fn, H, ...), which the
    subsample and optimizer examples continue from. Its data and model are drawn
    from the global RNG unseeded; seed it so that the test repeats."""
    torch.manual_seed(0)
    return run_block("library", {})


def test_library(library: dict[str, Any]) -> None:
    ns = library
    assert ns["top"].eigenvalues.shape == (5,)
    assert float(ns["lam_min"]) <= float(ns["top"].eigenvalues[0])
    assert ns["density"].shape == ns["grid"].shape == (500,)


def test_subsample(library: dict[str, Any]) -> None:
    ns = run_block("subsample", dict(library))
    assert len(ns["sub"][1]) == 256 and len(ns["ds"]) == 512
    assert ns["spread"].num_samples == 256 and len(ns["spread"].values) == 5


def test_optimizers(library: dict[str, Any]) -> None:
    # The schedule example continues the one before it (`optim` imported there).
    ns = run_block("optim_create", dict(library))
    ns = run_block("lr_schedule", ns)
    assert type(ns["bundle"].optimizer).__name__ == "LPSGDM"


# --------------------------------------------------------- training examples


def digits_namespace() -> dict[str, Any]:
    """What the DCAO and recording examples call the reader's own: the registry
    MLP on digits, its loss, a shuffled loader of 64-sample minibatches."""
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    import spectra

    d = spectra.load_dataset("digits")
    model = spectra.build_model("mlp", input_shape=d.input_shape, num_classes=d.num_classes, seed=0)
    loader = DataLoader(TensorDataset(d.train_x, d.train_y), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    return {"model": model, "loss_fn": nn.CrossEntropyLoss(), "loader": loader,
            "X_train": d.train_x, "y_train": d.train_y, "X_test": d.test_x, "y_test": d.test_y}


def test_dcao_loop() -> None:
    # epochs=1: 23 steps, so DCAO's default warm-up probes (steps 0 and 10) run.
    ns = run_block("dcao_loop", {**digits_namespace(), "epochs": 1})
    last = ns["opt"].history[-1]
    # the keys the example's comment names
    for key in ("step", "lambda1", "lambda2", "gap", "residual1", "residual2", "num_matvecs",
                "ok", "lr_mult", "momentum_mult", "wd_mult", "seconds"):
        assert key in last, f"DCAO history entry has no {key!r}: {sorted(last)}"


def test_recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # it writes runs/demo.h5 and runs/demo_ckpt/
    ns = digits_namespace()
    ns["optimizer"] = torch.optim.SGD(ns["model"].parameters(), lr=0.1)  # any optimizer
    run_block("recording", ns)
    run = ns["read_run"]("runs/demo.h5", "sgd")
    assert len(run.metrics) == 2 and len(run.probes) == 3  # probes at epochs 0, 1, 2
    assert sorted(p.name for p in Path("runs/demo_ckpt").iterdir()) == [
        "checkpoint-epoch0001.pt", "checkpoint-epoch0002.pt"]


# ------------------------------------------------- reading make demo's run file


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with runs/demo.h5 as `make demo` leaves it (the reading examples
    open its run `dcao`): the Makefile's `spectra train` command, in-process,
    with 1 epoch instead of 12 (2 probes instead of 13)."""
    from click.testing import CliRunner

    from cli.main import main

    assert "spectra train --optimizer dcao --opt-arg period=10" in (ROOT / "Makefile").read_text(), (
        "make demo's run changed: update this fixture and the README examples that read it")
    folder = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        result = CliRunner().invoke(main, [
            "train", "--optimizer", "dcao", "--opt-arg", "period=10", "--opt-arg", "warmup_probes=3",
            "--epochs", "1", "--out", "runs/demo.h5"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder


def test_h5py(demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(demo_dir)
    ns = run_block("h5py", {})
    n = ns["n"]
    assert n == 2 and ns["config"]["optimizer"]["name"] == "dcao"
    assert ns["top"].shape == (n, 5) and ns["trace"].shape == (n,)


def test_read_run(demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pandas")  # optional, as the README says
    monkeypatch.chdir(demo_dir)
    ns = run_block("read_run", {})
    assert list(ns["metrics"].columns[:3]) == ["step", "epoch", "train_loss"]
    assert "top_eigenvalues_1" in ns["probes"].columns and "trace" in ns["probes"].columns
    assert list(ns["density"]) == ["step", "epoch", "vector", "node", "weight"]


# ----------------------------------------------------------------- skipped


@pytest.mark.slow
def test_transformers_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """The transformers example (SKIPPED by default: see its reason), from the
    repository root as the README says (it imports the `examples` package)."""
    pytest.importorskip("transformers", reason=SKIPPED["transformers"])
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    ns = run_block("transformers", {})
    assert ns["top3"].eigenvalues.shape == (3,)
