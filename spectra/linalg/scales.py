"""Eigenvalue scales for spectral densities: a symmetric-log axis, and a smooth change of
variables that follows it so that smoothing widths look alike across the axis.

A Hessian spectrum has a bulk near zero, a few large outliers and, early in training,
negative eigenvalues; on a linear axis the bulk is one spike. Densities are therefore
drawn against a symmetric-log axis with threshold ``t = linthresh`` (eigenvalue units).

Display coordinate (matplotlib's ``symlog`` transform, base 10, ``linscale`` 1)::

    u(x) = a x                                 for |x| <= t
    u(x) = sign(x) t (a + log10(|x| / t))      beyond,      a = 1 / (1 - 1/10)

A grid evenly spaced in ``u`` is evenly spaced on screen.

Smoothing coordinate ``s(x) = c t asinh(x / (c t))`` with ``c = 1 / (a ln 10)``: linear
near 0 (``ds/dx = 1`` there), logarithmic far out, ``u ~ 1.11 s`` in both regimes, and,
unlike ``u``, a continuous derivative. A Gaussian of fixed width in ``s`` has about the
same width on screen everywhere (within a factor 1.5): its width in eigenvalue units is
``sigma`` near 0 and grows in proportion to ``|lambda|`` beyond ``t``. The density per
unit eigenvalue is the smoothed density in ``s`` times ``ds/dx`` (the change of
variables), so it still integrates to 1 over the eigenvalues and has no jump at ``+-t``.

:class:`EigenvalueScale` with ``linthresh=None`` is the linear axis: every coordinate is
the eigenvalue itself, and smoothing is plain :meth:`SpectralMeasure.density
<spectra.linalg.density.SpectralMeasure.density>` with a constant width.

Example::

    >>> import numpy as np
    >>> scale = EigenvalueScale(0.1)
    >>> x = np.array([-100.0, -0.05, 0.0, 0.1, 1000.0])
    >>> np.allclose(scale.from_display(scale.to_display(x)), x)
    True
    >>> scale.to_display(np.array([0.1, 1.0, 10.0])).round(4).tolist()
    [0.1111, 0.2111, 0.3111]
    >>> float(scale.smoothing_slope(np.array(0.0)))
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from spectra.linalg.density import SpectralMeasure

#: matplotlib's ``linscale_adj = linscale / (1 - 1/base)`` for base 10 and linscale 1: the
#: slope ``du/dx`` of the display coordinate inside the linear region.
SYMLOG_SLOPE = 1.0 / (1.0 - 0.1)

# c of the smoothing coordinate s(x) = c t asinh(x / (c t)): u ~ s / c / ln 10 far out
_ASINH_C = 1.0 / (math.log(10.0) / (1.0 - 0.1))

#: A pair ``(nodes, weights)`` of ``(n_v, m)`` float64 arrays: ``n_v`` quadrature rules
#: (eigenvalue units; weights >= 0, each row with a positive sum).
Rules = tuple[np.ndarray, np.ndarray]


# --------------------------------------------------------------------------- coordinates


def symlog(x: np.ndarray, linthresh: float) -> np.ndarray:
    """The display coordinate ``u(x)`` of a symlog axis (see the module docstring).

    Args:
        x: eigenvalues, any shape.
        linthresh: ``t > 0``, half-width of the linear region (eigenvalue units).

    Returns:
        float64 array of ``x``'s shape; equal to matplotlib's
        ``SymmetricalLogTransform(10, linthresh, 1.0)``.
    """
    x = np.asarray(x, dtype=np.float64)
    t = linthresh
    ax = np.abs(x)
    with np.errstate(divide="ignore"):
        out = np.sign(x) * t * (SYMLOG_SLOPE + np.log10(np.maximum(ax, t) / t))
    return np.where(ax <= t, x * SYMLOG_SLOPE, out)


def symlog_inverse(u: np.ndarray, linthresh: float) -> np.ndarray:
    """The eigenvalues ``x`` with ``symlog(x, linthresh) == u``; float64, ``u``'s shape."""
    u = np.asarray(u, dtype=np.float64)
    t = linthresh
    au = np.abs(u)
    out = np.sign(u) * t * 10.0 ** (np.maximum(au / t, SYMLOG_SLOPE) - SYMLOG_SLOPE)
    return np.where(au <= t * SYMLOG_SLOPE, u / SYMLOG_SLOPE, out)


