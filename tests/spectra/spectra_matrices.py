"""Symmetric test matrices with known spectra."""

from __future__ import annotations

import numpy as np
import torch


def with_spectrum(eigenvalues, seed: int = 0) -> torch.Tensor:
    """A dense float64 ``Q diag(eigenvalues) Q^T`` with a random orthogonal ``Q``."""
    ev = np.asarray(eigenvalues, dtype=np.float64)
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((len(ev), len(ev))))
    A = (Q * ev) @ Q.T
    return torch.tensor(0.5 * (A + A.T))


SPECTRA = {
    # well separated outliers above a bulk, like a trained network's Hessian
    "outliers": np.concatenate([[50.0, 30.0, 20.0, 12.0, 9.0], np.linspace(-0.5, 2.0, 195)]),
    # evenly spaced: slow, no gaps to exploit
    "linear": np.arange(1.0, 151.0),
    # clusters of nearby eigenvalues and a tiny gap at the top
    "clusters": np.concatenate([[10.0, 10.0 - 1e-4, 9.0, 9.0 - 1e-3, 9.0 - 2e-3], np.linspace(0, 5, 120)]),
    # repeated eigenvalues at both ends
    "repeated": np.concatenate([[7.0, 7.0, 7.0, 3.0, 3.0], np.linspace(-1, 1, 100), [-4.0, -4.0]]),
    # mostly negative, indefinite
    "negative": np.concatenate([np.linspace(-20, -1, 80), [0.5, 1.0, 4.0]]),
}
