"""SOM quality metrics computed from a mapping (image-to-neuron distances).

Convention
----------
``dist`` is the ``(n_images, N)`` Euclidean distance matrix a mapping writes (spec §1.4).

* quantization error (QE): mean over images of the distance to the best-matching neuron;
* topographic error (TE): fraction of images whose best and second-best neurons are not
  lattice neighbours, i.e. their grid distance exceeds 1 (4-neighbourhood on cartesian grids,
  6-neighbourhood on hexagonal grids, wrap-around on periodic lattices);
* coherence (PYINK): fraction whose second-best neuron is within Chebyshev distance 1 of the best
  (cartesian 8-neighbourhood) -- see :mod:`somtorch.analysis`.
"""

from __future__ import annotations

import torch

from somtorch.geometry.lattice import Lattice

__all__ = ["quality_metrics", "quantization_error", "topographic_error"]


def quantization_error(dist: torch.Tensor) -> float:
    return float(dist.min(dim=1).values.double().mean())


def topographic_error(dist: torch.Tensor, lattice: Lattice) -> float:
    if dist.shape[1] < 2:
        return 0.0
    two = torch.topk(dist, 2, dim=1, largest=False).indices
    gd = lattice.distances().to(dist.device)
    sep = gd[two[:, 0], two[:, 1]]
    return float((sep > 1.0 + 1e-6).double().mean())


def quality_metrics(dist: torch.Tensor, lattice: Lattice) -> dict:
    """QE, TE and the spread of best-match distances for a distance matrix ``(n, N)``."""
    dmin = dist.min(dim=1).values.double()
    return {
        "qe": float(dmin.mean()),
        "qe_median": float(dmin.median()),
        "qe_std": float(dmin.std()) if len(dmin) > 1 else 0.0,
        "te": topographic_error(dist, lattice),
    }
