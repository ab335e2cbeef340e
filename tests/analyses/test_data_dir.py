"""``--data-dir`` in the studies: tiny MNIST / CIFAR files in their standard formats (IDX,
the python pickle batches) are found, reported, and run on by each study's quick mode,
whose settings are shrunk here so that each test takes seconds."""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from analyses import _study, classification, dcao_study, density_evolution, edge_of_stability
from tests.spectra.registries.test_data import make_cifar100, make_mnist


def make_cifar10(root: Path, per_batch: int, n_test: int) -> None:
    """``cifar-10-batches-py/`` with five training batches and a test batch, labels 0..9."""
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in batches:
        n = n_test if name == "test_batch" else per_batch
        with open(directory / name, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": [i % 10 for i in range(n)]}, fh)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """MNIST (torchvision's layout, gzipped) and CIFAR-10; no CIFAR-100."""
    root = tmp_path / "data"
    make_mnist(root / "MNIST" / "raw", n_train=80, n_test=40, gz=True)
    make_cifar10(root, per_batch=16, n_test=40)
    return root


def _args(data_dir: Path | None, replot: bool = False) -> argparse.Namespace:
    return argparse.Namespace(data_dir=data_dir, replot=replot)


EXTRA = (("mnist", "MNIST"), ("cifar10", "CIFAR-10"))  # what the data_dir fixture holds


def _extra_sections(text: str, out: Path, study: str) -> dict[str, dict]:
    """Check that a study's report says which sets ``--data-dir`` held, and gives each
    one its section and figure; return each set's saved results."""
    assert "found MNIST, CIFAR-10; not found: CIFAR-100" in text
    saved = {}
    for name, label in EXTRA:
        assert f"\n## {label} (from `--data-dir`)" in text
        assert (out / f"{study}_{name}.png").stat().st_size > 10_000
        saved[name] = json.loads((out / f"{study}_{name}.json").read_text())
    assert not (out / f"{study}_cifar100.json").exists()
    return saved


def _replot_gives_the_same_report(study, out: Path, text: str) -> None:
    """``--replot`` redraws the same results from the saved runs, extra sets included."""
    name = study.__name__.rsplit(".", 1)[-1]
    study.main(["--quick", "--replot", "--out-dir", str(out)])
    after = (out / f"{name}.md").read_text()
    assert after.split("## Results", 1)[1] == text.split("## Results", 1)[1]
    assert "Data sets: digits and MNIST, CIFAR-10" in after


# --------------------------------------------------------------------------- _study


def test_extra_datasets_finds_the_files_in_their_standard_places(tmp_path, data_dir) -> None:
    assert _study.extra_datasets(None) == []
    (tmp_path / "empty").mkdir()
    assert _study.extra_datasets(tmp_path / "empty") == []
    assert _study.extra_datasets(data_dir) == ["mnist", "cifar10"]
    make_cifar100(data_dir, n_train=30, n_test=10)
    assert _study.extra_datasets(data_dir) == ["mnist", "cifar10", "cifar100"]
    with pytest.raises(SystemExit, match="not a directory"):
        _study.extra_datasets(tmp_path / "missing")


def test_malformed_files_are_an_error_not_a_missing_data_set(tmp_path) -> None:
    make_cifar100(tmp_path, n_train=4, n_test=2)
    (tmp_path / "cifar-100-python" / "test").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cifar-100-python/test"):
        _study.extra_datasets(tmp_path)


def test_data_note_says_what_was_found_and_what_not(data_dir) -> None:
    note = _study.data_note(_args(data_dir), ["mnist", "cifar10"])
    assert "found MNIST, CIFAR-10" in note and "not found: CIFAR-100" in note
    assert "digits only" in _study.data_note(_args(None), [])
    assert "found none" in _study.data_note(_args(data_dir), [])


def test_study_datasets_replot_reads_the_saved_runs_and_a_fresh_run_drops_stale_ones(
        tmp_path, data_dir) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "x_cifar100.json").write_text("[]")
    (out / "x_mnist.json").write_text("[]")
    assert _study.study_datasets(_args(None, replot=True), out, "x") == ["mnist", "cifar100"]
    assert _study.study_datasets(_args(data_dir), out, "x") == ["mnist", "cifar10"]
    assert not (out / "x_cifar100.json").exists()  # not in data_dir: stale, removed
    assert (out / "x_mnist.json").exists()


def test_load_subset_takes_all_of_a_split_that_holds_fewer(data_dir) -> None:
    ds = _study.load_subset("mnist", data_dir, 50, 1000, image=False)
    assert ds.train_x.shape == (50, 784) and ds.test_x.shape == (40, 784)
    again = _study.load_subset("mnist", data_dir, 50, 1000, image=False)
    assert bool((again.train_x == ds.train_x).all())  # seeded


# --------------------------------------------------------------------------- the studies


def test_edge_of_stability_quick_runs_on_the_data_dir(tmp_path, data_dir, monkeypatch) -> None:
    tiny = edge_of_stability.Setting(n_train=32, widths=(8,), activation="tanh", gd_lrs=(0.25,),
                                     momentum_lrs=(0.2,), beta=0.9, steps=12, every=4, seeds=(0,))
    monkeypatch.setattr(edge_of_stability, "QUICK", tiny)
    out = tmp_path / "out"
    edge_of_stability.main(["--quick", "--data-dir", str(data_dir), "--out-dir", str(out)])
    text = (out / "edge_of_stability.md").read_text()
    for name, saved in _extra_sections(text, out, "edge_of_stability").items():
        assert saved["n_train"] == 32 and len(saved["runs"]) == 2
        lam = saved["sharpness_at_init"]
        # every lr scaled so that the threshold keeps its ratio to the initial sharpness
        assert saved["lr_scale"] == pytest.approx(lam["digits"] / lam[name])
        lrs = sorted(r["lr"] for r in saved["runs"])
        assert lrs == pytest.approx(sorted([0.2 * saved["lr_scale"], 0.25 * saved["lr_scale"]]),
                                    rel=5e-3)
    _replot_gives_the_same_report(edge_of_stability, out, text)


def test_classification_quick_runs_on_the_data_dir(tmp_path, data_dir, monkeypatch) -> None:
    tiny = classification.Setting(("sgdm", "adam", "calr", "smaran", "lpsgdm"), ("fnn",), (0.01,),
                                  {"fnn": 2, "cnn": 1}, (0,), subset=(60, 30))
    monkeypatch.setattr(classification, "QUICK", tiny)
    out = tmp_path / "out"
    classification.main(["--quick", "--data-dir", str(data_dir), "--out-dir", str(out)])
    text = (out / "classification.md").read_text()
    for name, saved in _extra_sections(text, out, "classification").items():
        assert (saved["dataset"], saved["n_train"], saved["n_test"]) == (name, 60, 30)
        assert {r["optimizer"] for r in saved["tuned"]} == set(tiny.names)
    # the tables and verdicts of each data set, under its own heading
    assert text.count("### Claims and verdicts") == 2 and text.count("## Claims and verdicts") == 3
    assert text.count("**CALR Table 1** (calr.txt") == 3


def test_dcao_study_quick_runs_on_the_data_dir(tmp_path, data_dir, monkeypatch) -> None:
    configs = ("sgdm", "dcao", "dcao-off", "dcao-off-lr2x")
    tiny = dcao_study.Setting(configs, 1, (0,), extra_configs=configs, subset=(64, 32))
    monkeypatch.setattr(dcao_study, "QUICK", tiny)
    out = tmp_path / "out"
    dcao_study.main(["--quick", "--data-dir", str(data_dir), "--out-dir", str(out)])
    text = (out / "dcao_study.md").read_text()
    for label in ("MNIST", "CIFAR-10"):
        assert f"\n### {label}: Claims and verdicts" in text
    for saved in _extra_sections(text, out, "dcao_study").values():
        assert {r["config"] for r in saved["runs"]} == set(configs)
        assert (saved["n_train"], saved["n_test"]) == (64, 32)


def test_density_evolution_quick_runs_on_the_data_dir(tmp_path, data_dir, monkeypatch) -> None:
    """Study 1 trains the same protocol on each MNIST / CIFAR-10 subset found (spectra
    compare on that data set, both CNN variants), reports it in a section of its own,
    and --replot redraws the same report from the run files."""
    from spectra.runs import read_run

    tiny = density_evolution.Setting(("sgd",), ("sgd",), (0,), 1, 32, 4, (2, 5), 4, (0, 1),
                                     (40, 20))
    monkeypatch.setattr(density_evolution, "QUICK", tiny)
    out = tmp_path / "out"
    density_evolution.main(["--quick", "--data-dir", str(data_dir), "--out-dir", str(out),
                            "--jobs", "2"])
    text = (out / "density_evolution.md").read_text()
    for name, saved in _extra_sections(text, out, "density_evolution").items():
        assert saved["sizes"] == [40, 20]
        for variant in ("plain", "bn"):
            run = read_run(out / "density_evolution_runs" / f"{name}_{variant}_seed0.h5", "sgd")
            assert run.config["data"]["name"] == name and run.config["num_train"] == 40
            assert len(run.probes) == 2  # at initialization and after the epoch
    assert text.count("### Verdicts") == 2 and text.count("\n## Verdicts") == 1
    _replot_gives_the_same_report(density_evolution, out, text)
