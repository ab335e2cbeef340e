"""The synthetic run store every figure test draws from, and checks shared by them.

The store holds two runs ("sgdm" and "dcao") of 6 epochs. Each probe's SLQ nodes and
weights come from ``spectra.slq`` on a diagonal matrix with a known spectrum that
evolves like LPSGD's Fig. 1: a bulk near zero that narrows, outliers that shrink, and
negative eigenvalues that disappear after a few epochs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure

from spectra.linalg.density import slq
from spectra.plots import FIGURE_FORMATS, save_figure
from spectra.runs import RunStore, read_runs

EPOCHS = 6
STEPS_PER_EPOCH = 10
P, NV, M, K = 300, 3, 24, 3


def spectrum(epoch: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Eigenvalues (P,) at an epoch: bulk near 0, outliers, early negative eigenvalues."""
    width = 0.5 * math.exp(-epoch / 3)
    bulk = rng.normal(0.02, width, P - 8) * np.abs(rng.normal(0, 0.5, P - 8))
    outliers = scale * 17.5 * math.exp(-epoch / 4) * np.array([1.0, 0.7, 0.45, 0.3, 0.2])
    n_neg = max(0, 3 - epoch)
    negatives = -2.5 * (1 - epoch / 4) * np.linspace(1.0, 0.4, 3) if n_neg else np.zeros(0)
    ev = np.concatenate([bulk, outliers, negatives[:n_neg], np.zeros(3 - n_neg)])
    return np.sort(ev)


def write_store(path: Path) -> Path:
    """A comparison file: runs 'sgdm' and 'dcao' with metrics, probes and densities."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny products: threads only add overhead (and contention)
    try:
        return _write_store(path)
    finally:
        torch.set_num_threads(threads)


def _write_store(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with RunStore(path) as store:
        for r, name in enumerate(("sgdm", "dcao")):
            run = store.create_run(
                name, config={"model": "mlp", "data": "digits", "optimizer": name, "lr": 0.1,
                              "num_params": P},
            )
            for e in range(EPOCHS):
                for s in range(STEPS_PER_EPOCH):
                    step = e * STEPS_PER_EPOCH + s
                    lr = 0.05 + 0.05 * math.cos(math.pi * step / (EPOCHS * STEPS_PER_EPOCH))
                    last = s == STEPS_PER_EPOCH - 1
                    run.append_metrics(
                        step=step, epoch=step / STEPS_PER_EPOCH,
                        train_loss=2.3 * math.exp(-step / (20 + 10 * r)) + 0.05,
                        train_acc=1 - 0.9 * math.exp(-step / (15 + 5 * r)),
                        test_loss=2.3 * math.exp(-step / (25 + 10 * r)) + 0.1 if last else math.nan,
                        test_acc=0.95 - 0.85 * math.exp(-step / (18 + 6 * r)) if last else math.nan,
                        lr=lr, momentum=0.9 if r == 0 else 0.9 - 0.01 * e,
                        weight_decay=5e-4 * (1 + 0.1 * e * r), seconds=0.1 * step,
                    )
                ev = spectrum(e, rng, scale=1.0 + 0.5 * r)
                measure = slq(torch.diag(torch.from_numpy(ev)), num_vectors=NV, num_steps=M,
                              generator=torch.Generator().manual_seed(e))
                row = {
                    "step": e * STEPS_PER_EPOCH, "epoch": float(e),
                    "top_eigenvalues": ev[::-1][:K].copy(), "bottom_eigenvalue": float(ev[0]),
                    "trace": float(ev.sum()), "trace_stderr": 0.1,
                    "ritz_nodes": measure.nodes, "ritz_weights": measure.weights,
                    "num_matvecs": float(measure.num_matvecs), "seconds": 0.5,
                }
                if name == "dcao":
                    row.update(lambda1=float(ev[-1]), gap=float(ev[-1] - ev[-2]),
                               lr_mult=1.0 - 0.05 * e, momentum_mult=1.0 + 0.02 * e,
                               wd_mult=1.0 + 0.1 * e)
                run.append_probe(row)
    return path


@pytest.fixture(scope="package")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("plots") / "compare.h5")


@pytest.fixture(scope="package")
def runs(store_path: Path) -> dict:
    return read_runs(store_path)


def saved(fig: Figure, tmp_path: Path, stem: str, suffixes: tuple[str, ...] = (".png",)) -> None:
    """Save (at a low dpi, for speed); each file is non-empty and starts like its format."""
    magic = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}
    assert set(magic) == set(FIGURE_FORMATS)
    for suffix in suffixes:
        out = save_figure(fig, tmp_path / f"{stem}{suffix}", dpi=50)
        data = out.read_bytes()
        assert len(data) > 1000
        assert data.startswith(magic[suffix])


def panels(fig: Figure) -> list:
    """The figure's axes other than colour bars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def meshes(fig: Figure) -> list[QuadMesh]:
    """The heat maps of the figure's panels."""
    return [c for ax in panels(fig) for c in ax.collections if isinstance(c, QuadMesh)]


def run_with_nodes(path: Path, rows: list[tuple[np.ndarray, np.ndarray]]) -> Path:
    """A file with one run 'r' whose probes hold these (nodes, weights) rows."""
    with RunStore(path) as store:
        run = store.create_run("r")
        for i, (nodes, weights) in enumerate(rows):
            run.append_probe(step=10 * i, epoch=float(i), ritz_nodes=nodes, ritz_weights=weights)
    return path


def nothing_cut_off(fig: Figure) -> None:
    """Nothing is cut off: every panel with its tick labels, axis labels, titles and
    legend lies inside the figure, so do the figure's legends (each entry's handle and
    text too) and title, and every note written into a panel lies inside that panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    box = fig.bbox

    def check(ext, inside, what: str) -> None:
        assert (ext.x0 >= inside.x0 - 1 and ext.x1 <= inside.x1 + 1
                and ext.y0 >= inside.y0 - 1 and ext.y1 <= inside.y1 + 1), (
            f"{what} is cut off: {ext} outside {inside}")

    for ax in fig.axes:
        check(ax.get_tightbbox(renderer), box, f"panel {ax.get_title()!r}")
        for t in ax.texts:
            if t.get_visible() and t.get_text().strip():
                check(t.get_window_extent(renderer), ax.bbox, f"note {t.get_text()!r}")
    for legend in fig.legends:
        check(legend.get_window_extent(renderer), box, "the figure's legend")
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    for legend in legends:  # each entry, its handle and its text, inside the figure
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            check(text.get_window_extent(renderer), box, f"legend entry {text.get_text()!r}")
            if handle is not None and hasattr(handle, "get_window_extent"):
                check(handle.get_window_extent(renderer), box,
                      f"the handle of legend entry {text.get_text()!r}")
    if fig._suptitle is not None and fig._suptitle.get_text().strip():
        check(fig._suptitle.get_window_extent(renderer), box, "the title")
