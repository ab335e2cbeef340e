"""A loss landscape of :func:`spectra.landscape.loss_landscape`: the loss along one
direction with its quadratic model, or filled contours over a plane of two."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FormatStrFormatter, MaxNLocator

from spectra.landscape import describe_directions, eigenvalue_names
from spectra.plots.style import FONT, SINGLE, new_figure, style

_COARSE = 7  # a plane of at most this many points a side shows its grid points
_DIRECTION = {"top": "top eigenvector", "bottom": "most negative eigenvector",
              "random": "random direction"}


def _axis_labels(land: Any) -> list[str]:
    """One label per direction: what it is and, for an eigenvector, its eigenvalue
    (named by :func:`spectra.landscape.eigenvalue_names`)."""
    if land.kind == "extremes":
        what = ["top eigenvector", "most negative eigenvector"]
    else:
        base = _DIRECTION.get(land.kind, "direction")
        what = [base] if land.dims == 1 else [f"{base} {i + 1}" for i in range(land.dims)]
    if land.eigenvalues is None:
        return what
    names = eigenvalue_names(land.kind, land.dims)
    return [f"{w} ({n} = {float(v):.3g})"
            for w, n, v in zip(what, names, land.eigenvalues, strict=True)]


def plot_landscape(
    landscape: Any,
    *,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """A loss landscape of :func:`spectra.landscape.loss_landscape`.

    1-D: the loss against the step along the direction, with the quadratic model
    ``L(0) + lambda_1 a^2 / 2`` for a top eigenvector. 2-D: filled contours of the loss
    over the plane, the weights marked with a star (and on a coarse grid, of at most
    7 points a side, the grid points, as the contours between them are interpolated).
    Grid points whose loss is NaN or Inf (a span far beyond where the float format
    holds) are marked with red crosses and counted in the legend, not left blank; a
    plane of one loss value says so on its colour bar rather than labelling a scale of
    identical ticks.

    Raises:
        ValueError: no grid point has a finite loss.
    """
    land = landscape
    losses = np.asarray(land.losses, dtype=np.float64)
    finite = losses[np.isfinite(losses)]
    if finite.size == 0:
        raise ValueError("the landscape's losses are all NaN or Inf; nothing to draw")
    lo, hi = float(finite.min()), float(finite.max())
    with style():
        fig = new_figure(figsize, SINGLE if land.dims == 1 else (6.0, 5.0))
        ax = fig.subplots()
        if land.dims == 1:
            _draw_line(ax, land, losses, lo, hi)
        else:
            _draw_plane(fig, ax, land, losses, lo, hi)
        _mark_nonfinite(ax, land, losses)
        count = "two" if land.dims == 2 else ("the" if land.kind == "bottom" else "a")
        base = f"Loss along {count} {describe_directions(land.kind, land.dims)}"
        fig.suptitle(title if title is not None else base)
    return fig


def _draw_line(ax: Axes, land: Any, losses: np.ndarray, lo: float, hi: float) -> None:
    """The loss along one direction, its quadratic model along a top eigenvector, and
    the weights (a = 0) marked with a star."""
    ax.plot(land.alphas, losses, color="C0", lw=1.5, marker="o", ms=3, label="loss")
    if land.eigenvalues is not None:
        lam, name = float(land.eigenvalues[0]), eigenvalue_names(land.kind, 1)[0]
        a = np.linspace(land.alphas[0], land.alphas[-1], 200)
        ax.plot(a, land.center_loss + 0.5 * lam * a**2, color="C3", ls="--", lw=1.0,
                label=f"L(0) + {name} a\u00b2/2, {name} = {lam:.3g}")
    ax.plot([0], [land.center_loss], marker="*", color="gold", mec="black", ms=11,
            ls="none", label="weights", zorder=5)
    pad = 0.08 * (hi - lo if hi > lo else 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    unit = " (parameter-space distance)" if land.eigenvalues is not None else (
        " (\u00d7 filter norms)" if land.kind == "random" else "")
    ax.set_xlabel(f"step a along the {_DIRECTION.get(land.kind, 'direction')}{unit}")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, lw=0.5)


def _draw_plane(fig: Figure, ax: Axes, land: Any, losses: np.ndarray, lo: float,
                hi: float) -> None:
    """Filled contours of the loss over two directions, the weights at the origin."""
    flat = not hi - lo > 1e-9 * max(abs(lo), abs(hi), 1e-300)
    if flat:  # one band of one colour; padded, as contourf needs increasing levels
        pad = max(1e-3 * abs(lo), 1e-12)
        levels = np.array([lo - pad, hi + pad])
    else:
        levels = np.linspace(lo, hi, 25)
    cf = ax.contourf(land.alphas, land.betas, losses, levels=levels, cmap="viridis")
    ax.contour(land.alphas, land.betas, losses, levels=levels, colors="white",
               linewidths=0.3, alpha=0.6)
    cbar = fig.colorbar(cf, ax=ax, pad=0.02, aspect=30)
    cbar.set_label(f"loss (flat: {lo:.4g} at every finite point)" if flat else "loss")
    cbar.ax.yaxis.set_major_locator(FixedLocator([lo]) if flat else MaxNLocator(7))
    cbar.ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    cbar.ax.tick_params(labelsize=FONT)
    if len(land.alphas) <= _COARSE:  # contours of a few samples: show where they are
        a, b = np.meshgrid(land.alphas, land.betas)
        ax.plot(a.ravel(), b.ravel(), marker=".", color="black", ms=5, ls="none", clip_on=False,
                zorder=4,
                label=f"grid ({len(land.alphas)}×{len(land.betas)}, contours interpolated)")
    ax.plot([0], [0], marker="*", color="gold", mec="black", ms=12, ls="none",
            label="weights")
    for set_label, text in zip((ax.set_xlabel, ax.set_ylabel), _axis_labels(land), strict=True):
        set_label(text)
    ax.set_aspect("equal")


def _mark_nonfinite(ax: Axes, land: Any, losses: np.ndarray) -> None:
    """Red crosses where the loss is NaN or Inf, counted in the legend (drawn last).

    1-D: along the top edge of the axes at each such step ``a`` (the loss has no
    height there); 2-D: at each such grid point ``(a, b)``, which the contours leave blank.
    """
    bad = ~np.isfinite(losses)
    if bad.any():
        label = f"loss NaN or Inf ({int(bad.sum())} of {bad.size} points)"
        marks: dict[str, Any] = {"marker": "x", "color": "C3", "ms": 6, "mew": 1.5, "ls": "none",
                                 "label": label, "zorder": 6, "clip_on": False}
        if land.dims == 1:
            ax.plot(np.asarray(land.alphas)[bad], np.full(int(bad.sum()), 0.97),
                    transform=ax.get_xaxis_transform(), **marks)
        else:
            b, a = np.nonzero(bad)
            ax.plot(np.asarray(land.alphas)[a], np.asarray(land.betas)[b], **marks)
    if land.dims == 1:
        ax.legend(frameon=False)
    else:
        ax.legend(loc="upper right", framealpha=0.85)
