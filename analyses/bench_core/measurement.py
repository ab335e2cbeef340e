"""Measurement: budgets and counters, timing with memory and machine-load readings,
rounds that time every library in turn, and accuracy against the float64 references.

Memory: peak resident-set increase. Before each measurement we garbage-collect, call
glibc malloc_trim(0), read VmRSS, and reset the kernel's high-water mark by writing 5 to
/proc/self/clear_refs; after it we read VmHWM. The cell is VmHWM - VmRSS(before), i.e. the
extra resident memory the measurement needed at its peak (tensors, autograd graphs, Krylov
bases, allocator slack). tracemalloc does not see torch's allocations; torch has no CPU
allocator statistics.

Load: a measurement that other processes stalled for more than ``RETRY["max_stall"]`` of
its wall time is re-run (see `timed`); the settings in `RETRY` come from the command line.
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import statistics
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from typing import Self

    from .adapters import Adapter, Run

REL_TOL = 1e-3  # a run "reaches" when its relative error is at most this
K_TOP = 5  # top-k eigenvalues
SLQ_NV, SLQ_M = 4, 80  # SLQ: random vectors, Lanczos steps per vector
TRACE_MATVECS = 30  # products of a trace estimate


class Unsupported(Exception):
    """The library has no API for this measurement."""


class BudgetExceeded(Exception):
    pass


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _can_reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status_kb("VmHWM") is not None
    except OSError:
        return False


MEM_OK = _can_reset_hwm()


def cpu_pressure() -> float | None:
    """Linux PSI: % of the last 10 s in which some runnable task waited for a CPU."""
    try:
        with open("/proc/pressure/cpu") as fh:
            first = fh.readline().split()
        return float(first[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent (busy + stolen) since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
        return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    except (OSError, ValueError, IndexError):
        return None


class Stall:
    """Share of the machine's CPU capacity that *other* processes used during a block:
    (all busy CPU time - this process's CPU time) / (cores x wall time). ~0 when this
    process had the cores to itself. (/proc/stat ticks are 10 ms: judged on blocks of half
    a second or more only.)"""

    def __enter__(self) -> Self:
        self.frac: float | None = None
        self._t, self._c, self._b = time.perf_counter(), time.process_time(), _busy_cpu_seconds()
        return self

    def __exit__(self, *exc) -> None:
        b1, c1, dt = _busy_cpu_seconds(), time.process_time(), time.perf_counter() - self._t
        if self._b is not None and b1 is not None and dt >= 0.5:
            others = (b1 - self._b) - (c1 - self._c)
            self.frac = min(1.0, max(0.0, others / ((os.cpu_count() or 1) * dt)))


# set from the command line: retry a measurement whose stall exceeds MAX_STALL
RETRY = {"retries": 0, "max_stall": 0.15, "wait_s": 0.0, "wait_psi": 10.0, "log": print}


def wait_quiet(max_wait: float, threshold: float, log) -> None:
    """Sleep (up to max_wait s) until CPU pressure from other processes drops."""
    if max_wait <= 0:
        return
    t0 = time.time()
    p = cpu_pressure()
    while p is not None and p > threshold and time.time() - t0 < max_wait:
        time.sleep(5)
        p = cpu_pressure()
    if p is not None and p > threshold:
        log(f"  (still busy after waiting {max_wait:.0f}s: CPU pressure {p:.0f}%)")
    elif time.time() - t0 > 1:
        log(f"  (waited {time.time() - t0:.0f}s for a quiet machine)")


class MemProbe:
    """Peak RSS increase (MiB) over a block; None where the kernel interface is missing."""

    def __init__(self) -> None:
        self.mib: float | None = None

    def __enter__(self) -> Self:
        gc.collect()
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
        self._base = _status_kb("VmRSS")
        if MEM_OK:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        return self

    def __exit__(self, *exc) -> None:
        if MEM_OK and self._base is not None:
            hwm = _status_kb("VmHWM")
            if hwm is not None:
                self.mib = max(0, hwm - self._base) / 1024.0


@dataclass
class Counter:
    """Counts HVPs (columns) and enforces a per-run budget in HVPs and seconds."""

    num_matvecs: int = 0
    max_matvecs: int | None = None
    max_seconds: float | None = None
    t0: float = 0.0

    def arm(self, max_matvecs: int | None, max_seconds: float | None) -> None:
        self.max_matvecs, self.max_seconds, self.t0 = max_matvecs, max_seconds, time.perf_counter()

    def disarm(self) -> None:
        self.max_matvecs = self.max_seconds = None

    def add(self, k: int = 1) -> None:
        self.num_matvecs += k
        if self.max_matvecs is not None and self.num_matvecs > self.max_matvecs:
            raise BudgetExceeded(f"HVP budget {self.max_matvecs} exhausted")
        if self.max_seconds is not None and time.perf_counter() - self.t0 > self.max_seconds:
            raise BudgetExceeded(f"time budget {self.max_seconds:.0f}s exhausted")


def short_exc(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")
    return msg[:140]


@dataclass
class Ctx:
    """One model under measurement: its data, float64 reference and per-run budgets."""

    model: nn.Module
    X: torch.Tensor
    y: torch.Tensor
    P: int
    ref: dict
    budget_matvecs: int
    budget_s: float
    expensive: bool  # one HVP costs ~0.1 s or more: trim optional extras
    wait_s: float = 0.0
    wait_psi: float = 25.0


# --------------------------------------------------------------------------------------
# one measurement, sweeps of settings, and the per-phase measurements
# --------------------------------------------------------------------------------------


def timed(fn, counter: Counter, max_matvecs=None, max_seconds=None, *,
          retry: bool = True) -> dict:
    """One measurement; re-run (up to RETRY['retries'] times, after waiting for a quiet
    machine) when other processes took more than RETRY['max_stall'] of its wall time. The
    least-disturbed attempt is kept; ``attempts`` records how many were made."""
    best: dict | None = None
    attempts = 1 + (RETRY["retries"] if retry else 0)
    for i in range(attempts):
        r = _timed_once(fn, counter, max_matvecs, max_seconds)
        r["attempts"] = i + 1
        if best is None or (r["stall"] or 0.0) < (best["stall"] or 0.0):
            best = r
        if r["stall"] is None or r["stall"] <= RETRY["max_stall"] or i == attempts - 1:
            break
        RETRY["log"](f"      (other processes used {r['stall']:.0%} of the CPUs: measuring again)")
        wait_quiet(RETRY["wait_s"], RETRY["wait_psi"], RETRY["log"])
    best["attempts"] = r["attempts"]
    return best


def _timed_once(fn, counter: Counter, max_matvecs=None, max_seconds=None) -> dict:
    n0 = counter.num_matvecs
    counter.arm(max_matvecs, max_seconds)
    out: dict = {}
    with MemProbe() as mem, Stall() as stall:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            out["value"] = fn()
            out["status"] = "ok"
        except BudgetExceeded as e:
            out["status"] = f"stopped: {e}"
        except Unsupported:
            counter.disarm()
            raise
        except Exception as e:  # noqa: BLE001 - every failure becomes a cell
            out["status"] = "FAILED " + short_exc(e)
            out["trace"] = traceback.format_exc(limit=4)
        out["seconds"] = time.perf_counter() - t0
        out["cpu"] = time.process_time() - c0
    counter.disarm()
    out["num_matvecs"] = counter.num_matvecs - n0
    out["mem"] = mem.mib
    out["stall"] = stall.frac
    return out


def rel_err_top(vals, ref_top) -> float:
    v = np.sort(np.asarray(vals, dtype=np.float64).reshape(-1))[::-1][: len(ref_top)]
    r = np.asarray(ref_top, dtype=np.float64)
    if v.shape != r.shape:
        return float("inf")
    return float(np.max(np.abs(v - r) / np.abs(r)))


def grad_time(ctx: Ctx, reps: int) -> float:
    params = [p for p in ctx.model.parameters() if p.requires_grad]

    def g():
        return torch.autograd.grad(F.cross_entropy(ctx.model(ctx.X), ctx.y), params)

    g()
    ts = []
    for _ in range(max(reps, 5)):
        t0 = time.perf_counter()
        g()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def sweep(adapter: Adapter, runs: dict[str, list[Run]], err_fn, ctx: Ctx, log) -> list[dict]:
    rows = []
    for method, lst in runs.items():
        for i, run in enumerate(lst):
            # a library's default setting gets twice the budget: its answer is of interest
            r = timed(run.fn, adapter.counter, ctx.budget_matvecs,
                      ctx.budget_s * (2 if i == 0 else 1))
            r.update(method=method, label=run.label, default=(i == 0))
            if r["status"] == "ok":
                try:
                    r["err"] = err_fn(r["value"])
                except Exception as e:  # noqa: BLE001
                    r["err"] = float("inf")
                    r["status"] = "FAILED " + short_exc(e)
            else:
                r["err"] = None
            r["reached"] = r.get("err") is not None and r["err"] <= REL_TOL
            rows.append(r)
            log(f"    {adapter.name:28s} {method:26s} {run.label:30s} "
                f"{r['seconds']:8.2f}s {r['num_matvecs']:5d} HVPs  err={fmt_err(r.get('err'))} "
                f"{'' if r['status'] == 'ok' else r['status']}")
            if r["reached"]:
                break
            if r["status"].startswith("stopped") and i > 0:
                break  # tighter settings only cost more
    return rows


def time_hvps(ads: list[Adapter], results: list[dict], ctx: Ctx, reps: int, grad_s: float,
              v, href, log) -> None:
    """First (warm-up) HVP of each library, checked against float64; then ``reps`` rounds
    that time one HVP of every library in turn, so that a burst of load hits all alike."""
    live = []
    for ad, res in zip(ads, results, strict=True):
        try:
            first = timed(lambda ad=ad: ad.hvp(v), ad.counter, retry=False)
        except Unsupported as e:
            res["hvp"] = {"status": f"n/a ({e})"}
            continue
        res["hvp"] = first
        if first["status"] == "ok":
            hv = first.pop("value").detach().double()
            first["rel_err"] = float((hv - href).norm() / href.norm())
            first["_ts"], first["_cs"] = [], []
            live.append((ad, first))
    for attempt in range(1 + RETRY["retries"]):
        for _, first in live:
            first["_ts"], first["_cs"] = [], []
        with Stall() as stall:
            for _ in range(reps):
                for ad, first in live:
                    t0, c0 = time.perf_counter(), time.process_time()
                    ad.hvp(v)
                    first["_ts"].append(time.perf_counter() - t0)
                    first["_cs"].append(time.process_time() - c0)
        if stall.frac is None or stall.frac <= RETRY["max_stall"] or attempt == RETRY["retries"]:
            break
        log(f"      (other processes used {stall.frac:.0%} of the CPUs: measuring again)")
        wait_quiet(RETRY["wait_s"], RETRY["wait_psi"], log)
    for ad, first in live:
        ts, cs = first.pop("_ts"), first.pop("_cs")
        first["times"] = ts  # per round, in the same order for every library: paired
        first["stall"] = stall.frac
        first["median"] = statistics.median(ts)
        first["min"] = min(ts)
        first["median_cpu"] = statistics.median(cs)
        first["ratio"] = first["median"] / grad_s
        log(f"    {ad.name:28s} HVP: first {first['seconds']*1e3:.1f} ms, median "
            f"{first['median']*1e3:.1f} ms, min {first['min']*1e3:.1f} ms, rel err "
            f"{first['rel_err']:.1e}")


def measure_density(ad: Adapter, ctx: Ctx, log) -> dict:
    r = timed(ad.density, ad.counter, None, ctx.budget_s * 3)
    if r["status"] == "ok":
        nodes, how = r.pop("value")
        nodes = np.asarray(nodes, dtype=np.float64)
        r["how"] = how
        r["node_max_err"] = abs(np.nanmax(nodes) - ctx.ref["top"][0]) / abs(ctx.ref["top"][0])
        r["node_min_err"] = abs(np.nanmin(nodes) - ctx.ref["lmin"]) / abs(ctx.ref["lmin"])
    log(f"    {ad.name:28s} density: {r['seconds']:.2f}s {r['num_matvecs']} HVPs {cell_status(r)}")
    return r


def measure_trace(ad: Adapter, ctx: Ctx, log) -> dict:
    r = timed(ad.trace, ad.counter, None, ctx.budget_s * 2)
    if r["status"] == "ok":
        r["estimate"], r["how"] = r.pop("value")
    log(f"    {ad.name:28s} trace: {r['seconds']:.2f}s {r['num_matvecs']} HVPs {cell_status(r)}")
    return r



# --------------------------------------------------------------------------------------
# cells shared by the log and the report
# --------------------------------------------------------------------------------------


def fmt_err(e) -> str:
    if e is None:
        return "—"
    if not math.isfinite(e):
        return "inf"
    return f"{e:.1e}"


def cell_status(r: dict) -> str:
    st = r.get("status", "")
    return "" if st == "ok" else st