def asinh_coordinate(x: np.ndarray, linthresh: float) -> np.ndarray:
    """The smoothing coordinate ``s(x) = c t asinh(x / (c t))``; eigenvalue units near 0."""
    x = np.asarray(x, dtype=np.float64)
    ct = _ASINH_C * linthresh
    return ct * np.arcsinh(x / ct)


def asinh_inverse(s: np.ndarray, linthresh: float) -> np.ndarray:
    """The eigenvalues ``x`` with ``asinh_coordinate(x, linthresh) == s``."""
    ct = _ASINH_C * linthresh
    return ct * np.sinh(np.asarray(s, dtype=np.float64) / ct)


def asinh_slope(x: np.ndarray, linthresh: float) -> np.ndarray:
    """``ds/dx = 1 / sqrt(1 + (x / (c t))^2)``: 1 at 0, about ``c t / |x|`` far out."""
    x = np.asarray(x, dtype=np.float64)
    ct = _ASINH_C * linthresh
    return 1.0 / np.sqrt(1.0 + (x / ct) ** 2)


@dataclass(frozen=True)
class EigenvalueScale:
    """An eigenvalue axis: symlog with threshold ``linthresh``, or linear (``None``).

    Its three coordinates of an eigenvalue ``x``: ``x`` itself, the display coordinate
    ``u`` (evenly spaced on screen) and the smoothing coordinate ``s``. On a linear
    scale all three are ``x``.
    """

    linthresh: float | None  # eigenvalue units; None: linear

    def to_display(self, x: np.ndarray) -> np.ndarray:
        """``u(x)``, float64 of ``x``'s shape."""
        return self._map(symlog, x)

    def from_display(self, u: np.ndarray) -> np.ndarray:
        """The eigenvalues at display coordinates ``u``."""
        return self._map(symlog_inverse, u)

    def to_smoothing(self, x: np.ndarray) -> np.ndarray:
        """``s(x)``, float64 of ``x``'s shape."""
        return self._map(asinh_coordinate, x)

    def from_smoothing(self, s: np.ndarray) -> np.ndarray:
        """The eigenvalues at smoothing coordinates ``s``."""
        return self._map(asinh_inverse, s)

    def smoothing_slope(self, x: np.ndarray) -> np.ndarray:
        """``ds/dx`` at ``x`` (ones on a linear scale)."""
        x = np.asarray(x, dtype=np.float64)
        return np.ones_like(x) if self.linthresh is None else asinh_slope(x, self.linthresh)

    def decade_slope(self, x: np.ndarray) -> np.ndarray:
        """``d(u/t)/dx`` at ``x``: axis decades per unit eigenvalue (the log part of a
        symlog axis shows one decade per ``u/t`` unit; the linear part, ``|x| <= t``,
        spans ``2 a`` of them). A density per unit eigenvalue divided by this is a
        density per decade of the axis: equal areas on screen hold equal mass. Ones on a
        linear scale (where the display unit is the eigenvalue)."""
        x = np.asarray(x, dtype=np.float64)
        if self.linthresh is None:
            return np.ones_like(x)
        t = self.linthresh
        ax = np.abs(x)
        return np.where(ax <= t, SYMLOG_SLOPE / t,
                        1.0 / (np.maximum(ax, t) * math.log(10.0)))

    def _map(self, f: Callable[[np.ndarray, float], np.ndarray], x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x if self.linthresh is None else f(x, self.linthresh)


# --------------------------------------------------------------------------- choices


def choose_linthresh(measures: Sequence[Rules], decades: int = 3) -> float:
    """A symlog threshold for ``measures``: a power of ten near the bulk's scale.

    The weight-median of ``|node|`` over all rules (each rule normalized to weight 1),
    but at least ``10**-decades`` of the largest ``|node|``, so that the logarithmic part
    of the axis spans about ``decades`` decades below the outliers rather than resolving
    noise at zero; rounded to the nearest power of ten (in log10). Nodes of weight 0 are
    ignored; 1.0 when every node is 0.

    Args:
        measures: ``(nodes, weights)`` pairs, each ``(n_v, m)``.
        decades: how many decades the logarithmic part spans at the most.

    Returns:
        ``linthresh > 0`` in eigenvalue units.
    """
    a = np.concatenate([np.abs(n[w > 0]) for n, w in measures])
    w = np.concatenate([(w / w.sum(axis=1, keepdims=True))[w > 0] for _, w in measures])
    amax = float(a.max()) if a.size else 0.0
    if amax == 0.0:
        return 1.0
    order = np.argsort(a)
    cw = np.cumsum(w[order])
    median = float(a[order][np.searchsorted(cw, 0.5 * cw[-1])])
    scale = min(max(median, amax * 10.0**-decades), amax)
    return float(10.0 ** round(math.log10(scale)))


def eigenvalue_scale(
    xscale: str, linthresh: float | None, measures: Sequence[Rules]
) -> EigenvalueScale:
    """The scale named by ``xscale`` (``"symlog"`` or ``"linear"``); a symlog threshold
    not given is chosen from ``measures`` by :func:`choose_linthresh`.

    Raises:
        ValueError: another ``xscale``, or a ``linthresh`` that is not a positive number.
    """
    if xscale == "linear":
        return EigenvalueScale(None)
    if xscale != "symlog":
        raise ValueError(f"xscale must be 'symlog' or 'linear', got {xscale!r}")
    if linthresh is not None:
        if not (math.isfinite(linthresh) and linthresh > 0):
            raise ValueError(f"linthresh must be a positive number, got {linthresh!r}")
        return EigenvalueScale(float(linthresh))
    return EigenvalueScale(choose_linthresh(measures))


# --------------------------------------------------------------------------- grids, smoothing


@dataclass(frozen=True)
class DensityGrid:
    """Where a density is evaluated, and how wide its smoothing is.

    Attributes:
        centers: ``(g,)`` increasing eigenvalues where the density is evaluated.
        edges: ``(g + 1,)`` cell edges around them (eigenvalue units), midway between
            centers in the display coordinate: the cells of a heat map.
        sigma_s: the Gaussian's width in the smoothing coordinate (eigenvalue units
            near 0).
    """

    centers: np.ndarray
    edges: np.ndarray
    sigma_s: float


def density_grid(
    scale: EigenvalueScale,
    measures: Sequence[Rules],
    grid: int | np.ndarray,
    sigma: float | None,
    resolution: float = 150.0,
) -> DensityGrid:
    """The evaluation grid of ``measures`` on ``scale`` and the smoothing width.

    Args:
        scale: the eigenvalue axis.
        measures: ``(nodes, weights)`` pairs, each ``(n_v, m)``, with some positive weight.
        grid: a number of points ``>= 2``, evenly spaced in the display coordinate from
            3 widths (at most a tenth of the nodes' extent) below the smallest node to as
            far above the largest (in the smoothing coordinate); or an increasing 1-D
            array of eigenvalues.
        sigma: the width in the smoothing coordinate; default: the nodes' extent in
            that coordinate over ``resolution``.

    Raises:
        ValueError: ``sigma`` not positive; ``grid`` below 2 points, not 1-D, not
            finite or not strictly increasing.
    """
    if sigma is not None and not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive width in eigenvalue units, got {sigma!r}")
    lo = min(float(n[w > 0].min()) for n, w in measures)
    hi = max(float(n[w > 0].max()) for n, w in measures)
    s_lo, s_hi = float(scale.to_smoothing(lo)), float(scale.to_smoothing(hi))
    if s_hi - s_lo <= 0:
        half = max(abs(s_lo), 1.0) * 0.1
        s_lo, s_hi = s_lo - half, s_hi + half
    sigma_s = (s_hi - s_lo) / resolution if sigma is None else float(sigma)
    if np.ndim(grid) == 0:
        num = int(grid)  # type: ignore[arg-type]
        if num < 2:
            raise ValueError(f"grid must be at least 2 points (or an array), got {grid!r}")
        # 3 widths of margin, but at most a tenth of the extent: on a symlog scale a wide
        # sigma is exponential in eigenvalue units far out (sinh), and 3 of them would
        # put the grid's ends many decades beyond the outliers
        pad = min(3 * sigma_s, 0.1 * (s_hi - s_lo))
        x_lo = scale.from_smoothing(s_lo - pad)
        x_hi = scale.from_smoothing(s_hi + pad)
        u_edges = np.linspace(float(scale.to_display(x_lo)), float(scale.to_display(x_hi)),
                              num + 1)
        centers = scale.from_display(0.5 * (u_edges[1:] + u_edges[:-1]))
    else:
        centers = np.asarray(grid, dtype=np.float64)
        if centers.ndim != 1 or centers.size < 2 or not np.all(np.isfinite(centers)):
            raise ValueError("grid must be an int or a 1-D array of at least 2 finite eigenvalues")
        if np.any(np.diff(centers) <= 0):
            raise ValueError("grid must be strictly increasing")
        u_edges = midpoint_edges(scale.to_display(centers))
    return DensityGrid(centers=centers, edges=scale.from_display(u_edges), sigma_s=sigma_s)


def midpoint_edges(centers: np.ndarray) -> np.ndarray:
    """``(g + 1,)`` cell edges around ``(g,)`` increasing centers: the midpoints, and
    the end cells mirrored (as wide as their neighbours' half-distance doubled)."""
    mid = 0.5 * (centers[1:] + centers[:-1])
    return np.concatenate([[2 * centers[0] - mid[0]], mid, [2 * centers[-1] - mid[-1]]])


def smoothed_density(
    scale: EigenvalueScale, grid: DensityGrid, nodes: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """The density per unit eigenvalue of one measure on ``grid.centers``: ``(g,)``.

    Gaussian smoothing (width ``grid.sigma_s``) of the measure moved to the smoothing
    coordinate, times ``ds/dx``: it integrates to about 1 over the eigenvalues. On a
    linear scale this is :meth:`SpectralMeasure.density` itself.

    Args:
        nodes, weights: ``(n_v, m)`` float64 rules (weights of each row summing to 1).
    """
    measure = SpectralMeasure(
        nodes=scale.to_smoothing(nodes), weights=weights, num_matvecs=int(nodes.size), dim=0
    )
    return (measure.density(scale.to_smoothing(grid.centers), grid.sigma_s)
            * scale.smoothing_slope(grid.centers))


@dataclass(frozen=True)
class SmoothedDensities:
    """Densities of several measures on one scale and one grid.

    Attributes:
        scale: the eigenvalue axis.
        grid: where they are evaluated, and the smoothing width.
        values: one ``(g,)`` float64 density per unit eigenvalue per measure, in order.
    """

    scale: EigenvalueScale
    grid: DensityGrid
    values: list[np.ndarray]


def smooth_densities(
    measures: Sequence[Rules],
    *,
    xscale: str = "symlog",
    linthresh: float | None = None,
    grid: int | np.ndarray = 1000,
    sigma: float | None = None,
    resolution: float = 150.0,
) -> SmoothedDensities:
    """Each measure smoothed on the scale and grid they share: :func:`eigenvalue_scale`,
    then :func:`density_grid`, then :func:`smoothed_density` of each.

    Args:
        measures: ``(nodes, weights)`` pairs, each ``(n_v, m)``, with some positive weight.
        xscale, linthresh: as for :func:`eigenvalue_scale`.
        grid, sigma, resolution: as for :func:`density_grid`.
    """
    scale = eigenvalue_scale(xscale, linthresh, measures)
    dgrid = density_grid(scale, measures, grid, sigma, resolution)
    values = [smoothed_density(scale, dgrid, nodes, weights) for nodes, weights in measures]
    return SmoothedDensities(scale=scale, grid=dgrid, values=values)


__all__ = [
    "SYMLOG_SLOPE",
    "DensityGrid",
    "EigenvalueScale",
    "Rules",
    "SmoothedDensities",
    "asinh_coordinate",
    "asinh_inverse",
    "asinh_slope",
    "choose_linthresh",
    "density_grid",
    "eigenvalue_scale",
    "midpoint_edges",
    "smooth_densities",
    "smoothed_density",
    "symlog",
    "symlog_inverse",
]
