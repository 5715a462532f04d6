"""Plots of SOMs and training runs (matplotlib; safe on headless machines).

* :func:`plot_som_mosaic`: neuron images laid out on the lattice (cartesian grid or hexagons).
* :func:`plot_bmu_counts`: best-matching-unit counts per neuron as a heat map.
* :func:`plot_training_curves`: quantization error, topographic error and change per progress step.

Every function returns the :class:`matplotlib.figure.Figure` and writes it to ``path`` if given.
"""

from somtorch.plotting.som import plot_bmu_counts, plot_som_mosaic, plot_training_curves

__all__ = ["plot_som_mosaic", "plot_bmu_counts", "plot_training_curves"]
