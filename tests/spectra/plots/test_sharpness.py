"""spectra.plots.sharpness: top eigenvalues against the optimizer's stability threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spectra.plots import plot_sharpness
from spectra.runs import RunStore
from tests.spectra.plots.conftest import nothing_cut_off, saved


def _threshold_lines(ax) -> list:
    return [ln for ln in ax.get_lines() if "stability threshold" in ln.get_label()]


def _texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.texts).replace("\n", " ")


def test_sharpness(runs: dict, tmp_path: Path) -> None:
    fig = plot_sharpness(runs)
    assert len(fig.axes) == 2
    ax, ax_dcao = fig.axes
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert r"$\lambda_1$ (top)" in labels and r"$\lambda_{\min}$" in labels
    # distinct line styles for lambda_1, lambda_2.., lambda_min and the threshold
    styles = {ln.get_label(): ln.get_linestyle() for ln in ax.get_lines()}
    (thr,) = _threshold_lines(ax)
    assert len({styles[r"$\lambda_1$ (top)"], styles[r"$\lambda_2, \lambda_3$"],
                styles[r"$\lambda_{\min}$"], thr.get_linestyle()}) == 4
    # sgdm, from the config: torch's SGD at each metrics row's lr and momentum
    assert thr.get_label().startswith(r"$(2+2\beta)/\eta$")
    x, y = thr.get_data()
    m = runs["sgdm"].metrics
    assert np.allclose(y, (2 + 2 * m.momentum) / m.lr)
    assert np.allclose(x, m.epoch)
    # dcao: no line, and the panel says why
    assert not _threshold_lines(ax_dcao)
    assert "theory gives none for dcao" in _texts(ax_dcao)
    # lambda_min < 0 early on: symlog, with labelled ticks on both sides of 0
    assert ax.get_yscale() == "symlog"
    ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    assert 0 in ticks and min(ticks) < 0 < max(ticks)
    assert ax.get_xlabel() == "epoch"
    nothing_cut_off(fig)
    saved(fig, tmp_path, "sharpness")


def test_sharpness_without_stability(runs: dict) -> None:
    fig = plot_sharpness(runs["dcao"], stability=False)
    ax = fig.axes[0]
    assert not _threshold_lines(ax) and not ax.texts
    assert "Sharpness over training: dcao" in fig.get_suptitle()


def test_sharpness_without_momentum_and_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "gd.h5"
    with RunStore(path) as store:
        run = store.create_run("gd", config={"optimizer": {"name": "sgd", "lr": 0.02}})
        for s in range(5):
            run.append_metrics(step=s, epoch=float(s), lr=0.02, train_loss=1.0 / (s + 1))
            run.append_probe(step=s, epoch=float(s), top_eigenvalues=[50.0 + 10 * s, 20.0],
                             bottom_eigenvalue=0.5)
        empty = store.create_run("empty")
        empty.append_metrics(step=0, lr=0.1)
    fig = plot_sharpness(path, "gd")
    ax = fig.axes[0]
    (thr,) = _threshold_lines(ax)
    assert thr.get_label().startswith(r"$2/\eta$")
    assert np.allclose(thr.get_data()[1], 100.0)
    assert ax.get_yscale() == "log"
    assert ax.get_ylim()[1] > 100.0  # on scale: inside the range
    assert "gd (sgd)" in fig.get_suptitle()
    with pytest.raises(ValueError, match="run 'empty' has no eigenvalue probes"):
        plot_sharpness(path, "empty")
    with pytest.raises(ValueError, match="by must be"):
        plot_sharpness(path, "gd", by="time")


def test_recorded_threshold_follows_the_schedule_and_off_scale_is_said(tmp_path: Path) -> None:
    """The probes' threshold column is drawn probe by probe; a threshold far above the
    eigenvalues keeps its line and the panel names its values."""
    path = tmp_path / "rec.h5"
    lrs = [0.1, 0.05, 0.02, 1e-3]
    with RunStore(path) as store:
        run = store.create_run("sgd", config={"optimizer": {"name": "sgd"}})
        for s, lr in enumerate(lrs):
            run.append_metrics(step=s, epoch=float(s), lr=lr, train_loss=1.0)
            run.append_probe(step=s, epoch=float(s), top_eigenvalues=[8.0, 4.0],
                             bottom_eigenvalue=-0.3, threshold=2.0 / lr, threshold_kind="2/lr",
                             preconditioned_top=float("nan"))
        run.append_probe(step=4, epoch=4.0, top_eigenvalues=[8.0, 4.0], bottom_eigenvalue=-0.3,
                         threshold=float("nan"), threshold_kind="")  # lr 0: none
    fig = plot_sharpness(path)
    ax = fig.axes[0]
    (thr,) = _threshold_lines(ax)
    assert np.allclose(thr.get_data()[1], [2.0 / lr for lr in lrs])
    top = ax.get_ylim()[1]
    assert 20.0 < top < 2000.0  # on scale up to 4 x lambda_1 = 32, and room for the note
    text = _texts(ax)
    above = [2.0 / lr for lr in lrs if 2.0 / lr > top]
    assert above and len(above) < len(lrs)
    rng = f"{min(above):.3g}" + (" to 2e+03" if len(above) > 1 else "")
    assert "off scale in part" in text and f"{rng}; no threshold recorded at epoch 4" in text
    nothing_cut_off(fig)


def test_preconditioned_threshold_against_preconditioned_sharpness(tmp_path: Path) -> None:
    path = tmp_path / "adam.h5"
    with RunStore(path) as store:
        for name, pre in (("with", 30.0), ("without", float("nan"))):
            run = store.create_run(name, config={"optimizer": {"name": "adam"}})
            for s in range(3):
                run.append_metrics(step=s, epoch=float(s), lr=1e-2, momentum=0.9)
                run.append_probe(step=s, epoch=float(s), top_eigenvalues=[5.0, 2.0],
                                 bottom_eigenvalue=0.1, threshold=380.0,
                                 threshold_kind="(2+2b1)/((1-b1)lr)", preconditioned_top=pre)
        calr = store.create_run("calr", config={"optimizer": {"name": "calr"}})
        calr.append_metrics(step=0, epoch=0.0, lr=0.1)
        calr.append_probe(step=0, epoch=0.0, top_eigenvalues=[5.0, 2.0])
    fig = plot_sharpness(path)
    a_with, a_without, a_calr = fig.axes[:3]
    (thr,) = _threshold_lines(a_with)
    assert "preconditioned stability threshold" in thr.get_label()
    assert any("preconditioned" in ln.get_label() and "P^{-1}" in ln.get_label()
               for ln in a_with.get_lines())
    assert not _threshold_lines(a_without)
    assert "bounds the preconditioned" in _texts(a_without).replace("\n", " ")
    assert not _threshold_lines(a_calr)
    assert "theory gives none for calr" in _texts(a_calr).replace("\n", " ")
    nothing_cut_off(fig)


def _eos_runs(path: Path, *, flag: bool = True) -> Path:
    """Two runs shaped like the README's edge-of-stability demonstration (top-1, no
    lambda_min): SGD-momentum against (2+2b)/lr, Adam's preconditioned sharpness
    against 38/lr; ``flag``: with the ``threshold_preconditioned`` column."""
    with RunStore(path) as store:
        for name, thr, kind, pre in (("sgdm", 12.7, "(2+2b)/lr", False),
                                     ("adam", 3800.0, "(2+2b1)/((1-b1)lr)", True)):
            run = store.create_run(name, config={"optimizer": {"name": name}})
            for e in range(0, 30, 5):
                row = {"step": e, "epoch": float(e), "top_eigenvalues": [0.3 + e],
                       "threshold": thr, "threshold_kind": kind}
                if flag:
                    row["threshold_preconditioned"] = float(pre)
                if pre:
                    row["preconditioned_top"] = 3000.0 + 100 * e if e else float("nan")
                run.append_probe(row)
    return path


def test_default_size_legend_keeps_every_entry(tmp_path: Path) -> None:
    """At the CLI's default size (no figsize), the legend of the README's figure fits:
    lambda_1, both thresholds and the preconditioned sharpness, each entry inside."""
    fig = plot_sharpness(_eos_runs(tmp_path / "eos.h5"))
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == [r"$\lambda_1$ (top)", r"$(2+2\beta)/\eta$ (stability threshold)",
                      r"$\lambda_1(P^{-1}H)$ (preconditioned)",
                      r"$(2+2\beta_1)/((1-\beta_1)\eta)$ (preconditioned stability threshold)"]
    nothing_cut_off(fig)  # each entry inside the figure
    # a wide figure keeps them in one row
    wide = plot_sharpness(tmp_path / "eos.h5", figsize=(14, 4))
    nothing_cut_off(wide)
    rows = {round(t.get_window_extent().y0) for t in wide.legends[0].get_texts()}
    assert len(rows) == 1


def test_threshold_preconditioned_column_decides_what_the_threshold_bounds(tmp_path: Path) -> None:
    """The kind 2/lr is SGD's and RMSprop's: the recorded column says which sharpness it
    bounds, whatever the config; files without the column are still read."""
    path = tmp_path / "kinds.h5"
    with RunStore(path) as store:
        for name, flag in (("plain", 0.0), ("pre", 1.0)):
            # an optimizer the config cannot tell about: only the column says
            run = store.create_run(name, config={"optimizer": {"name": "custom"}})
            for s in range(3):
                run.append_probe(step=s, epoch=float(s), top_eigenvalues=[20.0 + s, 5.0],
                                 threshold=100.0, threshold_kind="2/lr",
                                 threshold_preconditioned=flag,
                                 preconditioned_top=50.0 + s if flag else float("nan"))
    fig = plot_sharpness(path)
    a_plain, a_pre = fig.axes[:2]
    (thr,) = _threshold_lines(a_plain)
    assert thr.get_label() == r"$2/\eta$ (stability threshold)"
    (thr,) = _threshold_lines(a_pre)
    assert thr.get_label() == r"$2/\eta$ (preconditioned stability threshold)"
    nothing_cut_off(fig)
    # a preconditioned 2/lr without the preconditioned sharpness: no line against lambda_1(H)
    lone = tmp_path / "lone.h5"
    with RunStore(lone) as store:
        run = store.create_run("r", config={"optimizer": {"name": "custom"}})
        run.append_probe(step=0, epoch=0.0, top_eigenvalues=[20.0], threshold=100.0,
                         threshold_kind="2/lr", threshold_preconditioned=1.0)
    ax = plot_sharpness(lone).axes[0]
    assert not _threshold_lines(ax) and "bounds the preconditioned" in _texts(ax)
    # an older file (no column): inferred from the kind and preconditioned_top, as before
    old = plot_sharpness(_eos_runs(tmp_path / "old.h5", flag=False))
    assert "preconditioned stability" in _threshold_lines(old.axes[1])[0].get_label()
    assert "preconditioned stability" not in _threshold_lines(old.axes[0])[0].get_label()


def test_one_probe_shows_every_eigenvalue(tmp_path: Path) -> None:
    """A run with a single probe: lambda_2..k (dotted, no markers on longer lines) get a
    marker, else their one point is not drawn at all."""
    path = tmp_path / "one.h5"
    with RunStore(path) as store:
        run = store.create_run("one", config={"optimizer": "dcao"})
        run.append_probe(step=0, epoch=0.0, top_eigenvalues=[3.0, 2.0, 1.0], bottom_eigenvalue=-0.5)
    ax = plot_sharpness(path).axes[0]
    for line in ax.get_lines():
        if len(line.get_xdata()) == 1:
            assert line.get_marker() not in (None, "None", ""), line.get_label()


def test_probes_without_a_finite_eigenvalue_are_named(tmp_path: Path) -> None:
    """Probes of a diverged run (NaN/Inf eigenvalues) are not dropped silently."""
    path = tmp_path / "div.h5"
    with RunStore(path) as store:
        run = store.create_run("div", config={"optimizer": "dcao"})
        for e, (top, bottom) in enumerate([(2.0, -0.1), (np.nan, np.nan), (np.inf, np.nan)]):
            run.append_probe(step=e, epoch=float(e), top_eigenvalues=[top, top / 2],
                             bottom_eigenvalue=bottom)
    fig = plot_sharpness(path)
    assert "no finite eigenvalue (NaN or Inf) at epoch 1, 2" in _texts(fig.axes[0])
    nothing_cut_off(fig)


def test_a_run_without_probes_among_others_gets_a_panel(tmp_path: Path) -> None:
    """One run of the file has no probes (stopped at once, or probing off): the others
    are drawn and its panel says so; alone, it is an error that says why."""
    path = tmp_path / "some.h5"
    with RunStore(path) as store:
        good = store.create_run("good", config={"optimizer": "dcao"})
        for e in range(3):
            good.append_probe(step=e, epoch=float(e), top_eigenvalues=[2.0 + e, 1.0])
        store.create_run("stopped", config={"optimizer": "dcao"})
    fig = plot_sharpness(path)
    assert len(fig.axes) == 2
    assert "no probes recorded" in _texts(fig.axes[1])
    assert fig.axes[0].get_lines()
    nothing_cut_off(fig)
    with pytest.raises(ValueError, match="'stopped' has no eigenvalue probes: its probes table has no rows"):
        plot_sharpness(path, "stopped")


def test_one_probe_time_gets_one_tick(tmp_path: Path) -> None:
    """A run of one probe at epoch 0: one x tick, '0', not -0.04 ... 0.04 (epochs
    before training); panels sharing x with runs of several probes keep theirs."""
    path = tmp_path / "one.h5"
    with RunStore(path) as store:
        store.create_run("one", config={"optimizer": "dcao"}).append_probe(
            step=0, epoch=0.0, top_eigenvalues=[3.0, 2.0])
    ax = plot_sharpness(path).axes[0]
    assert list(ax.get_xticks()) == [0.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0"]
    with RunStore(path) as store:
        two = store.create_run("two", config={"optimizer": "dcao"})
        for e in range(3):
            two.append_probe(step=e, epoch=float(e), top_eigenvalues=[3.0, 2.0])
    ax = plot_sharpness(path).axes[0]
    assert len(ax.get_xticks()) > 1
