"""What every study of issue #12 shares: its command line, its results file's header
(the exact command, versions, machine, wall time) and mean ± std over seeds.

A study is ``python -m analyses.<study> [--quick] [--data-dir DIR] [--out-dir DIR]``
(:func:`parser`); it writes ``<out-dir>/<study>.md`` (:func:`write_results`, with
:func:`header` on top) and its figures beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def parser(prog: str, description: str, *, replot: str | None = None) -> argparse.ArgumentParser:
    """The options every study takes: ``--quick``, ``--data-dir``, ``--out-dir``; and,
    with ``replot`` (what it redraws, e.g. "the figure and table"), ``--replot`` for a
    study whose runs :func:`saved_or_run` keeps."""
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    if replot is not None:
        name = prog.rsplit(".", 1)[-1]
        p.add_argument("--replot", action="store_true",
                       help=f"redraw {replot} from the runs saved in {name}.json")
    p.add_argument("--quick", action="store_true",
                   help="a small version of the study (under 2 minutes), for CI")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where data files (MNIST, CIFAR) are; digits needs none")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where the results file and figures go (default analyses/results; "
                        "--quick: a temporary folder)")
    return p


# the data sets a study also runs on when --data-dir holds their files (registry name ->
# what the report calls it); fashion-mnist is left out: its IDX files have MNIST's names,
# so a folder of MNIST files would count as both
EXTRA_DATA = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def extra_datasets(data_dir: Path | None) -> list[str]:
    """The names of :data:`EXTRA_DATA` whose files the data registry finds in
    ``data_dir`` (in that order; none without a ``data_dir``). Files that are there but
    malformed raise the registry's ``DataError``, naming the file."""
    if data_dir is None:
        return []
    from spectra.registries.data import DataFileNotFoundError, load_dataset

    if not Path(data_dir).is_dir():
        raise SystemExit(f"--data-dir {data_dir}: not a directory")
    found = []
    for name in EXTRA_DATA:
        try:
            load_dataset(name, data_dir=data_dir, n_train=1, n_test=1)
        except DataFileNotFoundError:
            continue
        found.append(name)
    return found


def study_datasets(args: argparse.Namespace, out: Path, study: str) -> list[str]:
    """The extra data sets of this run: with ``--replot``, those whose runs were saved
    (``<out>/<study>_<name>.json``); else those :func:`extra_datasets` finds in
    ``--data-dir``, and the saved runs of the others in ``out`` are removed (they would
    be stale beside this run's results)."""
    if getattr(args, "replot", False):
        return [n for n in EXTRA_DATA if (out / f"{study}_{n}.json").exists()]
    found = extra_datasets(args.data_dir)
    for name in EXTRA_DATA:
        if name not in found:
            (out / f"{study}_{name}.json").unlink(missing_ok=True)
            (out / f"{study}_{name}.png").unlink(missing_ok=True)
    return found


def data_note(args: argparse.Namespace, found: list[str]) -> str:
    """One line for the report: which data sets this run covers and why."""
    names = [EXTRA_DATA[n] for n in found]
    every = ", ".join(EXTRA_DATA.values())
    if getattr(args, "replot", False):
        return ("Data sets: digits" + (f" and {', '.join(names)} (runs saved beside this file)"
                                       if names else " only") + ".")
    if args.data_dir is None:
        return (f"Data sets: digits only (no `--data-dir` given; {every} run too when their "
                "files are in it).")
    missing = [v for k, v in EXTRA_DATA.items() if k not in found]
    return (f"Data sets: digits, and from `--data-dir {args.data_dir}`: "
            f"{'found ' + ', '.join(names) if names else 'found none'}"
            f"{'; not found: ' + ', '.join(missing) if missing else ''}.")


def load_subset(name: str, data_dir: Path | None, n_train: int, n_test: int, **options: Any):
    """``load_dataset(name, ...)`` on a seeded subset of ``n_train`` training and
    ``n_test`` test examples (seed 0), or all of a split whose files hold fewer."""
    from spectra.registries.data import DataError, load_dataset

    sizes: dict[str, int | None] = {"n_train": n_train, "n_test": n_test}
    while True:
        try:
            return load_dataset(name, data_dir=data_dir, seed=0, **sizes, **options)
        except DataError as exc:
            short = next((k for k, v in sizes.items()
                          if v is not None and str(exc).startswith(f"{k} must be between")), None)
            if short is None:
                raise
            sizes[short] = None  # the files hold fewer: take them all


