"""Runs in TensorBoard: the rows of a run mirrored to TensorBoard event files.

:class:`TensorBoardWriter` sits in front of a run writer (a
:class:`~spectra.runs.writer.RunWriter`, or anything with ``append_metrics`` and
``append_probe``): every row is committed to the run file first, then logged to
``<log_dir>/<run name>/``, so that ``tensorboard --logdir <log_dir>`` shows each run
of a comparison as one TensorBoard run. :func:`log_run` logs a run read back from a
file (``spectra export RUN.h5 --tensorboard DIR``). What is logged, at the row's
``step`` (optimizer steps):

``metrics/<column>``
    every finite number of a metrics row (``train_loss``, ``test_acc``, ``lr``,
    ``epoch``, DCAO's ``lr_mult`` ...).
``probes/<column>``
    every finite number of a probe row, a (k,) column as ``<column>_1`` ...
    ``<column>_k`` (``probes/top_eigenvalues_1`` is λ1, the largest).
``density``
    the probe's SLQ measure as a histogram: the Ritz nodes of all its random
    vectors, each with its weight divided by the number of vectors, so the
    buckets sum to 1 (the density's mass); 64 equal buckets between the
    smallest and the largest node.

TensorBoard's writer is ``torch.utils.tensorboard``, which needs the
``tensorboard`` package (``pip install tensorboard``, or ``pip install
'.[tensorboard]'`` in spectra's repository); spectra works without it until one of these is
created. The run file stays the record: TensorBoard is a view of it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DENSITY_BUCKETS", "TensorBoardLogger", "TensorBoardWriter", "check_tensorboard",
           "density_histogram", "log_run"]

DENSITY_BUCKETS = 64


def _summary_writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, or an ImportError that says how to get it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError(
            "logging to TensorBoard needs the tensorboard package, which is not installed: "
            "pip install tensorboard (or, in spectra's repository, pip install "
            "'.[tensorboard]'; 'spectra' on PyPI is another project)"
        ) from None
    return SummaryWriter


def check_tensorboard() -> None:
    """Raise ImportError, saying how to install it, unless TensorBoard's writer imports."""
    _summary_writer_class()


