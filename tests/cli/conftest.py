"""Fixtures of the CLI tests: a runner, tiny settings, and one trained run shared by many tests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import main

# Tiny settings: 200 digits, a 16-unit MLP, small probes.
DATA = ["--data-arg", "n_train=200", "--data-arg", "n_test=100"]
MODEL = ["--model-arg", "widths=16"]
PROBE = ["--top-k", "2", "--density-vectors", "2", "--density-steps", "10",
         "--trace-matvecs", "8", "--probe-samples", "128"]
TINY = DATA + MODEL + PROBE + ["--batch-size", "50"]


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Tiny problems: one intra-op thread is faster, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def invoke(*args: str, ok: bool = True):
    """Run ``spectra ARGS`` in-process; with ``ok`` assert exit code 0."""
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def invoke_json(*args: str) -> dict:
    result = invoke(*args)
    return json.loads(result.stdout)


def rows_of(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every committed column of every run of a file (for before/after comparisons)."""
    from spectra.runs.store import read_runs

    out = {}
    for name, run in read_runs(path).items():
        cols = {}
        for table in ("metrics", "probes"):
            t = getattr(run, table)
            for col in ("step", "epoch", "train_loss", "test_loss", "top_eigenvalues",
                        "bottom_eigenvalue", "trace", "ritz_nodes", "ritz_weights"):
                try:
                    v = t[col]
                except KeyError:
                    continue
                if v is not None:
                    cols[f"{table}.{col}"] = np.array(v)
        cols["checkpoints"] = np.array([str(c) for c in run.checkpoints])
        out[name] = cols
    return out


def assert_same_rows(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name, cols in a.items():
        assert cols.keys() == b[name].keys(), name
        for col, values in cols.items():
            np.testing.assert_array_equal(values, b[name][col], err_msg=f"{name} {col}")


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict:
    """``spectra train --optimizer dcao`` for 2 epochs on tiny settings (read-only: copy first)."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("trained")
    out = d / "demo.h5"
    summary = invoke_json("train", "--optimizer", "dcao", "--epochs", "2", "--out", out,
                          "--json", *TINY)
    return {"dir": d, "h5": out, "summary": summary,
            "checkpoints": [Path(p) for p in summary["checkpoints"]]}


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    """A private copy of the trained run file (its checkpoints stay where they are)."""
    dst = tmp_path / "copy.h5"
    shutil.copy(trained["h5"], dst)
    return dst
