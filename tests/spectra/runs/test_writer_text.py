"""Text columns of the run format (``threshold_kind``): written from ``str``, read as
``str``, "" where a row does not give one, refused when mixed with numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spectra.runs.store import RunStore, StoreError, read_run


def test_text_column_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    with RunStore(path) as store:
        w = store.create_run("a", config={})
        w.append_probe(step=0, trace=1.0)
        w.append_probe(step=1, threshold=20.0, threshold_kind="2/lr")
        w.append_probe(step=2, threshold=38.0, threshold_kind="(2+2b1)/((1-b1)lr)")
        w.append_probe(step=3)
        mid = w.read().probes["threshold_kind"]  # through the writer's handle
        assert list(mid) == ["", "2/lr", "(2+2b1)/((1-b1)lr)", ""]
        with pytest.raises(StoreError, match="threshold_kind.*text"):
            w.append_probe(step=4, threshold_kind=1.0)
        with pytest.raises(StoreError, match="'threshold'.*numbers"):
            w.append_probe(step=4, threshold="2/lr")
        with pytest.raises(TypeError, match="longer than"):
            w.append_probe(step=4, threshold_kind="x" * 65)
    p = read_run(path, "a").probes
    assert p["threshold_kind"].dtype.kind == "U"
    assert list(p["threshold_kind"]) == ["", "2/lr", "(2+2b1)/((1-b1)lr)", ""]
    np.testing.assert_array_equal(p["threshold"], [np.nan, 20.0, 38.0, np.nan])
    assert len(p) == 4


def test_text_column_resumes_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    with RunStore(path) as store:
        store.create_run("a", config={}).append_probe(step=0, threshold_kind="2/lr")
    with RunStore(path) as store:
        w = store.open_run("a")
        w.append_probe(step=1, threshold_kind="é/lr")
        w.append_probe(step=2)
    assert list(read_run(path, "a").probes["threshold_kind"]) == ["2/lr", "é/lr", ""]
