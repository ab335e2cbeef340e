"""Benchmark spectra's core against PyHessian, curvlinops and hessian-eigenthings.

Run it as ``python -m analyses.bench_core`` (``--help`` for the options; ``--quick`` for
fewer repeats and smaller budgets); it writes ``analyses/results/bench_core.md``.

One run, one process, same models, same data, same threads (2). Every library is wrapped
in an adapter with the same small interface (HVP, top-k, lambda_min, SLQ density, trace);
anything an adapter raises becomes a table cell, never a crash.

Setting: scikit-learn digits (first 1000 of a seeded permutation, features / 16),
mean cross-entropy, four models briefly trained with Adam to a loss of about 0.3, then
frozen. Accuracy is graded against float64 references computed by our own double-backward
HVP (`models`): a dense Hessian for the 2,410-parameter model, ARPACK with tol=1e-10 for
the others (cached on disk, keyed by the trained weights).

Modules:

- `measurement`: budgets and product counters, timing with memory and load readings,
  rounds that time every library in turn, accuracy against the references;
- `adapters`: one adapter per library (spectra, curvlinops, PyHessian,
  hessian-eigenthings) behind one interface;
- `models`: the models, the data, their training and the float64 references;
- `report`: the Markdown tables;
- `__main__`: the driver (command line, which models and libraries, the run).

hessian-eigenthings is not on PyPI. It is used when importable, either installed or as a
source tree in .anchors/hessian-eigenthings.
"""
