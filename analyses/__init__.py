"""Studies that reproduce the papers' figures and tables, and benchmarks.

Each is run as a module from the repository root, e.g. ``python -m analyses.bench_core``;
results go to ``analyses/results/``.
"""
