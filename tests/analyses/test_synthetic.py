"""analyses.synthetic's rules for which run stands for an optimizer, on small made-up runs:
the tuned run (where it ends), the fastest run (CALR's "faster") and the best run after
EARLY steps (SMARAN's Fig. 1e), and the verdicts computed from them."""

from __future__ import annotations

import math

import numpy as np
import torch

from analyses import synthetic
from analyses.synthetic import EARLY, TOL, Result, Runs
from optim import testfunctions


def made_up(name: str, lr: float, values, distance: float | None = None,
            saddle: bool = False) -> Result:
    """A Result as ``synthetic.evaluate`` makes it, from a list of f values per step."""
    values = np.asarray(values, dtype=float)
    hit = np.flatnonzero(values < (synthetic.ESCAPE if saddle else TOL))
    final = float(values[-1])
    if distance is None:
        distance = math.nan if saddle else (0.0 if final == 0.0 else 1.0)
    if not math.isfinite(final):
        final, distance = math.inf, math.inf
    traj = testfunctions.Trajectory(None, name, torch.zeros(len(values), 2),
                                    torch.tensor(values, dtype=torch.float64))
    return Result(name, lr, final, distance, int(hit[0]) if hit.size else None, traj,
                  np.zeros(len(values)))


def descent(reach: int, length: int = 400, stay: bool = True) -> list[float]:
    """f = 1 until step ``reach - 1``, then 0 (or back to 1 after ``reach`` if not ``stay``)."""
    v = [1.0] * reach + [0.0] * (length - reach)
    if not stay:
        v[reach + 1:] = [1.0] * (length - reach - 1)
    return v


def test_tuned_ties_at_distance_zero_go_to_the_smaller_lr_not_the_faster():
    slow = made_up("calr", 0.03, descent(225))
    fast = made_up("calr", 0.3, descent(156))
    runs = Runs(made_up("calr", 0.01, descent(300)), (slow, fast), saddle=False)
    assert runs.tuned is slow  # both end at distance 0: the tie goes to the smaller lr
    assert runs.fastest is fast  # the question "how fast" takes the fewest steps
    assert runs.fastest.steps_to_tol == 156


def test_fastest_looks_at_the_paper_lr_too_and_breaks_ties_by_the_smaller_lr():
    paper = made_up("nadam", 0.002, descent(40))
    grid = (made_up("nadam", 0.1, descent(89)), made_up("nadam", 0.3, descent(49)))
    assert Runs(paper, grid, saddle=False).fastest is paper
    tie = (made_up("adam", 0.3, descent(50)), made_up("adam", 0.1, descent(50)))
    assert synthetic.fastest(tie).lr == 0.1
    never = (made_up("adam", 0.1, [1.0] * 10), made_up("adam", 0.01, [math.inf] * 10))
    assert synthetic.fastest(never).steps_to_tol is None


def test_fastest_counts_a_run_that_leaves_the_tolerance_again_and_the_table_shows_it():
    left = made_up("nadam", 0.3, descent(47, stay=False))
    stayed = made_up("nadam", 0.1, descent(221))
    runs = Runs(made_up("nadam", 0.002, [1.0] * 400), (stayed, left), saddle=False)
    assert runs.tuned is stayed and runs.fastest is left
    row = next(line for line in synthetic.table("beale", {"nadam": runs}).splitlines()
               if line.startswith("| nadam"))
    assert row.endswith("| 0.3 | 47 | 1.00e+00 |")  # fastest lr, its steps, its final f


def test_best_at_takes_the_lowest_f_at_that_step_not_at_the_end():
    # lr 0.3 is far lower at step EARLY but ends away from the minimum; lr 0.1 ends at it
    early_low = [1.0] * 47 + [1e-7] * (EARLY - 46) + [0.5] * 10  # f at steps 47 .. EARLY: 1e-7
    late = [1.0] * (EARLY + 1) + [1e-30] * 10
    runs = (made_up("nadam", 0.1, late, distance=0.0),
            made_up("nadam", 0.3, early_low, distance=0.29))
    assert synthetic.tuned(runs, saddle=False).lr == 0.1
    assert synthetic.best_at(runs, EARLY).lr == 0.3
    assert synthetic.value_at(runs[1], EARLY) == 1e-7
    assert synthetic.value_at(made_up("x", 1.0, [1.0, math.nan]), EARLY) == math.inf


def test_rank_counts_strictly_lower_values():
    assert synthetic.rank({"a": 1.0, "b": 2.0, "c": 2.0, "d": 0.5}, "b") == 3
    assert synthetic.rank({"a": 1.0, "b": 2.0, "c": 2.0, "d": 0.5}, "d") == 1


def test_verdicts_compare_the_fastest_lrs_and_rank_smaran_at_its_best_early_lr():
    """Himmelblau-like: calr's tuned lr (0.03) is slow but its lr 0.3 reaches the tolerance
    in 156 steps; nadam's in 49. Beale-like: SMARAN is first at the tuned lrs, but Nadam at
    lr 0.3 is far lower at step EARLY, and SGD-M too: SMARAN is third."""
    def opt(name, paper_steps, grid):
        return Runs(made_up(name, 0.01, descent(paper_steps)),
                    tuple(made_up(name, lr, descent(s)) for lr, s in grid), saddle=False)

    res = {"calr": opt("calr", 704, [(0.03, 225), (0.3, 156)]),
           "adam": opt("adam", 399, [(0.03, 225), (0.3, 120)]),
           "nadam": opt("nadam", 399, [(0.1, 89), (0.3, 49)]),
           "rmsprop": opt("rmsprop", 424, [(0.01, 424)])}
    text = synthetic.verdicts({"himmelblau": res})
    assert ("fastest CALR variant calr (lr 0.3) 156 steps vs the fastest of "
            "Adam/Nadam/RMSProp nadam (lr 0.3) 49 steps") in text
    assert "**CALR claim: not reproduced**" in text

    def early_run(name, lr, f_early, final=1e-30):
        return made_up(name, lr, [1.0] * 10 + [f_early] * (EARLY - 9) + [final] * 10)

    early = {"smaran": Runs(early_run("smaran", 0.1, 1e-4), (early_run("smaran", 0.3, 3e-5),),
                            saddle=False),
             "nadam": Runs(early_run("nadam", 0.002, 1.0),
                           (early_run("nadam", 0.1, 2e-3),
                            early_run("nadam", 0.3, 9e-8, final=0.5)), saddle=False),
             "sgdm": Runs(early_run("sgdm", 0.001, 1e-2), (early_run("sgdm", 0.01, 1e-5),),
                          saddle=False),
             "adam": Runs(early_run("adam", 0.001, 1.0), (early_run("adam", 0.3, 1e-4),),
                          saddle=False)}
    text = synthetic.verdicts({}, early)
    assert "**SMARAN claim (Beale, 100 steps): partly reproduced**" in text
    assert "SMARAN 3.00e-05 (lr 0.3), rank 3 of 4" in text
    assert "best nadam 9.00e-08 (lr 0.3), sgdm 1.00e-05 (lr 0.01), smaran 3.00e-05" in text
    early["adam"] = Runs(early_run("adam", 0.001, 1.0), (early_run("adam", 0.3, 1e-6),),
                         saddle=False)
    text = synthetic.verdicts({}, early)  # adam now below SMARAN too: fourth
    assert "**SMARAN claim (Beale, 100 steps): not reproduced**" in text
    assert "rank 4 of 4" in text
