"""Run files written by known code and checked row by row, and child processes
that import the store alone.

The writer children and the checks compute rows with the same code (``ROWS``),
so a committed row must read back bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

import spectra.runs.store
from spectra.runs.store import METRIC_COLUMNS, RunStore, read_runs


def format1_file(path: Path) -> Path:
    """An empty spectra-run file of format 1 (every column its own dataset), as
    spectra wrote before format 2: a writer keeps a file in its format."""
    RunStore(path).close()
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = np.int64(1)
    return path


RUNS_DIR = Path(spectra.runs.store.__file__).resolve().parent

# Child processes import spectra.runs.store without running spectra/__init__.py and
# spectra/runs/__init__.py (which pull in torch and the rest of the package): bare
# package modules are put in sys.modules first, so a child starts in a fraction of a
# second.
CHILD_PRELUDE = f"""
import sys, types
_root = types.ModuleType("spectra"); _root.__path__ = [{str(RUNS_DIR.parent)!r}]
_runs = types.ModuleType("spectra.runs"); _runs.__path__ = [{str(RUNS_DIR)!r}]
_root.runs = _runs
sys.modules["spectra"], sys.modules["spectra.runs"] = _root, _runs
"""

ROWS = """
import numpy as np
K, NV, M = 5, 3, 12

def metric_row(rid, j):
    row = dict(step=j, epoch=j / 8, train_loss=rid * 1000 + j + 0.5, train_acc=(j % 100) / 100,
               test_loss=rid + 1 / (j + 1), test_acc=0.25, lr=0.1 * (rid + 1), momentum=0.9,
               weight_decay=1e-4, seconds=j * 0.25)
    if j >= 7:  # an extra column that appears mid-run
        row["grad_norm"] = 2.0 * j
    return row

def probe_row(rid, p):
    row = dict(step=3 * p, epoch=3 * p / 8, top_eigenvalues=rid + p + 0.5 * np.arange(K),
               bottom_eigenvalue=-float(p), trace=10.0 * p, trace_stderr=0.5,
               num_matvecs=100 + p, seconds=0.01 * p)
    if p >= 1:  # the first probe has no density; every 5th has fewer Ritz nodes
        m = M - 2 if p % 5 == 4 else M
        row["ritz_nodes"] = p + np.arange(NV * m, dtype=float).reshape(NV, m) / 64
        row["ritz_weights"] = np.full((NV, m), 1.0 / m)
    return row
"""
_rows_ns: dict = {}
exec(ROWS, _rows_ns)  # noqa: S102  (the same code runs in the writer children)
metric_row, probe_row = _rows_ns["metric_row"], _rows_ns["probe_row"]
K, NV, M = _rows_ns["K"], _rows_ns["NV"], _rows_ns["M"]


def write_run0(path: Path) -> None:
    """A file holding run0: 20 metric rows and 7 probe rows (every third step)."""
    with RunStore(path) as st:
        w = st.create_run("run0", config={"run": 0, "seed": 0})
        for j in range(20):
            w.append_metrics(metric_row(0, j))
            if j % 3 == 0:
                w.append_probe(probe_row(0, w.num_probes))


def _expected_probe_column(rid: int, n: int, key: str) -> np.ndarray:
    rows = []
    for p in range(n):
        value = probe_row(rid, p).get(key)
        full = np.full({"top_eigenvalues": (K,)}.get(key, (NV, M)), np.nan)
        if value is not None:
            full[tuple(slice(0, s) for s in np.shape(value))] = value
        rows.append(full)
    return np.array(rows).reshape((n,) + full.shape) if n else np.zeros((0,) + full.shape)


def check_run_file(path: Path) -> dict[str, tuple[int, int, int]]:
    """Assert that every committed row of every run is exactly what was written.

    Returns run name -> (metric rows, probe rows, checkpoints).
    """
    counts = {}
    for name, run in read_runs(path).items():
        rid = int(name[3:])
        assert run.config == {"run": rid, "seed": run.config["seed"]}
        m = run.metrics
        n = len(m)
        assert np.array_equal(m.step, np.arange(n)) and m.step.dtype == np.int64
        for col in METRIC_COLUMNS[1:]:
            expected = [metric_row(rid, j)[col] for j in range(n)]
            assert np.array_equal(m[col], expected), (name, col)
        if n > 7:
            expected = [metric_row(rid, j).get("grad_norm", np.nan) for j in range(n)]
            np.testing.assert_array_equal(m.extra["grad_norm"], expected)
        pr = run.probes
        q = len(pr)
        for col in ("step", "epoch", "bottom_eigenvalue", "trace", "trace_stderr",
                    "num_matvecs", "seconds"):
            assert np.array_equal(pr[col], [probe_row(rid, p)[col] for p in range(q)]), (name, col)
        if q:
            np.testing.assert_array_equal(
                pr.top_eigenvalues, _expected_probe_column(rid, q, "top_eigenvalues"))
        if q > 1:
            for col in ("ritz_nodes", "ritz_weights"):
                np.testing.assert_array_equal(pr[col], _expected_probe_column(rid, q, col))
        # tables commit independently: a kill between the metric row and its probe
        # row loses only the probe row, so probes never run ahead of metrics
        assert q <= (n + 2) // 3
        c = len(run.checkpoints)
        assert run.checkpoints == tuple(
            path.parent / "ckpt" / f"{name}_{i}.pt" for i in range(c))
        counts[name] = (n, q, c)
    return counts
