"""Pictures of SOMs, mappings and training runs (matplotlib; safe on headless machines).

* :func:`plot_som_mosaic` / :func:`plot_som`: neuron images on the lattice, one panel per channel
  (cartesian grid with lines and neuron keys, or a hex grid).
* :func:`plot_neuron`: one neuron, one panel per channel; :class:`SOMExplorer` / :func:`explore`:
  arrow-key browser.
* :func:`plot_image`: an image with its best-matching neuron in the image (or neuron) frame.
* :func:`plot_neuron_matches`: grid of the images a neuron collects, component marked.
* :func:`plot_bmu_counts`, :func:`plot_neuron_map`, :func:`plot_label_fractions`,
  :func:`plot_distance_stats`, :func:`plot_u_matrix`: per-neuron heat maps (hex-aware).
* :func:`plot_training_curves`: QE, TE and weight change over training (or over intermediate SOMs).

Every function returns the :class:`matplotlib.figure.Figure`; ``path=`` saves it atomically and
refuses to replace an existing file unless ``overwrite=True``.
"""

from somtorch.plotting.explorer import SOMExplorer, explore
from somtorch.plotting.images import plot_image, plot_neuron_matches
from somtorch.plotting.maps import (
    plot_bmu_counts,
    plot_distance_stats,
    plot_label_fractions,
    plot_neuron_map,
    plot_u_matrix,
)
from somtorch.plotting.som import (
    neuron_positions,
    plot_neuron,
    plot_som,
    plot_som_mosaic,
    plot_training_curves,
)

__all__ = [
    "plot_som_mosaic", "plot_som", "plot_neuron", "plot_bmu_counts", "plot_training_curves", "neuron_positions",
    "SOMExplorer", "explore", "plot_image", "plot_neuron_matches", "plot_distance_stats", "plot_label_fractions",
    "plot_neuron_map", "plot_u_matrix",
]
