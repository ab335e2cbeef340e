"""How often a finished ``torchrun`` rank aborts at exit, with and without
:func:`cli.main.run`'s exit.

Runs the 2-process probe of ``tests/cli/test_torchrun.py`` (gloo, one thread per
process) ``--runs`` times in each of ``--jobs`` concurrent loops, through ``run`` (the
``spectra`` command and ``python -m cli.main``) or, with ``--plain-exit``, through
click's ``main`` followed by the interpreter's normal exit (what the CLI did before).
Prints each failed run's last line of output and the count, and exits 1 if any failed.

Usage:
    python -m analyses.torchrun_exit                     # 2 x 40 runs: about 5 min
    python -m analyses.torchrun_exit --plain-exit        # the normal exit, for comparison
    python -m analyses.torchrun_exit --runs 10 --jobs 1

On the 2-core machine of this project (2026-11-29), two loops of 40: with the normal
exit 2 of 80 runs failed (once rank 0, once rank 1: "terminate called without an active
exception", SIGABRT on a rank that had printed its result and destroyed its group, no
Python frame on its thread under ``PYTHONFAULTHANDLER``); through ``run`` 0 of 80.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# tests/cli/test_torchrun.py's probe
ARGS = ["probe", "--samples", "101", "--fit-steps", "3", "--top-k", "2", "--trace-matvecs", "10",
        "--float64", "--tol", "1e-8", "--model-arg", "widths=16", "--data-arg", "n_train=200",
        "--data-arg", "n_test=50", "--json"]
PLAIN = "from cli.main import main\nmain()\n"  # click's main, then Python's own exit


def launch(workdir: Path, plain_exit: bool) -> subprocess.CompletedProcess:
    """One 2-process ``torchrun`` of the probe in ``workdir``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "PYTHONFAULTHANDLER": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    if plain_exit:
        script = workdir / "plain_exit.py"
        script.write_text(PLAIN)
        target = [str(script)]
    else:
        target = ["-m", "--", "cli.main"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", *target, "--threads", "1", *ARGS]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                          check=False, timeout=600)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=40, help="runs per loop (default 40)")
    ap.add_argument("--jobs", type=int, default=2, help="concurrent loops (default 2)")
    ap.add_argument("--plain-exit", action="store_true",
                    help="click's main and the interpreter's normal exit, not cli.main.run")
    args = ap.parse_args(argv)
    failed: list[str] = []
    lock = threading.Lock()

    def loop(job: int) -> None:
        with tempfile.TemporaryDirectory(prefix=f"spectra-torchrun-{job}-") as tmp:
            for i in range(args.runs):
                p = launch(Path(tmp), args.plain_exit)
                if p.returncode != 0:
                    tail = [ln for ln in p.stderr.splitlines() if "terminate" in ln or
                            "exitcode" in ln] or p.stderr.splitlines()[-1:]
                    with lock:
                        failed.append(f"loop {job} run {i}: status {p.returncode}: "
                                      + " | ".join(tail[:3]))
                        print(failed[-1], flush=True)

    threads = [threading.Thread(target=loop, args=(j,)) for j in range(args.jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    how = "the interpreter's normal exit" if args.plain_exit else "cli.main.run"
    print(f"{len(failed)} of {args.runs * args.jobs} runs failed ({how}, {args.jobs} at a time)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