def _numbers(row: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a row, a (k,) array as ``name_1`` ... ``name_k``; ``step``,
    text, larger arrays and non-finite values left out."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if key == "step" or value is None or isinstance(value, (str, bytes)):
            continue
        if hasattr(value, "detach"):  # a torch tensor
            value = value.detach().cpu().numpy()
        a = np.asarray(value)
        if a.dtype.kind not in "biuf":
            continue
        if a.ndim == 0:
            items = {key: float(a)}
        elif a.ndim == 1:
            items = {f"{key}_{j + 1}": float(x) for j, x in enumerate(a)}
        else:
            continue
        out.update({k: v for k, v in items.items() if math.isfinite(v)})
    return out


def density_histogram(nodes: Any, weights: Any, buckets: int = DENSITY_BUCKETS) -> dict[str, Any] | None:
    """The SLQ measure of one probe as TensorBoard's raw histogram.

    Args:
        nodes, weights: (n_v, m) Ritz nodes and their weights per random vector
            (NaN padding ignored).
        buckets: number of equal-width buckets between the smallest and the
            largest node.

    Returns:
        The keyword arguments of ``SummaryWriter.add_histogram_raw`` but ``tag``
        and ``global_step``: ``min``, ``max``, ``num`` (the total mass, 1),
        ``sum`` and ``sum_squares`` (the measure's first two moments times its
        mass), ``bucket_limits`` (right edges) and ``bucket_counts`` (the mass in
        each bucket); None when the measure has no finite node.
    """
    x = np.asarray(nodes, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if x.ndim != 2 or x.shape != w.shape:
        raise ValueError(f"nodes and weights must both be (n_v, m), got {x.shape} and {w.shape}")
    ok = np.isfinite(x) & np.isfinite(w)
    if not ok.any():
        return None
    # each vector's measure has mass 1: average them over the vectors this probe has (a
    # row stored wider than its probe is NaN-padded, whole vectors included)
    mass = w[ok] / int(ok.any(axis=1).sum())
    x = x[ok]
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:  # a single point: one narrow bucket around it
        width = max(abs(lo), 1.0) * 1e-6
        lo, hi = lo - width, hi + width
    counts, edges = np.histogram(x, bins=buckets, range=(lo, hi), weights=mass)
    return {
        "min": float(x.min()), "max": float(x.max()), "num": float(mass.sum()),
        "sum": float((mass * x).sum()), "sum_squares": float((mass * x * x).sum()),
        "bucket_limits": edges[1:].tolist(), "bucket_counts": counts.tolist(),
    }


EVENT_FILE_PREFIX = "events.out.tfevents."


def _after_existing_events(folder: Path) -> None:
    """Wait (at most about a second) until a new event file in ``folder`` sorts after
    every one already there.

    TensorBoard reads a folder's event files in name order, and a resumed run's purge
    only drops the events read before it. The names are
    ``events.out.tfevents.<seconds>.<host>.<pid>.<counter>``: within one second the
    pid and the counter decide, compared as text, so a writer numbered 10 sorts before
    one numbered 9 and the old events would come back after the purge. A new second
    sorts after all of them."""
    newest = -1
    if folder.is_dir():
        for f in folder.iterdir():
            stamp = f.name[len(EVENT_FILE_PREFIX):].split(".", 1)[0]
            if f.name.startswith(EVENT_FILE_PREFIX) and stamp.isdigit():
                newest = max(newest, int(stamp))
    deadline = time.time() + 1.5  # a file stamped further ahead (a skewed clock): no wait
    while int(time.time()) <= newest and newest - time.time() < 1.0 and time.time() < deadline:
        time.sleep(0.05)


class TensorBoardLogger:
    """Logs metrics and probe rows of one run to ``<log_dir>/<run>/``.

    Args:
        log_dir: the folder given to ``tensorboard --logdir``.
        run: the run's name (its TensorBoard run, a subfolder).
        purge_step: drop the events of this folder at steps >= ``purge_step``
            (TensorBoard's own purge, for a run resumed from a checkpoint).

    The event file is opened at the first row. Raises ImportError (saying how to
    install it) when the tensorboard package is missing.
    """

    def __init__(self, log_dir: str | os.PathLike[str], run: str, *, purge_step: int | None = None) -> None:
        self._cls = _summary_writer_class()  # fail now, not at the first row
        self.log_dir = Path(log_dir) / run
        self.purge_step = purge_step
        self._writer: Any = None

    def _w(self) -> Any:
        if self._writer is None:
            _after_existing_events(self.log_dir)
            self._writer = self._cls(log_dir=str(self.log_dir), purge_step=self.purge_step)
        return self._writer

    def log_metrics(self, row: Mapping[str, Any]) -> None:
        """Log the finite numbers of a metrics row as ``metrics/<column>`` at its step."""
        step = int(row["step"])
        w = self._w()
        for key, value in _numbers(row).items():
            w.add_scalar(f"metrics/{key}", value, global_step=step)

    def log_probe(self, row: Mapping[str, Any]) -> None:
        """Log a probe row: its numbers as ``probes/<column>``, its density as the
        histogram ``density`` (see :func:`density_histogram`)."""
        step = int(row["step"])
        w = self._w()
        scalars = {k: v for k, v in row.items() if k not in ("ritz_nodes", "ritz_weights")}
        for key, value in _numbers(scalars).items():
            w.add_scalar(f"probes/{key}", value, global_step=step)
        nodes, weights = row.get("ritz_nodes"), row.get("ritz_weights")
        if nodes is not None and weights is not None:
            as_np = [v.detach().cpu().numpy() if hasattr(v, "detach") else v for v in (nodes, weights)]
            hist = density_histogram(*as_np)
            if hist is not None:
                w.add_histogram_raw("density", global_step=step, **hist)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class TensorBoardWriter:
    """A run writer in front of another: commits each row to it, then logs the row
    to TensorBoard (:class:`TensorBoardLogger`).

    Args:
        writer: the run writer (``append_metrics``, ``append_probe``, and whatever
            else callers use: ``add_checkpoint``, ``rewind``, ``read`` ... are
            passed through).
        log_dir: the folder given to ``tensorboard --logdir``; the run logs to
            ``<log_dir>/<writer.name>/``.
        purge_step: have TensorBoard drop the events of that folder at steps >=
            ``purge_step`` (a run resumed after a checkpoint at step s: s + 1).

    :meth:`rewind` (a resumed run) rewinds the run writer and has TensorBoard drop
    the events past that step. Each row is flushed to its event file, so a killed
    run's events are on disk up to its last row. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, writer: Any, log_dir: str | os.PathLike[str], *,
                 purge_step: int | None = None) -> None:
        self.writer = writer
        self.logger = TensorBoardLogger(log_dir, str(writer.name), purge_step=purge_step)

    def append_metrics(self, row: Mapping[str, Any] | None = None, /, **values: Any) -> Any:
        row = {**(row or {}), **values}
        out = self.writer.append_metrics(row)
        self.logger.log_metrics(row)
        self.logger.flush()
        return out

    def append_probe(self, row: Mapping[str, Any] | None = None, /, **values: Any) -> Any:
        row = {**(row or {}), **values}
        out = self.writer.append_probe(row)
        self.logger.log_probe(row)
        self.logger.flush()
        return out

    def rewind(self, step: int) -> Any:
        out = self.writer.rewind(step)
        self.logger.close()
        self.logger.purge_step = int(step) + 1
        return out

    def close(self) -> None:
        self.logger.close()

    def __enter__(self) -> TensorBoardWriter:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("writer", "logger"):
            raise AttributeError(name)
        return getattr(self.writer, name)


def log_run(run: Any, log_dir: str | os.PathLike[str]) -> Path:
    """Log a stored run (a :class:`~spectra.runs.reader.RunData`) to
    ``<log_dir>/<run.name>/``, replacing events that folder holds from step 0 on.
    Returns that folder."""
    logger = TensorBoardLogger(log_dir, run.name, purge_step=0)
    try:
        m, p = run.metrics, run.probes
        for i in range(len(m)):
            logger.log_metrics({c: m[c][i] for c in m})
        for i in range(len(p)):
            logger.log_probe({c: p[c][i] for c in p})
    finally:
        logger.close()
    return logger.log_dir
