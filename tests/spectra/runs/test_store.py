"""Tests of spectra.runs.store, the public face of the run format: it gathers the
names of format, writer and reader, and none of its modules imports torch."""

from __future__ import annotations

import subprocess
import sys

from spectra.runs import format as run_format
from spectra.runs import reader, store, writer
from tests.spectra.runs.run_files import CHILD_PRELUDE


def test_the_store_gathers_the_public_names_of_its_parts() -> None:
    homes = {name: module for module in (run_format, reader, writer) for name in module.__all__}
    for name in store.__all__:
        assert getattr(store, name) is getattr(homes[name], name), name


def test_the_store_imports_no_torch(tmp_path) -> None:
    """With bare ``spectra`` and ``spectra.runs`` packages (what the child processes of
    the store's tests use), the store writes and reads a run without importing torch;
    ``import spectra`` itself loads torch for the math it exports."""
    code = CHILD_PRELUDE + """
from spectra.runs.store import RunStore, read_run
with RunStore(sys.argv[1]) as st:
    st.create_run("r").append_metrics(step=0, train_loss=1.0)
assert read_run(sys.argv[1], "r").metrics.train_loss.tolist() == [1.0]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "matplotlib", "scipy"))
assert not heavy, heavy
assert "spectra.utils" not in sys.modules
"""
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.h5")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
