"""Fixtures shared by all tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Test problems are tiny: one intra-op thread is faster, and much faster on a
    busy machine, than several spinning threads. Restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cuda: runs on a CUDA device; skipped when torch.cuda.is_available() is False")


# Parameters of a test over devices: "cpu" always, "cuda" marked and skipped without a GPU.
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ]),
]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each device a test should run on: the CPU, and CUDA whenever one is present
    (``pytest -m cuda`` runs only the CUDA cases)."""
    return torch.device(request.param)