def saved_or_run(path: Path, replot: bool, run: Callable[[], Any]) -> Any:
    """A study's raw results as JSON-ready data: read back from ``path`` with
    ``--replot``, else made by ``run()`` and saved there first, so that a later
    ``--replot`` redraws the same results."""
    if replot:
        return json.loads(path.read_text())
    data = run()
    path.write_text(json.dumps(data))
    return data


def extra_results(args: argparse.Namespace, out: Path, study: str,
                  run: Callable[[str], Any]) -> dict[str, Any]:
    """The results of each extra data set of this run (:func:`study_datasets`, in its
    order): ``run(name)``, kept in ``<out>/<study>_<name>.json`` by
    :func:`saved_or_run` (read back from there with ``--replot``)."""
    return {name: saved_or_run(out / f"{study}_{name}.json", args.replot,
                               lambda name=name: run(name))
            for name in study_datasets(args, out, study)}


def timed(run: Callable[[], dict]) -> dict:
    """``run()``'s results with ``"seconds"``, the wall time it took."""
    t0 = time.perf_counter()
    return {**run(), "seconds": time.perf_counter() - t0}


def out_dir(args: argparse.Namespace) -> Path:
    """``--out-dir``, else analyses/results for a full run and /tmp/spectra-analyses
    for ``--quick`` (a quick run never overwrites the committed results)."""
    if args.out_dir is not None:
        path = Path(args.out_dir)
    elif args.quick:
        path = Path(os.environ.get("TMPDIR", "/tmp")) / "spectra-analyses"
    else:
        path = RESULTS
    path.mkdir(parents=True, exist_ok=True)
    return path


def command_line() -> str:
    """The command that is running, as one would type it (``python -m analyses.x ...``)."""
    argv = list(sys.argv)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        name = spec.name.removesuffix(".__main__")
        return shlex.join(["python", "-m", name, *argv[1:]])
    return shlex.join(["python", *argv])


def versions() -> str:
    """Python, torch, numpy and spectra versions, one line."""
    import numpy
    import torch

    import spectra

    return (f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"numpy {numpy.__version__}, spectra {getattr(spectra, '__version__', '?')}")


def machine() -> str:
    """CPU model, cores, threads torch uses and the load average, one line."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.1f} at the end"
    return (f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores, "
            f"torch threads {torch.get_num_threads()}{load}")


def header(title: str, started: float, *, quick: bool) -> str:
    """The results file's first lines: title, command, versions, machine, wall time
    (``time.perf_counter() - started``, seconds)."""
    wall = time.perf_counter() - started
    mode = " (quick mode: a smoke test, not the study's numbers)" if quick else ""
    return "\n".join([
        f"# {title}{mode}",
        "",
        f"- Command: `{command_line()}`",
        f"- Versions: {versions()}",
        f"- Machine: {machine()}",
        f"- Wall time: {wall:.0f} s",
        "",
    ])


def write_results(path: Path, title: str, started: float, body: str, *, quick: bool) -> None:
    """Write ``header(...)`` then ``body`` to ``path`` and say where it went (stderr)."""
    path.write_text(header(title, started, quick=quick) + "\n" + body.rstrip() + "\n")
    print(f"wrote {path}", file=sys.stderr)


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the finite
    values; ``(nan, nan)`` when there are none."""
    xs = [float(v) for v in values if math.isfinite(float(v))]
    if not xs:
        return math.nan, math.nan
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def welch_p(a: Iterable[float], b: Iterable[float]) -> float:
    """The two-sided p-value of Welch's t-test between two samples (one value per seed;
    non-finite values, diverged runs', left out); NaN with fewer than 2 values in one of
    them or no spread in either."""
    from scipy.stats import ttest_ind

    x, y = ([float(v) for v in g if math.isfinite(float(v))] for g in (a, b))
    if len(x) < 2 or len(y) < 2 or (max(x) == min(x) and max(y) == min(y)):
        return math.nan
    return float(ttest_ind(x, y, equal_var=False).pvalue)


def fmt_mean_std(values: Iterable[float], *, digits: int = 3, scale: float = 1.0,
                 fixed: bool = False) -> str:
    """``"m ± s"`` of :func:`mean_std` (values times ``scale``), with ``digits``
    significant digits (``fixed``: decimals); ``"n/a"`` without finite values;
    ``" (k of n)"`` appended when only k of the n values were finite."""
    vals = [float(v) for v in values]
    m, s = mean_std(v * scale for v in vals)
    if math.isnan(m):
        return "n/a"
    spec = f".{digits}f" if fixed else f".{digits}g"
    out = f"{m:{spec}} ± {s:{spec}}"
    finite = sum(math.isfinite(v) for v in vals)
    if finite < len(vals):
        out += f" ({finite} of {len(vals)})"
    return out
