"""ResNet-18 at issue 14's setting: SLQ density (``n_v = 4``, ``m = 80``) in the bounded
mode, eigsh top-5 and lambda_min run to convergence, and a Hutch++ trace, with time and
peak memory.

Usage:
    python -m analyses.scale_resnet                    # density (4, 80), top-5, lambda_min, trace
    python -m analyses.scale_resnet --tasks top5 lmin  # a subset
    python -m analyses.scale_resnet --nv 4 --m 80 --cap 150 --batch 4 --log /tmp/r.log
    python -m analyses.scale_resnet --render /tmp/r.log  # splice the rows into scale.md
    python -m analyses.scale_resnet --render analyses/results/scale_resnet.log  # scale.md's rows

Each measurement runs through :func:`analyses.scale_bench.worker` in a fresh process
(the same peak-memory and HVP-time accounting as the rest of ``scale.md``), one after the
other, with ``--batch`` synthetic CIFAR-shaped images per product (4 by default: one
product takes a few seconds on 2 cores; the "extra" memory of a solver does not depend
on it, since the product's own memory is in the baseline). Every row records the
1-minute load average at its start and end: on a shared machine the times are upper
bounds.

``--render`` puts the rows into the report's "Time and memory" table in place of the
``resnet18`` rows of the same tasks there, and its ResNet-18 target line into "Targets";
the other rows and sections are left as they are. Append every run to one ``--log`` and
render from it: the last result of each job is used.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from analyses import scale_bench

TASKS = ("density", "top5", "lmin", "trace")
MB = 2**20
COMMAND = "python -m analyses.scale_resnet"


def resnet_jobs(nv: int = 4, m: int = 80, cap: int = 150, batch: int = 4,
                tasks: tuple[str, ...] = TASKS, trace: int = 6,
                storage: str = "auto", max_memory: str | None = None) -> list[dict]:
    """The jobs: SLQ ``(nv, m)`` in the bounded mode; eigsh top-5 and lambda_min with
    the basis where ``storage`` (of :func:`spectra.eigsh`) puts it, at most ``cap`` products, ``tol`` 1e-3
    (as in :func:`analyses.scale_bench.worker`); Hutch++ trace with ``trace`` products;
    ``batch`` images per product; ``max_memory`` (e.g. ``"1GB"``) is passed to the density
    (the bounded plan then runs as many random vectors together as fit in it)."""
    out = []
    for task in tasks:
        if task == "density":
            out.append({"model": "resnet18", "task": "density", "mode": "bounded", "n_v": nv,
                        "m": m, "batch": batch})
            if max_memory is not None:
                out[-1]["max_memory"] = max_memory
        elif task in ("top5", "lmin"):
            out.append({"model": "resnet18", "task": task, "mode": storage,
                        "max_matvecs": cap, "batch": batch})
        elif task == "trace":
            out.append({"model": "resnet18", "task": "trace", "mode": "-", "matvecs": trace,
                        "batch": batch})
        else:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return out


def worker(job: dict) -> dict:
    """:func:`analyses.scale_bench.worker` (``job["batch"]`` images per product)."""
    return scale_bench.worker(job)


def run_job(job: dict, log, code: str | None = None) -> dict:
    """``job`` in a fresh interpreter (this module's ``--worker``), with the 1-min load
    average at its start and end (``load``) and ``code`` (a label of the code measured,
    e.g. a commit) when given; its result, or ``{"error": ...}``."""
    cmd = [sys.executable, "-m", "analyses.scale_resnet", "--worker", json.dumps(job)]
    t, load0 = time.perf_counter(), os.getloadavg()[0]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        res = {"error": (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1][:200]}
    else:
        res = json.loads(p.stdout.strip().splitlines()[-1])
    res["load"] = [round(load0, 1), round(os.getloadavg()[0], 1)]
    if code:
        res["code"] = code
    log(f"  {job} -> {res} ({time.perf_counter() - t:.0f} s)")
    return res


def read_log(log: Path) -> list[tuple[dict, dict]]:
    """The ``(job, result)`` pairs of a log written by :func:`run_job` (lines
    ``  {job} -> {result} (N s)``), in the order of :data:`TASKS`; a job measured twice
    keeps its last result."""
    pairs: dict[str, tuple[dict, dict]] = {}
    for line in log.read_text().splitlines():
        mt = re.match(r"^  (\{.*\}) -> (\{.*\}) \((\d+) s\)$", line)
        if mt is not None:
            job, res = ast.literal_eval(mt.group(1)), ast.literal_eval(mt.group(2))
            pairs[json.dumps(job, sort_keys=True)] = (job, res)
    return sorted(pairs.values(), key=lambda p: TASKS.index(p[0]["task"]))  # stable


def row(job: dict, r: dict) -> str:
    """One row of the report's "Time and memory" table (its columns and format)."""
    what = job["task"]
    if what == "density":
        what = f"density n_v={job['n_v']}, m={job['m']}"
    if "error" in r:
        return f"| {job['model']} | | {what} | {job['mode']} | | | | | | | | FAILED {r['error']} |"
    res = ""
    if "values" in r:
        res = ", ".join(f"{v:.4g}" for v in r["values"])
        res += "" if r.get("converged", True) else f" (not converged in {job['max_matvecs']} HVPs)"
    elif "range" in r:
        res = f"nodes in [{r['range'][0]:.3g}, {r['range'][1]:.3g}]"
    return (f"| {job['model']} | {r['P']:,} | {what} | {r['mode']} | {r.get('reason', '')} | "
            f"{r['seconds']:.1f} s | {r['num_matvecs']} | {r['hvp_seconds'] / r['seconds']:.0%} | "
            f"{r['extra_maxrss_mib']:.0f} MiB | {r['extra_anon_mib']:.0f} MiB | "
            f"{r['model_mib']:.0f} MiB | {res} |")


def _flags(job: dict) -> str:
    """The command line that measures ``job`` alone."""
    size = {"density": f" --nv {job.get('n_v')} --m {job.get('m')}"
                       + (f" --max-memory {job['max_memory']}" if "max_memory" in job else ""),
            "trace": f" --trace {job.get('matvecs')}"}.get(job["task"],
                                                           f" --cap {job.get('max_matvecs')}")
    if job["task"] in ("top5", "lmin") and job["mode"] != "auto":
        size += f" --storage {job['mode']}"
    return f"`{COMMAND} --tasks {job['task']}{size} --batch {job['batch']}`"


def notes(pairs: list[tuple[dict, dict]], date: str) -> str:
    """The paragraph under the table: what produced the ResNet-18 rows, and the load."""
    parts = []
    for job, r in pairs:
        load = r.get("load", ["?", "?"])
        code = f", code {r['code']}" if r.get("code") else ""
        parts.append(f"{job['task']} ({job['mode']}): {_flags(job)}, load {load[0]}-{load[1]}"
                     + code)
    batch = sorted({j["batch"] for j, _ in pairs})
    text = (f"ResNet-18 rows: measured by `{COMMAND}` (each row's last run in its log, "
            f"rendered on {date}; one job after the other, "
            f"{'/'.join(map(str, batch))} synthetic images per product, torch threads = 2, "
            "2 cores shared with other jobs; 1-min load average at each row's start-end): "
            + "; ".join(parts) + ". eigsh's `auto` storage is the plan the library chose; "
            "`disk` keeps the basis in a memmap (file pages, not anonymous memory).")
    dens = [(j, r) for j, r in pairs if j["task"] == "density" and "P" in r]
    if dens:
        from spectra.linalg.density import full_mode_bytes

        job, r = dens[0]
        full = full_mode_bytes(r["P"], job["n_v"], job["m"], 4)  # float32, as the plan counts
        plans = ", ".join(f"{r['nbytes'] / MB:.0f} MiB"
                          + (f" with max_memory={j['max_memory']}" if "max_memory" in j else "")
                          for j, r in dens)
        text += (f" The full mode at n_v={job['n_v']}, m={job['m']} would hold "
                 f"{full / 2**30:.1f} GiB of bases and blocks (its plan), not measured "
                 f"here: `mode='auto'` chooses the bounded mode on this machine; the "
                 f"bounded plan's vectors: {plans}.")
    return text + "\n"


def target_line(pairs: list[tuple[dict, dict]]) -> str | None:
    """The "Targets" bullet for the bounded density, or None when it was not measured."""
    others = [(j, r) for j, r in pairs if j["task"] == "density" and j["mode"] == "bounded"
              and "error" not in r and "max_memory" in j]
    more = "".join(f"; with max_memory={j['max_memory']}: extra peak RSS "
                   f"{r['extra_maxrss_mib']:.0f} MiB, anonymous {r['extra_anon_mib']:.0f} MiB"
                   for j, r in others)
    for job, r in pairs:
        if (job["task"] == "density" and job["mode"] == "bounded" and "error" not in r
                and "max_memory" not in job):
            ok = r["extra_maxrss_mib"] <= 1024  # the measure of scale_bench's target line
            anon = "within" if r["extra_anon_mib"] <= 1024 else "over"
            return (f"- ResNet-18 density in the bounded mode within model + 1 GB: extra peak "
                    f"RSS {r['extra_maxrss_mib']:.0f} MiB over the model ({r['model_mib']:.0f} "
                    f"MiB) and its products' baseline at n_v={job['n_v']}, m={job['m']} "
                    f"({r['seconds']:.0f} s, {r['num_matvecs']} products, load "
                    f"{r['load'][0]}-{r['load'][1]}): **{'met' if ok else 'missed'}**; the peak "
                    f"anonymous memory over its value between products, which also counts a "
                    f"product's own transient memory, {r['extra_anon_mib']:.0f} MiB, is {anon} "
                    f"1 GiB{more}.")
    return None


TARGET_PREFIX = "- ResNet-18 density in the bounded mode"
NOTES_PREFIX = "ResNet-18 rows: "


def splice(text: str, pairs: list[tuple[dict, dict]], date: str) -> str:
    """``text`` (the report) with its ``resnet18`` table rows of the tasks in ``pairs``
    replaced by ``pairs``' rows (the other ``resnet18`` rows kept, after them in the
    order of :data:`TASKS`), the notes paragraph under the table replaced or added, the
    Models line's batch set, and the ResNet-18 target line replaced or added at the top
    of the "Targets" list."""
    lines = text.split("\n")
    rows = [i for i, ln in enumerate(lines) if ln.startswith("| resnet18 |")]
    if not rows:
        head = next((i for i, ln in enumerate(lines) if ln.startswith("| model | P | task")), None)
        if head is None:
            raise ValueError("the report has no 'Time and memory' table to put the rows in")
        rows = [head + 2]
        lines.insert(head + 2, "| resnet18 | placeholder |")  # replaced below
    ours = {j["task"] for j, _ in pairs}

    def task_of(ln: str) -> str:
        return ln.split("|")[3].strip().split(" ")[0]

    kept = [lines[i] for i in rows if lines[i] != "| resnet18 | placeholder |"
            and task_of(lines[i]) not in ours]
    new = sorted([row(j, r) for j, r in pairs] + kept,
                 key=lambda ln: TASKS.index(task_of(ln)) if task_of(ln) in TASKS else len(TASKS))
    at = rows[0]
    lines = [ln for i, ln in enumerate(lines) if i not in rows[1:]]
    lines[at:at + 1] = new
    end = at + len(new)
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines = [ln for ln in lines if not ln.startswith(NOTES_PREFIX)]
    batch = "/".join(map(str, sorted({j["batch"] for j, _ in pairs})))

    def models(ln: str) -> str:
        mt = re.search(r"a batch of ([0-9]+)[^ ]* synthetic 3x32x32 images( \([^)]*\))?", ln)
        if mt is None:
            return ln
        said = (f"a batch of {mt.group(1)} synthetic 3x32x32 images ({batch} in the rows "
                "measured by `analyses.scale_resnet`, named below the table)" if kept
                else f"a batch of {batch} synthetic 3x32x32 images")
        return ln[:mt.start()] + said + ln[mt.end():]

    lines = [models(ln) if ln.startswith("Models:") else ln for ln in lines]
    note = notes(pairs, date).rstrip("\n")
    lines[end:end] = ["", note]
    tl = target_line(pairs)
    if tl is not None:
        old = [i for i, ln in enumerate(lines) if ln.startswith(TARGET_PREFIX)]
        if old:
            lines[old[0]] = tl
        else:
            t = next((i for i, ln in enumerate(lines) if ln.startswith("## Targets")), None)
            if t is None:
                lines += ["", "## Targets", "", tl]
            else:
                first = next((i for i in range(t, len(lines)) if lines[i].startswith("- ")),
                             len(lines))
                lines.insert(first, tl)
    out = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    ap.add_argument("--nv", type=int, default=4, help="SLQ random vectors (default 4)")
    ap.add_argument("--m", type=int, default=80, help="SLQ Lanczos steps (default 80)")
    ap.add_argument("--cap", type=int, default=150, help="eigsh product cap (default 150)")
    ap.add_argument("--trace", type=int, default=6, help="Hutch++ products (default 6)")
    ap.add_argument("--batch", type=int, default=4, help="images per product (default 4)")
    ap.add_argument("--storage", choices=("auto", "device", "host", "disk"), default="auto",
                    help="eigsh's basis storage (default auto: the library's plan)")
    ap.add_argument("--log", type=Path, default=None,
                    help="also append the job lines to this file (for --render)")
    ap.add_argument("--out", type=Path, default=scale_bench.RESULTS,
                    help=f"report to splice the rows into (default {scale_bench.RESULTS})")
    ap.add_argument("--render", type=Path, metavar="LOG",
                    help="only splice the rows of an earlier run's log into --out")
    ap.add_argument("--max-memory", default=None,
                    help="the density's max_memory (e.g. 1GB; default: the library's)")
    ap.add_argument("--code", default=None,
                    help="a label of the code measured (e.g. its commit), kept with each row")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    date = time.strftime("%Y-%m-%d")
    if args.render:
        pairs = read_log(args.render)
        if not pairs:
            raise SystemExit(f"no job lines in {args.render}")
        args.out.write_text(splice(args.out.read_text(), pairs, date))
        print(f"wrote {args.out}", file=sys.stderr)
        return

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)
        if args.log is not None:
            with open(args.log, "a") as f:
                f.write(msg + "\n")

    pairs = [(job, run_job(job, log, args.code))
             for job in resnet_jobs(args.nv, args.m, args.cap, args.batch, tuple(args.tasks),
                                    args.trace, args.storage, args.max_memory)]
    args.out.write_text(splice(args.out.read_text(), pairs, date))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
