"""Figures of training runs read from the HDF5 run store (:mod:`spectra.runs.store`).

One module per figure: :mod:`~spectra.plots.evolution` (the eigenvalue density over
training), :mod:`~spectra.plots.density` (densities of probes, several runs on one axis;
both drawn by :mod:`~spectra.plots.lines`), :mod:`~spectra.plots.sharpness`
(top eigenvalues against the optimizer's stability threshold), :mod:`~spectra.plots.curves`
(loss and accuracy), :mod:`~spectra.plots.hparams` (an optimizer's hyperparameters, DCAO's
multipliers),
:mod:`~spectra.plots.trajectories` (optimizers on 2-D test functions) and
:mod:`~spectra.plots.landscape` (the loss along directions), :mod:`~spectra.plots.layers`
(per-layer lambda_1 and trace) and :mod:`~spectra.plots.alignment` (gradient alignment
with the top eigenspace). They share
:mod:`~spectra.plots.style` (text sizes, panels, legends, :func:`save_figure`),
:mod:`~spectra.plots.axes` (scales and ticks) and :mod:`~spectra.plots.data` (runs,
titles, time axes and density rows; the ``runs`` and ``by`` arguments are described
there).

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no
display, no global state; safe on a headless machine and in threads), sized and
lettered for a paper (9-10 pt text, constrained layout). :func:`save_figure` writes
one as PNG, PDF or SVG, by the path's suffix.

No numerics happen here: densities are smoothed by :mod:`spectra.linalg.scales`, which
also holds the symmetric-log eigenvalue axis and its smooth change of variables (the
``sigma``, ``linthresh`` and ``xscale`` of the density plots). What is left is choosing
ranges, scales, levels and ticks, and, for :func:`plot_trajectories`, evaluating the
test function on a grid for its contours.

Importing this package imports matplotlib; ``import spectra`` does not.

Example::

    from spectra.plots import plot_evolution, save_figure
    fig = plot_evolution("runs/compare.h5", epochs=[0, 2, 12])  # or kind="heatmap"
    save_figure(fig, "figures/density_evolution.pdf")
"""

from spectra.plots.alignment import plot_alignment
from spectra.plots.curves import plot_curves
from spectra.plots.density import plot_density
from spectra.plots.evolution import plot_evolution
from spectra.plots.hparams import plot_hparams
from spectra.plots.landscape import plot_landscape
from spectra.plots.layers import plot_layers
from spectra.plots.sharpness import plot_sharpness
from spectra.plots.style import FIGURE_FORMATS, save_figure
from spectra.plots.trajectories import plot_trajectories

__all__ = [
    "FIGURE_FORMATS",
    "plot_alignment",
    "plot_curves",
    "plot_density",
    "plot_evolution",
    "plot_hparams",
    "plot_landscape",
    "plot_layers",
    "plot_sharpness",
    "plot_trajectories",
    "save_figure",
]
