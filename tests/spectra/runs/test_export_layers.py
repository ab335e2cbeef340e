"""spectra.runs.export of a run probed per block (``layers=...``, ``layer_density``):
block columns named after the blocks, the blocks' densities in their own CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from spectra.runs.export import csv_paths, export_csv
from spectra.runs.store import RunStore, read_run

NAMES = ["1", "3", "net.5"]  # what a Sequential's module blocks are named
NV, M = 2, 3


def _layer_row(j: int) -> dict:
    nodes = np.arange(len(NAMES) * NV * M, dtype=float).reshape(len(NAMES), NV, M) + j
    nodes[2, 1, 2] = np.nan  # a block's vector with fewer Ritz nodes: NaN padding
    weights = np.full_like(nodes, 1.0 / M)
    weights[2, 1, 2] = np.nan
    return {"layer_top_eigenvalue": [10.0 + j, 20.0, 30.0], "layer_trace": [1.0, 2.0, 3.0 + j],
            "layer_trace_stderr": [0.1, 0.2, 0.3], "layer_heterogeneity": 0.5,
            "layer_ritz_nodes": nodes, "layer_ritz_weights": weights}


@pytest.fixture(scope="module")
def layered(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("layers") / "ly.h5"
    with RunStore(path) as st:
        w = st.create_run("adam", config={"probe": {"layer_names": NAMES,
                                                    "layer_sizes": [10, 20, 30]}})
        for j in range(2):
            w.append_metrics(step=j, train_loss=1.0)
            w.append_probe(step=j, epoch=float(j), top_eigenvalues=[5.0, 4.0], trace=6.0,
                           **_layer_row(j))
        # a run whose config does not name its blocks: columns by position
        w = st.create_run("unnamed", config={})
        w.append_probe(step=0, trace=1.0, layer_trace=[1.0, 2.0])
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_block_columns_are_named_after_the_blocks(layered: Path, tmp_path: Path) -> None:
    export_csv(layered, tmp_path)
    rows = _read(csv_paths(layered, tmp_path)["probes"])
    header = list(rows[0])
    # adam's blocks 1, 3, net.5 (not 1, 2, 3) and unnamed's 1, 2, numbered ones in order
    assert [c for c in header if c.startswith("layer_trace_") and "stderr" not in c] == [
        "layer_trace_1", "layer_trace_2", "layer_trace_3", "layer_trace_net.5"]
    adam = [r for r in rows if r["run"] == "adam"]
    assert [float(r["layer_trace_net.5"]) for r in adam] == [3.0, 4.0]
    assert [r["layer_trace_2"] for r in adam] == ["", ""]  # adam has no block '2'
    assert [float(r["layer_top_eigenvalue_3"]) for r in adam] == [20.0, 20.0]
    unnamed = [r for r in rows if r["run"] == "unnamed"]
    assert (unnamed[0]["layer_trace_1"], unnamed[0]["layer_trace_2"]) == ("1.0", "2.0")
    assert "top_eigenvalues_2" in header  # other array columns keep their positions


def test_block_labels_fall_back_to_positions() -> None:
    from spectra.runs.export import block_labels

    run = type("R", (), {"config": {"probe": {"layer_names": ["a b", "a,b"]}}})()
    assert block_labels(run, 2) == ["1", "2"]  # 'a_b' twice: would not tell them apart
    run.config = {"probe": {"layer_names": ["fc 1", "fc,2"]}}
    assert block_labels(run, 2) == ["fc_1", "fc_2"]
    assert block_labels(run, 3) == ["1", "2", "3"]


def test_layer_densities_are_written_in_long_format(layered: Path, tmp_path: Path) -> None:
    written = export_csv(layered, tmp_path, ["adam"])
    path = csv_paths(layered, tmp_path)["layer_density"]
    assert written["layer_density"][0] == path
    rows = _read(path)
    assert list(rows[0]) == ["run", "step", "epoch", "layer", "vector", "node", "weight"]
    per_probe = len(NAMES) * NV * M - 1  # the NaN padding is dropped
    assert len(rows) == written["layer_density"][1] == 2 * per_probe
    nodes = np.asarray(read_run(layered, "adam").probes["layer_ritz_nodes"])
    got = {(int(r["step"]), r["layer"], int(r["vector"])): [] for r in rows}
    for r in rows:
        got[(int(r["step"]), r["layer"], int(r["vector"]))].append(float(r["node"]))
    assert got[(1, "net.5", 0)] == nodes[1, 2, 0].tolist()
    assert got[(1, "net.5", 1)] == nodes[1, 2, 1, :2].tolist()
    assert got[(0, "3", 1)] == nodes[0, 1, 1].tolist()
    # a later export without layer densities removes the stale file with --overwrite
    written = export_csv(layered, tmp_path, ["unnamed"], overwrite=True)
    assert "layer_density" not in written and not path.exists()
